"""Fixtures of the end-to-end tests: a real Slurm, real images, real MPI, real runtimes.

Everything here is built once per session: the loopback-only Slurm cluster
(``helpers.slurm``), the MPICH and Open MPI test images (``helpers.images``), the unpacked
MPI wheels that play "another host MPI", and the site profiles naming them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import pytest

from helpers import images, slurm

from .support import run

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SITES_DIR = REPO / "tests" / "data" / "sites"
HELLO_PY = REPO / "examples" / "hello-mpi4py.py"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("end-to-end runs need root (mount namespaces, Slurm daemons)")


@dataclass
class ImageSet:
    """The MPICH and Open MPI test images."""

    mpich: images.BuiltImage
    openmpi: images.BuiltImage


@pytest.fixture(scope="session")
def e2e_images(tmp_path_factory: pytest.TempPathFactory,
               mpi_wheel: Callable[[str], Path]) -> ImageSet:
    """Both test images (sandbox, squashfs, SIF), built once per session."""
    _require_root()
    for tool in ("apptainer", "mksquashfs", "mpicc.mpich", "mpicc.openmpi", "ldconfig"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            pytest.skip(f"{tool} is not installed (scripts/install-test-deps installs it)")
    if not os.path.exists("/usr/bin/python3.11"):
        pytest.skip("the test images copy Debian's /usr/bin/python3.11 (package python3)")
    mpi4py = mpi_wheel("mpi4py")
    workdir = tmp_path_factory.mktemp("images")
    return ImageSet(mpich=images.build_image(workdir, "mpich", mpi4py),
                      openmpi=images.build_image(workdir, "openmpi", mpi4py))


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where jobs run from: holds ``hello.py`` (examples/hello-mpi4py.py)."""
    path = tmp_path_factory.mktemp("job")
    shutil.copy(HELLO_PY, path / "hello.py")
    return path


@pytest.fixture(scope="session")
def base_env(slurm_cluster: slurm.Cluster) -> Dict[str, str]:
    """The environment of a job: SLURM_CONF of the test cluster; ``apptainer`` and
    ``singularity`` are the real ones on PATH (scripts/install-apptainer).

    Variables of the caller that would change how MPI or the runtimes behave are removed.
    """
    env = {k: v for k, v in slurm_cluster.environ().items()
           if not k.startswith(("APPTAINER", "SINGULARITY", "SLURM_", "PMI_", "PMIX_",
                                "OMPI_", "I_MPI_", "MPIR_", "HPCRUN_", "UCX_"))}
    env["SLURM_CONF"] = str(slurm_cluster.conf)
    env["PATH"] = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["USER"] = env.get("USER") or "root"
    env.pop("LD_LIBRARY_PATH", None)
    return env


def wheel_libdir(unpacked: Path) -> Path:
    """``<name>-<version>.data/data/lib`` of an unpacked MPI wheel."""
    found = sorted(unpacked.glob("*.data/data/lib"))
    if not found:
        pytest.skip(f"no .data/data/lib in {unpacked}")
    return found[0]


def wheel_bindir(unpacked: Path) -> Path:
    """``<name>-<version>.data/data/bin`` of an unpacked MPI wheel, made executable."""
    found = sorted(unpacked.glob("*.data/data/bin"))
    if not found:
        pytest.skip(f"no .data/data/bin in {unpacked}")
    for program in found[0].iterdir():
        program.chmod(0o755)
    return found[0]


@pytest.fixture(scope="session")
def site_dir(tmp_path_factory: pytest.TempPathFactory,
             mpi_wheel: Callable[[str], Path]) -> Callable[[str], Path]:
    """Site profiles for hosts whose MPI is an unpacked wheel (paths known only now).

    ``site_dir("wheel-mpich")`` renders ``tests/data/sites/wheel-mpich.toml.in`` with the
    wheel's library directory and returns the profile's path.
    """
    out = tmp_path_factory.mktemp("sites")
    wheels = {"wheel-mpich": "mpich", "wheel-impi": "impi_rt"}

    def render(name: str) -> Path:
        target = out / f"{name}.toml"
        if not target.exists():
            libdir = wheel_libdir(mpi_wheel(wheels[name]))
            text = (SITES_DIR / f"{name}.toml.in").read_text().replace("@LIBDIR@", str(libdir))
            target.write_text(text)
        return target

    return render


def hpcrun_launch_ready(env: Dict[str, str], cwd: Path) -> Optional[str]:
    """None when ``hpcrun --dry-run srun ...`` works, else why not (for a skip)."""
    hpcrun = shutil.which("hpcrun", path=env.get("PATH"))
    if hpcrun is None:
        return "hpcrun is not installed (pip install -e .)"
    probe = run([hpcrun, "--site", "debian-mpich", "--dry-run", "srun", "-n", "2",
                 "IMAGE", "python3", "hello.py"], env, cwd, timeout=60)
    if "not implemented" in probe.stderr:
        return "hpcrun's launch path is not implemented yet: " + probe.stderr.strip()
    return None


@pytest.fixture(scope="session")
def hpcrun_env(base_env: Dict[str, str], workdir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """``base_env`` for hpcrun runs; skips while hpcrun's launch path is missing.

    ``XDG_CACHE_HOME`` is a fresh session directory: hpcrun's caches (image facts, the
    Charliecloud stage) start empty and stay out of the caller's home."""
    reason = hpcrun_launch_ready(base_env, workdir)
    if reason:
        pytest.skip(reason)
    return dict(base_env, XDG_CACHE_HOME=str(tmp_path_factory.mktemp("cache")))
