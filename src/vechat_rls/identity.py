"""Who acts: `Identity` (the caller, from a verified token) and `User` (a user, by key).

Every layer passes these around; nothing here knows how a token is read (auth.py does).

* `Identity`: the caller of a request or a socket — organisation, user, type, and the token's
  role and display name.
* `User`: a user as a key, `(organisation_id, user_type, user_id)` — whom a socket belongs to,
  whom an event is for (its *recipient*), whom a transaction names for the ringer. It is a
  tuple, so a plain `(organisation_id, user_type, user_id)` tuple compares and hashes equal.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

import msgspec

UserType = Literal["personnel", "client"]
USER_TYPES: tuple[UserType, ...] = ("personnel", "client")
BIGINT_MAX = 2**63 - 1
# A role travels into the transaction-local setting `vechat.role`; keep it a plain identifier so
# that it can never be more than a word (it is also quoted properly, see db/transaction.py).
ROLE_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class User(NamedTuple):
    """A user of an organisation: the one key for "a user" (module docstring)."""

    organisation_id: int
    user_type: str  # "personnel" or "client" (a notification's payload is not trusted to be)
    user_id: int

    def acting(self) -> Identity:
        """A bare identity (no role, no name) to act as this user in a transaction."""
        user_type: UserType = "personnel" if self.user_type == "personnel" else "client"
        return Identity(
            organisation_id=self.organisation_id, user_type=user_type, user_id=self.user_id
        )


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: taken from a verified token and nothing else."""

    organisation_id: int
    user_id: int
    user_type: UserType
    role: str | None = None
    display_name: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def user(self) -> User:
        return User(self.organisation_id, self.user_type, self.user_id)

    def bare(self) -> Identity:
        """The identity without its application role and name (the hub never acts as an admin)."""
        return Identity(
            organisation_id=self.organisation_id, user_type=self.user_type, user_id=self.user_id
        )
