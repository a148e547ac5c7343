"""Python client for the kgan service, on httpx: ``Client`` (blocking) and ``AsyncClient``.

    from kgan_client import Client

    kgan = Client("http://localhost:8000", "kgan_...")
    job = kgan.train("ring8", k=2, steps=300).wait(progress=True)
    job.model().member(0).samples(500, seed=0).show()
"""

from kgan_client.aio import AsyncClient, AsyncJob, AsyncMember, AsyncModel
from kgan_client.errors import ApiError, IntegrityError, JobFailed, KganError
from kgan_client.schemas import ArtifactInfo, BuiltinDataset, DatasetInfo, JobInfo, JobProgress, MemberInfo, ModelInfo
from kgan_client.sync import Client, Job, Member, Model

__all__ = ["ApiError", "ArtifactInfo", "AsyncClient", "AsyncJob", "AsyncMember", "AsyncModel", "BuiltinDataset",
           "Client", "DatasetInfo", "IntegrityError", "Job", "JobFailed", "JobInfo", "JobProgress", "KganError",
           "Member", "MemberInfo", "Model", "ModelInfo"]
