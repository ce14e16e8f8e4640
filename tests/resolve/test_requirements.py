"""The host MPI's requirements on an image, read from this machine's real Debian MPICH and
Open MPI (the site profiles debian-mpich and debian-openmpi describe them)."""

from __future__ import annotations

import os

import pytest

from hpcrun.profiles.lookup import load_site
from hpcrun.resolve.requirements import host_requirements, version_number

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/lib/x86_64-linux-gnu/libmpich.so.12"),
                                reason="Debian's MPICH (libmpich12) is not installed")


def test_debian_mpich_needs_its_glibc_symbol_versions() -> None:
    req = host_requirements(load_site("debian-mpich", {}))
    assert (req.family, req.implementation, req.version) == ("mpich", "MPICH", "4.0.2")
    assert req.c_soname == "libmpich.so.12" and req.c_file.startswith("libmpich.so.12.")
    glibc = req.need("GLIBC")
    assert glibc is not None and glibc.provider == "libc.so.6"
    # the newest GLIBC_ version any host library of the closure needs: compare with the
    # needs read independently by pyelftools from the same files
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    from hpcrun.resolve.closure import host_closure
    from hpcrun.resolve.resolver import host_mpi

    profile = load_site("debian-mpich", {})
    mpi = host_mpi(profile.mpi)
    roots = [lib.path for lib in mpi.libraries] + [lib.path for lib in profile.libraries]
    best = ()
    for lib in host_closure(roots, library_path=mpi.library_dirs).libraries:
        if lib.is_runtime and lib.found_via != "root":
            continue
        with open(lib.real_path, "rb") as handle:
            for section in ELFFile(handle).iter_sections():
                if isinstance(section, GNUVerNeedSection):
                    for need, auxes in section.iter_versions():
                        if need.name == "libc.so.6":
                            for aux in auxes:
                                if aux.name.startswith("GLIBC_2"):
                                    best = max(best, version_number(aux.name))
    assert glibc.number == best and best >= (2, 2)
    paths = [p.path for p in req.mount_points]
    assert "/.hpcrun/lib" in paths and "/.hpcrun/lib/ucx" in paths


def test_debian_openmpi_is_open_mpi_with_its_compiled_in_directories() -> None:
    if not os.path.exists("/usr/lib/x86_64-linux-gnu/libmpi.so.40"):
        pytest.skip("Debian's Open MPI is not installed")
    req = host_requirements(load_site("debian-openmpi", {}))
    assert req.family == "openmpi" and req.c_soname == "libmpi.so.40"
    assert any(p.path == "/tmp" for p in req.mount_points)
    assert req.need("GLIBC") is not None
