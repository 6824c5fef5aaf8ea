"""py-spy on server processes during a measurement, and where their time went."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# Where a sample's time goes: the innermost frame whose file matches, in this order.
PROFILE_CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("system calls (socket read/write, libc)", ("libc.so",)),
    ("JSON (msgspec encode/decode)", ("msgspec",)),
    ("JWT verification (pyjwt, cryptography)", ("jwt/", "cryptography")),
    ("asyncpg (protocol, codecs, pool)", ("asyncpg",)),
    ("Prometheus middleware", ("prometheus",)),
    ("Litestar DTO / body decoding", ("litestar/dto", "vechat_rls/api/body.py")),
    ("Litestar DI / kwargs / params", ("litestar/_kwargs", "litestar/di", "_signature")),
    ("Litestar responses / serialization", ("litestar/response", "litestar/serialization")),
    ("Litestar routing / middleware / app", ("litestar/",)),
    ("uvicorn + httptools (HTTP parsing)", ("uvicorn", "httptools")),
    ("vechat_rls code", ("vechat_rls",)),
    ("event loop (uvloop, libuv, asyncio tasks)",
     ("uvloop", "loop.c", "stream.c", "core.c", "linux.c", "asyncio", "selectors", "socket",
      "Runner.run")),
    ("logging", ("logging/",)),
]

NOT_FOUND = "py-spy not found (pip install py-spy): no profile"


def start_py_spy(targets: dict[int, Path], seconds: float, *, native: bool,
                 log: Path) -> list[subprocess.Popen[bytes]]:
    """`py-spy record` of each pid into its file (raw, collapsed stacks) for `seconds`; none when
    py-spy is not installed (the caller says NOT_FOUND)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return []
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return [
            subprocess.Popen([py_spy, "record", "--pid", str(pid), "--duration",
                              str(max(1, round(seconds))), "--rate", "200", "--format", "raw",
                              "--output", str(path),
                              # --native must stop the process to unwind C stacks
                              *(["--native"] if native else ["--nonblocking"])],
                             stdout=out, stderr=subprocess.STDOUT)
            for pid, path in targets.items()
        ]


def summarise_profile(paths: Sequence[Path], top: int = 15) -> list[str]:
    """py-spy raw (collapsed) stacks → share of samples per category and hottest functions."""
    categories: dict[str, int] = {}
    leaves: dict[str, int] = {}
    total = 0
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            # The event loop's thread only, and not while it waits in epoll (native stacks
            # include idle threads and waits).
            if not any("Runner.run" in f for f in frames) or "epoll" in frames[-1]:
                continue
            total += count
            leaves[frames[-1]] = leaves.get(frames[-1], 0) + count
            category = "other (interpreter, C without symbols)"
            for frame in reversed(frames):
                found = next((name for name, needles in PROFILE_CATEGORIES
                              if any(n in frame for n in needles)), None)
                if found:
                    category = found
                    break
            categories[category] = categories.get(category, 0) + count
    if not total:
        return ["(no samples)"]
    lines = [f"{count / total:6.1%}  {name}"
             for name, count in sorted(categories.items(), key=lambda kv: -kv[1])]
    lines.append(f"hottest functions (self time, {total} samples):")
    lines += [f"{count / total:6.1%}  {name[:110]}"
              for name, count in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]]
    return lines


# --------------------------------------------------------------------------- PostgreSQL (perf)

# Where a PostgreSQL sample's time goes, by the functions on its stack: the first phase in this
# order with a function on the stack takes the sample, so the shares add up to the whole. The
# specific costs come first (wherever they run: the send statement, a trigger's statement), then
# what is left of the statement or trigger they ran in.
PG_PHASES: list[tuple[str, tuple[str, ...]]] = [
    ("commit (commit record, WAL flush)", ("CommitTransaction", "XLogFlush")),
    ("signed context: vechat.enter (BEGIN batch)", ("@enter",)),
    ("simple queries, the rest (BEGIN, SET LOCAL, COMMIT's parse)", ("@simple",)),
    ("context reads: vechat.context (TID scans)",
     ("ExecInitTidScan", "TidNext", "ExecReScanTidScan", "ExecEndTidScan", "TidListEval")),
    ("context reads: current_setting()",
     ("show_config_by_name_missing_ok", "show_config_by_name", "GetConfigOptionByName")),
    ("foreign-key checks", ("RI_FKey_check_ins", "RI_FKey_check_upd", "ri_PerformCheck")),
    ("CHECK constraints (parsed and planned per statement)", ("ExecConstraints",)),
    ("policies' WITH CHECK", ("ExecWithCheckOptions",)),
    ("plan cache: revalidation, locks", ("GetCachedPlan", "RevalidateCachedQuery")),
    ("executor start-up (plan nodes, expressions)", ("standard_ExecutorStart",)),
    ("index inserts", ("ExecInsertIndexTuples",)),
    ("triggers' statements, the rest", ("plpgsql_exec_trigger",)),
    ("the request's statements, the rest", ("PortalRun", "exec_simple_query")),
    ("protocol: reading requests, sending results", ("PostgresMain",)),
    ("background processes (WAL writer, checkpointer, ...)", ("@background",)),
]

PERF_NOT_FOUND = "perf not found (apt-get install linux-perf): no PostgreSQL profile"


def start_perf(pids: Sequence[int], seconds: float, output: Path,
               log: Path) -> subprocess.Popen[bytes] | None:
    """`perf record` (DWARF call graphs) of the PostgreSQL processes `pids` for `seconds`; None
    when perf is not installed (the caller says PERF_NOT_FOUND). PostgreSQL's own binaries carry
    their symbols; frame pointers are not assumed."""
    perf = shutil.which("perf")
    if perf is None or not pids:
        return None
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [perf, "record", "--freq", "199", "--call-graph", "dwarf,16384", "--output",
             str(output), "--pid", ",".join(str(p) for p in pids), "--",
             "sleep", str(max(1.0, seconds))],
            stdout=out, stderr=subprocess.STDOUT)


def perf_stacks(recording: Path) -> list[list[str]]:
    """The samples of a `perf record` file, each its function names from leaf to root."""
    text = subprocess.run([shutil.which("perf") or "perf", "script", "--input", str(recording),
                           "--fields", "comm,ip,sym"], capture_output=True, text=True,
                          errors="replace", check=False).stdout
    return parse_perf_script(text)


def parse_perf_script(text: str) -> list[list[str]]:
    """`perf script` output → per sample, its function names from leaf to root. A sample starts
    with an unindented line (the command name), its frames follow indented (`ip sym+off`)."""
    samples: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            current = []
            samples.append(current)
        elif current is not None:
            parts = line.split()
            if len(parts) >= 2:
                current.append(parts[1].split("+0x")[0])
    return samples


def _markers(stack: list[str]) -> set[str]:
    """Names for what a stack shows only in combination: the tenant context of the BEGIN batch
    (a PL/pgSQL call inside a simple query is vechat.enter), the rest of the simple queries
    (BEGIN, SET LOCAL, COMMIT before it commits), and a process that is not a backend."""
    names = set(stack)
    if "PostgresMain" not in names:
        return {"@background"}
    if "exec_simple_query" in names and "CommitTransaction" not in names:
        return {"@enter"} if "plpgsql_call_handler" in names else {"@simple"}
    return set()


def summarise_pg_profile(samples: list[list[str]]) -> dict[str, float]:
    """Share of the samples per phase of PG_PHASES (and "other"), in PG_PHASES' order."""
    counts = dict.fromkeys([name for name, _ in PG_PHASES] + ["other"], 0)
    for stack in samples:
        names = set(stack) | _markers(stack)
        phase = next((name for name, needles in PG_PHASES if any(n in names for n in needles)),
                     "other")
        counts[phase] += 1
    total = len(samples) or 1
    return {name: count / total for name, count in counts.items()}
