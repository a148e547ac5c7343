"""The gallery: the static HTML, CSS and plain JavaScript modules in api/gallery/, served as
they are on disk (no build step), at /gallery/.

The files are public: they hold no one's data. Every number and picture the gallery shows is
fetched from /v1 with the API key the person types in, like any other client. One route per
file (no path parameter) keeps what is served an explicit list; ``GALLERY_PATHS`` is it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

GALLERY_DIR = Path(__file__).resolve().parents[1] / "gallery"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
# Scripts only from this origin and never inline, so a dataset or job name shown on a page
# cannot run as code; images may be blob: URLs (fetched with the key, then shown).
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; "
                               "style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # revalidate, so a deployment's new gallery is picked up at once
}

router = APIRouter(include_in_schema=False)


def _file(path: Path) -> Callable[[], FileResponse]:
    def serve() -> FileResponse:
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)

    serve.__name__ = f"gallery_{path.stem}_{path.suffix[1:]}"
    return serve


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/gallery/")


@router.get("/gallery")
def gallery() -> RedirectResponse:
    return RedirectResponse("/gallery/")


router.add_api_route("/gallery/", _file(GALLERY_DIR / "index.html"), methods=["GET"])
for _path in sorted(GALLERY_DIR.iterdir()):
    if _path.suffix in MEDIA_TYPES:
        router.add_api_route(f"/gallery/{_path.name}", _file(_path), methods=["GET"])

GALLERY_PATHS: frozenset[str] = frozenset(route.path for route in router.routes)  # type: ignore[attr-defined]
