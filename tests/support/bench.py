"""Helpers for the tests that run the benchmark scripts (`bench/*.py`) as the README does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def run_script(script: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run `bench/<script>` with `args` to its end; its exit code and output, whatever they are."""
    return subprocess.run(
        [sys.executable, str(BENCH_DIR / script), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def run_bench(script: str, *args: str, timeout: float = 180) -> str:
    """Run `bench/<script>` with `args`; its standard output, once it has exited 0."""
    proc = run_script(script, *args, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout
