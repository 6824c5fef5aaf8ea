"""Messages per second through the HTTP API, against the same inserts straight through asyncpg.

Starts its own durable PostgreSQL (fsync and synchronous_commit on, like production), migrates
it, seeds 10 organisations (personnel, clients, contacts, conversations, message history) and
starts `vechat-rls serve` three times: as `vechat_app` (the real thing), as a role with
BYPASSRLS (the cost of the policies) and as `vechat_app` with the NOTIFY doorbell switched off
(the cost of the doorbell, which architecture.md asks every benchmark to report). Then, on this
machine, with the load generator in this process:

* the generator's own ceiling, against a trivial HTTP server in another process, and the
  Litestar floor (`GET /healthz`);
* sustained `POST /api/v1/conversations/{id}/messages` with 32 keep-alive clients over the 10
  organisations, each its own sender and conversation, every request a new `client_id`;
* the physical baseline in the same run: single-row asyncpg inserts into `vechat_messages`
  (same server, same 32 tasks, as many connections as the servers' pools): inside the same
  tenant transaction the API uses (`db.tenant`: BEGIN + SET LOCAL batch, INSERT, COMMIT), and
  plain autocommit as the bypassing role;
* latency (p50/p99) at half the sustained rate, open loop: requests leave on a fixed schedule
  whatever the server does, and latency counts from the scheduled time (no coordinated
  omission);
* `GET` of a conversation page and of the conversation list.

Insert variants run in interleaved rounds and report the median (the machine is shared; load
drifts). The rate limit (60 messages/min per user) is raised for the servers with
`VECHAT_RATE_LIMIT_PER_MIN`, so it never answers 429; its counter statement still runs.

`--workers 2` (the default) is one uvicorn worker per core: the API spends ~1 ms of CPU per send
and ~0.6-1 ms per GET (the "CPU us/op" column), so one process caps GETs at about one core while
the other idles; a third worker would only add context switches with PostgreSQL, which needs
~1-1.5 ms of CPU per message on the same two cores. `--profile DIR` then samples the
`vechat_app` server's workers with py-spy (`pip install py-spy`) under send load and prints
where their time goes.

    .venv/bin/python bench/http.py [--duration 5] [--rounds 3] [--workers 2] [--quick]
                                   [--profile DIR [--native]] [--no-access-log] [--keep]
"""

from __future__ import annotations

import sys

# The code is in bench/http_bench.py. A module named `http` in bench/ is first on sys.path of any
# script run from this folder and would shadow the standard library's `http` package (urllib,
# httpx and pyjwt import it), so this file stays a launcher that steps aside for it.
if __name__ == "http":  # imported by a sibling script (bench/roundtrips.py): be the real one
    import importlib

    del sys.modules["http"]
    sys.path.remove(__file__.rpartition("/")[0])
    sys.modules["http"] = importlib.import_module("http")
elif __name__ == "__main__":
    import importlib.util

    here = __file__.rpartition("/")[0]
    if here in sys.path:
        sys.path.remove(here)
    spec = importlib.util.spec_from_file_location("http_bench", f"{here}/http_bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["http_bench"] = bench
    spec.loader.exec_module(bench)
    sys.exit(bench.main())
