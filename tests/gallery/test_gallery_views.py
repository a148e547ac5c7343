"""What a researcher sees in the gallery, measured in the browser: trainer notes as a list,
no sideways page at phone width, a chart of one report, points members on equal axes in their
own colours, legible pictures that open at full size, refusals and deletions in words a person
can act on, and no serious accessibility violations (axe-core) on any page."""

from __future__ import annotations

import json

import pytest

from kgan_client import Client
from kgan_core.render import member_colour
from tests._service import IMAGES_TINY, RING8_TINY, digits_zip

pytestmark = pytest.mark.slow

# Two re-tiling rounds in 30 steps: the trainer writes notes (its point masses' moves) mid-run.
RING8_WITH_NOTES = {**RING8_TINY, "rounds": 2}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def points_job(service) -> dict:
    """A finished ring8 training job (with trainer notes) and its model id."""
    with Client(service.url, service.key) as kgan:
        job = kgan.train("ring8", **RING8_WITH_NOTES).wait(poll_s=0.5)
        return {"job": job.id, "model": job.model().id}


def sign_in(page, service, hash_: str = "#/jobs") -> None:
    page.goto(f"{service.url}/gallery/{hash_}")
    page.fill("#api-key", service.key)
    page.click("form.login button[type=submit]")


def pictures_loaded(page, selector: str) -> None:
    page.wait_for_function(
        """selector => {
            const images = [...document.querySelectorAll(selector)];
            return images.length > 0 && images.every(img => img.complete && img.naturalWidth > 0);
        }""", arg=selector, timeout=60_000)


def serious_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])} elements: {[n['html'][:100] for n in v['nodes'][:3]]})"
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def test_a_job_with_trainer_notes_shows_a_heading_and_a_list(page, service, points_job):
    sign_in(page, service, f"#/jobs/{points_job['job']}")
    notes = page.locator("ul.trainer-notes li")
    notes.first.wait_for()
    heading = page.locator("h2:text('Trainer notes')")
    assert heading.count() == 1
    assert notes.count() >= 1 and all(text.startswith("step ") for text in notes.all_inner_texts())
    assert "[object" not in page.locator("#view").inner_text()
    assert not page.script_errors


def test_a_chart_with_one_report_draws_it_at_its_step(page, service):
    sign_in(page, service)
    page.wait_for_selector("h1:text('Jobs')")
    drawn = page.evaluate("""async () => {
        const { lineChart } = await import("./charts.js");
        const svg = lineChart([{ name: "member 0", colour: "#1f77b4", points: [[300, 0.5]] },
                               { name: "member 1", colour: "#ff7f0e", points: [[300, -0.25]] }],
                              { title: "critic loss" });
        return { dots: [...svg.querySelectorAll("circle")].map((c) => c.getAttribute("fill")),
                 text: [...svg.querySelectorAll("text")].map((t) => t.textContent) };
    }""")
    assert drawn["dots"] == ["#1f77b4", "#ff7f0e"]
    assert any("one report so far" in t and "300" in t for t in drawn["text"])
    assert not any("301" in t for t in drawn["text"]), "no invented x range"


def test_points_members_share_axes_and_colours_and_pictures_open_full_size(page, service, points_job):
    sign_in(page, service, f"#/models/{points_job['model']}")
    pictures_loaded(page, "section.member figure.pic img")
    sizes = page.eval_on_selector_all("section.member figure.pic img",
                                      "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
    assert len(sizes) == RING8_TINY["k"] and len(set(map(tuple, sizes))) == 1, sizes
    chips = page.eval_on_selector_all("section.member .chip",
                                      "chips => chips.map(c => getComputedStyle(c).backgroundColor)")
    expected = [member_colour(k) for k in range(RING8_TINY["k"])]
    assert chips == [f"rgb({int(c[1:3], 16)}, {int(c[3:5], 16)}, {int(c[5:7], 16)})" for c in expected]
    shares = page.eval_on_selector_all("section.member .share .fill",
                                       "bars => bars.map(b => getComputedStyle(b).backgroundColor)")
    assert shares == chips, "each member's tile-share bar is in its colour"
    alts = page.eval_on_selector_all("section.member figure.pic img", "imgs => imgs.map(i => i.alt)")
    assert all(alt.startswith(f"Member {k} of {RING8_TINY['k']}, samples") and "% of the data" in alt
               for k, alt in enumerate(alts)), alts
    # The summary names the architecture built and the data in words, not the settings.
    facts = page.locator("dl.facts").inner_text()
    assert "2-D points" in facts and "mlp (picked by data shape)" in facts and "auto" not in facts.split("picked")[0]

    page.locator("section.member[data-member='1'] button.zoom").first.click()
    full = page.locator("dialog.full-picture[open] img")
    full.wait_for()
    page.wait_for_function("() => document.querySelector('dialog.full-picture img').naturalWidth > 0")
    shown = full.evaluate("img => [img.clientWidth, img.naturalWidth]")
    assert shown[0] == shown[1], "the dialog shows the picture at its own size"
    page.locator("dialog.full-picture button.close").click()
    page.wait_for_selector("dialog.full-picture", state="detached")
    assert not page.script_errors


def test_a_finished_training_job_has_each_members_samples_as_artifacts(service, points_job):
    with Client(service.url, service.key) as kgan:
        samples = [a for a in kgan.artifacts(job_id=points_job["job"]) if a.kind == "samples"]
    assert sorted(a.member for a in samples) == list(range(RING8_TINY["k"]))
    assert all(a.media_type == "image/png" and a.meta["numbers"]["members"] for a in samples)


@pytest.mark.parametrize("where", ["#/jobs", "#/models", "job", "model"])
def test_no_page_is_wider_than_a_phone(browser, service, points_job, where):
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        hash_ = {"job": f"#/jobs/{points_job['job']}", "model": f"#/models/{points_job['model']}"}.get(where, where)
        sign_in(page, service, hash_)
        page.wait_for_selector("table.jobs, section.member, h2:text('Parameters')")
        if where == "model":
            pictures_loaded(page, "section.member figure.pic img")
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], f"{where} is {widths[0]} px wide in a {widths[1]} px window"
        if where == "model":  # members stack, each within the window
            right = page.eval_on_selector_all("section.member", "ms => ms.map(m => m.getBoundingClientRect().right)")
            assert max(right) <= PHONE["width"]
    finally:
        context.close()


def test_a_refused_delete_links_the_blocking_jobs_and_offers_cancel(page, service, points_job):
    blocking = [points_job["job"]]
    problem = {"type": "urn:kgan:problem:in-use", "title": "Model in use", "status": 409,
               "detail": f"Model cannot be deleted yet ({blocking[0]}). Cancel them (POST /v1/jobs/{{id}}/cancel)",
               "blocking": blocking}
    # The refusal as the API sends it while a job uses the model (a live job would race to finish).
    page.route(f"**/v1/models/{points_job['model']}", lambda route: route.fulfill(
        status=409, content_type="application/problem+json", body=json.dumps(problem))
        if route.request.method == "DELETE" else route.continue_())
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, service, f"#/models/{points_job['model']}")
    page.click("form.delete-model button")
    refusal = page.locator("form.delete-model .error")
    refusal.wait_for()
    assert "POST /v1" not in refusal.inner_text()
    assert refusal.locator(f"a[href='#/jobs/{blocking[0]}']").count() == 1
    assert refusal.locator("button:text('Cancel')").count() == 1


def test_a_deleted_models_visualisation_job_says_so(page, service):
    with Client(service.url, service.key) as kgan:
        model = kgan.train("ring8", **RING8_TINY).wait(poll_s=0.5).model()
        job = model.member(0).visualise("training-curves").wait(poll_s=0.5)
        kgan.delete_model(model.id)
    sign_in(page, service, f"#/jobs/{job.id}")
    page.wait_for_selector(".model-deleted")
    assert "was deleted" in page.locator(".model-deleted").inner_text()
    page.goto(f"{service.url}/gallery/#/models/{model.id}")
    page.wait_for_selector(".error")
    assert "was deleted" in page.locator(".error").inner_text()
    assert "not found" not in page.locator(".error").inner_text().lower()


def test_every_page_has_no_serious_accessibility_violations(page, service, points_job):
    sign_in(page, service)
    page.wait_for_selector("table.jobs")
    found = {"jobs": serious_violations(page)}
    for name, hash_, ready in [("job", f"#/jobs/{points_job['job']}", "h2:text('Parameters')"),
                               ("models", "#/models", "table.jobs"),
                               ("model", f"#/models/{points_job['model']}", "section.member figure.pic img[src]")]:
        page.goto(f"{service.url}/gallery/{hash_}")
        page.wait_for_selector(ready)
        found[name] = serious_violations(page)
    page.click("#sign-out")
    page.wait_for_selector("form.login")
    found["sign in"] = serious_violations(page)
    assert not any(found.values()), found


@pytest.fixture(scope="module")
def image_model(service) -> str:
    with Client(service.url, service.key) as kgan:
        dataset = kgan.upload_dataset(digits_zip(), filename="digits.zip")
        return kgan.train(dataset, **IMAGES_TINY).wait(poll_s=0.5).model().id


def test_image_pictures_keep_their_labels_legible_and_members_do_not_overlap(page, service, image_model):
    sign_in(page, service, f"#/models/{image_model}")
    pictures_loaded(page, "section.member figure.pic img")
    # Labels are drawn 12 px high: shown at 3/4 of the picture's size or more, they stay 9 px or more.
    shown = page.eval_on_selector_all("figure.pic img",
                                      "imgs => imgs.map(i => [i.alt, i.clientWidth / i.naturalWidth])")
    assert all(scale >= 0.74 for _, scale in shown), [s for s in shown if s[1] < 0.74]
    boxes = page.eval_on_selector_all("section.member", "ms => ms.map(m => { const r = m.getBoundingClientRect();"
                                      " return [r.left, r.right, r.top, r.bottom]; })")
    for one, next_ in zip(boxes, boxes[1:], strict=False):  # side by side, or one under another
        assert one[1] <= next_[0] or one[3] <= next_[2], f"member columns overlap: {one} and {next_}"
    assert all(alt.startswith("Member ") and "of the data" in alt for alt, _ in shown)

    # The ensemble's training curves, started from the page, appear legible in their slot.
    ensemble = page.locator("section.ensemble")
    ensemble.locator("select[name=what]").first.select_option("training-curves")
    ensemble.locator("form.visualise-form button[type=submit]").click()
    curves = page.locator("section.ensemble figure.artifact[data-kind='training-curves'] img")
    curves.wait_for(timeout=90_000)
    pictures_loaded(page, "section.ensemble figure.artifact img")
    assert curves.evaluate("i => i.clientWidth / i.naturalWidth") >= 0.74
    assert not serious_violations(page)
    assert not page.script_errors
