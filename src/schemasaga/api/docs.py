"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) with their scripts served by the service itself.

FastAPI's own pages load Swagger UI and ReDoc from a CDN (and ReDoc's fonts from Google): blank on a
machine offline, and a request to a third party from every reader. The scripts come from the installed
``fastapi-offline`` package instead (its ``static`` folder), below ``/docs/static``. Swagger UI's
validator badge, which would send the document to validator.swagger.io, is off; ReDoc's sidebar shows
Redocly's logo from their CDN whatever its options, so the script is served with that one address
pointing at the local favicon instead.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
PREFIX = "/docs/static"


def install_docs(app: FastAPI, *, title: str) -> None:
    """Mount ``/docs``, ``/redoc`` and their assets; the app is made with ``docs_url=None,
    redoc_url=None``."""

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} · API",
            swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{PREFIX}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} · API",
            redoc_js_url=f"{PREFIX}/redoc.standalone.js",
            redoc_favicon_url=f"{PREFIX}/favicon.png",
            with_google_fonts=False,
        )

    @app.get(PREFIX + "/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            return Response("not found", status_code=404, media_type="text/plain")
        body = _read(name)
        return Response(body, media_type=media_type, headers={"Cache-Control": "max-age=86400"})


_cache: dict[str, bytes] = {}
# The only remote address either script loads unconditionally (checked by the browser tests).
REDOCLY_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


def _read(name: str) -> bytes:
    if name not in _cache:
        body = files("fastapi_offline").joinpath("static", name).read_bytes()
        _cache[name] = body.replace(REDOCLY_LOGO, f"{PREFIX}/favicon.png".encode())
    return _cache[name]
