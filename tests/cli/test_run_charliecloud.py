"""The ch-run launch path through the installed ``hpcrun``: the stage directory is created
before the exec (and for ``--dry-run``), in ``$HPCRUN_STAGE_DIR``; failures are clear."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Sequence

import pytest

from helpers.recording_runtime import install_recorders, read_records, recording_env

HPCRUN = shutil.which("hpcrun") or ""
MPICH = "/usr/lib/x86_64-linux-gnu/libmpich.so.12"


def hpcrun(args: Sequence[str], env: Dict[str, str]) -> subprocess.CompletedProcess:
    if not HPCRUN:
        pytest.skip("the hpcrun entry point is not installed")
    return subprocess.run([HPCRUN, *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    """A directory image with Charliecloud's empty /mnt/0 .. /mnt/9."""
    root = tmp_path / "img"
    for n in range(10):
        (root / "mnt" / str(n)).mkdir(parents=True)
    return root


def _args(image: Path, *extra: str) -> List[str]:
    if not os.path.exists(MPICH):
        pytest.skip("Debian's MPICH (libmpich12) is not installed")
    return ["--site", "debian-mpich", "--runtime", "charliecloud", "--no-check", *extra,
            "mpiexec.hydra", "-n", "2", str(image), "/usr/local/bin/hello"]


def test_dry_run_creates_the_stage_and_says_so(image: Path, tmp_path: Path) -> None:
    env = dict(os.environ, HPCRUN_STAGE_DIR=str(tmp_path / "stages"), USER="u")
    done = hpcrun(_args(image, "--dry-run"), env)
    assert done.returncode == 0, done.stderr
    first, *rest = done.stdout.splitlines()
    stages = list((tmp_path / "stages").iterdir())
    assert len(stages) == 1 and first.startswith(f"# hpcrun created {stages[0]} ")
    assert f"-b {stages[0]}:/mnt/0 -b /usr/lib/x86_64-linux-gnu:/mnt/1" in rest[-1]
    assert "--set-env=LD_LIBRARY_PATH=/mnt/0/lib" in rest[-1]
    link = stages[0] / "lib" / "libmpich.so.12"
    assert os.readlink(link) == "/mnt/1/" + os.path.basename(os.path.realpath(MPICH))
    again = hpcrun(_args(image, "--dry-run"), env)
    assert again.stdout == done.stdout
    assert list((tmp_path / "stages").iterdir()) == stages


def test_launch_creates_the_stage_before_the_exec(image: Path, tmp_path: Path) -> None:
    bindir = install_recorders(tmp_path / "bin", ["mpiexec.hydra", "ch-run"])
    record = tmp_path / "rec.jsonl"
    env = recording_env(bindir, record, HPCRUN_STAGE_DIR=str(tmp_path / "stages"), USER="u")
    done = hpcrun(_args(image), env)
    assert done.returncode == 0, done.stderr
    (launch,) = [r for r in read_records(record) if r["program"] == "mpiexec.hydra"]
    argv = launch["argv"]
    mount = argv[argv.index("ch-run") + 2]
    stage = mount.rsplit(":", 1)[0]
    assert mount.endswith(":/mnt/0") and Path(stage).parent == tmp_path / "stages"
    assert (Path(stage) / "lib" / "libmpich.so.12").is_symlink()


def test_unusable_stage_directory_is_a_clear_error(image: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = dict(os.environ, HPCRUN_STAGE_DIR=str(blocker / "stages"), USER="u")
    done = hpcrun(_args(image, "--dry-run"), env)
    assert done.returncode == 73
    assert str(blocker) in done.stderr and "HPCRUN_STAGE_DIR" in done.stderr
    assert "Traceback" not in done.stderr


def test_image_without_mount_points_is_refused(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    (bare / "mnt").mkdir(parents=True)
    env = dict(os.environ, HPCRUN_STAGE_DIR=str(tmp_path / "stages"), USER="u")
    done = hpcrun(_args(bare), env)
    assert done.returncode == 78, done.stderr
    assert "no empty /mnt/0" in done.stderr and "ch-image" in done.stderr
    assert not (tmp_path / "stages").exists()
