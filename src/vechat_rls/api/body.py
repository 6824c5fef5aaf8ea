"""Strict JSON request bodies: msgspec decodes `data` exactly as typed (`"1"` is not an int).

Litestar converts handler arguments in lax mode, which suits query strings but would accept
`{"user_id": "1"}` for an `int`. The `/api/v1` router uses `StrictBody` as its request DTO, so every
msgspec `Struct` body (or list of them) is decoded in strict mode straight from the bytes, and a
failure becomes a 400 whose `errors` name the field path.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar.dto import MsgspecDTO
from litestar.exceptions import ClientException, ValidationException

_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


def validation_error(exc: msgspec.ValidationError) -> ValidationException:
    """`Expected int, got str - at $.peer.user_id` as Litestar's `{message, key, source}`."""
    text = str(exc)
    match = _AT_PATH.search(text)
    message = text[: match.start()] if match else text
    key = (match.group("path") if match else "") or "data"
    return ValidationException(
        "request validation failed", extra=[{"message": message, "key": key, "source": "body"}]
    )


class StrictBody(MsgspecDTO[msgspec.Struct]):
    """Request DTO for msgspec structs: strict decoding, the struct's own OpenAPI schema."""

    def decode_bytes(self, value: bytes) -> Any:
        handler_id = self.asgi_connection.route_handler.handler_id
        backend = self._dto_backends[handler_id]["data_backend"]
        try:
            return msgspec.json.decode(value, type=backend.field_definition.annotation, strict=True)
        except msgspec.ValidationError as exc:
            raise validation_error(exc) from None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            # msgspec raises UnicodeDecodeError (not a DecodeError) for invalid UTF-8 in a string
            raise ClientException(f"JSON is malformed: {exc}") from None
        except RecursionError:
            # msgspec decodes nested arrays and objects recursively: some hundreds of levels
            # exhaust the stack. The client's fault, not the server's.
            raise ClientException("JSON is nested too deeply") from None

    def decode_builtins(self, value: Any) -> Any:
        handler_id = self.asgi_connection.route_handler.handler_id
        backend = self._dto_backends[handler_id]["data_backend"]
        try:
            return msgspec.convert(value, type=backend.field_definition.annotation, strict=True)
        except msgspec.ValidationError as exc:
            raise validation_error(exc) from None

    @classmethod
    def create_openapi_schema(
        cls, field_definition: Any, handler_id: str, schema_creator: Any
    ) -> Any:
        return schema_creator.for_field_definition(field_definition)
