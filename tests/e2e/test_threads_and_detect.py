"""End to end: thread counts from a real ``srun --cpus-per-task``, and a profile made by
``hpcrun site detect`` on this host running the hello job (issues #6 and #7).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

from .conftest import ImageSet
from .support import assert_ranks, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PRINT_THREADS = ("import os; print('OMP', os.environ.get('OMP_NUM_THREADS'), "
                 "'SLURM', os.environ.get('SLURM_CPUS_PER_TASK'))")


@pytest.mark.parametrize("option", [["--cpus-per-task=2"], ["-c", "2"], ["-c2"]])
def test_srun_cpus_per_task_sets_omp_num_threads(e2e_images: ImageSet,
                                                 hpcrun_env: Dict[str, str], workdir: Path,
                                                 option: list) -> None:
    """hpcrun decides OMP_NUM_THREADS on the launch node from srun's own option; the task
    Slurm starts gets the same number of CPUs (SLURM_CPUS_PER_TASK)."""
    result = run(["hpcrun", "--site", "debian-mpich", "srun", *option, "-n", "1",
                  str(e2e_images.mpich.sandbox), "python3", "-c", PRINT_THREADS],
                 hpcrun_env, workdir, timeout=180)
    assert result.returncode == 0, result.describe()
    assert result.stdout.split() == ["OMP", "2", "SLURM", "2"]


def test_user_value_of_omp_num_threads_wins(e2e_images: ImageSet,
                                            hpcrun_env: Dict[str, str], workdir: Path) -> None:
    env = {**hpcrun_env, "OMP_NUM_THREADS": "7"}
    result = run(["hpcrun", "--site", "debian-mpich", "srun", "-c", "2", "-n", "1",
                  str(e2e_images.mpich.sandbox), "python3", "-c", PRINT_THREADS],
                 env, workdir, timeout=180)
    assert result.returncode == 0, result.describe()
    assert result.stdout.split()[:2] == ["OMP", "7"]


@pytest.mark.parametrize("mpi, image, launcher, version", [
    ("/usr/lib/x86_64-linux-gnu/libmpich.so.12", "mpich", ["srun", "-n", "2"],
     "MPICH Version: 4.0.2"),
    ("/usr/lib/x86_64-linux-gnu/libmpi.so.40", "openmpi",
     ["mpirun.openmpi", "--allow-run-as-root", "--oversubscribe", "-n", "2"], "Open MPI v4.1.4"),
], ids=["mpich", "openmpi"])
def test_detected_profile_runs_the_hello(e2e_images: ImageSet, hpcrun_env: Dict[str, str],
                                         workdir: Path, tmp_path: Path, mpi: str, image: str,
                                         launcher: list, version: str) -> None:
    """`hpcrun site detect` writes a profile for this host that launches for real."""
    if not Path(mpi).exists():
        pytest.skip(f"{mpi} is not installed")
    profile = tmp_path / "detected.toml"
    made = run(["hpcrun", "site", "detect", "--name", "here", "--mpi", mpi, "-o", str(profile)],
               hpcrun_env, workdir, timeout=120)
    assert made.returncode == 0, made.describe()
    checked = run(["hpcrun", "site", "validate", "--plain", str(profile)], hpcrun_env, workdir)
    assert checked.returncode == 0, checked.describe()
    sif = str(getattr(e2e_images, image).sif)
    result = run(["hpcrun", "--site", str(profile), *launcher, sif, "python3", "hello.py"],
                 hpcrun_env, workdir, timeout=240)
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, version, lambda path: path.startswith("/.hpcrun/"),
                 host_file=mpi)
