"""`/schema/swagger`: the interactive OpenAPI page, Swagger UI served by us, under its own CSP.

Litestar's render plugins load Swagger UI (and Stoplight Elements, Scalar) from a CDN: without
internet the page is blank, and with it the page runs a third party's current script in our
origin. Here Swagger UI's files come from a Python package (`swagger-ui-bundle-v2`, Swagger UI 5,
which renders OpenAPI 3.1), read once per process and served under `/schema/swagger/`; the page
loads them and our own start-up script (no inline script), under a policy that allows what it
needs on this page only. The document itself is `/schema/openapi.json`.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.params import FromPath

from vechat_rls.chat.errors import NotFound

DOCUMENT_URL = "/schema/openapi.json"
PAGE_PATH = "/schema/swagger"

# Swagger UI's styles are a stylesheet of its own plus style attributes its React components set
# (allowed through the CSSOM); its icons are data: URLs; "Try it out" calls this origin only.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
CACHE = "public, max-age=86400"

# The files of the package the page uses (it ships more: maps, ES builds, an OAuth redirect).
PACKAGE_FILES = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}
START = f"""// Swagger UI on vechat-rls's OpenAPI document (api/apidocs.py).
window.addEventListener("load", () => {{
  window.ui = SwaggerUIBundle({{
    url: "{DOCUMENT_URL}",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  }});
}});
"""


@dataclass(frozen=True)
class File:
    body: bytes
    media_type: str

    @functools.cached_property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@functools.cache
def swagger_files() -> dict[str, File]:
    """Swagger UI's files from its package and our start-up script, read once per process."""
    import swagger_ui_bundle  # late: only a process that serves the page reads the package

    root: Traversable = swagger_ui_bundle.swagger_ui_path
    files = {
        name: File(root.joinpath(name).read_bytes(), kind) for name, kind in PACKAGE_FILES.items()
    }
    files["start.js"] = File(START.encode(), "text/javascript")
    return files


def _page() -> bytes:
    files = swagger_files()

    def url(name: str) -> str:
        return f"{PAGE_PATH}/{name}?v={files[name].etag.strip(chr(34))}"

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>vechat-rls API</title>
  <link rel="icon" type="image/png" href="{url("favicon-32x32.png")}">
  <link rel="stylesheet" href="{url("swagger-ui.css")}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{url("swagger-ui-bundle.js")}"></script>
  <script src="{url("start.js")}"></script>
</body>
</html>
""".encode()


class SwaggerController(Controller):
    """The page and its files; public like `/schema`, and not part of the OpenAPI document."""

    path = PAGE_PATH
    include_in_schema = False

    @get("/")
    async def page(self) -> Response[bytes]:
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return Response(_page(), media_type="text/html", headers=headers)

    @get("/{name:str}")
    async def file(self, request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
        found = swagger_files().get(name)
        if found is None:
            raise NotFound("file", name)
        headers = {**SECURITY_HEADERS, "Cache-Control": CACHE, "ETag": found.etag}
        if found.etag in request.headers.get("if-none-match", ""):
            return Response(b"", status_code=304, headers=headers)
        return Response(found.body, media_type=found.media_type, headers=headers)
