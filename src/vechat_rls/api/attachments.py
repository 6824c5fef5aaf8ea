"""`/api/v1/attachments`: files stored in PostgreSQL under row-level security, uploaded and served.

Upload (`POST`, multipart field `file`): the body is streamed and counted here, against
`max_upload_bytes` (audio: `max_voice_bytes`), instead of the app-wide JSON body limit; the tenant
transaction opens only once the whole file is in, so a slow client never holds a database
connection. The type is sniffed from the bytes (vechat_rls.mime); the client's is ignored.

Download (`GET /{id}`): the uploader and the participants of a conversation whose message carries
the file may read it; anyone else gets the same 404 as for an id that does not exist. One byte
range is served as 206 from `substring(data …)` (the column is stored uncompressed, so a slice
does not read the whole value).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import msgspec
import multipart  # type: ignore[import-untyped]
from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType
from litestar.params import Parameter

from vechat_rls import mime
from vechat_rls.api.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    problem,
    problem_responses,
)
from vechat_rls.api.security import ConnDep, DatabaseDep, IdentityDep, SettingsDep
from vechat_rls.identity import BIGINT_MAX

FILE_FIELD = "file"
MAX_FILE_NAME_CHARS = 255
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


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    file_name: str
    file_size: int
    file_type: str
    sha256: str


# visibility: vechat_attachments_insert_uploader (db/policies/vechat_attachments.sql) — a user
# uploads only as themselves, into the transaction's organisation.
INSERT_ATTACHMENT_SQL = """
INSERT INTO public.vechat_attachments
    (organisation_id, uploader_id, uploader_type, file_name, file_type, file_size, sha256, data)
VALUES ((SELECT vechat.current_organisation_id()), $1, $2, $3, $4,
        octet_length($5::bytea), encode(sha256($5::bytea), 'hex'), $5::bytea)
RETURNING id, file_name, file_size, file_type, sha256
"""

# visibility: vechat_attachments_select_uploader_or_participant
# (db/policies/vechat_attachments.sql) — no row for anyone but the uploader and participants.
ATTACHMENT_META_SQL = """
SELECT id, file_name, file_size, file_type, sha256 FROM public.vechat_attachments WHERE id = $1
"""

# `$2` is 1-based (SQL's substring). The same policy as ATTACHMENT_META_SQL applies.
ATTACHMENT_SLICE_SQL = """
SELECT substring(data FROM $2::int FOR $3::int) FROM public.vechat_attachments WHERE id = $1
"""

# visibility: vechat_attachments_select_uploader_or_participant (as above)
ATTACHMENT_DATA_SQL = "SELECT data FROM public.vechat_attachments WHERE id = $1"


# ---------------------------------------------------------------------------------------------
# Upload


_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]+")


def sanitise_file_name(name: str | None) -> str:
    """A display name safe to store and echo: no path, no control or format characters, ≤ 255."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    # Cc: control characters; Cf: format characters such as U+202E, which can make
    # "photo\u202egnp.exe" read as "photoexe.png".
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf"))
    name = _UNSAFE_NAME_CHARS.sub("", name).strip().strip(".").strip()
    if not name:
        return "file"
    if len(name) > MAX_FILE_NAME_CHARS:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16 and stem:
            name = stem[: MAX_FILE_NAME_CHARS - len(extension) - 1].rstrip() + "." + extension
        else:
            name = name[:MAX_FILE_NAME_CHARS]
    return name


async def read_upload(request: Request[Any, Any, Any], max_file_bytes: int) -> tuple[str, bytes]:
    """(sanitised file name, bytes) of the multipart field `file`, counted while it streams in."""
    content_type, options = request.content_type
    boundary = options.get("boundary")
    if content_type != "multipart/form-data" or not boundary:
        raise BadRequest("expected multipart/form-data with a file field named `file`")
    envelope = max_file_bytes + MULTIPART_OVERHEAD_BYTES
    announced = request.headers.get("content-length", "")
    if _DIGITS.fullmatch(announced) and (len(announced) > 18 or int(announced) > envelope):
        raise PayloadTooLarge(f"files are limited to {max_file_bytes} bytes")

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
                    raise PayloadTooLarge(f"files are limited to {max_file_bytes} bytes")
                if parser.closed:
                    continue  # an epilogue after the closing boundary: ignored
                for event in parser.parse(chunk):
                    if isinstance(event, multipart.MultipartSegment):
                        if event.name != FILE_FIELD:
                            raise BadRequest(
                                f"unknown form field `{event.name}`; only `file` is accepted"
                            )
                        if found:
                            raise BadRequest(f"more than one `{FILE_FIELD}` field")
                        found = True
                        name = event.filename
                    elif event is not None:
                        data += event
                        if len(data) > max_file_bytes:
                            raise PayloadTooLarge(f"files are limited to {max_file_bytes} bytes")
    except multipart.MultipartError:
        raise BadRequest("malformed multipart/form-data body") from None
    if not found:
        raise BadRequest(f"no `{FILE_FIELD}` field in the form")
    if not data:
        raise BadRequest("the file is empty")
    return sanitise_file_name(name), bytes(data)


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
        file_type = mime.sniff(data)
        if mime.media_kind(file_type) == "audio" and len(data) > settings.max_voice_bytes:
            raise PayloadTooLarge(f"audio files are limited to {settings.max_voice_bytes} bytes")
        async with database.tenant(identity) as conn:
            row = await conn.fetchrow(
                INSERT_ATTACHMENT_SQL,
                identity.user_id,
                identity.user_type,
                file_name,
                file_type,
                data,
            )
        assert row is not None
        return Attachment(
            id=row["id"],
            file_name=row["file_name"],
            file_size=row["file_size"],
            file_type=row["file_type"],
            sha256=row["sha256"],
        )

    @get(
        "/{attachment_id:int}",
        summary="Download a file (Range requests: one range, 206)",
        media_type="application/octet-stream",
        responses={
            206: ResponseSpec(
                data_container=bytes,
                description="One byte range (`Content-Range`)",
                media_type="application/octet-stream",
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
        meta = await conn.fetchrow(ATTACHMENT_META_SQL, attachment_id)
        if meta is None:
            raise NotFound("attachment", attachment_id)
        size: int = meta["file_size"]
        etag = f'"{meta["sha256"]}"'
        kind = "inline" if mime.media_kind(meta["file_type"]) in INLINE_KINDS else "attachment"
        headers = {
            **DOWNLOAD_HEADERS,
            "ETag": etag,
            "Content-Disposition": content_disposition(kind, meta["file_name"]),
        }
        media_type = meta["file_type"]  # Litestar adds `; charset=utf-8` to text/plain
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
                slug="range-not-satisfiable",
                headers={**DOWNLOAD_HEADERS, "Content-Range": f"bytes */{size}"},
            )
        if wanted is None:
            data = await conn.fetchval(ATTACHMENT_DATA_SQL, attachment_id)
            if data is None:  # removed by its uploader since the first statement
                raise NotFound("attachment", attachment_id)
            return Response(bytes(data), headers=headers, media_type=media_type)
        first, last = wanted
        data = await conn.fetchval(ATTACHMENT_SLICE_SQL, attachment_id, first + 1, last - first + 1)
        if data is None:
            raise NotFound("attachment", attachment_id)
        return Response(
            bytes(data),
            status_code=206,
            headers={**headers, "Content-Range": f"bytes {first}-{last}/{size}"},
            media_type=media_type,
        )
