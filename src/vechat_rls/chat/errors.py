"""Why a chat operation refused: the domain's errors, one class per kind of refusal.

`detail` is shown to the client, so it names ids, never data. The edges raise the same errors
for the same refusals (a malformed upload is `Invalid` too); api/problems.py is the one place
that turns each into an HTTP problem or a WebSocket error frame.
"""

from __future__ import annotations


class ChatError(Exception):
    """A refusal; `detail` is safe to show."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Invalid(ChatError):
    """A value is malformed or out of range (400). `field` and `reason` name the value at fault,
    when it is one value of the request body."""

    def __init__(self, detail: str, *, field: str | None = None, reason: str | None = None):
        super().__init__(detail)
        self.field = field
        self.reason = reason


class Forbidden(ChatError):
    """Visible, but not the caller's to do (403): editing someone else's message."""


class NotFound(ChatError):
    """404 for ids that do not exist *and* for ids the caller may not see — indistinguishable."""

    def __init__(self, resource: str, resource_id: int | str | None = None) -> None:
        what = resource if resource_id is None else f"{resource} {resource_id}"
        super().__init__(f"{what} not found")


class Conflict(ChatError):
    """A duplicate that cannot be merged (409)."""


class TooLarge(ChatError):
    """A body or a file over its limit (413)."""


class RuleBroken(ChatError):
    """A well-formed request that breaks a rule (422): the edit window has passed."""


class RateLimited(ChatError):
    """Too many of one action (429); `retry_after` is the seconds until the window resets."""

    def __init__(self, retry_after: int, detail: str = "rate limit exceeded") -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)
