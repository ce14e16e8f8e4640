"""Thread counts from the allocation: launcher options, Slurm variables, cgroups, CPUs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict, Mapping, Sequence, Tuple

import pytest

from hpcrun.errors import UsageError
from hpcrun.host.cpu import cgroup_cpu_quota
from hpcrun.host.facts import HostFacts
from hpcrun.plan.model import INFO, WARNING, Contribution, Request
from hpcrun.profiles.model import Profile, Runtime, Threads
from hpcrun.resolve.threads import decide, launcher_shape

PROFILE = Profile(schema=1, name="site")
NODE = HostFacts(cpus=16)


def request(*launcher: str, threads: str = "", user_env: Tuple[Tuple[str, str], ...] = (),
            cleanenv: bool = False) -> Request:
    return Request(launcher=tuple(launcher), image="img.sif", command=("app",), threads=threads,
                   user_env=user_env, cleanenv=cleanenv)


def values(result: Contribution) -> Dict[str, str]:
    return {e.name: e.value for e in result.env}


def omp(launcher: Sequence[str], environ: Mapping[str, str] = {}, host: HostFacts = NODE,
        profile: Profile = PROFILE) -> Contribution:
    return decide(profile, request(*launcher), host, environ)


@pytest.mark.parametrize("launcher, cpus", [
    (("srun", "-c", "2"), 2),
    (("srun", "-c2"), 2),
    (("srun", "-lc3"), 3),            # bundled with the boolean -l
    (("srun", "--cpus-per-task=4"), 4),
    (("srun", "--cpus-per-task", "5", "-n", "2"), 5),
    (("srun", "-n", "2", "--mpi=pmi2"), 0),
    (("srun", "-p", "-c"), 0),        # "-c" is the value of -p here, not an option
    (("mpirun", "--cpus-per-rank", "4", "-np", "2"), 4),
    (("mpirun", "--map-by", "ppr:2:node:PE=3"), 3),
    (("mpirun", "--map-by=slot:pe=2"), 2),
    (("mpiexec", "-n", "4"), 0),
])
def test_cpus_per_rank_from_options(launcher: Tuple[str, ...], cpus: int) -> None:
    assert launcher_shape(launcher).cpus_per_rank == cpus


@pytest.mark.parametrize("launcher, environ, expected", [
    (("srun", "-c", "2", "-n", "4"), {}, "2"),
    (("srun", "--cpus-per-task=2"), {"SLURM_CPUS_PER_TASK": "8"}, "2"),  # the step wins
    (("srun", "-n", "4"), {"SLURM_CPUS_PER_TASK": "4"}, "4"),
    (("srun", "-n", "4"), {}, "4"),                       # 16 CPUs / 4 ranks on one node
    (("srun", "-n", "8", "-N", "2"), {}, "4"),            # 4 ranks per node
    (("srun", "--ntasks-per-node=8"), {}, "2"),
    (("srun",), {"SLURM_NTASKS": "16", "SLURM_NNODES": "2"}, "2"),
    (("srun", "-N", "2"), {}, "16"),                      # one task per node
    (("mpirun", "-np", "2"), {}, "8"),
    (("mpirun", "-np", "8", "-npernode", "4"), {}, "4"),
    (("mpiexec.hydra", "-n", "8", "-ppn", "2"), {}, "8"),
    (("mpirun", "--map-by", "ppr:4:node:PE=2", "-np", "8"), {}, "2"),
    (("mpirun",), {"SLURM_TASKS_PER_NODE": "8(x2)"}, "2"),
    ((), {}, "16"),                                       # no launcher: one process
])
def test_value(launcher: Tuple[str, ...], environ: Dict[str, str], expected: str) -> None:
    result = omp(launcher, environ)
    assert values(result) == {"OMP_NUM_THREADS": expected}
    (var,) = result.env
    assert var.scope == "container" and var.source == "threads"
    assert "decided once for the job" in var.reason


def test_reasons_name_the_source() -> None:
    assert "srun --cpus-per-task=2" in omp(("srun", "--cpus-per-task=2"), {}).env[0].reason
    assert "SLURM_CPUS_PER_TASK=4" in omp(("srun",), {"SLURM_CPUS_PER_TASK": "4"}).env[0].reason
    reason = omp(("srun", "-n", "8", "-N", "2"), {}).env[0].reason
    assert "16 CPUs" in reason and "4 rank(s) per node" in reason


def test_unknown_rank_count_leaves_variables_alone() -> None:
    result = omp(("mpirun", "--hostfile", "hosts", "-np", "8"), {})
    assert result.env == ()
    assert [d.code for d in result.diagnostics] == ["threads-unknown"]
    assert result.diagnostics[0].severity == INFO


def test_user_value_is_kept() -> None:
    assert omp(("srun", "-c", "2"), {"OMP_NUM_THREADS": "7"}).env == ()
    result = decide(PROFILE, request("srun", "-c", "2", user_env=(("OMP_NUM_THREADS", "3"),)),
                    NODE, {})
    assert result.env == ()


def test_user_value_is_passed_in_under_cleanenv() -> None:
    result = decide(PROFILE, request("srun", "-c", "2", cleanenv=True), NODE,
                    {"OMP_NUM_THREADS": "7"})
    assert values(result) == {"OMP_NUM_THREADS": "7"}
    assert "--cleanenv" in result.env[0].reason
    profile = Profile(schema=1, name="site", runtime=Runtime(options=("--containall",)))
    result = decide(profile, request("srun", "-c", "2"), NODE, {"OMP_NUM_THREADS": "7"})
    assert values(result) == {"OMP_NUM_THREADS": "7"}


def test_threads_option() -> None:
    result = decide(PROFILE, request("srun", "-c", "2", threads="6"), NODE,
                    {"OMP_NUM_THREADS": "7"})
    assert values(result) == {"OMP_NUM_THREADS": "6"}
    assert decide(PROFILE, request("srun", "-c", "2", threads="off"), NODE, {}).env == ()
    assert values(decide(PROFILE, request("srun", "-c", "2", threads="auto"), NODE, {})) == {
        "OMP_NUM_THREADS": "2"}
    with pytest.raises(UsageError):
        decide(PROFILE, request("srun", threads="lots"), NODE, {})
    with pytest.raises(UsageError):
        decide(PROFILE, request("srun", threads="0"), NODE, {})


def test_profile_off_and_more_variables() -> None:
    off = Profile(schema=1, name="site", threads=Threads(mode="off"))
    assert decide(off, request("srun", "-c", "2"), NODE, {}).env == ()
    many = Profile(schema=1, name="site", threads=Threads(
        variables=("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")))
    result = decide(many, request("srun", "-c", "3"), NODE, {"MKL_NUM_THREADS": "1"})
    assert values(result) == {"OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3"}


def test_oversubscription_warns() -> None:
    result = omp(("srun", "-n", "8", "-c", "4"), {})
    assert values(result) == {"OMP_NUM_THREADS": "4"}
    (diag,) = result.diagnostics
    assert diag.severity == WARNING and diag.code == "threads-oversubscribed"
    assert "8 rank(s) per node x 4 thread(s) = 32" in diag.message


def write_cgroup(root: Path, files: Dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_cgroup_v2_quota_decides(tmp_path: Path) -> None:
    root = write_cgroup(tmp_path, {
        "proc/self/cgroup": "0::/kubepods/pod1/ctr\n",
        "sys/fs/cgroup/kubepods/pod1/cpu.max": "600000 100000\n",
    })
    host = HostFacts(cpus=64, cgroup_cpu_quota=cgroup_cpu_quota(root))
    result = omp(("srun", "-n", "2"), {}, host=host)
    assert values(result) == {"OMP_NUM_THREADS": "3"}
    assert "cgroup CPU quota 6 CPUs / 2 rank(s)" in result.env[0].reason


def test_cgroup_v1_quota_decides(tmp_path: Path) -> None:
    root = write_cgroup(tmp_path, {
        "proc/self/cgroup": "5:cpuacct,cpu:/slurm/job_3\n",
        "sys/fs/cgroup/cpuacct,cpu/slurm/job_3/cpu.cfs_quota_us": "300000\n",
        "sys/fs/cgroup/cpuacct,cpu/slurm/job_3/cpu.cfs_period_us": "100000\n",
    })
    host = HostFacts(cpus=64, cgroup_cpu_quota=cgroup_cpu_quota(root))
    assert values(omp((), {}, host=host)) == {"OMP_NUM_THREADS": "3"}


@pytest.mark.e2e
def test_real_srun_gives_each_task_the_decided_cpus(slurm_cluster) -> None:  # type: ignore[no-untyped-def]
    """Under a real ``srun --cpus-per-task=2`` each task gets SLURM_CPUS_PER_TASK=2: the
    value hpcrun decided on the launch node from the same command line (the full run through
    hpcrun and a container is in tests/e2e/test_threads_and_detect.py)."""
    cluster = slurm_cluster
    launcher = ("srun", "--cpus-per-task=2", "-n", "1")
    decided = values(omp(launcher, {}, host=HostFacts(cpus=cluster.cpus)))
    proc = subprocess.run([*launcher, "sh", "-c", "echo $SLURM_CPUS_PER_TASK"],
                          env=cluster.environ(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert decided == {"OMP_NUM_THREADS": proc.stdout.strip()}
