"""Fast JSON responses: orjson serialises the numpy-free dicts the routes build."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse, Response


class ORJSONResponse(JSONResponse):
    """A JSONResponse (so FastAPI documents the route's response model) rendered by orjson."""

    __init__ = Response.__init__  # JSONResponse's own only passes its arguments on: one call less per response

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(content: Any, *, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return ORJSONResponse(content, status_code=status_code, headers=headers)
