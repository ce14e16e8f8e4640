"""Source trees of real files and squashfs images made from them with ``mksquashfs``.

Used by the squashfs reader tests (``tests/image/test_squashfs*.py``, ``test_compress.py``):
every image is built from real libraries of this machine (Debian's MPICH, UCX, hwloc) with
their symlink chains as installed, so reads can be compared with the source files byte for
byte.  Pseudo definitions (``-p``) add device nodes without needing the source to hold them.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import pytest

LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
OLD_MTIME = 1_000_000_000  # 2001-09-09, set on some files to check mtimes

# (path inside the image, definition) for mksquashfs -p: char devices, one a whiteout.
PSEUDO_DEVICES = (
    ("dev/null", "c 666 root root 1 3"),
    ("dev/sda", "b 660 root root 8 0"),
    ("dev/.wh.gone", "c 000 root root 0 0"),
)


def need_mksquashfs() -> str:
    """The mksquashfs path, or skip the test."""
    exe = shutil.which("mksquashfs")
    if exe is None:
        pytest.skip("mksquashfs (squashfs-tools) is not installed")
    return exe


def copy_libraries(pattern: str, dest: Path) -> List[str]:
    """Copy ``LIBDIR/pattern`` files to ``dest`` keeping symlinks as symlinks; the names."""
    names = []
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(LIBDIR.glob(pattern)):
        if path.suffix == ".a":
            continue
        shutil.copy2(path, dest / path.name, follow_symlinks=False)
        names.append(path.name)
    if not names:
        pytest.skip(f"no {pattern} in {LIBDIR}")
    return names


def build_tree(root: Path, big: bool = True, many: int = 2000) -> Path:
    """A realistic small root file system of real files under ``root``.

    ``big`` adds Debian's MPICH (``libmpich.so.12.2.2``, ~40 MB, many blocks); ``many`` small
    files in ``/many`` make a directory listing span several metadata blocks (so mksquashfs
    writes a directory index).
    """
    lib = root / "usr/lib/x86_64-linux-gnu"
    if big:
        copy_libraries("libmpich.so*", lib)
    copy_libraries("libucp.so*", lib)
    copy_libraries("libhwloc.so*", lib)
    (root / "usr/bin").mkdir(parents=True)
    os.symlink("usr/lib", root / "lib")  # a link in the middle of paths
    os.symlink("/usr/lib/x86_64-linux-gnu", root / "lib64")  # an absolute target
    os.symlink("../lib/x86_64-linux-gnu/libucp.so.0", root / "usr/bin/ucp-link")  # final link
    os.symlink("/nonexistent/file", root / "dangling")
    etc = root / "etc"
    etc.mkdir()
    (etc / "hostname").write_text("container\n")
    (etc / "empty").write_bytes(b"")
    os.symlink("loop2", etc / "loop1")
    os.symlink("loop1", etc / "loop2")
    os.symlink("/etc/self", etc / "self")  # a link to itself
    data = root / "data"
    data.mkdir()
    ucp = (LIBDIR / "libucp.so.0").read_bytes()
    for size in (4096, 131072, 4095, 4097):
        (data / f"exact{size}").write_bytes((ucp * 2)[:size])
    (data / "big").write_bytes(ucp + ucp[:300_000])  # > 1 MiB
    with open(data / "sparse", "wb") as handle:  # holes that span whole blocks
        handle.write(ucp[:5000])
        handle.seek(600_000)
        handle.write(ucp[:7000])
        handle.seek(1_200_000)
        handle.write(b"end")
    (data / "hard1").write_bytes(ucp[:10_000])
    os.link(data / "hard1", data / "hard2")
    setuid = data / "setuid"
    setuid.write_bytes(ucp[:100])
    os.chmod(setuid, 0o4755)
    private = root / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    (private / "old").write_text("old\n")
    os.utime(private / "old", (OLD_MTIME, OLD_MTIME))
    try:  # user xattrs make mksquashfs write extended inodes
        os.setxattr(data / "hard1", "user.hpcrun", b"x")
        os.setxattr(setuid, "user.hpcrun", b"y")
    except OSError:
        pass
    deep = root / "deep/a/b/c/d"
    deep.mkdir(parents=True)
    (deep / "leaf").write_text("leaf\n")
    os.mkfifo(root / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "socket"))
    finally:
        sock.close()
    if many:
        crowd = root / "many"
        crowd.mkdir()
        for i in range(many):
            (crowd / f"file-{i:05d}-with-a-longer-name.txt").write_text(f"{i}\n")
    (root / "dev").mkdir()
    return root


def mksquashfs(src: Path, out: Path, *options: str, pseudo: bool = True) -> Path:
    """Run mksquashfs on ``src`` (plus the pseudo devices) and return ``out``."""
    exe = need_mksquashfs()
    cmd = [exe, str(src), str(out), "-noappend", "-quiet", "-no-progress", "-processors", "1"]
    if pseudo:
        for name, definition in PSEUDO_DEVICES:
            cmd += ["-p", f"{name} {definition}"]
    cmd += list(options)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        if "not supported" in proc.stderr or "Unrecognised" in proc.stderr:
            pytest.skip(f"mksquashfs cannot {' '.join(options)}: {proc.stderr.strip()}")
        raise AssertionError(f"mksquashfs failed: {proc.stderr}")
    return out


def source_entries(root: Path) -> Dict[str, Tuple[str, int, int, int]]:
    """``/path -> (kind, st_mode, size, mtime)`` of everything under ``root`` (no root)."""
    result: Dict[str, Tuple[str, int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):
                kind = "dir"
            elif stat.S_ISREG(st.st_mode):
                kind = "file"
            elif stat.S_ISLNK(st.st_mode):
                kind = "symlink"
            else:
                kind = "other"
            rel = "/" + str(path.relative_to(root))
            size = st.st_size if kind == "file" else 0
            result[rel] = (kind, st.st_mode, size, int(st.st_mtime))
    return result


def regular_files(root: Path) -> Iterable[Tuple[str, Path]]:
    """(image path, source path) of every regular file under ``root``."""
    for rel, (kind, _mode, _size, _mtime) in sorted(source_entries(root).items()):
        if kind == "file":
            yield rel, root / rel.lstrip("/")


def unsquashfs_list(image: Path, offset: int = 0) -> Optional[List[str]]:
    """Paths in ``image`` as ``unsquashfs -l`` lists them (None when unavailable)."""
    exe = shutil.which("unsquashfs")
    if exe is None:
        return None
    cmd = [exe, "-l", "-d", ""]
    if offset:
        cmd += ["-o", str(offset)]
    proc = subprocess.run([*cmd, str(image)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    return [line for line in proc.stdout.splitlines() if line.startswith("/")]
