"""``hpcrun recipe`` from the command line: output file, --from Dockerfile, one-line errors
with their documented exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from hpcrun.cli.main import EXIT_IMAGE, EXIT_INCOMPATIBLE, EXIT_USAGE

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/lib/x86_64-linux-gnu/libmpich.so.12"),
                                reason="Debian's MPICH (libmpich12) is not installed")


def hpcrun(args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "HPCRUN_SITE"}
    return subprocess.run([sys.executable, "-m", "hpcrun", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=120)


def test_recipe_to_file_and_stdout(tmp_path: Path) -> None:
    out = hpcrun(["recipe", "--site", "debian-mpich", "-o", "app.def"], tmp_path)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "app.def").read_text()
    assert "From: debian:bookworm" in text and "libmpich-dev" in text
    assert hpcrun(["recipe", "--site", "debian-mpich"], tmp_path).stdout == text
    out = hpcrun(["recipe", "--site", "debian-mpich", "-o", "app.def"], tmp_path)
    assert out.returncode == EXIT_USAGE and "exists" in out.stderr
    # the host's Open MPI 4.1.4 needs GLIBC_2.36: Ubuntu 22.04 (2.35) is refused, 24.04 is
    # taken (its Open MPI 4.1.6 has the host's major.minor: policy full accepts it)
    out = hpcrun(["recipe", "--site", "debian-openmpi", "--base", "ubuntu:22.04"], tmp_path)
    assert out.returncode == EXIT_INCOMPATIBLE
    assert "glibc 2.35 is older than GLIBC_2.36" in out.stderr
    out = hpcrun(["recipe", "--site", "debian-openmpi", "--base", "ubuntu:24.04"], tmp_path)
    assert out.returncode == 0 and "openmpi-bin libopenmpi-dev" in out.stdout
    assert "policy \"full\" accepts it: host Open MPI 4.1.4 against container Open MPI" \
        in out.stdout.replace("\n    # ", " ")


def test_recipe_from_a_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm\nRUN echo built\n")
    out = hpcrun(["recipe", "--site", "debian-mpich", "--from", "Dockerfile"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "your own steps, from Dockerfile" in out.stdout and "echo built" in out.stdout


@pytest.mark.parametrize("files,args,code,message", [
    ({"Dockerfile": "RUN echo\n"}, ["--from", "Dockerfile"], EXIT_USAGE,
     "Dockerfile:1: the first instruction is RUN, not FROM"),
    ({}, ["--from", "Nope"], EXIT_USAGE, "--from Nope: no such file"),
    ({}, ["--base", "alpine:3.20"], EXIT_IMAGE, "base image 'alpine:3.20': hpcrun cannot judge it"),
    ({"Dockerfile": "FROM fedora:40\n"}, ["--from", "Dockerfile"], EXIT_IMAGE,
     "base image 'fedora:40': hpcrun cannot judge it"),
    ({}, ["--base", "debian:bullseye"], EXIT_INCOMPATIBLE,
     "base image debian:bullseye: its glibc 2.31"),
    ({}, ["--abi", "mpi5"], EXIT_INCOMPATIBLE, "ships no libmpi_abi.so.1"),
    ({}, ["--bootstrap", "zypper"], EXIT_USAGE, "--bootstrap 'zypper'"),
])
def test_bad_input_is_one_line_and_a_documented_exit_code(
        tmp_path: Path, files: dict, args: List[str], code: int, message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    out = hpcrun(["recipe", "--site", "debian-mpich", *args], tmp_path)
    assert out.returncode == code, out.stderr
    lines = out.stderr.splitlines()
    assert lines[0].startswith("hpcrun: error: ") and message in lines[0], lines
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("hpcrun: hint: "))
    assert "Traceback" not in out.stderr and out.stdout == ""
