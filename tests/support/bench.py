"""Helpers for the tests that run the benchmark scripts (`bench/*.py`) as the README does."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

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


def load_bench_module(relative: str, name: str) -> ModuleType:
    """`bench/<relative>` imported by path as module `name`: bench/ is a folder of scripts, not
    a package the tests can import. Registered in `sys.modules` (dataclasses look their module
    up by name)."""
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
