"""hpcrun on real Apptainer 1.4 beyond the main scenarios: the images are real ``apptainer
build`` output, ``--runtime singularity`` goes through Apptainer's ``singularity`` alias,
GPU flags reach the real CLI, and an unprivileged user runs a sandbox image.

As everywhere in tests/e2e, each job asserts the communicator size and that the MPI library
mapped into every rank is the host's very file (device, inode, size seen inside the rank).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from helpers import slurm

from .conftest import REPO, ImageSet
from .support import assert_ranks, run
from .test_hpcrun import APPTAINER_STARTER, HOST_MPICH, MPICH4, from_host, hpcrun

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LAUNCHERS = {"srun": ["srun", "-n", "2"], "mpiexec": ["mpiexec.hydra", "-n", "2"]}


def launcher_command_line(output: str) -> str:
    """The command line of the ``mpiexec.hydra`` among rank 0's ancestors (``--parents``)."""
    for line in output.splitlines():
        if line.startswith("rank 0 parent: "):
            _pid, comm, cmdline = line[len("rank 0 parent: "):].split(" ", 2)
            if comm == "mpiexec.hydra":
                return cmdline
    raise AssertionError("no mpiexec.hydra among rank 0's parents:\n" + output)


def test_test_images_are_apptainer_builds(e2e_images: ImageSet) -> None:
    """The SIF files the scenarios run were written by real ``apptainer build``."""
    version = subprocess.run(["apptainer", "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("apptainer version 1.4."), version
    assert not os.path.realpath(shutil.which("apptainer") or "").startswith(str(REPO))
    for image in (e2e_images.mpich.sif, e2e_images.openmpi.sif):
        listing = subprocess.run(["apptainer", "sif", "list", str(image)], capture_output=True,
                                 text=True, check=True).stdout
        assert "Squashfs/*System/amd64" in listing, listing  # the primary system partition
        deffile = subprocess.run(["apptainer", "inspect", "--deffile", str(image)],
                                 capture_output=True, text=True, check=True).stdout
        assert "bootstrap: localimage" in deffile.lower(), deffile


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_runtime_singularity_through_the_alias(e2e_images: ImageSet,
                                               hpcrun_env: Dict[str, str], workdir: Path,
                                               launcher: str) -> None:
    """``--runtime singularity`` runs ``singularity exec``: Apptainer's compatibility alias."""
    alias = subprocess.run(["singularity", "--version"], env=hpcrun_env, capture_output=True,
                           text=True)
    assert alias.stdout.startswith("apptainer version 1.4."), alias
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "--runtime", "singularity",
                    *LAUNCHERS[launcher], str(e2e_images.mpich.sif), "python3",
                    "/opt/hello/hello.py", "--parents")
    assert result.returncode == 0, result.describe()
    reports = assert_ranks(result.stdout, 2, MPICH4, from_host, host_file=HOST_MPICH)
    assert all(r.parents and APPTAINER_STARTER.match(r.parents[0]) for r in reports.values())
    if launcher == "mpiexec":
        assert " singularity exec " in " " + launcher_command_line(result.stdout)


@pytest.mark.parametrize("vendor, flag", [("nvidia", "--nv"), ("rocm", "--rocm")])
def test_gpu_flag_accepted_by_the_real_cli(e2e_images: ImageSet, hpcrun_env: Dict[str, str],
                                           workdir: Path, vendor: str, flag: str) -> None:
    """No GPU here: Apptainer binds what driver files it finds (none) and runs the job; the
    flag hpcrun rendered is on the command line that ran."""
    dry = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "--gpu", vendor, "--dry-run",
                 *LAUNCHERS["mpiexec"], str(e2e_images.mpich.sif), "/usr/local/bin/hello")
    assert dry.returncode == 0, dry.describe()
    assert f"apptainer exec {flag} " in dry.stdout, dry.describe()
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "--gpu", vendor,
                    *LAUNCHERS["mpiexec"], str(e2e_images.mpich.sif), "python3",
                    "/opt/hello/hello.py", "--parents")
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, MPICH4, from_host, host_file=HOST_MPICH)
    assert launcher_command_line(result.stdout).startswith(
        f"mpiexec.hydra -n 2 apptainer exec {flag} {e2e_images.mpich.sif} "), result.describe()


# --- an unprivileged user -------------------------------------------------------------------


@dataclass
class User:
    """An unprivileged account and a world-readable area it runs from."""

    uid: int
    gid: int
    name: str
    area: Path  # holds sandbox/, job/ (cwd, hello.py), home/ (its HOME, XDG_CACHE_HOME)

    def argv(self, *command: str) -> List[str]:
        """``command`` run as this user (setpriv: no privilege, no supplementary groups)."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "--", *command]


def _python_for(user: User) -> List[str]:
    """An interpreter the user can run, importing hpcrun (and its dependencies) from here.

    The test runner's own interpreter may live where the user cannot read (a pyenv under
    /root); then the system python3 runs hpcrun from this checkout's adapter/ with the
    runner's site-packages (pure Python and abi3/cp311 wheels of the same minor version)."""
    probe = subprocess.run(user.argv(sys.executable, "-c", "import hpcrun"), capture_output=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "hpcrun"]
    return ["/usr/bin/python3", "-m", "hpcrun"]


@pytest.fixture(scope="module")
def user(e2e_images: ImageSet, slurm_cluster: slurm.Cluster) -> Iterator[User]:
    """``nobody`` (present on every Debian system) with a copy of the MPICH sandbox image
    and of the test cluster's slurm.conf in a world-readable directory (pytest's own
    temporary directories are private)."""
    entry = pwd.getpwnam("nobody")
    area = Path(tempfile.mkdtemp(prefix="hpcrun-e2e-user-", dir="/tmp"))
    try:
        area.chmod(0o755)
        shutil.copytree(e2e_images.mpich.sandbox, area / "sandbox", symlinks=True)
        (area / "job").mkdir()
        shutil.copy(REPO / "examples" / "hello-mpi4py.py", area / "job" / "hello.py")
        (area / "home").mkdir()
        shutil.copy(slurm_cluster.conf, area / "slurm.conf")
        # The user's srun reaches its step through sockets in the cluster's spool directory
        # (PMI-2 key exchange): let others traverse (not list) the directories above it.
        for directory in [slurm_cluster.workdir, *slurm_cluster.workdir.parents]:
            if directory == Path(tempfile.gettempdir()) or directory == Path("/"):
                break
            directory.chmod(directory.stat().st_mode | 0o001)
        subprocess.run(["chmod", "-R", "a+rX", str(area)], check=True)
        for sub in ("home", "job"):
            os.chown(area / sub, entry.pw_uid, entry.pw_gid)
        yield User(entry.pw_uid, entry.pw_gid, entry.pw_name, area)
    finally:
        shutil.rmtree(area, ignore_errors=True)


def user_env(hpcrun_env: Dict[str, str], user: User) -> Dict[str, str]:
    """The job environment of the user: its own HOME and caches, hpcrun importable."""
    site_packages = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
    return dict(hpcrun_env, HOME=str(user.area / "home"), USER=user.name, LOGNAME=user.name,
                XDG_CACHE_HOME=str(user.area / "home" / ".cache"),
                SLURM_CONF=str(user.area / "slurm.conf"),
                PYTHONPATH=os.pathsep.join([str(REPO / "adapter"), *site_packages]))


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_unprivileged_user_sandbox_image(user: User, hpcrun_env: Dict[str, str],
                                         launcher: str) -> None:
    """A user without privilege: Apptainer runs the sandbox in a user namespace; the ranks
    run as that user and load the host's MPICH (UCX shared memory needs
    UCX_POSIX_USE_PROC_LINK=n there, which the debian-mpich profile sets)."""
    env = user_env(hpcrun_env, user)
    argv = user.argv(*_python_for(user), "--site", "debian-mpich", *LAUNCHERS[launcher],
                     str(user.area / "sandbox"), "python3", "-c",
                     "import os, runpy, sys; print('uid', os.getuid()); sys.argv = ['hello.py'];"
                     " runpy.run_path('hello.py', run_name='__main__')")
    result = run(argv, env, user.area / "job", timeout=180)
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, MPICH4, from_host, host_file=HOST_MPICH)
    assert result.stdout.count(f"uid {user.uid}\n") == 2, result.describe()


def test_unprivileged_user_cleanenv(user: User, hpcrun_env: Dict[str, str]) -> None:
    env = dict(user_env(hpcrun_env, user), HPCRUN_E2E_SECRET="must-not-pass")
    argv = user.argv(*_python_for(user), "--site", "debian-mpich", "--cleanenv",
                     *LAUNCHERS["srun"], str(user.area / "sandbox"), "python3", "hello.py")
    result = run(argv, env, user.area / "job", timeout=180)
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, MPICH4, from_host, host_file=HOST_MPICH)
