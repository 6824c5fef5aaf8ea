"""Adopting the legacy VeChat tables in place (`db migrate`) and giving them back (`db rollback`).

Adoption stands in for migration 0001 on a database that holds the old module's tables, in one
transaction: check everything that could lose or change a value, move the legacy tables into
schema `vechat_legacy`, apply 0001 as a fresh install does, copy the rows across with their ids
and timestamps, and leave the emptied legacy tables for the way back. `db rollback` to 0 reverses
it in one transaction (docs/dba.md describes the shapes accepted).
"""

from vechat_rls.migrate.legacy.adopt import adopt
from vechat_rls.migrate.legacy.checks import plan
from vechat_rls.migrate.legacy.restore import (
    check_restorable,
    read_adoption,
    restore,
    restore_plan,
    status_note,
    verify_report,
)
from vechat_rls.migrate.legacy.shape import HOLDING, TABLES, Shape, detect

__all__ = [
    "HOLDING",
    "TABLES",
    "Shape",
    "adopt",
    "check_restorable",
    "detect",
    "plan",
    "read_adoption",
    "restore",
    "restore_plan",
    "status_note",
    "verify_report",
]
