"""The ext2/3/4 reader against file systems made by e2fsprogs from real files.

A source tree of real host libraries (with their symlink chains), relative, absolute,
dangling and long (slow) symbolic links, a 40 MB library, a sparse file reaching the
triple-indirect blocks, a deep tree and a directory big enough to be hash-indexed is written
with ``mke2fs -d`` as ext2 (1 KiB blocks), ext3, ext4 and ext4 64bit+metadata_csum; every
listing, byte and link target read back is compared with the source.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Dict, Iterator

import pytest

from hpcrun.errors import ImageError
from hpcrun.image.ext3 import Ext3Backend
from hpcrun.image.fs import DIR, FILE, SYMLINK, Tree

LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
LIBS = ("libc.so.6", "libm.so.6", "libmpich.so.12", "libmpi.so.40", "libz.so.1")
MKE2FS = shutil.which("mke2fs") or "/usr/sbin/mke2fs"
DEBUGFS = shutil.which("debugfs") or "/usr/sbin/debugfs"

FLAVOURS: Dict[str, list] = {
    "ext2-1k": ["-t", "ext2", "-b", "1024"],
    "ext3": ["-t", "ext3"],
    "ext4": ["-t", "ext4"],
    "ext4-64bit-csum-1k": ["-t", "ext4", "-b", "1024", "-O", "64bit,metadata_csum"],
    "ext4-128-inodes": ["-t", "ext4", "-I", "128"],
}


def _copy_lib(name: str, dest: Path) -> None:
    """Copy a host library with its symlink chain (links stay links)."""
    path = LIBDIR / name
    while path.is_symlink():
        target = os.readlink(path)
        (dest / path.name).symlink_to(target)
        path = (path.parent / target) if not os.path.isabs(target) else Path(target)
    shutil.copy2(path, dest / path.name)


@pytest.fixture(scope="session")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not Path(MKE2FS).exists():
        pytest.skip("e2fsprogs (mke2fs) is not installed")
    root = tmp_path_factory.mktemp("ext-src") / "root"
    lib = root / "usr" / "lib" / "x86_64-linux-gnu"
    lib.mkdir(parents=True)
    for name in LIBS:
        if (LIBDIR / name).exists():
            _copy_lib(name, lib)
    (root / "lib").symlink_to("usr/lib")
    (root / "bin").mkdir()
    shutil.copy2("/bin/busybox" if Path("/bin/busybox").exists() else "/bin/ls", root / "bin")
    (root / "abs-libc").symlink_to("/usr/lib/x86_64-linux-gnu/libc.so.6")
    (root / "dangling").symlink_to("no/such/file")
    long_target = "/".join(["a-rather-long-directory-name"] * 6) + "/target"
    (root / "slow-link").symlink_to(long_target)
    (root / "loop-a").symlink_to("loop-b")
    (root / "loop-b").symlink_to("loop-a")
    deep = root / "deep"
    for i in range(40):
        deep = deep / f"level{i}"
    deep.mkdir(parents=True)
    (deep / "leaf.txt").write_text("at the bottom\n")
    many = root / "many"
    many.mkdir()
    for i in range(2500):
        (many / f"entry-{i:05d}.txt").write_text(f"{i}\n")
    (root / "empty").write_bytes(b"")
    with open(root / "sparse", "wb") as f:  # 1 KiB blocks: past 64 MiB is triple indirect
        f.write(b"head")
        f.seek(80 * 1024 * 1024)
        f.write(b"tail of a sparse file")
    (root / "utf8-é.txt").write_text("accent\n")
    return root


@pytest.fixture(scope="session")
def ext_images(source_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    out = tmp_path_factory.mktemp("ext-images")
    images = {}
    for name, options in FLAVOURS.items():
        image = out / f"{name}.img"
        subprocess.run(
            [MKE2FS, "-q", "-F", *options, "-d", str(source_tree), str(image), "160M"],
            check=True, capture_output=True,
        )
        images[name] = image
    return images


def _walk(root: Path, inner: str = "/") -> Iterator[str]:
    host = root / inner.lstrip("/")
    for name in sorted(os.listdir(host)):
        path = inner.rstrip("/") + "/" + name
        yield path
        if (host / name).is_dir() and not (host / name).is_symlink():
            yield from _walk(root, path)


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_tree_matches_source(source_tree: Path, ext_images: Dict[str, Path], flavour: str) -> None:
    backend = Ext3Backend(str(ext_images[flavour]))
    tree = Tree(backend)
    assert sorted(n for n in tree.listdir("/") if n != "lost+found") == sorted(
        os.listdir(source_tree)
    )
    checked = 0
    for inner in _walk(source_tree):
        host = source_tree / inner.lstrip("/")
        node = tree.lookup(inner, follow=False)
        assert node is not None, inner
        if host.is_symlink():
            assert node.kind == SYMLINK
            assert tree.readlink(inner) == os.readlink(host), inner
        elif host.is_dir():
            assert node.kind == DIR
            assert tree.listdir(inner) == sorted(os.listdir(host)), inner
        else:
            assert node.kind == FILE
            assert node.size == host.stat().st_size, inner
            if node.size < 50_000_000:
                assert tree.read(inner) == host.read_bytes(), inner
            checked += 1
        assert node.mode & 0o7777 == host.lstat().st_mode & 0o7777, inner
    assert checked > 2500


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_resolution_and_partial_reads(
    source_tree: Path, ext_images: Dict[str, Path], flavour: str
) -> None:
    tree = Tree(Ext3Backend(str(ext_images[flavour])))
    libc = source_tree / "usr/lib/x86_64-linux-gnu/libc.so.6"
    real = os.path.realpath(libc)
    # /lib -> usr/lib mid-path, then the libc.so.6 chain, all inside the image
    assert tree.realpath("/lib/x86_64-linux-gnu/libc.so.6") == "/usr/lib/x86_64-linux-gnu/" + (
        os.path.basename(real)
    )
    assert tree.realpath("/abs-libc") == tree.realpath("/lib/x86_64-linux-gnu/libc.so.6")
    assert tree.lookup("/dangling") is None
    with pytest.raises(ImageError, match="symbolic links"):
        tree.lookup("/loop-a")
    with tree.open("/lib/x86_64-linux-gnu/libmpich.so.12") as f:
        assert f.read(4) == b"\x7fELF"
        f.seek(-4096, os.SEEK_END)
        host = (source_tree / "usr/lib/x86_64-linux-gnu/libmpich.so.12").read_bytes()
        assert f.read() == host[-4096:]
    big = tree.lookup("/sparse")
    assert big is not None
    data = tree.read("/sparse", 80 * 1024 * 1024 - 10, 40)
    assert data == b"\0" * 10 + b"tail of a sparse file"
    assert tree.read("/sparse", 1000, 100) == b"\0" * 100
    deep = "/deep/" + "/".join(f"level{i}" for i in range(40)) + "/leaf.txt"
    assert tree.read(deep) == b"at the bottom\n"
    assert tree.read("/many/entry-02499.txt") == b"2499\n"
    assert tree.read("/empty") == b""


@pytest.mark.parametrize("flavour", ["ext3", "ext4-64bit-csum-1k"])
def test_hash_indexed_directory(
    source_tree: Path, ext_images: Dict[str, Path], tmp_path: Path, flavour: str
) -> None:
    """``e2fsck -D`` turns /many into an htree directory: reading it linearly sees it all."""
    e2fsck = shutil.which("e2fsck") or "/usr/sbin/e2fsck"
    image = tmp_path / "htree.img"
    shutil.copy(ext_images[flavour], image)
    subprocess.run([e2fsck, "-f", "-y", "-D", str(image)], capture_output=True)
    out = subprocess.run(
        [DEBUGFS, "-R", "stat /many", str(image)], capture_output=True, text=True
    ).stdout
    flags = int(out.split("Flags: ", 1)[1].split()[0], 16)
    assert flags & 0x1000, out[:200]  # EXT4_INDEX_FL: the directory is hash-indexed
    tree = Tree(Ext3Backend(str(image)))
    assert tree.listdir("/many") == sorted(os.listdir(source_tree / "many"))
    assert tree.read("/many/entry-01234.txt") == b"1234\n"


def test_partition_inside_a_bigger_file(ext_images: Dict[str, Path], tmp_path: Path) -> None:
    image = ext_images["ext3"].read_bytes()
    wrapped = tmp_path / "wrapped"
    wrapped.write_bytes(b"\x55" * 12345 + image + b"\xaa" * 999)
    tree = Tree(Ext3Backend(str(wrapped), offset=12345, size=len(image)))
    assert tree.read("/many/entry-00007.txt") == b"7\n"


def test_whiteout_char_device(ext_images: Dict[str, Path], tmp_path: Path) -> None:
    image = tmp_path / "wh.img"
    shutil.copy(ext_images["ext3"], image)
    subprocess.run([DEBUGFS, "-w", "-R", "mknod gone c 0 0", str(image)], check=True,
                   capture_output=True)
    subprocess.run([DEBUGFS, "-w", "-R", "mknod tty c 5 0", str(image)], check=True,
                   capture_output=True)
    backend = Ext3Backend(str(image))
    gone = backend.child(backend.root(), "gone")
    tty = backend.child(backend.root(), "tty")
    assert gone is not None and gone.whiteout
    assert tty is not None and not tty.whiteout and tty.kind == "other"


def test_unsupported_feature_is_named(source_tree: Path, tmp_path: Path) -> None:
    image = tmp_path / "inline.img"
    subprocess.run(
        [MKE2FS, "-q", "-F", "-t", "ext4", "-O", "inline_data", str(image), "8M"],
        check=True, capture_output=True,
    )
    with pytest.raises(ImageError, match="inline_data") as info:
        Ext3Backend(str(image))
    assert str(image) in str(info.value)


def test_bad_magic(ext_images: Dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(ext_images["ext3"].read_bytes()[: 4 << 20])
    data[1080:1082] = b"\0\0"
    bad = tmp_path / "bad.img"
    bad.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="bad magic"):
        Ext3Backend(str(bad))


def test_corrupt_group_descriptor(ext_images: Dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(ext_images["ext3"].read_bytes())
    block_size = 1024 << struct.unpack_from("<I", data, 1024 + 0x18)[0]
    first_data_block = struct.unpack_from("<I", data, 1024 + 0x14)[0]
    gdt = (first_data_block + 1) * block_size
    struct.pack_into("<I", data, gdt + 8, 0xFFFFFFF0)  # inode table far past the end
    bad = tmp_path / "gd.img"
    bad.write_bytes(bytes(data))
    backend = Ext3Backend(str(bad))
    with pytest.raises(ImageError, match="group descriptor 0") as info:
        backend.root()
    assert str(bad) in str(info.value)


def test_truncated_image(ext_images: Dict[str, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut.img"
    cut.write_bytes(ext_images["ext4"].read_bytes()[: 3 << 20])
    with pytest.raises(ImageError):
        tree = Tree(Ext3Backend(str(cut)))
        tree.read("/usr/lib/x86_64-linux-gnu/libc.so.6")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot open"):
        Ext3Backend(str(tmp_path / "none.img"))
