"""``/v1/models/{name}/versions/{version}/files/{file}``: a version's report and plots.

Training writes ``report.json`` and ``plots/*.png`` beside the booster (:mod:`emgpose.train.job`) and
lists every file with its SHA-256 in ``bundle.json``. Only those two kinds are served, and only files the
bundle lists, so a request can name nothing else in the store; the web page shows the plots from here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from emgpose.errors import NotFound
from emgpose.train.bundle import MODELS, check_name
from emgpose_gateway.deps import RegistryDep
from emgpose_gateway.schemas import ErrorResponse

router = APIRouter(prefix="/v1/models", tags=["models"])

REPORT = "report.json"
PLOTS = "plots/"
MEDIA_TYPES = {".png": "image/png", ".json": "application/json"}
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "no such model, version, or report file"},
    503: {"model": ErrorResponse, "description": "the object store is not reachable"},
}


def served(files: dict[str, Any]) -> list[str]:
    """The files of a version that this route serves: the report and the plots, sorted."""
    return sorted(key for key in files if key == REPORT or (key.startswith(PLOTS) and key.endswith(".png")))


@router.get(
    "/{name}/versions/{version}/files/{file:path}",
    summary="A version's report.json or one of its plots (plots/*.png)",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "application/json": {}}}} | ERRORS,
)
def get_file(
    name: Annotated[str, Path(description="Model name", max_length=64)],
    version: Annotated[str, Path(description="A version, or `latest`", max_length=64)],
    file: Annotated[str, Path(description="`report.json` or `plots/<name>.png`", max_length=200)],
    registry: RegistryDep,
) -> Response:
    check_name(name)
    meta = registry.meta(name, version)
    available = served(meta.get("files") or {})
    if file not in available:
        raise NotFound(f"version {meta['version']} of model {name!r} has no file {file!r}; it has {available}")
    body = registry.store.get_bytes(f"{MODELS}/{name}/{meta['version']}/{file}")
    suffix = file[file.rfind(".") :]
    cache = "private, max-age=86400, immutable" if version != "latest" else "no-cache"  # versions never change
    return Response(body, media_type=MEDIA_TYPES[suffix], headers={"Cache-Control": cache})
