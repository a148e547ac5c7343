"""The gallery in a real headless chromium: sign in with a key, watch jobs, open a finished
model's member columns with every picture loaded, and start a visualisation job from a
member's column and see it finish."""

from __future__ import annotations

import json
import re

import pytest

from kgan_client import ApiError, Client
from tests._service import IMAGES_TINY, RING8_TINY, digits_zip

# Every wait ends on its event (a status shown, a picture decoded); the bounds only catch a page
# that never gets there, so they allow for a machine busy with other work. So does the test's.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
JOB_ENDS_MS = 300_000  # a job run by the service's worker
PAGE_SHOWS_MS = 300_000  # pictures fetched and decoded, reports drawn

MEMBER_PICTURES = ["Samples", "Medoid", "Real images of its tile", "Frozen latent", "Latent traversal"]


@pytest.fixture(scope="module")
def image_model(service) -> str:
    with Client(service.url, service.key) as kgan:
        dataset = kgan.upload_dataset(digits_zip(), filename="digits.zip")
        return kgan.train(dataset, **IMAGES_TINY).wait(poll_s=0.5).model().id


def submit_key(page, service, key: str) -> None:
    page.goto(f"{service.url}/gallery/")
    page.fill("#api-key", key)
    page.click("form.login button[type=submit]")


def sign_in(page, service) -> None:
    """Sign in and wait for the jobs page: the form moves there once its check of the key
    returns, which on a slow machine can undo a page.goto made in the meantime."""
    submit_key(page, service, service.key)
    page.wait_for_selector("h1:text('Jobs')")


def all_images_loaded(page, selector: str) -> None:
    """Every <img> under selector has been fetched with the key and decoded (naturalWidth > 0)."""
    page.wait_for_function(
        """selector => {
            const images = [...document.querySelectorAll(selector)];
            return images.length > 0 && images.every(img => img.complete && img.naturalWidth > 0);
        }""", arg=selector, timeout=PAGE_SHOWS_MS)


def test_a_wrong_key_is_refused_and_the_right_one_is_kept_for_the_tab(page, service):
    submit_key(page, service, "kgan_not-a-key")
    assert "Missing or invalid API key" in page.locator(".login .error").inner_text()
    assert page.evaluate("sessionStorage.getItem('kgan.apiKey')") is None
    page.fill("#api-key", service.key)
    page.click("form.login button[type=submit]")
    page.wait_for_selector("h1:text('Jobs')")
    assert page.evaluate("sessionStorage.getItem('kgan.apiKey')") == service.key
    page.reload()  # the key survives a reload of the tab, without asking again
    page.wait_for_selector("h1:text('Jobs')")
    assert page.locator("form.login").count() == 0
    page.click("#sign-out")
    page.wait_for_selector("form.login")
    assert page.evaluate("sessionStorage.getItem('kgan.apiKey')") is None
    assert not page.script_errors


def test_model_page_shows_k_member_columns_and_starts_a_visualisation(page, service, image_model):
    sign_in(page, service)
    # The train job that made the model is listed as succeeded, with a link to the model.
    row = page.locator(f"tr:has(a[href='#/models/{image_model}'])")
    assert row.get_attribute("data-status") == "succeeded" and "6 / 6" in row.inner_text()
    row.locator(f"a[href='#/models/{image_model}']").click()

    columns = page.locator("section.member")
    columns.first.wait_for()
    assert columns.count() == IMAGES_TINY["k"]
    for k in range(IMAGES_TINY["k"]):
        column = page.locator(f"section.member[data-member='{k}']")
        assert f"Member {k}" in column.locator("h2").inner_text()
        assert re.search(r"\d+\.\d% of the data · \d+ items", column.locator(".share").inner_text())
        assert column.locator("figure.pic figcaption .label").all_inner_texts() == MEMBER_PICTURES
    all_images_loaded(page, "section.member figure.pic img")
    widths = page.eval_on_selector_all("section.member img", "images => images.map(i => i.naturalWidth)")
    assert len(widths) == IMAGES_TINY["k"] * len(MEMBER_PICTURES) and min(widths) > 0

    # Start activation maximisation for member 1 from its column, and see it finish there.
    column = page.locator("section.member[data-member='1']")
    column.locator("select[name=what]").select_option("activation-max")
    column.locator("input[name=options]").fill(json.dumps({"steps": 2, "methods": ["pixel", "regularised"]}))
    column.locator("form.visualise-form button[type=submit]").click()
    column.locator("li.job-line").wait_for()
    column.locator("li.job-line[data-status='succeeded']").wait_for(timeout=JOB_ENDS_MS)
    artifact = column.locator("figure.artifact[data-kind='activation-max']")
    artifact.wait_for()
    all_images_loaded(page, "section.member[data-member='1'] figure.artifact img")
    numbers = artifact.locator("table.numbers").inner_text()
    assert "pixels (no prior)" in numbers and "regularised (no prior)" in numbers
    # The other member's column did not get it.
    assert page.locator("section.member[data-member='0'] figure.artifact").count() == 0

    # The ensemble's cross-member matrix, started from the page, with its numbers.
    ensemble = page.locator("section.ensemble")
    ensemble.locator("select[name=what]").select_option("cross-member")
    ensemble.locator("form.visualise-form button[type=submit]").click()
    ensemble.locator("li.job-line[data-status='succeeded']").wait_for(timeout=JOB_ENDS_MS)
    ensemble.locator("figure.artifact[data-kind='cross-member'] table.numbers").wait_for()
    all_images_loaded(page, "section.ensemble figure.artifact img")
    assert "of 2 members" in ensemble.locator("figure.artifact[data-kind='cross-member']").inner_text()
    assert not page.script_errors


def test_activation_max_with_and_without_a_prior_trained_from_the_page(page, service, image_model):
    sign_in(page, service)
    page.goto(f"{service.url}/gallery/#/models/{image_model}")
    column = page.locator("section.member[data-member='0']")
    column.locator("select[name=what]").select_option("activation-max")
    assert column.locator("select[name=prior]").is_hidden()  # no prior for these images yet
    tiny_prior = {"steps": 4, "holdout": 4, "batch_size": 4, "code_dim": 8, "width": 4}
    ensemble = page.locator("section.ensemble")
    ensemble.locator("form.prior-form input[name=options]").fill(json.dumps(tiny_prior))
    ensemble.locator("form.prior-form button[type=submit]").click()
    ensemble.locator("li.job-line[data-status='succeeded']").wait_for(timeout=JOB_ENDS_MS)
    prior_select = column.locator("select[name=prior]")
    prior_select.wait_for()  # shown once the prior exists
    prior_id = prior_select.locator("option").nth(1).get_attribute("value")
    prior_select.select_option(prior_id)
    column.locator("input[name=options]").fill(json.dumps({"steps": 2, "methods": ["pixel", "prior"]}))
    column.locator("form.visualise-form button[type=submit]").click()
    column.locator("li.job-line[data-status='succeeded']").wait_for(timeout=JOB_ENDS_MS)
    numbers = column.locator("figure.artifact[data-kind='activation-max'] table.numbers")
    numbers.wait_for()
    rows = {row.split("\t")[0]: row.split("\t")[1:] for row in numbers.inner_text().splitlines()[1:]}
    assert set(rows) == {"pixels (no prior)", "learned prior"}
    # Realism comes only from an independent judge trained on the data; none is cached for these
    # uploaded digits, so the page shows no number rather than one from the prior's own encoder.
    assert all(cells[-1] == "–" for cells in rows.values()), rows
    all_images_loaded(page, "section.member[data-member='0'] figure.artifact img")
    with Client(service.url, service.key) as kgan:
        [artifact] = kgan.model(image_model).member(0).artifacts("activation-max")
        assert artifact.meta["options"]["methods"] == ["pixel", "prior"]
    # The prior's own job page lists its file with the prior's held-out fidelity.
    page.locator("section.ensemble li.job-line a").click()
    page.click("ul.artifacts li:has-text('prior.safetensors') summary")
    assert "heldout_psnr" in page.locator("ul.artifacts details pre").inner_text()
    assert not page.script_errors


def test_start_training_from_the_jobs_page_watch_it_live_and_cancel_it(page, service):
    sign_in(page, service)
    page.click("summary:text('Start a training run')")
    page.select_option("form.train-form select[name=dataset]", "builtin:ring8")
    page.fill("form.train-form input[name=k]", "2")
    page.fill("form.train-form input[name=steps]", "100000")
    extra = {**RING8_TINY, "log_every": 20, "checkpoint_every": 100_000}
    del extra["k"], extra["steps"]
    page.fill("form.train-form input[name=extra]", json.dumps(extra))
    page.click("form.train-form button[type=submit]")
    started = page.locator("form.train-form .form-status a")
    started.wait_for()
    with Client(service.url, service.key) as kgan:
        job = kgan.job(started.get_attribute("href").removeprefix("#/jobs/"))
        assert job.info.params["steps"] == 100_000 and job.info.params["log_every"] == 20
    row = page.locator(f"tr[data-job-id='{job.id}']")
    # Live: the row turns to running, its step count moves and a loss curve is drawn from
    # the reports the page has seen.
    page.locator(f"tr[data-job-id='{job.id}'][data-status='running']").wait_for(timeout=JOB_ENDS_MS)
    page.wait_for_function("""id => {
        const row = document.querySelector(`tr[data-job-id="${id}"]`);
        return row && row.querySelector(".loss-cell path.line") && /[1-9][\\d,]* \\/ 100,000/.test(row.innerText);
    }""", arg=job.id, timeout=PAGE_SHOWS_MS)
    assert re.search(r"\d+ (s|min)", row.locator("td").nth(4).inner_text())  # an ETA
    row.locator(f"a[href='#/jobs/{job.id}']").click()
    page.wait_for_selector("svg.chart[aria-label='critic loss'] path.line")
    page.click("button:text('Cancel')")
    page.wait_for_selector(".badge.cancelled", timeout=PAGE_SHOWS_MS)
    assert not page.script_errors


def test_delete_a_model_from_its_page(page, service):
    with Client(service.url, service.key) as kgan:
        model_id = kgan.train("ring8", **RING8_TINY).wait(poll_s=0.5).model().id
    sign_in(page, service)
    page.goto(f"{service.url}/gallery/#/models/{model_id}")
    page.wait_for_selector("form.delete-model button")
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.click("form.delete-model button")
    page.wait_for_selector("h1:text('Models')")
    assert asked and model_id[:8] in asked[0]
    assert page.locator(f"a[href='#/models/{model_id}']").count() == 0
    with Client(service.url, service.key) as kgan, pytest.raises(ApiError) as gone:
        kgan.model(model_id)
    assert gone.value.status == 404
    assert not page.script_errors


def test_a_page_left_while_it_loads_does_not_draw_over_the_next_one(page, service, image_model):
    sign_in(page, service)
    held = []
    page.route(f"**/v1/models/{image_model}", lambda route: held.append(route))  # the model JSON, answered late
    with page.expect_request(f"**/v1/models/{image_model}"):
        page.goto(f"{service.url}/gallery/#/models/{image_model}")
    page.goto(f"{service.url}/gallery/#/jobs")  # moved on before the model page could load
    page.wait_for_selector("form.train-form", state="attached")  # the jobs page, drawn
    assert len(held) == 1
    # Answered now, the model page finishes (it asks for its pictures) but stays out of sight.
    with page.expect_request(lambda request: "/samples.png" in request.url):
        held[0].continue_()
    assert page.evaluate("location.hash") == "#/jobs"
    assert page.locator("h1").all_inner_texts() == ["Jobs"] and page.locator("section.member").count() == 0
    assert not page.script_errors
