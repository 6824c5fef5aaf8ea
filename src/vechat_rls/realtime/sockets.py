"""This process's open sockets, by user and by organisation: whom the hub can reach here."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from vechat_rls.identity import Identity, User
from vechat_rls.realtime.outbox import Outbox


@dataclass
class Connected:
    """A user with sockets here: who they are, and their sockets' outboxes."""

    identity: Identity
    outboxes: set[Outbox] = field(default_factory=set)


class Sockets:
    """The outboxes of this process's sockets, by user and by organisation.

    `on_change(user, identity)` is told whenever a user's count of sockets here changes (the
    presence leases follow it).
    """

    def __init__(self, on_change: Callable[[User, Identity], None]) -> None:
        self.users: dict[User, Connected] = {}
        self.by_org: dict[int, set[User]] = defaultdict(set)
        self.on_change = on_change

    def add(self, outbox: Outbox) -> None:
        user = self.users.get(outbox.key)
        if user is None:
            user = self.users[outbox.key] = Connected(outbox.identity)
            self.by_org[outbox.key.organisation_id].add(outbox.key)
        user.outboxes.add(outbox)
        self.on_change(outbox.key, outbox.identity)

    def remove(self, outbox: Outbox) -> bool:
        """Forget `outbox`; False when it was not here (already forgotten)."""
        user = self.users.get(outbox.key)
        if user is None or outbox not in user.outboxes:
            return False
        user.outboxes.discard(outbox)
        if not user.outboxes:
            del self.users[outbox.key]
            org_users = self.by_org.get(outbox.key.organisation_id)
            if org_users is not None:
                org_users.discard(outbox.key)
                if not org_users:
                    del self.by_org[outbox.key.organisation_id]
        self.on_change(outbox.key, outbox.identity)
        return True

    def count(self, user: User) -> int:
        """How many sockets `user` has here."""
        connected = self.users.get(user)
        return len(connected.outboxes) if connected else 0

    def serves(self, organisation_id: int) -> bool:
        """Some user of the organisation has a socket here."""
        return organisation_id in self.by_org

    def outboxes(self) -> list[Outbox]:
        return [outbox for user in self.users.values() for outbox in user.outboxes]

    def push(self, user: User, text: str) -> None:
        """A frame without a seq to every socket of `user`; a socket too far behind is dropped."""
        connected = self.users.get(user)
        if connected is None:
            return
        for outbox in list(connected.outboxes):
            if not outbox.push(text):
                self.remove(outbox)
