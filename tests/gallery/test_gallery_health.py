"""Each member's column on the model page shows the health the API returns for it."""

from __future__ import annotations

import httpx
import pytest

from kgan_client import Client
from tests._service import RING8_TINY
from tests.gallery.test_gallery import sign_in

pytestmark = pytest.mark.slow


def test_each_member_column_shows_its_health_badge(page, service):
    with Client(service.url, service.key) as kgan:
        model_id = kgan.train("ring8", **RING8_TINY).wait(poll_s=0.5).model().id
    model = httpx.get(f"{service.url}/v1/models/{model_id}",
                      headers={"Authorization": f"Bearer {service.key}"}).json()
    sign_in(page, service)
    page.goto(f"{service.url}/gallery/#/models/{model_id}")
    page.locator("section.member").first.wait_for()
    for member in model["members"]:
        health = member["health"]
        assert set(health["checks"]) == {"collapse", "critic_inversion", "wasserstein"}  # points: no image checks
        line = page.locator(f"section.member[data-member='{member['k']}'] p.health")
        badge = line.locator(".badge").inner_text()
        if health["flags"]:
            assert badge == ", ".join(flag.replace("_", " ") for flag in health["flags"])
            assert "failed" in line.locator(".badge").get_attribute("class")
        else:
            assert badge == "healthy"
        assert line.get_attribute("data-flags") == " ".join(health["flags"])
        title = line.get_attribute("title")
        check_lines = {line.split(":")[0]: line for line in title.splitlines() if not line.startswith(" ")}
        assert set(check_lines) == set(health["checks"])
        for name, check in health["checks"].items():
            assert check_lines[name].endswith(" — flagged") == check["flagged"]
    assert not page.script_errors
