"""The chat domain: every chat operation with its SQL and row mapping, and no Litestar.

One module per resource — conversations, messages (shapes, reading, sending, changing),
participants, contacts, presence, settings, stats, me, attachments — plus what they share:
cursors (the one codec of every list), the rate limit, and the errors they raise (errors.py).
Every operation takes a connection already inside the caller's tenant transaction
(`db.tenant`) and acts as that transaction's user: who may see and change which row is
row-level security's business, never a `WHERE` clause here. The HTTP controllers (api/) and the
realtime engine (realtime/) both call these functions.
"""
