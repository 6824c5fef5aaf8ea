"""Attachments: files stored in PostgreSQL under row-level security, and the one `Attachment`.

A file's type is sniffed from its bytes (vechat_rls.mime); the client's is never trusted. The
uploader and the participants of a conversation whose message carries the file may read it;
anyone else finds nothing, exactly as for an id that does not exist (404). A byte range is read
with `substring(data …)` (the column is stored uncompressed, so a slice does not read the whole
value).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import msgspec

from vechat_rls import db, mime
from vechat_rls.chat.errors import TooLarge
from vechat_rls.config import Settings
from vechat_rls.identity import Identity

MAX_FILE_NAME_CHARS = 255


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """A stored file (download it at `/attachments/{id}`). `sha256` (hex) is given where the file
    itself was read — the upload's answer — and absent where a message carries the file."""

    id: int
    file_name: str
    file_size: int
    file_type: str
    sha256: str | msgspec.UnsetType = msgspec.UNSET


# visibility: vechat_attachments_insert_uploader (db/policies/vechat_attachments.sql) — a user
# uploads only as themselves, into the transaction's organisation.
INSERT_ATTACHMENT_SQL = """
INSERT INTO public.vechat_attachments
    (organisation_id, uploader_id, uploader_type, file_name, file_type, file_size, sha256, data)
VALUES ((SELECT ctx.organisation_id FROM vechat.context ctx), $1, $2, $3, $4,
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


_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f]")


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


@dataclass(frozen=True)
class Upload:
    """A received file, checked and ready to store: safe name, sniffed type, bytes."""

    file_name: str
    file_type: str
    data: bytes


def checked_upload(file_name: str | None, data: bytes, settings: Settings) -> Upload:
    """The file as it will be stored; `TooLarge` for audio over `VECHAT_MAX_VOICE_BYTES`.

    No database work: the caller opens its transaction only for a file that passed.
    """
    file_type = mime.sniff(data)
    if mime.media_kind(file_type) == "audio" and len(data) > settings.max_voice_bytes:
        raise TooLarge(f"audio files are limited to {settings.max_voice_bytes} bytes")
    return Upload(sanitise_file_name(file_name), file_type, data)


async def store_attachment(conn: db.Transaction, identity: Identity, upload: Upload) -> Attachment:
    """Store `upload` as the caller's file."""
    row = await conn.fetchrow(
        INSERT_ATTACHMENT_SQL,
        identity.user_id,
        identity.user_type,
        upload.file_name,
        upload.file_type,
        upload.data,
    )
    assert row is not None
    return _attachment(row)


async def find_attachment(conn: db.Transaction, attachment_id: int) -> Attachment | None:
    """The file's metadata, None unless the caller may read it."""
    row = await conn.fetchrow(ATTACHMENT_META_SQL, attachment_id)
    return None if row is None else _attachment(row)


async def attachment_bytes(
    conn: db.Transaction, attachment_id: int, byte_range: tuple[int, int] | None = None
) -> bytes | None:
    """The file's bytes, or those of `byte_range` (first, last; inclusive); None when it is gone
    (its uploader removed it since it was found)."""
    if byte_range is None:
        data = await conn.fetchval(ATTACHMENT_DATA_SQL, attachment_id)
    else:
        first, last = byte_range
        data = await conn.fetchval(ATTACHMENT_SLICE_SQL, attachment_id, first + 1, last - first + 1)
    return None if data is None else bytes(data)


def _attachment(row: db.Record) -> Attachment:
    return Attachment(
        id=row["id"],
        file_name=row["file_name"],
        file_size=row["file_size"],
        file_type=row["file_type"],
        sha256=row["sha256"],
    )
