"""The browser client: `GET /` (index.html) and `GET /static/{name}`, public, under a strict CSP.

The files are package data (`vechat_rls/web/`), read once per process. Assets are named with a
content hash, one version for all ES modules (their imports are rewritten to carry it), so a URL
cached for a year never names other bytes; the page itself is revalidated on every load. No
token is needed here: the page takes it from `?access_token=` and talks to `/api/v1` itself.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import mimetypes
import re
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.params import FromPath, FromQuery

from vechat_rls.chat.errors import NotFound

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
# A module's static import or re-export, one statement from the start of a line: `import "…"`,
# `import … from "…"`, `export … from "…"`. Dynamic `import()` is not used by the client.
_MODULE_IMPORT = re.compile(
    r"""^(?P<head>import\s*|(?:import|export)\b[^;'"]*?\bfrom\s*)"""
    r"""(?P<quote>["'])(?P<specifier>[^"'\n]*)(?P=quote)""",
    re.MULTILINE,
)
_MODULE_SPECIFIER = re.compile(r"\./(?P<name>[A-Za-z0-9._-]+\.js)")
# Litestar appends "; charset=utf-8" to text types itself.
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    version: str  # 16 hex digits of a SHA-256: of its body, or for a module, of all the modules

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


@dataclass(frozen=True)
class WebAssets:
    index: Asset
    static: dict[str, Asset]


def _version(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


def _asset(name: str, body: bytes, version: str | None = None) -> Asset:
    suffix = name[name.rfind(".") :] if "." in name else ""
    media_type = _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Asset(body=body, media_type=media_type, version=version or _version(body))


def _modules(sources: dict[str, bytes]) -> dict[str, Asset]:
    """The ES modules, each import of another rewritten to `./name.js?v=<version of them all>`."""
    version = _version(
        b"".join(f"{name}\0{len(body)}\0".encode() + body for name, body in sorted(sources.items()))
    )

    def rewritten(importer: str, source: str) -> bytes:
        def versioned(match: re.Match[str]) -> str:
            specifier = _MODULE_SPECIFIER.fullmatch(match["specifier"])
            if specifier is None or specifier["name"] not in sources:
                # An unversioned or unknown import would load a second copy of a module, or none.
                raise ValueError(
                    f"web/{importer} imports {match['specifier']!r}: a module may import only "
                    "./<name>.js of the modules in web/"
                )
            quote = match["quote"]
            return f"{match['head']}{quote}./{specifier['name']}?v={version}{quote}"

        return _MODULE_IMPORT.sub(versioned, source).encode()

    return {
        name: _asset(name, rewritten(name, body.decode("utf-8")), version)
        for name, body in sources.items()
    }


def load_web_assets(root: Traversable) -> WebAssets:
    """The client's files in `root`; index.html and the modules with hashed URLs in them."""
    files = {
        entry.name: entry.read_bytes()
        for entry in root.iterdir()
        if entry.is_file() and not entry.name.startswith(".")
    }
    page_source = files.pop("index.html").decode("utf-8")
    static = {name: _asset(name, body) for name, body in files.items() if not name.endswith(".js")}
    static |= _modules({name: body for name, body in files.items() if name.endswith(".js")})

    def versioned(match: re.Match[str]) -> str:
        asset = static.get(match["name"])
        suffix = f"?v={asset.version}" if asset else ""
        return f'{match["attr"]}="/static/{match["name"]}{suffix}"'

    page = _ASSET_REFERENCE.sub(versioned, page_source)
    return WebAssets(index=_asset("index.html", page.encode()), static=static)


@functools.cache
def web_assets() -> WebAssets:
    """The client's files from the package, read once per process."""
    return load_web_assets(importlib.resources.files("vechat_rls") / "web")


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
