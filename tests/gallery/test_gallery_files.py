"""The gallery's files as the API serves them (no browser needed): every module a page imports
is served, with a type the browser will run and a policy that allows no inline script."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routes import gallery

IMPORT = re.compile(r"""^import .* from "\./([\w.-]+)";$""", re.M)


def client() -> TestClient:
    app = FastAPI()
    app.include_router(gallery.router)
    return TestClient(app)


def test_the_root_and_gallery_open_the_index_page():
    with client() as http:
        for path in ("/", "/gallery"):
            r = http.get(path, follow_redirects=False)
            assert r.status_code == 307 and r.headers["location"] == "/gallery/"
        page = http.get("/gallery/")
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert '<script type="module" src="app.js">' in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "img-src 'self' blob:" in csp and "unsafe-inline" not in csp


def test_every_imported_module_is_served_as_javascript():
    with client() as http:
        modules = {"app.js"}
        pending = ["app.js"]
        while pending:
            r = http.get(f"/gallery/{pending.pop()}")
            assert r.status_code == 200 and r.headers["content-type"] == "text/javascript; charset=utf-8"
            for name in IMPORT.findall(r.text):
                if name not in modules:
                    modules.add(name)
                    pending.append(name)
        assert modules == {"app.js", "api.js", "dom.js", "charts.js", "jobs.js", "model.js"}
        assert {f"/gallery/{m}" for m in modules} <= gallery.GALLERY_PATHS
        assert http.get("/gallery/style.css").headers["content-type"] == "text/css; charset=utf-8"
        assert http.get("/gallery/nothing.js").status_code == 404


def test_no_page_builds_markup_from_strings():
    # Names and numbers from the API are set as text, never parsed as HTML.
    for path in gallery.GALLERY_DIR.glob("*.js"):
        assert "innerHTML" not in path.read_text() and "insertAdjacentHTML" not in path.read_text(), path.name
