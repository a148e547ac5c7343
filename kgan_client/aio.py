"""The asyncio client: the same calls as ``kgan_client.Client``, awaited.

    async with AsyncClient("http://localhost:8000", "kgan_...") as kgan:
        job = await (await kgan.train("ring8", k=2, steps=300)).wait()
        model = await job.model()
        image = await model.member(0).samples(500, seed=0)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import httpx
from PIL import Image

from kgan_client import _common as common
from kgan_client.errors import JobFailed, KganError
from kgan_client.progress import ProgressBar
from kgan_client.schemas import (
    ArtifactInfo,
    BuiltinDataset,
    DatasetInfo,
    JobInfo,
    MemberInfo,
    ModelInfo,
)


class AsyncClient:
    """One API key's view of a kgan service, for asyncio code (notebooks, web apps)."""

    def __init__(self, url: str, key: str, *, timeout: float = common.DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.url = url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.url, headers=common.base_headers(key), timeout=timeout,
                                      transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return common.check(await self.http.request(method, url, **kwargs))

    async def _pages(self, url: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        page = (await self.request("GET", url, params=params)).json()
        for item in page["items"]:
            yield item
        while page.get("next"):
            page = (await self.request("GET", page["next"])).json()
            for item in page["items"]:
                yield item

    # datasets
    async def upload_dataset(self, source: common.UploadSource, *, name: str | None = None,
                             filename: str | None = None) -> DatasetInfo:
        fname, file, opened = common.upload_files(source, filename)
        try:
            data = {"name": name} if name else None
            r = await self.request("POST", "/v1/datasets", files={"file": (fname, file)}, data=data)
        finally:
            if opened:
                file.close()
        return DatasetInfo.model_validate(r.json())

    async def dataset(self, dataset_id: str) -> DatasetInfo:
        return DatasetInfo.model_validate((await self.request("GET", f"/v1/datasets/{dataset_id}")).json())

    async def datasets(self) -> list[DatasetInfo]:
        return [DatasetInfo.model_validate(d) async for d in self._pages("/v1/datasets", {"limit": 100})]

    async def builtin_datasets(self) -> list[BuiltinDataset]:
        return [BuiltinDataset.model_validate(d) for d in (await self.request("GET", "/v1/datasets/builtin")).json()]

    async def delete_dataset(self, dataset: common.DatasetRef) -> None:
        """As Client.delete_dataset."""
        await self.request("DELETE", f"/v1/datasets/{common.dataset_id_of(dataset)}")

    # jobs
    async def submit(self, kind: str, params: dict[str, Any], *, idempotency_key: str | None = None) -> AsyncJob:
        r = await self.request("POST", "/v1/jobs", **common.job_request(kind, params, idempotency_key))
        return AsyncJob(self, JobInfo.model_validate(r.json()))

    async def train(self, dataset: common.DatasetRef | None = None, *, dataset_id: str | None = None,
                    idempotency_key: str | None = None, **params: Any) -> AsyncJob:
        return await self.submit("train", {**common.data_source(dataset, dataset_id), **params},
                                 idempotency_key=idempotency_key)

    async def train_prior(self, dataset: common.DatasetRef | None = None, *, dataset_id: str | None = None,
                          model: common.ModelRef | None = None, idempotency_key: str | None = None,
                          **params: Any) -> AsyncJob:
        body = {**common.data_source(dataset, dataset_id), **params}
        if model is not None:
            body["model_id"] = common.model_id_of(model)
        return await self.submit("train_prior", body, idempotency_key=idempotency_key)

    async def visualise(self, model: common.ModelRef, what: str, member: int | None = None, *, seed: int = 0,
                        prior: str | ArtifactInfo | None = None, idempotency_key: str | None = None,
                        **options: Any) -> AsyncJob:
        return await self.submit("visualise", common.visualise_params(model, what, member, seed, prior, options),
                                 idempotency_key=idempotency_key)

    async def job(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, JobInfo.model_validate((await self.request("GET", f"/v1/jobs/{job_id}")).json()))

    async def jobs(self, *, status: str | None = None, kind: str | None = None) -> list[AsyncJob]:
        query = {k: v for k, v in {"status": status, "kind": kind, "limit": 100}.items() if v is not None}
        return [AsyncJob(self, JobInfo.model_validate(j)) async for j in self._pages("/v1/jobs", query)]

    # models and artifacts
    async def model(self, model_id: str) -> AsyncModel:
        info = ModelInfo.model_validate((await self.request("GET", f"/v1/models/{model_id}")).json())
        return AsyncModel(self, info)

    async def models(self) -> list[AsyncModel]:
        return [AsyncModel(self, ModelInfo.model_validate(m)) async for m in self._pages("/v1/models", {"limit": 100})]

    async def delete_model(self, model: common.ModelRef) -> None:
        """As Client.delete_model."""
        await self.request("DELETE", f"/v1/models/{common.model_id_of(model)}")

    async def artifacts(self, *, model_id: str | None = None, job_id: str | None = None, member: int | None = None,
                        kind: str | None = None) -> list[ArtifactInfo]:
        query = common.artifact_query(model_id, job_id, member, kind)
        return [ArtifactInfo.model_validate(a) async for a in self._pages("/v1/artifacts", query)]

    async def download(self, artifact: ArtifactInfo, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / artifact.local_name
        if common.already_there(path, artifact.sha256):
            return path
        async with self.http.stream("GET", f"/v1/artifacts/{artifact.id}") as r:
            if not r.is_success:
                await r.aread()
                common.check(r)
            out = common.VerifiedFile(path, artifact.sha256)
            try:
                async for chunk in r.aiter_bytes():
                    out.write(chunk)
            except BaseException:
                out.abort()
                raise
        return out.finish()

    async def download_artifacts(self, folder: str | Path, *, model_id: str | None = None,
                                 job_id: str | None = None, member: int | None = None,
                                 kind: str | None = None) -> list[Path]:
        if model_id is None and job_id is None:
            raise KganError("say whose artifacts to download: model_id= or job_id=")
        artifacts = await self.artifacts(model_id=model_id, job_id=job_id, member=member, kind=kind)
        paths = [await self.download(a, folder) for a in artifacts]
        common.write_index(Path(folder), artifacts)
        return paths


class AsyncJob:
    def __init__(self, client: AsyncClient, info: JobInfo):
        self.client, self.info = client, info

    def __repr__(self) -> str:
        return f"<AsyncJob {self.info.kind} {self.id} {self.status}>"

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def status(self) -> str:
        return self.info.status

    async def refresh(self) -> AsyncJob:
        self.info = (await self.client.job(self.id)).info
        return self

    async def wait(self, *, progress: bool | TextIO = False, timeout: float | None = None, poll_s: float = 1.0,
                   check: bool = True) -> AsyncJob:
        """Poll until the job ends; see ``Job.wait``."""
        bar = ProgressBar(None if progress is True else progress) if progress else None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                if bar:
                    bar.update(self.info)
                if self.info.finished:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {self.id} is still {self.status} after {timeout} s")
                await asyncio.sleep(poll_s)
                await self.refresh()
        finally:
            if bar:
                bar.close()
        if check and self.status != "succeeded":
            raise JobFailed(self.info)
        return self

    async def cancel(self) -> AsyncJob:
        self.info = JobInfo.model_validate((await self.client.request("POST", f"/v1/jobs/{self.id}/cancel")).json())
        return self

    async def model(self) -> AsyncModel:
        if self.info.model_id is None:
            await self.refresh()
        if self.info.model_id is None:
            raise KganError(f"{self.info.kind} job {self.id} is {self.status} and has no model; "
                            "only a succeeded train job has one (await .wait() first)")
        return await self.client.model(self.info.model_id)

    async def artifacts(self) -> list[ArtifactInfo]:
        return await self.client.artifacts(job_id=self.id)

    async def download_artifacts(self, folder: str | Path) -> list[Path]:
        return await self.client.download_artifacts(folder, job_id=self.id)


class AsyncModel:
    def __init__(self, client: AsyncClient, info: ModelInfo):
        self.client, self.info = client, info

    def __repr__(self) -> str:
        return f"<AsyncModel {self.id} k={self.k}>"

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def k(self) -> int:
        return self.info.k

    @property
    def members(self) -> list[AsyncMember]:
        return [AsyncMember(self, m) for m in self.info.members]

    def member(self, k: int) -> AsyncMember:
        if not 0 <= k < self.k:
            raise KganError(f"model {self.id} has k={self.k} members, numbered 0 to {self.k - 1}; there is no {k}")
        return AsyncMember(self, self.info.members[k])

    async def visualise(self, what: str, member: int | None = None, *, seed: int = 0,
                        prior: str | ArtifactInfo | None = None, **options: Any) -> AsyncJob:
        return await self.client.visualise(self.info, what, member, seed=seed, prior=prior, **options)

    async def artifacts(self, *, member: int | None = None, kind: str | None = None) -> list[ArtifactInfo]:
        return await self.client.artifacts(model_id=self.id, member=member, kind=kind)

    async def download_artifacts(self, folder: str | Path, *, member: int | None = None,
                                 kind: str | None = None) -> list[Path]:
        return await self.client.download_artifacts(folder, model_id=self.id, member=member, kind=kind)


class AsyncMember:
    def __init__(self, model: AsyncModel, info: MemberInfo):
        self.model, self.info = model, info

    @property
    def k(self) -> int:
        return self.info.k

    @property
    def tile_share(self) -> float:
        return self.info.tile_share

    async def _image(self, name: str, params: dict[str, Any]) -> Image.Image:
        url = self.info.links.get(name)
        if url is None:
            raise KganError(f"{name} is only drawn for image models; model {self.model.id} has "
                            f"{self.model.info.dataset_kind} (it has: {', '.join(self.info.links)})")
        query = {k: v for k, v in params.items() if v is not None}
        return common.image_from(await self.model.client.request("GET", url, params=query))

    async def samples(self, n: int = 64, seed: int = 0) -> Image.Image:
        return await self._image("samples", {"n": n, "seed": seed})

    async def medoid(self, n: int = 256, seed: int = 0) -> Image.Image:
        return await self._image("medoid", {"n": n, "seed": seed})

    async def real_tile(self, n: int = 32, seed: int = 0) -> Image.Image:
        return await self._image("real-tile", {"n": n, "seed": seed})

    async def frozen_latent(self, dims: list[int] | None = None, values: list[float] | None = None, n: int = 8,
                            seed: int = 0) -> Image.Image:
        return await self._image("frozen-latent", {"dims": dims, "values": values, "n": n, "seed": seed})

    async def traversal(self, dims: list[int] | None = None, steps: int = 7, span: float = 3.0,
                        seed: int = 0) -> Image.Image:
        return await self._image("traversal", {"dims": dims, "steps": steps, "span": span, "seed": seed})

    async def visualise(self, what: str, *, seed: int = 0, prior: str | ArtifactInfo | None = None,
                        **options: Any) -> AsyncJob:
        return await self.model.visualise(what, self.k, seed=seed, prior=prior, **options)

    async def artifacts(self, kind: str | None = None) -> list[ArtifactInfo]:
        return await self.model.artifacts(member=self.k, kind=kind)
