"""probe_host on a fake root and on the real machine."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from helpers.gpu_trees import nvidia_host
from hpcrun.host.probe import probe_host, relevant_environ


def test_fake_gpu_node(tmp_path: Path) -> None:
    root = nvidia_host(tmp_path, driver="550.54.14")
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "self" / "cgroup").write_text("0::/job_1\n")
    (root / "sys" / "fs" / "cgroup" / "job_1").mkdir(parents=True)
    (root / "sys" / "fs" / "cgroup" / "job_1" / "cpu.max").write_text("200000 100000\n")
    facts = probe_host(root, environ={"SLURM_CPUS_PER_TASK": "2", "HOME": "/root",
                                      "OMP_NUM_THREADS": "3", "PMI_RANK": "0"})
    assert facts.gpu.vendor == "nvidia" and facts.gpu.driver_version == "550.54.14"
    assert facts.cgroup_cpu_quota == 2.0
    assert facts.cpus == len(os.sched_getaffinity(0))
    assert facts.architecture == platform.machine()
    assert dict(facts.environ) == {"SLURM_CPUS_PER_TASK": "2", "OMP_NUM_THREADS": "3",
                                   "PMI_RANK": "0"}
    assert facts.runtime.kind == "apptainer"  # left at its default: not probed here


def test_real_machine() -> None:
    facts = probe_host()
    libc, version = platform.libc_ver()
    assert libc == "glibc" and facts.glibc == version
    assert facts.cpus >= 1
    assert facts.gpu.vendor in ("none", "nvidia", "amd")


def test_relevant_environ_keeps_only_what_the_plan_reads() -> None:
    env = {"SLURM_JOB_ID": "1", "PATH": "/bin", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES":
           "0", "SECRET_TOKEN": "x"}
    assert relevant_environ(env) == (("CUDA_VISIBLE_DEVICES", "0"), ("MKL_NUM_THREADS", "1"),
                                     ("SLURM_JOB_ID", "1"))
