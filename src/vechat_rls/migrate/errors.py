"""What the runner raises: one line each, nothing of the failing step committed."""

from __future__ import annotations


class MigrationError(Exception):
    """A one-line failure of one target; nothing of the failing step was committed."""


class TargetError(ValueError):
    """The databases to act on cannot be named (bad registry, no URL): a usage error."""
