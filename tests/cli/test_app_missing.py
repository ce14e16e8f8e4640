"""The issue's case, for real: `/usr/local/bin/nope` is not in the image and nothing binds
it.  hpcrun used to warn "the container's MPI stands for it" and launch a job that then
failed in every rank; now the launch is refused before any process starts, and the dry run
exits as the launch would."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers.mpi_trees import HOST_LIBDIR, copy_host_file

HPCRUN = shutil.which("hpcrun") or ""


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    root = tmp_path / "image"
    for name in ("libc.so.6", "libmpich.so.12"):
        copy_host_file(root, f"{HOST_LIBDIR}/{name}")
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "etc").mkdir()
    return root


def _run(args: list, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess:
    if not HPCRUN or shutil.which("mpiexec.hydra") is None:
        pytest.skip("hpcrun or MPICH's mpiexec.hydra is not installed")
    if not os.path.exists(f"{HOST_LIBDIR}/libmpich.so.12"):
        pytest.skip("Debian MPICH is not installed")
    env = dict(os.environ, HPCRUN_CACHE_DIR=str(tmp_path / "c"), HOME=str(tmp_path / "home"),
               PWD=str(tmp_path), **extra)
    env.pop("HPCRUN_SITE", None)
    return subprocess.run([HPCRUN, "--site", "debian-mpich", "--runtime", "apptainer", *args],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)


def test_missing_program_refuses_the_launch(image: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    launch = _run(["mpiexec.hydra", "-n", "2", str(image), "/usr/local/bin/nope",
                   str(marker)], tmp_path)
    assert launch.returncode != 0
    assert launch.stderr.splitlines()[0] == (
        f"hpcrun: error: /usr/local/bin/nope is not in the image {image}, and no bind or "
        "runtime mount can provide it: the job would fail to start")
    assert "stands for it" not in launch.stderr
    dry = _run(["--dry-run", "mpiexec.hydra", "-n", "2", str(image), "/usr/local/bin/nope"],
               tmp_path)
    assert dry.returncode == launch.returncode
    assert "# error: /usr/local/bin/nope is not in the image" in dry.stdout


@pytest.mark.parametrize("program, extra", [
    ("/opt/tool/bin/app", {"APPTAINER_BINDPATH": "/usr/bin:/opt/tool/bin"}),
    ("/home/someone/app", {}),  # home directories are mounted by the runtime
])
def test_what_a_bind_may_provide_is_only_a_warning(image: Path, tmp_path: Path, program: str,
                                                   extra: dict) -> None:
    refused = _run(["--dry-run", str(image), program], tmp_path, APPTAINER_BINDPATH="")
    assert (refused.returncode != 0) == bool(extra), refused.stdout
    done = _run(["--dry-run", str(image), program], tmp_path, **extra)
    assert done.returncode == 0, done.stderr
    assert f"# warning: {program} was not found in the image" in done.stdout
