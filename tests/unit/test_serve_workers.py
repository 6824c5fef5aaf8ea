"""`vechat-rls serve`'s default worker count: one per CPU the process may use (api/serving.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vechat_rls import cli
from vechat_rls.api import serving


@pytest.mark.parametrize(
    ("cpus", "workers"), [(0.5, 1), (1.0, 1), (1.5, 2), (2.0, 2), (4.0, 4), (64.0, 8)]
)
def test_default_workers_is_usable_cpus_rounded_up_between_1_and_8(
    cpus: float, workers: int
) -> None:
    assert serving.default_workers(cpus) == workers


def test_usable_cpus_is_the_affinity_mask_without_a_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving, "cgroup_cpu_quota", lambda: None)
    assert serving.usable_cpus() == len(os.sched_getaffinity(0))


def test_usable_cpus_is_capped_by_a_cgroup_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving, "cgroup_cpu_quota", lambda: 0.5)
    assert serving.usable_cpus() == 0.5
    assert serving.default_workers() == 1


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_is_read_from_cpu_max_up_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "cpu memory\n")
    _write(root / "app.slice" / "cpu.max", "150000 100000\n")
    _write(root / "app.slice" / "svc" / "cpu.max", "max 100000\n")
    proc = tmp_path / "proc-cgroup"
    _write(proc, "0::/app.slice/svc\n")
    assert serving.cgroup_cpu_quota(root, proc) == 1.5


def test_cgroup_v1_quota_and_no_quota(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root / "cpu,cpuacct" / "docker" / "cpu.cfs_quota_us", "250000\n")
    _write(root / "cpu,cpuacct" / "docker" / "cpu.cfs_period_us", "100000\n")
    proc = tmp_path / "proc-cgroup"
    _write(proc, "4:memory:/docker\n3:cpu,cpuacct:/docker\n")
    assert serving.cgroup_cpu_quota(root, proc) == 2.5
    _write(root / "cpu,cpuacct" / "docker" / "cpu.cfs_quota_us", "-1\n")
    assert serving.cgroup_cpu_quota(root, proc) is None
    assert serving.cgroup_cpu_quota(root, tmp_path / "missing") is None


def test_serve_defaults_to_usable_cpus_and_no_access_log() -> None:
    args = cli.build_parser().parse_args(["serve"])
    assert args.workers is None and args.access_log is False
    args = cli.build_parser().parse_args(["serve", "--workers", "3", "--access-log"])
    assert args.workers == 3 and args.access_log is True
