"""One embedded service for every client test (starting it takes seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._service import EmbeddedService, embedded_service


@pytest.fixture(scope="package")
def service(tmp_path_factory) -> Iterator[EmbeddedService]:
    with embedded_service(tmp_path_factory.mktemp("client-service")) as running:
        yield running
