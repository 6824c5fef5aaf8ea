"""`/api/v1/attachments`: upload and download over HTTP; the files themselves: chat/attachments.py.

Upload (`POST`, multipart field `file`): the body is streamed and counted here, against
`max_upload_bytes` (audio: `max_voice_bytes`), instead of the app-wide JSON body limit; the tenant
transaction opens only once the whole file is in, so a slow client never holds a database
connection. Download (`GET /{id}`): one byte range is served as 206, conditional requests by the
file's SHA-256 as its ETag.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import multipart  # type: ignore[import-untyped]
from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType
from litestar.params import Parameter

from vechat_rls import mime
from vechat_rls.api.dependencies import ConnDep, DatabaseDep, IdentityDep, SettingsDep
from vechat_rls.api.problems import problem, problem_responses
from vechat_rls.chat import attachments
from vechat_rls.chat.attachments import Attachment
from vechat_rls.chat.errors import Invalid, NotFound, TooLarge
from vechat_rls.identity import BIGINT_MAX

FILE_FIELD = "file"
# Room for the multipart framing around the file (boundaries, part headers) on top of the file.
MULTIPART_OVERHEAD_BYTES = 16 * 1024
MAX_PARTS = 4
INLINE_KINDS = frozenset({"image", "video", "audio"})
# Served files are data, never a page: no sniffing, no scripts, no plugins, no framing of ours.
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, no-cache",
    "Accept-Ranges": "bytes",
}


# ---------------------------------------------------------------------------------------------
# Upload


_DIGITS = re.compile(r"[0-9]+")


async def read_upload(
    request: Request[Any, Any, Any], max_file_bytes: int
) -> tuple[str | None, bytes]:
    """(file name as sent, bytes) of the multipart field `file`, counted while it streams in."""
    content_type, options = request.content_type
    boundary = options.get("boundary")
    if content_type != "multipart/form-data" or not boundary:
        raise Invalid("expected multipart/form-data with a file field named `file`")
    envelope = max_file_bytes + MULTIPART_OVERHEAD_BYTES
    announced = request.headers.get("content-length", "")
    if _DIGITS.fullmatch(announced) and (len(announced) > 18 or int(announced) > envelope):
        raise TooLarge(f"files are limited to {max_file_bytes} bytes")

    name: str | None = None
    data = bytearray()
    found = False
    received = 0
    try:
        with multipart.PushMultipartParser(
            boundary, max_segment_count=MAX_PARTS, max_header_count=8
        ) as parser:
            async for chunk in request.stream():
                received += len(chunk)
                if received > envelope:
                    raise TooLarge(f"files are limited to {max_file_bytes} bytes")
                if parser.closed:
                    continue  # an epilogue after the closing boundary: ignored
                for event in parser.parse(chunk):
                    if isinstance(event, multipart.MultipartSegment):
                        if event.name != FILE_FIELD:
                            raise Invalid(
                                f"unknown form field `{event.name}`; only `file` is accepted"
                            )
                        if found:
                            raise Invalid(f"more than one `{FILE_FIELD}` field")
                        found = True
                        name = event.filename
                    elif event is not None:
                        data += event
                        if len(data) > max_file_bytes:
                            raise TooLarge(f"files are limited to {max_file_bytes} bytes")
    except multipart.MultipartError:
        raise Invalid("malformed multipart/form-data body") from None
    if not found:
        raise Invalid(f"no `{FILE_FIELD}` field in the form")
    if not data:
        raise Invalid("the file is empty")
    return name, bytes(data)


# ---------------------------------------------------------------------------------------------
# Download


class Unsatisfiable(Exception):
    """The Range names no byte of the file: 416."""


# At most 18 digits a side: every real offset fits, and int() never sees a giant string.
_RANGE = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})", re.IGNORECASE)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range (first, last; inclusive) asked for, or None to send the whole file.

    A header we do not understand and several ranges are ignored (RFC 9110 §14.2 allows both);
    a valid range that starts past the end raises `Unsatisfiable`.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text:
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - suffix), size - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None
    if first >= size:
        raise Unsatisfiable
    return first, min(int(last_text), size - 1) if last_text else size - 1


def content_disposition(kind: str, file_name: str) -> str:
    """RFC 6266: an ASCII `filename` for old clients and the exact name as `filename*`."""
    decomposed = unicodedata.normalize("NFKD", file_name)
    fallback = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")  # é → e
    fallback = fallback.encode("ascii", "replace").decode("ascii")
    fallback = re.sub(r'[\x00-\x1f\x7f"\\%;?]', "_", fallback) or "file"
    encoded = quote(file_name, safe="!#$&+-.^_`|~")
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    candidates = [value.strip() for value in header.split(",")]
    return "*" in candidates or any(value.removeprefix("W/") == etag for value in candidates)


@dataclass
class UploadOperation(Operation):
    """The upload's OpenAPI request body: the handler reads the multipart stream itself."""

    def __post_init__(self) -> None:
        file_schema = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
        form = Schema(
            type=OpenAPIType.OBJECT, properties={FILE_FIELD: file_schema}, required=[FILE_FIELD]
        )
        self.request_body = RequestBody(
            content={"multipart/form-data": OpenAPIMediaType(schema=form)}, required=True
        )


class AttachmentsController(Controller):
    path = "/attachments"
    tags = ["attachments"]

    @post(
        summary="Upload a file (multipart field `file`); its type is sniffed from the bytes",
        status_code=201,
        # The app-wide JSON body limit does not apply; read_upload() counts against the
        # upload limits from the settings instead.
        request_max_body_size=None,
        operation_class=UploadOperation,
        responses=problem_responses(413),
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        identity: IdentityDep,
        database: DatabaseDep,
        settings: SettingsDep,
    ) -> Attachment:
        file_name, data = await read_upload(request, settings.max_upload_bytes)
        upload = attachments.checked_upload(file_name, data, settings)
        async with database.tenant(identity) as conn:
            return await attachments.store_attachment(conn, identity, upload)

    @get(
        "/{attachment_id:int}",
        summary="Download a file (Range requests: one range, 206)",
        media_type="application/octet-stream",
        responses={
            # The file's own (sniffed) type, whichever it is.
            200: ResponseSpec(
                data_container=bytes,
                description="The whole file, with its own Content-Type",
                media_type="*/*",
                generate_examples=False,
            ),
            206: ResponseSpec(
                data_container=bytes,
                description="One byte range (`Content-Range`)",
                media_type="*/*",
                generate_examples=False,
            ),
            304: ResponseSpec(
                data_container=None,
                description="Not modified (`If-None-Match` names its ETag)",
                generate_examples=False,
            ),
            **problem_responses(404, 416),
        },
    )
    async def download(
        self,
        request: Request[Any, Any, Any],
        conn: ConnDep,
        attachment_id: Annotated[int, Parameter(ge=1, le=BIGINT_MAX)],
    ) -> Response[Any]:
        meta = await attachments.find_attachment(conn, attachment_id)
        if meta is None:
            raise NotFound("attachment", attachment_id)
        size = meta.file_size
        etag = f'"{meta.sha256}"'
        kind = "inline" if mime.media_kind(meta.file_type) in INLINE_KINDS else "attachment"
        headers = {
            **DOWNLOAD_HEADERS,
            "ETag": etag,
            "Content-Disposition": content_disposition(kind, meta.file_name),
        }
        media_type = meta.file_type  # Litestar adds `; charset=utf-8` to text/plain
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(b"", status_code=304, headers=headers, media_type=media_type)

        if_range = request.headers.get("if-range")
        range_header = request.headers.get("range")
        if if_range is not None and if_range.strip() != etag:
            range_header = None  # the client's copy is stale: send the whole new file
        try:
            wanted = parse_range(range_header, size)
        except Unsatisfiable:
            return problem(
                416,
                f"range not satisfiable for a file of {size} bytes",
                headers={**DOWNLOAD_HEADERS, "Content-Range": f"bytes */{size}"},
            )
        data = await attachments.attachment_bytes(conn, attachment_id, wanted)
        if data is None:  # removed by its uploader since the first statement
            raise NotFound("attachment", attachment_id)
        if wanted is None:
            return Response(data, headers=headers, media_type=media_type)
        first, last = wanted
        return Response(
            data,
            status_code=206,
            headers={**headers, "Content-Range": f"bytes {first}-{last}/{size}"},
            media_type=media_type,
        )
