"""/v1/jobs: submit, inspect, list and cancel training jobs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response, status
from sqlalchemy import select

from api import jobs as checks
from api.deps import CurrentOwner, SessionDep
from api.pagination import paginate
from api.params import JobCreate
from api.schemas import JobError, JobOut, JobProgress, Page
from kgan_service import jobs as lifecycle
from kgan_service.models import Job, JobKind, JobStatus, Model

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255,
    description="retrying a POST with the same key returns the job the first POST created")]


def job_out(job: Job, model_id: str | None) -> JobOut:
    links = {"self": f"/v1/jobs/{job.id}", "cancel": f"/v1/jobs/{job.id}/cancel",
             "artifacts": f"/v1/artifacts?job_id={job.id}"}
    if model_id:
        links["model"] = f"/v1/models/{model_id}"
    return JobOut(
        id=job.id, kind=job.kind, status=job.status, params=job.params, dataset_id=job.dataset_id,
        attempt=job.attempt, cancel_requested=job.cancel_requested,
        progress=JobProgress(**lifecycle.progress_view(job)),
        error=JobError(title=job.error_title, detail=job.error_detail) if job.error_title else None,
        model_id=model_id, created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        links=links,
    )


def _model_id(session, job_id: str) -> str | None:
    return session.scalar(select(Model.id).where(Model.job_id == job_id))


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut,
             responses={202: {"description": "accepted; poll the URL in Location"}})
def create_job(body: JobCreate, owner: CurrentOwner, session: SessionDep, request: Request, response: Response,
               idempotency_key: IdempotencyKey = None) -> JobOut:
    job, created = checks.create_job(session, owner, body, idempotency_key, request.app.state.settings)
    if created:
        lifecycle.dispatch(request.app.state.db, request.app.state.send_job, job.id, job.params)
        session.refresh(job)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job_out(job, _model_id(session, job.id))


@router.get("", response_model=Page[JobOut])
def list_jobs(owner: CurrentOwner, session: SessionDep, request: Request,
              status_: Annotated[Literal[tuple(s.value for s in JobStatus)] | None,  # type: ignore[valid-type]
                                 Query(alias="status")] = None,
              kind: Annotated[Literal[tuple(k.value for k in JobKind)] | None, Query()] = None,  # type: ignore[valid-type]
              limit: Annotated[int, Query(ge=1, le=100)] = 20,
              offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Page[JobOut]:
    where = [Job.owner_id == owner.id]
    if status_ is not None:
        where.append(Job.status == status_)
    if kind is not None:
        where.append(Job.kind == kind)
    statement = (select(Job, Model.id).outerjoin(Model, Model.job_id == Job.id).where(*where)
                 .order_by(Job.created_at.desc(), Job.id.desc()))
    return Page[JobOut](**paginate(session, request, statement, Job, where, limit, offset,
                                   lambda row: job_out(row[0], row[1])))


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, owner: CurrentOwner, session: SessionDep) -> JobOut:
    job = lifecycle.get_owned_job(session, owner, job_id)
    return job_out(job, _model_id(session, job.id))


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def cancel_job(job_id: str, owner: CurrentOwner, session: SessionDep) -> JobOut:
    job = lifecycle.cancel_job(session, owner, job_id)
    return job_out(job, _model_id(session, job.id))
