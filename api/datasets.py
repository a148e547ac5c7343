"""Datasets: uploaded archives of images, or rows that name a built-in dataset."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from sqlalchemy.orm import Session

from api.errors import Problem
from api.uploads import ArchiveReport, archive_suffix, inspect_archive, preview_png, safe_remove
from kgan_core.data import catalogue
from kgan_service import quotas
from kgan_service.models import Dataset, Owner, new_id
from kgan_service.settings import Settings
from kgan_service.store import ArtifactObjects, StoreError, dataset_key

log = logging.getLogger("kgan.api")


def builtin_root(settings: Settings) -> Path:
    return catalogue.builtin_root(settings.builtin_data_root)


def builtin_status(name: str, settings: Settings) -> tuple[bool, str]:
    """Whether a built-in can be used here without a download, and what to do if not."""
    from kgan_core.data.builtin import BUNDLED_MNIST, available_offline, mnist_folder

    root = builtin_root(settings)
    if name == "stacked-mnist":
        digits = "the 10,000 MNIST test digits shipped with the software" if mnist_folder(root) == BUNDLED_MNIST \
            else f"the MNIST digits under {root}"
        return True, f"10,000 images generated from {digits}"
    # Where its files go when the server lacks them; the loader itself decides whether they are
    # there (kgan_core.data.builtin.available_offline).
    facts = catalogue.BUILTINS.get(name)
    if facts is None or facts.files is None:
        return (True, "generated or shipped with the software") if available_offline(name, root) else (False, "unknown")
    if name == "mnist" and mnist_folder(root) == BUNDLED_MNIST:
        return True, ("the 10,000 MNIST test digits shipped with the software "
                      f"(for all 70,000, put the IDX files in {root}/mnist)")
    if available_offline(name, root):
        return True, f"files found under {root}"
    return False, f"not on this server: put {facts.files.format(root=root)} (KGAN_BUILTIN_DATA_ROOT)"


def _forget_objects(objects: ArtifactObjects, folder: str) -> None:
    """Take back what a dataset that was not created put into the store."""
    try:
        objects.delete_tree(folder)
    except StoreError:
        log.exception("could not remove %s from the artifact store; its bytes stay there unreferenced", folder)


def create_builtin(session: Session, owner: Owner, objects: ArtifactObjects, settings: Settings, builtin: str,
                   name: str | None) -> Dataset:
    from kgan_core.data import DatasetError, load_dataset
    from kgan_core.render import image_grid, png_bytes, scatter_png

    available, detail = builtin_status(builtin, settings)
    if not available:
        raise Problem(422, "Built-in dataset not available", f"{builtin}: {detail}.", slug="dataset-unavailable")
    try:
        data = load_dataset(builtin, root=builtin_root(settings))
    except DatasetError as exc:
        raise Problem(422, "Built-in dataset not available", f"{exc}.", slug="dataset-unavailable") from exc
    dataset_id = new_id()
    folder = dataset_key(dataset_id)
    try:
        if data.kind == "points":
            png = scatter_png(data.x[:2000], title=f"{builtin}: 2,000 of {data.n} points")
        else:
            png = png_bytes(image_grid(data.to_model(data.x[:64])))
        objects.put_bytes(f"{folder}/preview.png", png)
        row = Dataset(id=dataset_id, owner_id=owner.id, name=name or builtin, source="builtin", builtin=builtin,
                      kind=data.kind, n_items=data.n, size_bytes=data.x.numel() * data.x.element_size(),
                      item_shape=list(data.item_shape), meta={"labels": data.labels is not None})
        session.add(row)
        session.commit()
    except BaseException:
        session.rollback()
        _forget_objects(objects, folder)
        raise
    return row


def create_upload(session: Session, owner: Owner, objects: ArtifactObjects, settings: Settings, staged: Path,
                  filename: str, name: str | None, size: int) -> Dataset:
    """Check a staged upload and turn it into a dataset; on any failure nothing stays on disk or
    in the store. The archive goes into the store from the staged file (a rename on the local
    folder, a multipart upload read from disk on S3): never whole in memory."""
    dataset_id = new_id()
    folder = dataset_key(dataset_id)
    try:
        report: ArchiveReport = inspect_archive(staged, filename, settings)
        archive = f"{folder}/images{archive_suffix(filename)}"
        objects.move_in(archive, staged)
        objects.put_bytes(f"{folder}/preview.png", preview_png(report.preview))
        shape = [report.channels, *reversed(report.sizes[0])] if len(report.sizes) == 1 else None
        row = Dataset(id=dataset_id, owner_id=owner.id, name=(name or Path(filename).name)[:200], source="upload",
                      path=archive, kind="images", n_items=report.n_images, size_bytes=size,
                      item_shape=shape, meta={"filename": filename[:255], "sizes": report.sizes[:16],
                                              "channels": report.channels, "skipped_files": report.skipped,
                                              "uncompressed_bytes": report.uncompressed_bytes})
        # The check that counts: in the transaction that adds the row, with the owner locked, so two
        # uploads that each fit alone cannot both be let in (the route's earlier checks only spare
        # receiving and inspecting an upload that cannot fit).
        quotas.lock_owner(session, owner)
        quotas.check_storage_for_upload(session, owner, settings, size)
        session.add(row)
        session.commit()
    except BaseException:
        session.rollback()
        with contextlib.suppress(OSError):
            safe_remove(staged)
        _forget_objects(objects, folder)
        raise
    return row
