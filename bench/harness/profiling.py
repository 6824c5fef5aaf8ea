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
