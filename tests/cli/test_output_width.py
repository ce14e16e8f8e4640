"""Output for people at 80 columns and in a pipe (the way users and logs see it): the
installed ``hpcrun`` in a subprocess with ``COLUMNS=80`` and stdout a pipe, on a real
sandbox image whose app is built against this host's Debian MPICH."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from helpers.mpi_trees import HOST_LIBDIR, compile_c, copy_host_file

HPCRUN = shutil.which("hpcrun") or ""
HELLO = r"""
#include <mpi.h>
int main(int argc, char **argv) { MPI_Init(&argc, &argv); MPI_Finalize(); return 0; }
"""
UCX_REASON = "UCX transport modules (cma, ib, rdmacm) that libucs opens at run time"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("mpicc.mpich") is None or shutil.which("ldconfig") is None:
        pytest.skip("mpicc.mpich / ldconfig are not installed")
    work = tmp_path_factory.mktemp("width")
    app = compile_c(work, "hello", HELLO, ["mpicc.mpich"])
    root = work / "image"
    for name in ("libc.so.6", "libm.so.6", "libmpich.so.12"):
        copy_host_file(root, f"{HOST_LIBDIR}/{name}")
    copy_host_file(root, "/lib64/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2")
    (root / "usr/local/bin").mkdir(parents=True)
    shutil.copy(app, root / "usr/local/bin/hello")
    (root / "etc").mkdir()
    (root / "etc/ld.so.conf").write_text(f"{HOST_LIBDIR}\n")
    subprocess.run(["ldconfig", "-X", "-r", str(root)], check=True, capture_output=True)
    return root


def run80(args: List[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """``hpcrun ARGS`` with stdout a pipe and COLUMNS=80."""
    if not HPCRUN:
        pytest.skip("the hpcrun entry point is not installed")
    env: Dict[str, str] = dict(os.environ, COLUMNS="80", HPCRUN_CACHE_DIR=str(tmp_path / "c"),
                               XDG_CACHE_HOME=str(tmp_path / "x"))
    env.pop("HPCRUN_SITE", None)
    return subprocess.run([HPCRUN, *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def narrow(lines: List[str]) -> List[str]:
    """The lines wider than 80 columns that could have been wrapped (more than one word)."""
    return [line for line in lines if len(line) > 80 and len(line.split()) > 1]


def test_explain_groups_repeated_reasons_and_keeps_the_command_pasteable(
        image: Path, tmp_path: Path) -> None:
    args = ["--site", "debian-mpich", "mpiexec.hydra", "-n", "2", str(image),
            "/usr/local/bin/hello"]
    explain = run80(["--explain", *args], tmp_path)
    assert explain.returncode == 0, explain.stderr
    text, _, command = explain.stdout.partition(
        "Command (the --dry-run snippet; paste it as is, its lines are never wrapped):\n")
    assert command, explain.stdout
    assert narrow(text.splitlines()) == []
    # The profile's 10-line UCX reason is given once, and each of the 9 alias binds (3 host
    # modules under 3 names each) refers to it.
    flat = " ".join(text.split())
    assert flat.count(UCX_REASON) == 1, text
    assert flat.count("(note 1)") == 3
    assert "at /.hpcrun/lib/ucx/libuct_cma.so, /.hpcrun/lib/ucx/libuct_cma.so.0," in text
    # The command block is the dry run's snippet, byte for byte: no line is wrapped.
    dry = run80(["--dry-run", *args], tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert command == dry.stdout
    assert any(len(line) > 80 for line in command.splitlines())  # long, and still one line


def test_explain_is_plain_text_in_a_pipe(image: Path, tmp_path: Path) -> None:
    done = run80(["--explain", "--site", "debian-mpich", str(image), "/usr/local/bin/hello"],
                 tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout and "┃" not in done.stdout and "│" not in done.stdout


def test_check_folds_duplicate_findings_with_a_count(image: Path, tmp_path: Path) -> None:
    """zeus's profile names 25 /usr/lib64 files this machine lacks: one finding, counted."""
    done = run80(["check", "--site", "zeus", str(image), "--app", "/usr/local/bin/hello"],
                 tmp_path)
    lines = done.stdout.splitlines()
    assert narrow(lines) == [], lines
    assert " ".join(done.stdout.split()[:6]) == (f"site zeus, image {image} "
                                                 "/usr/local/bin/hello: incompatible")
    missing = [line for line in lines if "host-library-missing" in line]
    assert missing == ["  error host-library-missing (x25): host library … does not exist"]
    assert "/usr/lib64/libdaplofa.so.2," in done.stdout
    assert done.stdout.count("what to do: fix the path in the site profile") == 1
    assert len([line for line in lines if line.startswith("  error ")]) < 6
