"""The browser client: `GET /` (index.html) and `GET /static/{name}`, public, under a strict CSP.

The files are package data (`vechat_rls/web/`), read once per process. The page names its assets
with a content hash (`/static/app.js?v=…`), so an asset asked for with the current hash may be
cached for a year, while the page itself is revalidated on every load (`no-cache` + ETag).
No token is needed here: the page takes it from `?access_token=` and talks to `/api/v1` itself.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import mimetypes
import re
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.params import FromPath, FromQuery

from vechat_rls.api.errors import NotFound

# 'self' covers same-origin ws:/wss: in CSP Level 3; the schemes are listed for older engines.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob:",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # The first load carries the token in the address: no Referer may ever repeat it.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"

_ASSET_REFERENCE = re.compile(r'(?P<attr>src|href)="/static/(?P<name>[A-Za-z0-9._-]+)"')
# Litestar appends "; charset=utf-8" to text types itself.
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    version: str  # the first 16 hex digits of its SHA-256

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


@dataclass(frozen=True)
class WebAssets:
    index: Asset
    static: dict[str, Asset]


def _asset(name: str, body: bytes) -> Asset:
    suffix = name[name.rfind(".") :] if "." in name else ""
    media_type = _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Asset(body=body, media_type=media_type, version=hashlib.sha256(body).hexdigest()[:16])


@functools.cache
def web_assets() -> WebAssets:
    """The client's files from the package; index.html with each asset's hash in its URL."""
    root = importlib.resources.files("vechat_rls") / "web"
    static = {
        entry.name: _asset(entry.name, entry.read_bytes())
        for entry in root.iterdir()
        if entry.is_file() and entry.name != "index.html" and not entry.name.startswith(".")
    }

    def versioned(match: re.Match[str]) -> str:
        asset = static.get(match["name"])
        suffix = f"?v={asset.version}" if asset else ""
        return f'{match["attr"]}="/static/{match["name"]}{suffix}"'

    page = _ASSET_REFERENCE.sub(versioned, (root / "index.html").read_text(encoding="utf-8"))
    return WebAssets(index=_asset("index.html", page.encode()), static=static)


def _serve(request: Request[Any, Any, Any], asset: Asset, cache_control: str) -> Response[bytes]:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache_control, "ETag": asset.etag}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(b"", status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


class WebController(Controller):
    """Outside `/api/v1`, so no token is asked for; not part of the OpenAPI document."""

    path = "/"
    include_in_schema = False

    @get("/")
    async def index(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        return _serve(request, web_assets().index, REVALIDATE)

    @get("/static/{name:str}")
    async def static(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        v: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        asset = web_assets().static.get(name)
        if asset is None:
            raise NotFound("file", name)
        return _serve(request, asset, IMMUTABLE if v == asset.version else REVALIDATE)
