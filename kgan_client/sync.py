"""The blocking client: ``Client(url, key)`` and the handles it returns (Job, Model, Member).

    from kgan_client import Client

    with Client("http://localhost:8000", "kgan_...") as kgan:
        job = kgan.train("ring8", k=2, steps=300).wait(progress=True)
        model = job.model()
        model.member(0).samples(500, seed=0).save("member-0.png")
        model.download_artifacts("runs/ring8")
"""

from __future__ import annotations

import time
from collections.abc import Iterator
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


class Client:
    """One API key's view of a kgan service. Thread-safe like ``httpx.Client``; close it (or
    use ``with``) to release its connections."""

    def __init__(self, url: str, key: str, *, timeout: float = common.DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=common.base_headers(key), timeout=timeout,
                                 transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request; a refusal raises ApiError with the service's explanation."""
        return common.check(self.http.request(method, url, **kwargs))

    def _pages(self, url: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        page = self.request("GET", url, params=params).json()
        yield from page["items"]
        while page.get("next"):
            page = self.request("GET", page["next"]).json()
            yield from page["items"]

    # datasets
    def upload_dataset(self, source: common.UploadSource, *, name: str | None = None,
                       filename: str | None = None) -> DatasetInfo:
        """Upload a .zip, .tar, .tar.gz or .tgz of images (a path, bytes or an open binary file)."""
        fname, file, opened = common.upload_files(source, filename)
        try:
            data = {"name": name} if name else None
            r = self.request("POST", "/v1/datasets", files={"file": (fname, file)}, data=data)
        finally:
            if opened:
                file.close()
        return DatasetInfo.model_validate(r.json())

    def dataset(self, dataset_id: str) -> DatasetInfo:
        return DatasetInfo.model_validate(self.request("GET", f"/v1/datasets/{dataset_id}").json())

    def datasets(self) -> list[DatasetInfo]:
        return [DatasetInfo.model_validate(d) for d in self._pages("/v1/datasets", {"limit": 100})]

    def builtin_datasets(self) -> list[BuiltinDataset]:
        return [BuiltinDataset.model_validate(d) for d in self.request("GET", "/v1/datasets/builtin").json()]

    def delete_dataset(self, dataset: common.DatasetRef) -> None:
        """Delete one of your datasets (its archive and preview) to free storage. Refused (ApiError
        409, naming them) while unfinished jobs read it or models trained on the upload need it."""
        self.request("DELETE", f"/v1/datasets/{common.dataset_id_of(dataset)}")

    # jobs
    def submit(self, kind: str, params: dict[str, Any], *, idempotency_key: str | None = None) -> Job:
        """Any job kind with its parameters as the API takes them (train, train_prior, visualise)."""
        r = self.request("POST", "/v1/jobs", **common.job_request(kind, params, idempotency_key))
        return Job(self, JobInfo.model_validate(r.json()))

    def train(self, dataset: common.DatasetRef | None = None, *, dataset_id: str | None = None,
              idempotency_key: str | None = None, **params: Any) -> Job:
        """Train a k-GAN: ``dataset`` is a built-in name or an uploaded dataset; ``params`` are
        TrainConfig fields (k, steps, image_size, ...)."""
        return self.submit("train", {**common.data_source(dataset, dataset_id), **params},
                           idempotency_key=idempotency_key)

    def train_prior(self, dataset: common.DatasetRef | None = None, *, dataset_id: str | None = None,
                    model: common.ModelRef | None = None, idempotency_key: str | None = None,
                    **params: Any) -> Job:
        """Train a learned image prior (for activation maximisation through it)."""
        body = {**common.data_source(dataset, dataset_id), **params}
        if model is not None:
            body["model_id"] = common.model_id_of(model)
        return self.submit("train_prior", body, idempotency_key=idempotency_key)

    def visualise(self, model: common.ModelRef, what: str, member: int | None = None, *, seed: int = 0,
                  prior: str | ArtifactInfo | None = None, idempotency_key: str | None = None,
                  **options: Any) -> Job:
        """A visualisation job (activation-max, principal-directions, cross-member, ...)."""
        return self.submit("visualise", common.visualise_params(model, what, member, seed, prior, options),
                           idempotency_key=idempotency_key)

    def job(self, job_id: str) -> Job:
        return Job(self, JobInfo.model_validate(self.request("GET", f"/v1/jobs/{job_id}").json()))

    def jobs(self, *, status: str | None = None, kind: str | None = None) -> list[Job]:
        query = {k: v for k, v in {"status": status, "kind": kind, "limit": 100}.items() if v is not None}
        return [Job(self, JobInfo.model_validate(j)) for j in self._pages("/v1/jobs", query)]

    # models and artifacts
    def model(self, model_id: str) -> Model:
        return Model(self, ModelInfo.model_validate(self.request("GET", f"/v1/models/{model_id}").json()))

    def models(self) -> list[Model]:
        return [Model(self, ModelInfo.model_validate(m)) for m in self._pages("/v1/models", {"limit": 100})]

    def delete_model(self, model: common.ModelRef) -> None:
        """Delete a model with its checkpoint and every artifact made from it, to free storage.
        Refused (ApiError 409, naming them) while unfinished jobs use it."""
        self.request("DELETE", f"/v1/models/{common.model_id_of(model)}")

    def artifacts(self, *, model_id: str | None = None, job_id: str | None = None, member: int | None = None,
                  kind: str | None = None) -> list[ArtifactInfo]:
        query = common.artifact_query(model_id, job_id, member, kind)
        return [ArtifactInfo.model_validate(a) for a in self._pages("/v1/artifacts", query)]

    def download(self, artifact: ArtifactInfo, folder: str | Path) -> Path:
        """One artifact into ``folder`` (verified against its sha256; skipped if already there)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / artifact.local_name
        if common.already_there(path, artifact.sha256):
            return path
        with self.http.stream("GET", f"/v1/artifacts/{artifact.id}") as r:
            if not r.is_success:
                r.read()
                common.check(r)
            out = common.VerifiedFile(path, artifact.sha256)
            try:
                for chunk in r.iter_bytes():
                    out.write(chunk)
            except BaseException:
                out.abort()
                raise
        return out.finish()

    def download_artifacts(self, folder: str | Path, *, model_id: str | None = None, job_id: str | None = None,
                           member: int | None = None, kind: str | None = None) -> list[Path]:
        """Every matching artifact into ``folder``, with artifacts.json listing each file's numbers."""
        if model_id is None and job_id is None:
            raise KganError("say whose artifacts to download: model_id= or job_id=")
        artifacts = self.artifacts(model_id=model_id, job_id=job_id, member=member, kind=kind)
        paths = [self.download(a, folder) for a in artifacts]
        common.write_index(Path(folder), artifacts)
        return paths


class Job:
    """A submitted job. ``info`` is its state when last fetched; ``refresh()`` or ``wait()`` update it."""

    def __init__(self, client: Client, info: JobInfo):
        self.client, self.info = client, info

    def __repr__(self) -> str:
        return f"<Job {self.info.kind} {self.id} {self.status} {self.info.progress.step}/{self.info.progress.total}>"

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def status(self) -> str:
        return self.info.status

    def refresh(self) -> Job:
        self.info = self.client.job(self.id).info
        return self

    def wait(self, *, progress: bool | TextIO = False, timeout: float | None = None, poll_s: float = 1.0,
             check: bool = True) -> Job:
        """Poll until the job ends. ``progress=True`` draws a bar on stderr (or pass a stream).
        Raises JobFailed if it failed or was cancelled (unless ``check=False``), TimeoutError
        if ``timeout`` seconds pass first."""
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
                time.sleep(poll_s)
                self.refresh()
        finally:
            if bar:
                bar.close()
        if check and self.status != "succeeded":
            raise JobFailed(self.info)
        return self

    def cancel(self) -> Job:
        self.info = JobInfo.model_validate(self.client.request("POST", f"/v1/jobs/{self.id}/cancel").json())
        return self

    def model(self) -> Model:
        """The model a succeeded train job made (refreshes once if it is not known yet)."""
        if self.info.model_id is None:
            self.refresh()
        if self.info.model_id is None:
            raise KganError(f"{self.info.kind} job {self.id} is {self.status} and has no model; "
                            "only a succeeded train job has one (call .wait() first)")
        return self.client.model(self.info.model_id)

    def artifacts(self) -> list[ArtifactInfo]:
        return self.client.artifacts(job_id=self.id)

    def download_artifacts(self, folder: str | Path) -> list[Path]:
        return self.client.download_artifacts(folder, job_id=self.id)


class Model:
    """A trained k-GAN: its summary in ``info``, and a Member per generator/critic pair."""

    def __init__(self, client: Client, info: ModelInfo):
        self.client, self.info = client, info

    def __repr__(self) -> str:
        return f"<Model {self.id} k={self.k} step={self.info.step} {self.info.dataset_kind}>"

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def k(self) -> int:
        return self.info.k

    @property
    def members(self) -> list[Member]:
        return [Member(self, m) for m in self.info.members]

    def member(self, k: int) -> Member:
        if not 0 <= k < self.k:
            raise KganError(f"model {self.id} has k={self.k} members, numbered 0 to {self.k - 1}; there is no {k}")
        return Member(self, self.info.members[k])

    def visualise(self, what: str, member: int | None = None, *, seed: int = 0,
                  prior: str | ArtifactInfo | None = None, **options: Any) -> Job:
        return self.client.visualise(self.info, what, member, seed=seed, prior=prior, **options)

    def artifacts(self, *, member: int | None = None, kind: str | None = None) -> list[ArtifactInfo]:
        return self.client.artifacts(model_id=self.id, member=member, kind=kind)

    def download_artifacts(self, folder: str | Path, *, member: int | None = None,
                           kind: str | None = None) -> list[Path]:
        """The checkpoint, run summary and every visualisation of this model, into ``folder``."""
        return self.client.download_artifacts(folder, model_id=self.id, member=member, kind=kind)


class Member:
    """Member k: its tile share, and its pictures rendered by the service as PIL images."""

    def __init__(self, model: Model, info: MemberInfo):
        self.model, self.info = model, info

    def __repr__(self) -> str:
        return f"<Member {self.k} of model {self.model.id} tile share {self.tile_share:.3f}>"

    @property
    def k(self) -> int:
        return self.info.k

    @property
    def tile_share(self) -> float:
        return self.info.tile_share

    def _image(self, name: str, params: dict[str, Any]) -> Image.Image:
        url = self.info.links.get(name)
        if url is None:
            raise KganError(f"{name} is only drawn for image models; model {self.model.id} has "
                            f"{self.model.info.dataset_kind} (it has: {', '.join(self.info.links)})")
        query = {k: v for k, v in params.items() if v is not None}
        return common.image_from(self.model.client.request("GET", url, params=query))

    def samples(self, n: int = 64, seed: int = 0) -> Image.Image:
        """n samples of this member's generator: an image grid, or a scatter plot of 2-D points."""
        return self._image("samples", {"n": n, "seed": seed})

    def medoid(self, n: int = 256, seed: int = 0) -> Image.Image:
        return self._image("medoid", {"n": n, "seed": seed})

    def real_tile(self, n: int = 32, seed: int = 0) -> Image.Image:
        return self._image("real-tile", {"n": n, "seed": seed})

    def frozen_latent(self, dims: list[int] | None = None, values: list[float] | None = None, n: int = 8,
                      seed: int = 0) -> Image.Image:
        return self._image("frozen-latent", {"dims": dims, "values": values, "n": n, "seed": seed})

    def traversal(self, dims: list[int] | None = None, steps: int = 7, span: float = 3.0,
                  seed: int = 0) -> Image.Image:
        return self._image("traversal", {"dims": dims, "steps": steps, "span": span, "seed": seed})

    def visualise(self, what: str, *, seed: int = 0, prior: str | ArtifactInfo | None = None,
                  **options: Any) -> Job:
        return self.model.visualise(what, self.k, seed=seed, prior=prior, **options)

    def artifacts(self, kind: str | None = None) -> list[ArtifactInfo]:
        return self.model.artifacts(member=self.k, kind=kind)
