"""Delivery: events, presence and typing to this process's sockets; depends on chat/ and db.

The listener (listener.py) hears doorbells, the hub (hub.py) reads what they announce under each
recipient's own tenant context and queues it on their sockets, the ringer (ringer.py) rings for
this process's writes, the pacer (pace.py) batches both while delivery falls behind (a growing
backlog), and engines.py runs one such engine per database.

Glossary (one meaning each):

* doorbell — a NOTIFY carrying ids only that tells listeners to look again: on `vechat_events`
  "these recipients (or anyone of this organisation) may have new events", on `vechat_presence`
  "this user's presence may have changed", on `vechat_typing` "this user is typing". A hint,
  never data, and not durable: the event log is.
* ring — to send a doorbell. A ring *names* recipients, or only an organisation.
* doorbell mode — `VECHAT_DOORBELL`, who rings `vechat_events` for a write: `coalesced` (the
  default), this process's ringer after COMMIT, one NOTIFY for many commits; `transaction`, the
  event trigger inside every writing transaction. A coalesced write silences the trigger with
  the transaction setting `vechat.doorbell = 'off'`.
* ringer — `Ringer`, the process's sender of coalesced rings, one per database.
* listener — the connection that LISTENs for doorbells, one per database with sockets here.
* recipient — the `User` an event is for; a write transaction names its recipients with
  `db.Transaction.name_recipients`.
"""
