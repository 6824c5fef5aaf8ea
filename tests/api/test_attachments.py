"""`/api/v1/attachments`: upload limits, sniffed types, download with ranges, and who may read."""

from __future__ import annotations

import hashlib
import io
import itertools
import zipfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from tests.support.api import Caller, api_client, assert_problem, table_checksums
from tests.support.fixtures import Database
from tests.support.seed import (
    act_as,
    create_conversation,
    insert_message,
    new_organisation_ids,
    purge_organisations,
)
from vechat_rls import mime
from vechat_rls.api.attachments import Unsatisfiable, content_disposition, parse_range
from vechat_rls.chat.attachments import sanitise_file_name

KIB = 1024
MIB = 1024 * KIB
SMALL_UPLOAD = 64 * KIB  # limits of the `small` client, so that limit tests stay quick
SMALL_VOICE = 16 * KIB

ORG_A, ORG_B = new_organisation_ids(2)
UPLOADER = Caller(ORG_A, 1, "personnel")
PEER = Caller(ORG_A, 2, "client")
OUTSIDER = Caller(ORG_A, 3, "client")


# --- sample files ------------------------------------------------------------------------------


def _zip(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, "<x/>")
    return buffer.getvalue()


def _ebml(doc_type: bytes, track_type: int) -> bytes:
    header = b"\x42\x82" + bytes([0x80 | len(doc_type)]) + doc_type
    ebml = b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(header)]) + header
    track = b"\xae\x86\xd7\x81\x01\x83\x81" + bytes([track_type])
    return ebml + b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff\x16\x54\xae\x6b" + track


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
SAMPLES: dict[str, bytes] = {
    "image/png": PNG,
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64,
    "image/gif": b"GIF89a\x01\x00\x01\x00" + b"\x00" * 16,
    "image/webp": b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32,
    "application/pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
    "video/mp4": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 32,
    "video/quicktime": b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  " + b"\x00" * 32,
    "video/webm": _ebml(b"webm", 1),
    "audio/webm": _ebml(b"webm", 2),
    "audio/mpeg": b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + b"\x00" * 64,
    "audio/ogg": b"OggS\x00\x02" + b"\x00" * 22 + b"\x01vorbis" + b"\x00" * 32,
    "audio/wav": b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 32,
    "audio/mp4": b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00M4A mp42isom" + b"\x00" * 32,
    "application/zip": _zip("a.txt"),
    mime.DOCX: _zip("[Content_Types].xml", "word/document.xml"),
    mime.XLSX: _zip("[Content_Types].xml", "xl/workbook.xml"),
    "text/plain": "Grüße, Chloé!\n\tline two\r\n".encode(),
    "application/octet-stream": b"\x00\x01\x02binary\xff\xfe",
}


@pytest.mark.parametrize("expected", list(SAMPLES))
def test_sniff_recognises_each_supported_format(expected: str) -> None:
    assert mime.sniff(SAMPLES[expected]) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"<html><script>alert(1)</script></html>",
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
        b"#!/bin/sh\nrm -rf /\n",
    ],
)
def test_active_content_is_only_ever_plain_text(data: bytes) -> None:
    assert mime.sniff(data) == "text/plain"


def test_invalid_utf8_and_control_bytes_are_octet_stream() -> None:
    assert mime.sniff(b"caf\xe9") == "application/octet-stream"
    assert mime.sniff(b"text\x00with nul") == "application/octet-stream"
    assert mime.sniff(b"\x1b[31mred") == "application/octet-stream"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("a\x00b\x1fc.txt", "abc.txt"),
        ("invoice\u202egnp.exe", "invoicegnp.exe"),  # right-to-left override removed
        ("  .hidden  ", "hidden"),
        ("", "file"),
        (None, "file"),
        ("/", "file"),
        ("..", "file"),
        ("Chloé's résumé.docx", "Chloé's résumé.docx"),
        ("x" * 300 + ".pdf", "x" * 251 + ".pdf"),
        ("y" * 300, "y" * 255),
    ],
)
def test_file_names_are_sanitised(raw: str | None, clean: str) -> None:
    assert sanitise_file_name(raw) == clean
    assert len(clean) <= 255


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-1000", 100, (0, 99)),
        ("bytes=50-1000", 100, (50, 99)),
        ("BYTES=0-0", 100, (0, 0)),
        ("bytes=0-1,5-6", 100, None),  # several ranges: the whole file
        ("items=0-1", 100, None),  # unknown unit: ignored
        ("bytes=5-2", 100, None),  # invalid: ignored
        ("bytes=-", 100, None),
        ("bytes=100-", 100, "416"),
        ("bytes=-0", 100, "416"),
        ("bytes=0-", 0, "416"),
        ("bytes=x-y", 100, None),
        ("bytes=0-" + "9" * 5000, 100, None),  # absurd: ignored, never a 500
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | str | None) -> None:
    if expected == "416":
        with pytest.raises(Unsatisfiable):
            parse_range(header, size)
    else:
        assert parse_range(header, size) == expected


def test_content_disposition_has_an_ascii_fallback_and_the_exact_name() -> None:
    value = content_disposition("inline", 'Chloé "quote"; 100%.png')
    assert value == (
        'inline; filename="Chloe _quote__ 100_.png"; '
        "filename*=UTF-8''Chlo%C3%A9%20%22quote%22%3B%20100%25.png"
    )


# --- HTTP --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def organisations(migrated_database: Database) -> Iterator[None]:
    yield
    purge_organisations(migrated_database.admin_url, [ORG_A, ORG_B])


@pytest.fixture(scope="module")
async def client(
    migrated_database: Database, organisations: None
) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app with the default limits (10 MiB uploads, 5 MiB audio, 1 MiB JSON bodies)."""
    async with api_client(migrated_database) as c:
        yield c


@pytest.fixture(scope="module")
async def small(
    migrated_database: Database, organisations: None
) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app with small limits, for quick limit tests."""
    async with api_client(
        migrated_database, max_upload_bytes=SMALL_UPLOAD, max_voice_bytes=SMALL_VOICE
    ) as c:
        yield c


async def upload(
    client: AsyncTestClient[Any],
    caller: Caller,
    data: bytes,
    name: str = "file.bin",
    content_type: str = "application/octet-stream",
) -> Any:
    return await client.post(
        "/api/v1/attachments", files={"file": (name, data, content_type)}, headers=caller.headers
    )


async def uploaded(client: AsyncTestClient[Any], caller: Caller, data: bytes, name: str) -> int:
    response = await upload(client, caller, data, name)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def share(
    database: Database, organisation_id: int, uploader: Caller, peer: Caller, attachment_id: int
) -> int:
    """The uploader sends a message carrying the attachment to `peer`, as `vechat_app`."""
    with psycopg.connect(database.app_url) as conn:
        act_as(conn, organisation_id, uploader.user)
        conversation = conn.execute(
            """SELECT id FROM vechat_conversations
               WHERE (participant1_id, participant1_type, participant2_id, participant2_type)
                     IN ((%s, %s, %s, %s), (%s, %s, %s, %s))""",
            (
                *(uploader.user_id, uploader.user_type, peer.user_id, peer.user_type),
                *(peer.user_id, peer.user_type, uploader.user_id, uploader.user_type),
            ),
        ).fetchone()
        if conversation is None:
            conversation_id = create_conversation(conn, organisation_id, uploader.user, peer.user)
        else:
            conversation_id = int(conversation[0])
        return insert_message(
            conn,
            organisation_id,
            conversation_id,
            uploader.user,
            peer.user,
            None,
            message_type="file",
            attachment_id=attachment_id,
        )


async def test_upload_then_download_round_trip(client: AsyncTestClient[Any]) -> None:
    data = SAMPLES["application/pdf"] + bytes(range(256)) * 100
    response = await upload(client, UPLOADER, data, "Quarterly report.pdf", "text/html")
    assert response.status_code == 201, response.text
    body = response.json()
    digest = hashlib.sha256(data).hexdigest()
    assert body == {
        "id": body["id"],
        "file_name": "Quarterly report.pdf",
        "file_size": len(data),
        "file_type": "application/pdf",
        "sha256": digest,
    }
    download = await client.get(f"/api/v1/attachments/{body['id']}", headers=UPLOADER.headers)
    assert download.status_code == 200
    assert download.content == data
    assert hashlib.sha256(download.content).hexdigest() == digest
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["etag"] == f'"{digest}"'
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["accept-ranges"] == "bytes"
    assert download.headers["content-disposition"] == (
        "attachment; filename=\"Quarterly report.pdf\"; filename*=UTF-8''Quarterly%20report.pdf"
    )


async def test_type_comes_from_the_bytes_not_the_client(client: AsyncTestClient[Any]) -> None:
    png = await upload(client, UPLOADER, PNG, "notes.txt", "text/plain")
    assert png.json()["file_type"] == "image/png"
    text = await upload(client, UPLOADER, b"just words", "x.png", "image/png")
    assert text.json()["file_type"] == "text/plain"
    served = await client.get(f"/api/v1/attachments/{text.json()['id']}", headers=UPLOADER.headers)
    assert served.headers["content-type"] == "text/plain; charset=utf-8"
    assert served.headers["content-disposition"].startswith('attachment; filename="x.png"')


@pytest.mark.parametrize(
    ("sample", "disposition"),
    [
        ("image/png", "inline"),
        ("video/mp4", "inline"),
        ("audio/mpeg", "inline"),
        ("application/pdf", "attachment"),
        ("text/plain", "attachment"),
        (mime.DOCX, "attachment"),
        ("application/octet-stream", "attachment"),
    ],
)
async def test_media_is_inline_everything_else_an_attachment(
    client: AsyncTestClient[Any], sample: str, disposition: str
) -> None:
    attachment_id = await uploaded(client, UPLOADER, SAMPLES[sample], "Chloé.bin")
    response = await client.get(f"/api/v1/attachments/{attachment_id}", headers=UPLOADER.headers)
    assert response.headers["content-type"].split(";")[0] == sample
    assert response.headers["content-disposition"] == (
        f"{disposition}; filename=\"Chloe.bin\"; filename*=UTF-8''Chlo%C3%A9.bin"
    )


async def test_file_name_from_the_client_is_sanitised(client: AsyncTestClient[Any]) -> None:
    response = await upload(client, UPLOADER, b"hello", "../../etc/passwd")
    assert response.json()["file_name"] == "passwd"
    long = await upload(client, UPLOADER, b"hello", "n" * 400 + ".txt")
    assert long.json()["file_name"] == "n" * 251 + ".txt"


async def test_range_requests(client: AsyncTestClient[Any]) -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes of octet-stream
    attachment_id = await uploaded(client, UPLOADER, data, "blob.bin")
    url = f"/api/v1/attachments/{attachment_id}"
    size = len(data)
    cases = [
        ("bytes=0-9", 206, data[:10], f"bytes 0-9/{size}"),
        ("bytes=10000-", 206, data[10000:], f"bytes 10000-{size - 1}/{size}"),
        ("bytes=-16", 206, data[-16:], f"bytes {size - 16}-{size - 1}/{size}"),
        ("bytes=100-99999", 206, data[100:], f"bytes 100-{size - 1}/{size}"),
        ("bytes=0-1,4-5", 200, data, None),  # several ranges: the whole file
        ("lines=1-2", 200, data, None),
    ]
    for header, status, content, content_range in cases:
        response = await client.get(url, headers={**UPLOADER.headers, "Range": header})
        assert response.status_code == status, header
        assert response.content == content, header
        assert response.headers.get("content-range") == content_range, header
        assert response.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'


async def test_unsatisfiable_range_is_416(client: AsyncTestClient[Any]) -> None:
    attachment_id = await uploaded(client, UPLOADER, b"0123456789", "ten.txt")
    for header in ("bytes=10-", "bytes=999-1000", "bytes=-0"):
        response = await client.get(
            f"/api/v1/attachments/{attachment_id}", headers={**UPLOADER.headers, "Range": header}
        )
        assert_problem(response, 416)
        assert response.headers["content-range"] == "bytes */10"


async def test_conditional_requests(client: AsyncTestClient[Any]) -> None:
    data = b"conditional body"
    attachment_id = await uploaded(client, UPLOADER, data, "c.txt")
    url = f"/api/v1/attachments/{attachment_id}"
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    cached = await client.get(url, headers={**UPLOADER.headers, "If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    stale = await client.get(
        url, headers={**UPLOADER.headers, "Range": "bytes=0-3", "If-Range": '"other"'}
    )
    assert stale.status_code == 200 and stale.content == data
    fresh = await client.get(
        url, headers={**UPLOADER.headers, "Range": "bytes=0-3", "If-Range": etag}
    )
    assert fresh.status_code == 206 and fresh.content == data[:4]


# --- limits and bad uploads ----------------------------------------------------------------------


async def test_upload_limit_is_the_upload_setting_not_the_json_body_limit(
    client: AsyncTestClient[Any], migrated_database: Database
) -> None:
    # The app-wide body limit is 1 MiB; an upload of exactly 10 MiB passes, one byte more is 413.
    data = b"\x00" * (10 * MIB)
    response = await upload(client, UPLOADER, data, "big.bin")
    assert response.status_code == 201, response.text
    assert response.json()["file_size"] == 10 * MIB
    assert_problem(await upload(client, UPLOADER, data + b"\x00", "big.bin"), 413)
    with psycopg.connect(migrated_database.admin_url) as conn:  # keep snapshots quick
        conn.execute(
            "DELETE FROM vechat_attachments WHERE organisation_id = %s AND id = %s",
            (ORG_A, response.json()["id"]),
        )


async def test_limits_follow_the_settings(small: AsyncTestClient[Any]) -> None:
    assert (await upload(small, UPLOADER, b"\x00" * SMALL_UPLOAD)).status_code == 201
    assert_problem(await upload(small, UPLOADER, b"\x00" * (SMALL_UPLOAD + 1)), 413)
    # audio (voice notes) has its own, smaller limit; other types of that size pass
    mp3 = SAMPLES["audio/mpeg"]
    audio = mp3 + b"\x00" * (SMALL_VOICE - len(mp3))
    assert (await upload(small, UPLOADER, audio, "voice.mp3")).status_code == 201
    assert_problem(await upload(small, UPLOADER, audio + b"\x00", "voice.mp3"), 413)
    pdf = SAMPLES["application/pdf"] + b"\x00" * SMALL_VOICE
    assert (await upload(small, UPLOADER, pdf, "doc.pdf")).status_code == 201


async def test_announced_oversize_body_is_refused_before_reading(
    small: AsyncTestClient[Any],
) -> None:
    headers = {
        **UPLOADER.headers,
        "Content-Type": "multipart/form-data; boundary=xyz",
        "Content-Length": str(100 * MIB),
    }
    response = await small.post("/api/v1/attachments", content=b"--xyz--\r\n", headers=headers)
    assert_problem(response, 413)


async def test_empty_file_is_400(client: AsyncTestClient[Any]) -> None:
    assert_problem(await upload(client, UPLOADER, b"", "empty.txt"), 400)


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"json": {"file": "aGVsbG8="}},
        {"data": {"file": "not a file part"}, "files": {"other": ("a.txt", b"x", "text/plain")}},
        {"files": {"other": ("a.txt", b"x", "text/plain")}},
        {"data": {"organisation_id": str(ORG_B)}, "files": {"file": ("a.txt", b"x", "text/plain")}},
        {"data": {"org": str(ORG_B)}, "files": {"file": ("a.txt", b"x", "text/plain")}},
        {
            "content": b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nunterminated',
            "headers": {"Content-Type": "multipart/form-data; boundary=b"},
        },
        {"content": b"", "headers": {"Content-Type": "multipart/form-data"}},
    ],
    ids=[
        "json",
        "file-as-field-and-other",
        "no-file-field",
        "organisation_id-field",
        "org-field",
        "truncated",
        "no-boundary",
    ],
)
async def test_bad_uploads_are_400_and_change_nothing(
    client: AsyncTestClient[Any], migrated_database: Database, request_kwargs: dict[str, Any]
) -> None:
    before = table_checksums(migrated_database.admin_url)
    kwargs = dict(request_kwargs)
    headers = {**UPLOADER.headers, **kwargs.pop("headers", {})}
    response = await client.post("/api/v1/attachments", headers=headers, **kwargs)
    assert_problem(response, 400)
    assert table_checksums(migrated_database.admin_url) == before


@pytest.mark.parametrize("bad_id", ["0", "-1", "9223372036854775808", "abc", "1.5", "1" * 5000])
async def test_bad_attachment_ids_are_4xx(client: AsyncTestClient[Any], bad_id: str) -> None:
    response = await client.get(f"/api/v1/attachments/{bad_id}", headers=UPLOADER.headers)
    assert response.status_code in (400, 404), response.text
    assert response.headers["content-type"] == "application/problem+json"


# --- who may read: a generated matrix ---------------------------------------------------------

# In each organisation: the uploader's file that a message to the peer carries (shared), and one
# that no message carries (private). Organisation B's people have exactly A's ids.
ACTORS = {
    "uploader": 1,
    "peer": 2,
    "outsider": 3,  # same organisation, in no conversation with the uploader
    "admin": 4,  # same organisation, token role admin: no special reading right
}
USER_TYPES = {"uploader": "personnel", "peer": "client", "outsider": "client", "admin": "personnel"}


def actor(organisation_id: int, name: str) -> Caller:
    return Caller(
        organisation_id,
        ACTORS[name],
        USER_TYPES[name],
        role="admin" if name == "admin" else None,
    )


def may_read(owner_org: str, kind: str, reader_org: str, reader: str) -> bool:
    """The rule, from the comment of policy vechat_attachments_select_uploader_or_participant."""
    if owner_org != reader_org:
        return False
    return reader == "uploader" or (kind == "shared" and reader == "peer")


MATRIX = [
    pytest.param(
        owner_org, kind, reader_org, reader, id=f"{owner_org}-{kind}-by-{reader_org}-{reader}"
    )
    for owner_org, kind, reader_org, reader in itertools.product(
        ("A", "B"), ("shared", "private"), ("A", "B"), ACTORS
    )
]


@pytest.fixture(scope="module")
async def matrix_files(
    client: AsyncTestClient[Any], migrated_database: Database
) -> dict[tuple[str, str], tuple[int, bytes]]:
    files: dict[tuple[str, str], tuple[int, bytes]] = {}
    for org_name, org in (("A", ORG_A), ("B", ORG_B)):
        for kind in ("shared", "private"):
            data = f"{org_name} {kind} file".encode()
            files[(org_name, kind)] = (
                await uploaded(client, actor(org, "uploader"), data, f"{kind}.txt"),
                data,
            )
        shared_id = files[(org_name, "shared")][0]
        share(migrated_database, org, actor(org, "uploader"), actor(org, "peer"), shared_id)
    return files


@pytest.mark.parametrize(("owner_org", "kind", "reader_org", "reader"), MATRIX)
async def test_attachment_read_matrix(
    client: AsyncTestClient[Any],
    migrated_database: Database,
    matrix_files: dict[tuple[str, str], tuple[int, bytes]],
    owner_org: str,
    kind: str,
    reader_org: str,
    reader: str,
) -> None:
    attachment_id, data = matrix_files[(owner_org, kind)]
    caller = actor(ORG_A if reader_org == "A" else ORG_B, reader)
    before = table_checksums(migrated_database.admin_url)
    url = f"/api/v1/attachments/{attachment_id}"
    for extra in ({}, {"Range": "bytes=0-1"}):
        response = await client.get(url, headers={**caller.headers, **extra})
        if may_read(owner_org, kind, reader_org, reader):
            assert response.status_code == (206 if extra else 200)
            assert response.content == (data[:2] if extra else data)
        else:
            # exactly what an id that does not exist answers
            body = assert_problem(response, 404)
            assert body["detail"] == f"attachment {attachment_id} not found"
            assert "etag" not in response.headers
    assert table_checksums(migrated_database.admin_url) == before


async def test_peer_reads_only_once_a_message_carries_it(
    client: AsyncTestClient[Any], migrated_database: Database
) -> None:
    attachment_id = await uploaded(client, UPLOADER, PNG, "later.png")
    url = f"/api/v1/attachments/{attachment_id}"
    assert_problem(await client.get(url, headers=PEER.headers), 404)
    share(migrated_database, ORG_A, UPLOADER, PEER, attachment_id)
    response = await client.get(url, headers=PEER.headers)
    assert response.status_code == 200 and response.content == PNG
    assert_problem(await client.get(url, headers=OUTSIDER.headers), 404)


async def test_unknown_attachment_is_404(client: AsyncTestClient[Any]) -> None:
    body = assert_problem(
        await client.get("/api/v1/attachments/9000000000000000000", headers=UPLOADER.headers), 404
    )
    assert body["detail"] == "attachment 9000000000000000000 not found"


async def test_attachments_need_a_token(client: AsyncTestClient[Any]) -> None:
    assert_problem(await client.get("/api/v1/attachments/1"), 401)
    assert_problem(
        await client.post("/api/v1/attachments", files={"file": ("a.txt", b"x", "text/plain")}),
        401,
    )
