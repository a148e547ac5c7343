"""Deleting what an owner no longer needs, to free their stored bytes: a model (with everything
made from it) or a dataset.

The rows go in one transaction; the files go only after it has committed, so a failed commit
never leaves rows that point at missing files. A file that cannot be removed afterwards leaves
unreferenced bytes behind (logged), never a broken row. Job rows stay, as the history of what
ran; their links to the deleted object are cleared (their params still name it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from api.errors import Problem
from kgan_service import quotas
from kgan_service.models import UNFINISHED, Artifact, Dataset, Job, Model, Owner, get_owned
from kgan_service.store import ArtifactObjects, StoreError, dataset_key, job_key

log = logging.getLogger("kgan.api")


@dataclass
class Removal:
    """What a committed deletion leaves to take out of the artifact store: single objects
    (``keys``) and folders (``trees``: every object under them)."""

    objects: ArtifactObjects
    keys: list[str] = field(default_factory=list)
    trees: list[str] = field(default_factory=list)

    def remove_files(self) -> None:
        for remove, targets in ((self.objects.delete, self.keys), (self.objects.delete_tree, self.trees)):
            for target in targets:
                try:
                    remove(target)
                except (OSError, StoreError):
                    log.exception("deleted rows, but could not remove %s; its bytes stay in the artifact store",
                                  target)


def _unfinished_jobs(session: Session, owner: Owner) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.owner_id == owner.id, Job.status.in_(UNFINISHED))))


CANCEL_OR_WAIT = "Cancel them (POST /v1/jobs/{id}/cancel) or wait for them to finish"
DELETE_MODELS_FIRST = "Delete those models first (DELETE /v1/models/{id})"


def _in_use(what: str, ident: str, blocking: list[str], reason: str, remedy: str) -> Problem:
    listed = ", ".join(blocking[:5]) + (f" and {len(blocking) - 5} more" if len(blocking) > 5 else "")
    return Problem(409, f"{what.capitalize()} in use",
                   f"{what.capitalize()} {ident} cannot be deleted yet: {reason} ({listed}). {remedy}, "
                   "then delete it again.", slug="in-use", blocking=blocking)


def delete_model(session: Session, objects: ArtifactObjects, owner: Owner, model_id: str) -> Removal:
    """The model row, its checkpoint and run folder, and every artifact made from it (pictures,
    priors trained on its critic), with the folders of the jobs that made them."""
    quotas.lock_owner(session, owner)
    model = get_owned(session, owner, Model, model_id, "model")
    derived_jobs = list(session.scalars(select(Job.id).where(Job.owner_id == owner.id,
                                                             Job.source_model_id == model.id)))
    job_ids = [model.job_id, *derived_jobs]
    artifacts = list(session.execute(select(Artifact.id, Artifact.kind, Artifact.path).where(
        Artifact.owner_id == owner.id, or_(Artifact.model_id == model.id, Artifact.job_id.in_(job_ids)))))
    priors = {a.id for a in artifacts if a.kind == "prior"}
    busy = [j.id for j in _unfinished_jobs(session, owner)
            if j.source_model_id == model.id or (j.params or {}).get("prior_id") in priors]
    if busy:
        raise _in_use("model", model.id, busy, "unfinished jobs use it or a prior made from it", CANCEL_OR_WAIT)
    session.execute(update(Job).where(Job.id.in_(derived_jobs)).values(source_model_id=None))
    session.execute(delete(Artifact).where(Artifact.id.in_([a.id for a in artifacts])))
    session.execute(delete(Model).where(Model.id == model.id))
    session.commit()
    return Removal(objects, keys=[a.path for a in artifacts], trees=[job_key(j) for j in job_ids])


def delete_dataset(session: Session, objects: ArtifactObjects, owner: Owner, dataset_id: str) -> Removal:
    """The dataset row and its folder (the uploaded archive, the preview). An uploaded dataset
    that models were trained on stays until they are deleted: they read its images (a tile's
    real images, priors) from that archive."""
    quotas.lock_owner(session, owner)
    dataset = get_owned(session, owner, Dataset, dataset_id, "dataset")
    busy = [j.id for j in _unfinished_jobs(session, owner) if j.dataset_id == dataset.id]
    if busy:
        raise _in_use("dataset", dataset.id, busy, "unfinished jobs read it", CANCEL_OR_WAIT)
    if dataset.source == "upload":
        models = list(session.scalars(select(Model.id).join(Job, Job.id == Model.job_id)
                                      .where(Model.owner_id == owner.id, Job.dataset_id == dataset.id)
                                      .order_by(Model.created_at)))
        if models:
            raise _in_use("dataset", dataset.id, models, "models were trained on it and read its images",
                          DELETE_MODELS_FIRST)
    session.execute(update(Job).where(Job.owner_id == owner.id, Job.dataset_id == dataset.id).values(dataset_id=None))
    session.execute(delete(Dataset).where(Dataset.id == dataset.id))
    session.commit()
    return Removal(objects, trees=[dataset_key(dataset.id)])
