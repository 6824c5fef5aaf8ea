"""The HTTP bench's PostgreSQL profile (bench/harness/profiling.py, `--pg-profile`): `perf script`
stacks are read leaf first, and each sample lands in exactly one phase, the first of the list
with a function on its stack, so the shares add up to the whole."""

from __future__ import annotations

from types import ModuleType

from tests.support.bench import load_bench_module


def _profiling() -> ModuleType:
    return load_bench_module("harness/profiling.py", "bench_profiling")


def _sample(*frames: str, comm: str = "postgres") -> str:
    """One sample as `perf script --fields comm,ip,sym` prints it (leaf first)."""
    lines = [f"{comm} "]
    lines += [f"\t    {0x1000 + n:x} {frame}+0x{n:x}" for n, frame in enumerate(frames)]
    return "\n".join(lines) + "\n\n"


BACKEND = ("PostgresMain", "BackendMain", "main")
EXTENDED = ("PortalRun", *BACKEND)
SIMPLE = ("exec_simple_query", *BACKEND)

SCRIPT = "".join([
    # vechat.enter in the BEGIN batch
    _sample("sha256_bytea", "ExecInterpExpr", "plpgsql_call_handler", "fmgr_security_definer",
            "ExecResult", *SIMPLE),
    # BEGIN and SET LOCAL in the same batch: no PL/pgSQL
    _sample("set_config_option", "ExecSetVariableStmt", *SIMPLE),
    # COMMIT: the commit itself, whatever runs it
    _sample("XLogFlush", "RecordTransactionCommit", "CommitTransaction", *SIMPLE),
    # a context read inside a trigger's statement: the read, not the trigger
    _sample("heap_fetch", "TidNext", "ExecScan", "ExecSetParamPlan", "_SPI_execute_plan",
            "plpgsql_exec_trigger", *EXTENDED),
    # the last-message foreign key, checked in a trigger
    _sample("heap_hot_search_buffer", "IndexNext", "ri_PerformCheck", "RI_FKey_check_upd",
            "plpgsql_exec_trigger", *EXTENDED),
    _sample("nodeRead", "stringToNode", "ExecConstraints", "ExecInsert", *EXTENDED),
    _sample("_bt_compare", "ExecInsertIndexTuples", "ExecInsert", *EXTENDED),
    _sample("ExecInterpExpr", "ExecModifyTable", *EXTENDED),
    _sample("pq_recvbuf", "pq_getbyte", *BACKEND),
    _sample("XLogBackgroundFlush", "WalWriterMain", "main"),
])


def test_perf_script_is_read_leaf_first_with_offsets_stripped() -> None:
    samples = _profiling().parse_perf_script(SCRIPT)
    assert len(samples) == 10
    assert samples[0][:3] == ["sha256_bytea", "ExecInterpExpr", "plpgsql_call_handler"]
    assert samples[-1] == ["XLogBackgroundFlush", "WalWriterMain", "main"]


def test_each_sample_lands_in_one_phase() -> None:
    profiling = _profiling()
    shares = profiling.summarise_pg_profile(profiling.parse_perf_script(SCRIPT))
    assert abs(sum(shares.values()) - 1.0) < 1e-9
    tenth = {name: share for name, share in shares.items() if share}
    assert tenth == {
        "commit (commit record, WAL flush)": 0.1,
        "signed context: vechat.enter (BEGIN batch)": 0.1,
        "simple queries, the rest (BEGIN, SET LOCAL, COMMIT's parse)": 0.1,
        "context reads: vechat.context (TID scans)": 0.1,
        "foreign-key checks": 0.1,
        "CHECK constraints (parsed and planned per statement)": 0.1,
        "index inserts": 0.1,
        "the request's statements, the rest": 0.1,
        "protocol: reading requests, sending results": 0.1,
        "background processes (WAL writer, checkpointer, ...)": 0.1,
    }


def test_no_samples_is_no_share() -> None:
    shares = _profiling().summarise_pg_profile([])
    assert set(shares.values()) == {0.0}
