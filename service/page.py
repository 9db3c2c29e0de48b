"""The draw-a-digit page: GET / and its static files (service/static/), and the allow-listed pictures of a model
version (training curves, confusion matrix) that the page shows.

Every response here carries the page's security headers: a Content-Security-Policy that allows only this origin
(plus data: and blob: images), no inline script or style, nosniff, and no referrer to other sites. The static
files are a fixed allow-list read once at start-up, so no request path ever reaches the file system; a version's
pictures are looked up by exact name in a second allow-list, inside the folder of a version the registry serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParameter
from starlette.responses import Response

from models.contract import EXTRA_FOLDER
from service.dependencies import ServingDep
from service.errors import NotFound
from service.openapi import error_responses

STATIC_FOLDER = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# The pictures of a version the page may show, from its assets.extra/ folder; nothing else there is served.
VERSION_ASSETS = ("training_curves.png", "confusion_matrix.png", "reliability_diagram.png")

router = APIRouter()


def _static_files() -> dict[str, tuple[bytes, str]]:
    """Every file of service/static/ with a known type, read once: name → (bytes, content type)."""
    return {
        path.name: (path.read_bytes(), CONTENT_TYPES[path.suffix])
        for path in sorted(STATIC_FOLDER.iterdir())
        if path.is_file() and path.suffix in CONTENT_TYPES
    }


STATIC_FILES = _static_files()


def static_response(name: str) -> Response:
    try:
        content, content_type = STATIC_FILES[name]
    except KeyError:
        raise NotFound(
            f"no static file {name[:80]!r}; the page's files are {', '.join(sorted(STATIC_FILES))}"
        ) from None
    return Response(content, media_type=content_type, headers=SECURITY_HEADERS)


@router.get(
    "/",
    summary="The draw-a-digit page",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}}},
)
async def page() -> Response:
    return static_response("index.html")


@router.get(
    "/static/{name}",
    summary="The page's script, style sheet and icon",
    response_class=Response,
    responses={
        200: {"content": {content_type: {} for _, content_type in STATIC_FILES.values()}},
        **error_responses(404),
    },
)
async def static(
    name: str = PathParameter(description="One of the page's files.", json_schema_extra={"enum": sorted(STATIC_FILES)}),
) -> Response:
    return static_response(name)


@router.get(
    "/models/{model}/versions/{version}/assets/{name}",
    summary="A picture of a model version: its training curves or its confusion matrix (PNG)",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **error_responses(404, 422)},
)
async def version_asset(
    serving: ServingDep,
    model: str,
    version: Annotated[int, PathParameter(ge=1, le=10**18)],
    name: str = PathParameter(
        description="One of the allow-listed pictures.", json_schema_extra={"enum": list(VERSION_ASSETS)}
    ),
) -> Response:
    if name not in VERSION_ASSETS:
        raise NotFound(f"no asset {name[:80]!r}; a version's assets are {', '.join(VERSION_ASSETS)}")
    loaded = serving.registry.resolve(model, version, None)
    try:  # read whole (tens of KB): a version unloaded and deleted meanwhile is then a 404, not a broken stream
        content = (loaded.model.path / EXTRA_FOLDER / name).read_bytes()
    except OSError:
        raise NotFound(f"{model} version {loaded.model.version} has no {name}") from None
    return Response(content, media_type="image/png", headers=SECURITY_HEADERS)
