"""Small image roots of real files for the image-facts tests (built in about a second).

``build_mini_root`` assembles: dash as /bin/sh with libc and the loader, Debian's MPICH
(``libmpich.so.12`` with its symlink chain and dependencies) and Open MPI (``libmpi.so.40``)
libraries, the C++/Fortran runtimes, Intel MPI 2021 from the ``impi_rt`` wheel in
``/opt/intel/mpi/lib`` (found through the image's LD_LIBRARY_PATH only), apps compiled
here with ``mpicc.mpich`` and ``mpicc.openmpi`` (and one with libmpich.a linked in), a
shell script, the python3.11 interpreter binary with the mpi4py 4.1.2 wheel's package, an
env script, and ``/etc/ld.so.cache`` made by the real ``ldconfig -r`` (``with_cache``).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Optional

from helpers.images import (
    EXAMPLES,
    HOST_LIBDIR,
    copy_with_links,
    find_mpi4py_wheel,
    needed_libraries,
    unpack_wheel,
)

INTEL_DIR = "/opt/intel/mpi/lib"


class MissingTool(RuntimeError):
    """A compiler or tool the tree needs is not installed."""


def compile_apps(dest: Path) -> Dict[str, Path]:
    """examples/hello.c built with mpicc.mpich, mpicc.openmpi, and with libmpich.a inside."""
    dest.mkdir(parents=True, exist_ok=True)
    out: Dict[str, Path] = {}
    source = str(EXAMPLES / "hello.c")
    for name, argv in (
        ("hello_mpich", ["mpicc.mpich", "-o", str(dest / "hello_mpich"), source]),
        ("hello_openmpi", ["mpicc.openmpi", "-o", str(dest / "hello_openmpi"), source]),
        (
            "hello_static_mpich",
            [
                "mpicc.mpich",
                "-o",
                str(dest / "hello_static_mpich"),
                source,
                "-Wl,-Bstatic",
                "-lmpich",
                "-Wl,-Bdynamic",
                "-lhwloc",
                "-lucp",
                "-lucs",
                "-lpthread",
            ],
        ),
    ):
        if shutil.which(argv[0]) is None:
            raise MissingTool(f"{argv[0]} is not installed")
        if name == "hello_static_mpich" and not os.path.exists(f"{HOST_LIBDIR}/libmpich.a"):
            continue
        subprocess.run(argv, check=True, capture_output=True)
        out[name] = dest / name
    return out


def build_mini_root(root: Path, impi_rt: Optional[Path], with_cache: bool = True) -> Dict[str, str]:
    """Assemble the small root described in the module docstring; returns app image paths."""
    for sub in (
        "usr/bin",
        "usr/lib/x86_64-linux-gnu",
        "usr/lib64",
        "usr/local/bin",
        "etc",
        "etc/ld.so.conf.d",
        ".singularity.d/env",
        "opt/scripts",
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        os.symlink(target, root / link)
    (root / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    (root / "etc/ld.so.conf.d/x86_64-linux-gnu.conf").write_text(
        "# Multiarch support\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n"
        "/usr/lib/x86_64-linux-gnu\n"
    )
    copy_with_links(root, "/usr/bin/dash")
    os.symlink("dash", root / "usr/bin/sh")
    elves = ["/usr/bin/dash", "/usr/bin/python3.11"]
    for lib in (
        "libmpich.so.12",
        "libmpichfort.so.12",
        "libmpi.so.40",
        "libmpi_mpifh.so.40",
        "libstdc++.so.6",
        "libgfortran.so.5",
        "libquadmath.so.0",
        "libm.so.6",
    ):
        copy_with_links(root, f"{HOST_LIBDIR}/{lib}")
        elves.append(os.path.realpath(f"{HOST_LIBDIR}/{lib}"))
    apps = compile_apps(root / "usr/local/bin")
    elves += [str(p) for p in apps.values()]
    copy_with_links(root, "/usr/bin/python3.11")
    os.symlink("python3.11", root / "usr/bin/python3")
    wheel = find_mpi4py_wheel()
    if wheel is not None:
        unpacked = unpack_wheel(wheel, root.parent / (root.name + "-mpi4py"))
        site = root / "usr/local/lib/python3.11/dist-packages"
        shutil.copytree(unpacked / "mpi4py", site / "mpi4py")
    for lib in sorted(needed_libraries(elves)):
        copy_with_links(root, lib)
    if impi_rt is not None:
        intel = root / INTEL_DIR.lstrip("/")
        intel.mkdir(parents=True)
        for src in sorted(impi_rt.glob("*/data/lib/libmpi.so.12*")):
            shutil.copy2(src, intel / src.name)
    script = root / "opt/scripts/run.sh"
    script.write_text('#!/bin/sh\nexec /usr/local/bin/hello_mpich "$@"\n')
    script.chmod(0o755)
    pyscript = root / "opt/scripts/hello.py"
    pyscript.write_text("#!/usr/bin/env python3\nfrom mpi4py import MPI\n")
    pyscript.chmod(0o755)
    (root / ".singularity.d/env/90-environment.sh").write_text(
        f'#!/bin/sh\nexport LD_LIBRARY_PATH="{INTEL_DIR}"\n'
        "export PATH=/usr/local/bin:/usr/bin:/bin:/opt/scripts\n"
    )
    if with_cache:
        subprocess.run(["ldconfig", "-X", "-r", str(root)], check=True, capture_output=True)
    return {name: f"/usr/local/bin/{name}" for name in apps}


@functools.cache
def mini_roots(base: str, impi_rt: Optional[str]) -> Dict[str, Path]:
    """Build (once per process) the mini root with and without an ld.so.cache under ``base``."""
    out = {}
    for name, cache in (("cached", True), ("nocache", False)):
        root = Path(base) / f"mini-{name}"
        if root.exists():
            shutil.rmtree(root)
        build_mini_root(root, Path(impi_rt) if impi_rt else None, with_cache=cache)
        out[name] = root
    return out
