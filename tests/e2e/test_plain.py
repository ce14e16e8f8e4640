"""The infrastructure proven without hpcrun: real launchers start real containers (real
Apptainer, Charliecloud) whose OWN MPI wires the ranks up.  If these fail, the hpcrun
scenarios cannot pass either.  Each rank's MPI library must NOT be the host's file."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

from .conftest import ImageSet
from .support import assert_ranks, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


HOST_MPICH = "/usr/lib/x86_64-linux-gnu/libmpich.so.12"
HOST_OPENMPI = "/usr/lib/x86_64-linux-gnu/libmpi.so.40"


def in_image(path: str) -> bool:
    """The library mapped is the image's own (Debian's path inside the container)."""
    return path.startswith("/usr/lib/x86_64-linux-gnu/libmpi")


@pytest.mark.parametrize("form", ["sandbox", "squashfs", "sif"])
def test_srun_pmi2_apptainer_container_mpich(e2e_images: ImageSet, base_env: Dict[str, str],
                                           workdir: Path, form: str) -> None:
    image = str(getattr(e2e_images.mpich, form))
    result = run(["srun", "--mpi=pmi2", "-n", "2", "apptainer", "exec", image,
                  "python3", "hello.py"], base_env, workdir)
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, "MPICH Version: 4.0.2", in_image, host_file=HOST_MPICH,
                 is_host_file=False)


def test_mpiexec_hydra_charliecloud_container_mpich(e2e_images: ImageSet,
                                                   base_env: Dict[str, str],
                                                   workdir: Path) -> None:
    env = dict(base_env, UCX_POSIX_USE_PROC_LINK="n")
    result = run(["mpiexec.hydra", "-n", "2", "ch-run", str(e2e_images.mpich.sandbox), "--",
                  "/usr/local/bin/hello"], env, workdir)
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, "MPICH Version: 4.0.2", in_image, host_file=HOST_MPICH,
                 is_host_file=False)


def test_srun_pmix_apptainer_container_openmpi(e2e_images: ImageSet, base_env: Dict[str, str],
                                            workdir: Path) -> None:
    result = run(["srun", "--mpi=pmix", "-n", "2", "apptainer", "exec",
                  str(e2e_images.openmpi.sif), "python3", "hello.py"], base_env, workdir)
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, "Open MPI v4.1.4", in_image, host_file=HOST_OPENMPI,
                 is_host_file=False)


def test_mpirun_openmpi_apptainer_container_openmpi(e2e_images: ImageSet,
                                                  base_env: Dict[str, str],
                                                  workdir: Path) -> None:
    result = run(["mpirun.openmpi", "--allow-run-as-root", "--oversubscribe", "-n", "2",
                  "apptainer", "exec", str(e2e_images.openmpi.squashfs),
                  "/usr/local/bin/hello"], base_env, workdir)
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, "Open MPI v4.1.4", in_image, host_file=HOST_OPENMPI,
                 is_host_file=False)
