"""CPU probes against real cgroup file layouts (v1 and v2) in fake roots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict

import pytest

from hpcrun.host.cpu import affinity_cpus, cgroup_cpu_quota, parse_cfs, parse_cpu_max


def write_tree(root: Path, files: Dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize("text, cpus", [
    ("max 100000\n", 0.0),
    ("200000 100000\n", 2.0),
    ("150000 100000", 1.5),
    ("50000 100000", 0.5),
    ("garbage", 0.0),
    ("", 0.0),
])
def test_parse_cpu_max(text: str, cpus: float) -> None:
    assert parse_cpu_max(text) == cpus


@pytest.mark.parametrize("quota, period, cpus", [
    ("-1\n", "100000\n", 0.0),
    ("400000\n", "100000\n", 4.0),
    ("x", "100000", 0.0),
])
def test_parse_cfs(quota: str, period: str, cpus: float) -> None:
    assert parse_cfs(quota, period) == cpus


def test_cgroup_v2_quota_of_own_cgroup(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {
        "proc/self/cgroup": "0::/system.slice/slurmstepd.scope/job_42/step_0/user/task_0\n",
        "sys/fs/cgroup/cpu.max": "max 100000\n",
        "sys/fs/cgroup/system.slice/slurmstepd.scope/job_42/step_0/user/task_0/cpu.max":
            "300000 100000\n",
    })
    assert cgroup_cpu_quota(root) == 3.0


def test_cgroup_v2_quota_set_on_an_ancestor(tmp_path: Path) -> None:
    # Slurm limits the job's cgroup; the step's child has no limit of its own.
    root = write_tree(tmp_path, {
        "proc/self/cgroup": "0::/system.slice/slurmstepd.scope/job_7/step_0\n",
        "sys/fs/cgroup/system.slice/slurmstepd.scope/job_7/cpu.max": "400000 100000\n",
        "sys/fs/cgroup/system.slice/slurmstepd.scope/job_7/step_0/cpu.max": "max 100000\n",
    })
    assert cgroup_cpu_quota(root) == 4.0


def test_cgroup_v2_smallest_limit_wins(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {
        "proc/self/cgroup": "0::/a/b\n",
        "sys/fs/cgroup/a/cpu.max": "100000 100000\n",
        "sys/fs/cgroup/a/b/cpu.max": "800000 100000\n",
    })
    assert cgroup_cpu_quota(root) == 1.0


def test_cgroup_v2_unlimited(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {
        "proc/self/cgroup": "0::/user.slice\n",
        "sys/fs/cgroup/user.slice/cpu.max": "max 100000\n",
    })
    assert cgroup_cpu_quota(root) == 0.0


def test_cgroup_v1_cpu_cpuacct(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {
        "proc/self/cgroup": ("12:memory:/slurm/uid_0/job_9\n"
                             "4:cpu,cpuacct:/slurm/uid_0/job_9/step_0\n"
                             "1:name=systemd:/\n"),
        "sys/fs/cgroup/cpu,cpuacct/slurm/uid_0/job_9/step_0/cpu.cfs_quota_us": "-1\n",
        "sys/fs/cgroup/cpu,cpuacct/slurm/uid_0/job_9/step_0/cpu.cfs_period_us": "100000\n",
        "sys/fs/cgroup/cpu,cpuacct/slurm/uid_0/job_9/cpu.cfs_quota_us": "250000\n",
        "sys/fs/cgroup/cpu,cpuacct/slurm/uid_0/job_9/cpu.cfs_period_us": "100000\n",
    })
    assert cgroup_cpu_quota(root) == 2.5


def test_cgroup_v1_separate_cpu_mount(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {
        "proc/self/cgroup": "3:cpu:/docker/abc\n2:cpuacct:/docker/abc\n",
        "sys/fs/cgroup/cpu/docker/abc/cpu.cfs_quota_us": "200000\n",
        "sys/fs/cgroup/cpu/docker/abc/cpu.cfs_period_us": "100000\n",
    })
    assert cgroup_cpu_quota(root) == 2.0


def test_no_cgroup_information(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path) == 0.0
    write_tree(tmp_path, {"proc/self/cgroup": "this is not a cgroup file\n"})
    assert cgroup_cpu_quota(tmp_path) == 0.0


def test_other_process_by_pid(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {
        "proc/1234/cgroup": "0::/job\n",
        "sys/fs/cgroup/job/cpu.max": "100000 50000\n",
    })
    assert cgroup_cpu_quota(root, pid="1234") == 2.0
    assert cgroup_cpu_quota(root) == 0.0


def test_real_root_does_not_fail() -> None:
    quota = cgroup_cpu_quota(Path("/"))
    assert quota >= 0.0


def test_affinity_matches_the_kernel() -> None:
    assert affinity_cpus() == len(os.sched_getaffinity(0))
