"""Adopting the legacy VeChat tables in place (`db migrate`) and giving them back (`db rollback`).

A database of the ERP holds the old module's `vechat_conversations`, `vechat_messages` and maybe
`vechat_presence` / `vechat_user_settings` (docs/dba.md describes every shape we accept). Adoption
stands in for migration 0001 on such a database, in **one transaction**:

1. lock the legacy tables (ACCESS EXCLUSIVE, until the commit) and check everything that could
   make the upgrade lose or change a value: organisation ids already present, rows the new
   constraints would refuse, views and keys of the ERP that depend on the tables. Any problem:
   nothing is changed, every problem is printed, the run fails;
2. move the legacy tables, unchanged, into schema `vechat_legacy` (`ALTER TABLE … SET SCHEMA`:
   the same tables, nothing copied), saving and dropping their triggers (the old counters);
3. apply 0001 exactly as a fresh install does, so the catalog is a fresh install's;
4. copy the rows into the new tables with the same ids, values and timestamps (naive legacy
   timestamps read in `--legacy-timezone`, UTC by default), derive each message's
   `conversation_id` (creating a conversation for each orphan pair), recount every unread counter
   with `vechat.recount_unread`, and empty the legacy tables, which stay behind as the exact shape
   `db rollback` restores.

Why copy rather than alter the legacy tables in place: 0001 is released and must not change, and
the new tables differ in every key, type and trigger; copying into 0001's own tables makes the
adopted catalog equal a fresh install's by construction, and the emptied legacy tables keep every
original name (constraints, indexes, sequences) for the way back. The cost is one write of the
data, measured by bench/adopt.py.

`db rollback` to 0 reverses it in one transaction: refuse if rows of more than one organisation
exist, copy every row back into the legacy tables (deletions the legacy shape cannot express become
its delete-for-me flags), drop what 0001 created, move the legacy tables back to `public`, restore
their triggers and sequences. The old deployment guide's rollback semantics hold for a database
that had `organisation_id` added by hand: the column goes, and the pair or user unique key comes
back under the guide's name.

Rows move as the DBA, who alone may read the legacy tables (their privileges are never touched):
for that, the new tables' owner switches their row-level security and user triggers off inside
the transaction and on again before it commits, so no other session ever sees them without.
"""

from vechat_rls.migrate.legacy.adopt import adopt
from vechat_rls.migrate.legacy.checks import plan
from vechat_rls.migrate.legacy.restore import (
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
    "detect",
    "plan",
    "read_adoption",
    "restore",
    "restore_plan",
    "status_note",
    "verify_report",
]
