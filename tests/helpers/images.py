"""Small real container images for the end-to-end tests, assembled from host files.

An image root holds the host's real ``/usr/bin/python3.11`` with its standard library (test
suites, caches and the build config left out), the mpi4py wheel unpacked into
``/usr/local/lib/python3.11/dist-packages``, the CONTAINER's MPI (Debian's MPICH 4.0.2
``libmpich.so.12`` with a ``libmpi.so.12`` link, or Debian's Open MPI 4.1.4 ``libmpi.so.40``),
``/usr/local/bin/hello`` compiled from ``examples/hello.c`` with that MPI's ``mpicc``,
``/opt/hello/hello.py`` (``examples/hello-mpi4py.py``), ``/opt/hello/osu_bw.py``
(``examples/osu_bw-mpi4py.py``), dash as ``/bin/sh``, the libraries
of Debian's libc6, libgcc-s1 and libstdc++6 (what any Debian root has: host libraries bound
in later need libdl, librt ...), what each MPI opens at run time (UCX transports; Open MPI's
and PMIx's components and help files), and every library all of these need (found with
``ldd``, copied with their symlink chains).
``/etc`` gets passwd, group, hosts, resolv.conf and ld.so.conf; ``/etc/ld.so.cache`` is made
with ``ldconfig -r``; ``/mnt/0`` .. ``/mnt/9`` exist for Charliecloud binds; the
``/.singularity.d/env/*.sh`` scripts set ``LD_LIBRARY_PATH`` as Apptainer images do.

The same root is written as a sandbox directory, a squashfs file (``mksquashfs``) and a SIF
file (real ``apptainer build`` of the sandbox).  One image takes a few seconds.
"""

from __future__ import annotations

import importlib
import os
import shutil
import struct
import subprocess
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
# The host's Debian python3 (python3.11 on Debian 12), copied into the images.
PYTHON = (os.path.basename(os.path.realpath("/usr/bin/python3"))
          if os.path.exists("/usr/bin/python3") else "python3.11")
HOST_LIBDIR = "/usr/lib/x86_64-linux-gnu"
# Image directory holding nothing but named in LD_LIBRARY_PATH by the image's environment,
# so tests can see whether the image's own value was kept.
IMAGE_LIBDIR = "/opt/image/lib"
BASE_PACKAGES = ("libc6", "libgcc-s1", "libstdc++6")
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip",
               "pydoc_data", "distutils", "__pycache__", "site-packages", "dist-packages",
               f"config-{PYTHON[len('python'):]}-{os.uname().machine}-linux-gnu"}

MPI_FLAVOURS: Dict[str, Dict[str, str]] = {
    "mpich": {"library": f"{HOST_LIBDIR}/libmpich.so.12", "mpicc": "mpicc.mpich",
              "mpi4py_abi": "mpich", "version": "MPICH Version:\t4.0.2"},
    "openmpi": {"library": f"{HOST_LIBDIR}/libmpi.so.40", "mpicc": "mpicc.openmpi",
                "mpi4py_abi": "openmpi", "version": "Open MPI v4.1.4"},
}


class ImageBuildError(RuntimeError):
    """A tool the image build needs is missing or failed."""


@dataclass(frozen=True)
class BuiltImage:
    """One test image in its three forms, and what its own MPI is."""

    mpi: str  # mpich | openmpi
    sandbox: Path
    squashfs: Path
    sif: Path
    library: str  # the container's MPI library file (container path)
    version: str  # the start of its MPI_Get_library_version


def _run(argv: List[str], **kwargs: object) -> str:
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise ImageBuildError(f"{' '.join(argv)} failed:\n{proc.stdout.decode(errors='replace')}")
    return str(proc.stdout.decode(errors="replace"))


def _image_path(root: Path, host_path: str) -> Path:
    """Where a host file goes in the image: the host's merged-/usr location."""
    real_dir = os.path.realpath(os.path.dirname(host_path))
    return root / real_dir.lstrip("/") / os.path.basename(host_path)


def copy_with_links(root: Path, host_path: str) -> None:
    """Copy ``host_path`` into ``root`` at the same place, recreating its symlink chain."""
    seen: Set[str] = set()
    path = host_path
    while path not in seen:
        seen.add(path)
        dest = _image_path(root, path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(path):
            target = os.readlink(path)
            if not (dest.exists() or dest.is_symlink()):
                os.symlink(target, dest)
            path = os.path.join(os.path.dirname(path), target) if not target.startswith("/") \
                else target
            path = os.path.normpath(path)
            continue
        if not dest.exists():
            shutil.copy2(path, dest)
        return


def needed_libraries(paths: Iterable[str], extra_dirs: Iterable[str] = ()) -> Set[str]:
    """Host paths of every library ``ldd`` resolves for ``paths`` (the dynamic loader too)."""
    env = dict(os.environ)
    dirs = [d for d in extra_dirs if d]
    if dirs:
        env["LD_LIBRARY_PATH"] = ":".join(dirs)
    else:
        env.pop("LD_LIBRARY_PATH", None)
    found: Set[str] = set()
    todo = list(paths)
    for start in range(0, len(todo), 200):
        # One ldd per chunk: it prints a "PATH:" header line before each file's libraries.
        proc = subprocess.run(["ldd", *todo[start:start + 200]], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env=env)
        for line in proc.stdout.decode(errors="replace").splitlines():
            line = line.strip()
            if line.endswith(":"):
                continue
            if "=>" in line:
                target = line.split("=>", 1)[1].strip().split(" (", 1)[0].strip()
                if target.startswith("/"):
                    found.add(target)
            elif line.startswith("/"):
                found.add(line.split(" (", 1)[0])
    return found


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _skeleton(root: Path) -> None:
    for sub in ("usr/bin", "usr/sbin", "usr/lib64", "usr/lib/x86_64-linux-gnu", "etc",
                "tmp", "var/tmp", "root", "home", "proc", "sys", "dev", "run", "opt",
                ".singularity.d/env", ".singularity.d/libs", IMAGE_LIBDIR.lstrip("/"),
                f"usr/local/lib/{PYTHON}/dist-packages", "usr/local/bin"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for n in range(10):
        (root / "mnt" / str(n)).mkdir(parents=True, exist_ok=True)
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"),
                         ("lib64", "usr/lib64")):
        os.symlink(target, root / link)
    (root / "tmp").chmod(0o1777)
    (root / "var/tmp").chmod(0o1777)
    _write(root / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
           "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    _write(root / "etc/group", "root:x:0:\nnogroup:x:65534:\n")
    _write(root / "etc/hosts", "127.0.0.1\tlocalhost\n")
    _write(root / "etc/resolv.conf", "")
    _write(root / "etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n")
    _write(root / "etc/ld.so.conf.d/x86_64-linux-gnu.conf",
           "/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n")
    _write(root / "etc/ld.so.conf.d/libc.conf", "/usr/local/lib\n")


def _environment_scripts(root: Path, mpi4py_abi: str) -> None:
    env = root / ".singularity.d/env"
    _write(env / "01-base.sh", "#!/bin/sh\n# written by hpcrun's test image builder\n", 0o755)
    _write(env / "90-environment.sh",
           "#!/bin/sh\n# %environment of the test image\n"
           f'LD_LIBRARY_PATH="{IMAGE_LIBDIR}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"\n'
           "export LD_LIBRARY_PATH\n"
           f"MPI4PY_MPIABI={mpi4py_abi}\nexport MPI4PY_MPIABI\n"
           "HPCRUN_TEST_IMAGE=1\nexport HPCRUN_TEST_IMAGE\n", 0o755)
    _write(env / "99-base.sh",
           "#!/bin/sh\n"
           'if [ -z "$LD_LIBRARY_PATH" ]; then\n'
           '    LD_LIBRARY_PATH="/.singularity.d/libs"\n'
           "else\n"
           '    LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/.singularity.d/libs"\n'
           "fi\n"
           "PS1=\"Apptainer> \"\nexport LD_LIBRARY_PATH PS1\n", 0o755)


def base_libraries() -> List[str]:
    """Host libraries a minimal Debian root always has (packages libc6, libgcc-s1, libstdc++6).

    Nothing in the image may link them (libdl, librt ...), but a host MPI bound into the
    container does.
    """
    found: List[str] = []
    for package in BASE_PACKAGES:
        proc = subprocess.run(["dpkg-query", "-L", package], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
        for line in proc.stdout.decode(errors="replace").splitlines():
            name = os.path.basename(line)
            if (line.startswith(("/lib/", "/usr/lib/", "/lib64/", "/usr/lib64/"))
                    and ".so" in name and os.path.dirname(line).endswith(("-linux-gnu", "lib64"))
                    and (os.path.isfile(line) or os.path.islink(line))):
                found.append(line)
    return found


def _copy_stdlib(root: Path) -> List[str]:
    """Copy the standard library; returns the host paths of its extension modules."""
    src = Path("/usr/lib") / PYTHON
    dest = root / "usr/lib" / PYTHON
    shutil.copytree(src, dest, symlinks=True,
                    ignore=lambda _d, names: [n for n in names if n in STDLIB_SKIP])
    return [str(p) for p in (src / "lib-dynload").glob("*.so")]


def _unpack_mpi4py(root: Path, wheel_dir: Path) -> List[Path]:
    """Copy an unpacked mpi4py wheel's package into the image; returns its MPI modules."""
    site = root / "usr/local/lib" / PYTHON / "dist-packages"
    shutil.copytree(wheel_dir / "mpi4py", site / "mpi4py", symlinks=True)
    return sorted((site / "mpi4py").glob("MPI.*.so"))


def find_mpi4py_wheel() -> Optional[Path]:
    """The downloaded mpi4py 4.1.2 wheel (as ``.ci/run`` fetches it), or None."""
    wheels = Path(os.environ.get("HPCRUN_TEST_WHEELS",
                                 str(Path.home() / ".cache/hpcrun-test-wheels")))
    for wheel in sorted(wheels.glob("mpi4py-4.1.2-*.whl")):
        return wheel
    return None


def unpack_wheel(wheel: Path, dest: Path) -> Path:
    """Unpack a wheel (zip) into ``dest`` keeping file modes; returns ``dest``."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            archive.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(dest / info.filename, mode)
    return dest


def compile_hello(mpi: str, dest: Path) -> Path:
    """Compile ``examples/hello.c`` with the MPI flavour's ``mpicc``."""
    mpicc = MPI_FLAVOURS[mpi]["mpicc"]
    if shutil.which(mpicc) is None:
        raise ImageBuildError(f"{mpicc} is not installed")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _run([mpicc, "-O2", "-o", str(dest), str(EXAMPLES / "hello.c")])
    return dest


def build_root(root: Path, mpi: str, mpi4py_dir: Optional[Path]) -> None:
    """Assemble an image root for ``mpi`` (mpich | openmpi) from host files in ``root``."""
    flavour = MPI_FLAVOURS[mpi]
    root.mkdir(parents=True)
    _skeleton(root)
    elves: List[str] = ["/usr/bin/" + PYTHON, "/usr/bin/dash"]
    elves += _copy_stdlib(root)
    for tool in elves[:2]:
        copy_with_links(root, tool)
    os.symlink(PYTHON, root / "usr/bin/python3")
    os.symlink("dash", root / "usr/bin/sh")
    for lib in base_libraries():
        copy_with_links(root, lib)
    # The container's MPI and what it loads at run time (UCX transports for MPICH).
    library = flavour["library"]
    copy_with_links(root, library)
    elves.append(os.path.realpath(library))
    if mpi == "mpich":
        os.symlink("libmpich.so.12", root / HOST_LIBDIR.lstrip("/") / "libmpi.so.12")
        ucx = Path(HOST_LIBDIR) / "ucx"
        for module in sorted(ucx.glob("*.so*")):
            copy_with_links(root, str(module))
            elves.append(str(module.resolve()))
    if mpi == "openmpi":
        # Open MPI opens its components (and PMIx's) at run time and reads help/config files.
        for tree in (f"{HOST_LIBDIR}/openmpi/lib/openmpi3", f"{HOST_LIBDIR}/pmix2",
                     "/usr/share/openmpi", "/etc/openmpi"):
            if os.path.isdir(tree):
                dest = root / tree.lstrip("/")
                shutil.copytree(tree, dest, symlinks=True, dirs_exist_ok=True)
                elves += [str(p) for p in Path(tree).rglob("*.so*")
                          if p.is_file() and not p.is_symlink()]
    hello = compile_hello(mpi, root / "usr/local/bin/hello")
    elves.append(str(hello))
    if mpi4py_dir is not None:
        modules = _unpack_mpi4py(root, mpi4py_dir)
        elves += [str(m) for m in modules if f".{flavour['mpi4py_abi']}." in m.name]
    _write(root / "opt/hello/hello.py", (EXAMPLES / "hello-mpi4py.py").read_text(), 0o755)
    _write(root / "opt/hello/osu_bw.py", (EXAMPLES / "osu_bw-mpi4py.py").read_text(), 0o755)
    for lib in sorted(needed_libraries(elves, [str(root / HOST_LIBDIR.lstrip("/"))])):
        if lib.startswith(str(root)):
            continue
        copy_with_links(root, lib)
    _environment_scripts(root, flavour["mpi4py_abi"])
    _run(["ldconfig", "-r", str(root)])


def make_squashfs(root: Path, dest: Path) -> Path:
    """``mksquashfs`` the root (gzip, as Apptainer writes them)."""
    if shutil.which("mksquashfs") is None:
        raise ImageBuildError("mksquashfs is not installed (Debian package squashfs-tools)")
    _run(["mksquashfs", str(root), str(dest), "-noappend", "-quiet", "-no-progress",
          "-all-root", "-comp", "gzip"])
    return dest


# --- SIF -----------------------------------------------------------------------------------

_SIF_HEADER = struct.Struct("<32s10s3s3s16s8q")
_SIF_DESCRIPTOR = struct.Struct("<i?III7q128s384s")
_SIF_PARTITION = struct.Struct("<ii3s")
_LAUNCH = b"#!/usr/bin/env run-singularity\n"
_ARCH_AMD64 = b"02\0"


def write_sif(squashfs: Path, dest: Path) -> Path:
    """Wrap a squashfs file as the primary system partition of a one-object SIF file.

    Uses ``tests/helpers/sifwriter.py`` when present; otherwise writes the format directly
    (header, 48 descriptor slots, the partition aligned to 4096 bytes).
    """
    try:
        sifwriter = importlib.import_module("helpers.sifwriter")
    except ImportError:
        sifwriter = None
    if sifwriter is not None:
        sifwriter.wrap_squashfs_as_sif(squashfs, dest)
        return dest
    data = squashfs.read_bytes()
    slots = 48
    descr_off = _SIF_HEADER.size
    descr_len = slots * _SIF_DESCRIPTOR.size
    align = 4096
    data_off = (descr_off + descr_len + align - 1) // align * align
    now = int(time.time())
    extra = _SIF_PARTITION.pack(1, 2, _ARCH_AMD64).ljust(384, b"\0")
    descriptor = _SIF_DESCRIPTOR.pack(0x4004, True, 1, 0xF0000000 | 1, 0, data_off, len(data),
                                      len(data), now, now, 0, 0, b"rootfs".ljust(128, b"\0"),
                                      extra)
    header = _SIF_HEADER.pack(_LAUNCH, b"SIF_MAGIC\0", b"01\0", _ARCH_AMD64, uuid.uuid4().bytes,
                              now, now, slots - 1, slots, descr_off, descr_len, data_off,
                              len(data))
    with open(dest, "wb") as out:
        out.write(header)
        out.write(descriptor)
        out.write(b"\0" * (descr_len - _SIF_DESCRIPTOR.size))
        out.write(b"\0" * (data_off - descr_off - descr_len))
        out.write(data)
    return dest


def apptainer_build(root: Path, dest: Path) -> Path:
    """``apptainer build DEST ROOT``: real Apptainer writes a SIF file from a prepared root
    directory (no definition file, so no %post and no privilege beyond reading ``root``)."""
    apptainer = shutil.which("apptainer")
    if apptainer is None:
        raise ImageBuildError("apptainer is not installed (scripts/install-apptainer)")
    _run([apptainer, "-q", "build", "-F", str(dest), str(root)])
    return dest


def build_image(workdir: Path, mpi: str, mpi4py_dir: Optional[Path]) -> BuiltImage:
    """Build the ``mpi`` image under ``workdir`` as sandbox, squashfs and SIF (the SIF by
    real ``apptainer build`` from the sandbox)."""
    sandbox = workdir / f"{mpi}.sandbox"
    build_root(sandbox, mpi, mpi4py_dir)
    squashfs = make_squashfs(sandbox, workdir / f"{mpi}.sqfs")
    sif = apptainer_build(sandbox, workdir / f"{mpi}.sif")
    return BuiltImage(mpi=mpi, sandbox=sandbox, squashfs=squashfs, sif=sif,
                     library=MPI_FLAVOURS[mpi]["library"], version=MPI_FLAVOURS[mpi]["version"])


BUSYBOX_APPLETS = ("sh", "cat", "echo", "env", "ls", "mkdir", "touch", "grep", "sleep",
                   "readlink", "stat", "true", "false", "id", "test")


def build_busybox_root(root: Path) -> None:
    """A tiny image root: static busybox as /bin/sh and friends, /etc files, env scripts.

    Built in a fraction of a second.
    """
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        raise ImageBuildError("busybox is not installed (Debian package busybox-static)")
    root.mkdir(parents=True)
    _skeleton(root)
    shutil.copy2(busybox, root / "usr/bin/busybox")
    for applet in BUSYBOX_APPLETS:
        os.symlink("busybox", root / "usr/bin" / applet)
    _write(root / "etc/image-marker", "hpcrun test image\n")
    _environment_scripts(root, "mpich")


def build_busybox_image(workdir: Path) -> BuiltImage:
    """The busybox image as sandbox, squashfs and SIF (``mpi`` is "none")."""
    sandbox = workdir / "busybox.sandbox"
    build_busybox_root(sandbox)
    squashfs = make_squashfs(sandbox, workdir / "busybox.sqfs")
    sif = write_sif(squashfs, workdir / "busybox.sif")
    return BuiltImage(mpi="none", sandbox=sandbox, squashfs=squashfs, sif=sif, library="",
                     version="")
