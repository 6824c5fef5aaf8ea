"""MIME types sniffed from a file's leading bytes: the client's `Content-Type` is never trusted.

Only the formats a chat carries are recognised (images, PDF, audio, video, zip and the Office
formats inside zips); valid UTF-8 text without control characters is `text/plain`; everything else
is `application/octet-stream`. HTML, SVG and scripts are deliberately just text or bytes, so a
browser never renders an uploaded file as active content.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Literal

OCTET_STREAM = "application/octet-stream"
TEXT_PLAIN = "text/plain"
ZIP = "application/zip"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"

MediaKind = Literal["image", "video", "audio", "file"]

# (offset, signature, type): checked in order, first match wins.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"fLaC", "audio/flac"),
)

# ISO base media (`....ftyp<brand>`): brands that mean audio only, or QuickTime.
_AUDIO_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "})
_QUICKTIME_BRANDS = frozenset({b"qt  "})
# Old QuickTime files start with a movie atom instead of `ftyp`.
_QUICKTIME_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})

_EBML = b"\x1a\x45\xdf\xa3"
_MATROSKA_TRACK_VIDEO = b"\x83\x81\x01"  # TrackType element (0x83), length 1, value 1 = video
_MATROSKA_TRACK_AUDIO = b"\x83\x81\x02"  # value 2 = audio
_SCAN_BYTES = 64 * 1024

# Control characters other than tab, newline, form feed and carriage return: not text.
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def sniff(data: bytes) -> str:
    """The MIME type of `data`, judged from its content only."""
    for offset, signature, mime in _SIGNATURES:
        if data.startswith(signature, offset):
            return mime
    if data[:4] == b"RIFF" and len(data) >= 12:
        riff_type = data[8:12]
        if riff_type == b"WEBP":
            return "image/webp"
        if riff_type == b"WAVE":
            return "audio/wav"
        if riff_type == b"AVI ":
            return "video/x-msvideo"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _AUDIO_BRANDS:
            return "audio/mp4"
        if brand in _QUICKTIME_BRANDS:
            return "video/quicktime"
        return "video/mp4"
    if data[4:8] in _QUICKTIME_ATOMS and len(data) >= 8:
        return "video/quicktime"
    if data.startswith(_EBML):
        return _matroska(data[:_SCAN_BYTES])
    if data.startswith(b"OggS"):
        head = data[:_SCAN_BYTES]
        return "video/ogg" if b"\x80theora" in head else "audio/ogg"
    if _is_mpeg_audio_frame(data):
        return "audio/mpeg"
    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xF6 == 0xF0:
        return "audio/aac"  # ADTS
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip(data)
    if _is_text(data):
        return TEXT_PLAIN
    return OCTET_STREAM


def media_kind(mime: str) -> MediaKind:
    """Which message types a file of this MIME type fits: image, video or audio; any is a file."""
    major = mime.split("/", 1)[0]
    if major == "image":
        return "image"
    if major == "video":
        return "video"
    if major == "audio":
        return "audio"
    return "file"


def _matroska(head: bytes) -> str:
    doc_type_at = head.find(b"\x42\x82")  # DocType element
    is_webm = doc_type_at != -1 and b"webm" in head[doc_type_at : doc_type_at + 12]
    audio_only = _MATROSKA_TRACK_VIDEO not in head and _MATROSKA_TRACK_AUDIO in head
    if is_webm:
        return "audio/webm" if audio_only else "video/webm"
    return "audio/x-matroska" if audio_only else "video/x-matroska"


def _is_mpeg_audio_frame(data: bytes) -> bool:
    """An MPEG-1/2 layer III frame header: 11 sync bits, a valid version, layer and bitrate."""
    if len(data) < 4 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0:
        return False
    version = (data[1] >> 3) & 0b11
    layer = (data[1] >> 1) & 0b11
    bitrate = data[2] >> 4
    sample_rate = (data[2] >> 2) & 0b11
    return version != 0b01 and layer == 0b01 and bitrate not in (0, 0xF) and sample_rate != 0b11


def _zip(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()  # the central directory only: nothing is decompressed
    except (zipfile.BadZipFile, ValueError, OSError):
        return ZIP
    if "[Content_Types].xml" in names:
        if any(name.startswith("word/") for name in names):
            return DOCX
        if any(name.startswith("xl/") for name in names):
            return XLSX
        if any(name.startswith("ppt/") for name in names):
            return PPTX
    return ZIP


def _is_text(data: bytes) -> bool:
    if _CONTROL_BYTES.search(data):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
