"""Path and query parameters the controllers share, with their OpenAPI descriptions."""

from __future__ import annotations

from typing import Annotated

from litestar.params import PathParameter, QueryParameter

from vechat_rls.chat.cursors import MAX_CURSOR_CHARS
from vechat_rls.chat.messages.shapes import MAX_LIMIT
from vechat_rls.identity import BIGINT_MAX

PathId = Annotated[int, PathParameter(ge=1, le=BIGINT_MAX, description="a positive integer id")]
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="page size (1-200)")]
Cursor = Annotated[str | None, QueryParameter(max_length=MAX_CURSOR_CHARS)]
