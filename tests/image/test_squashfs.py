"""The squashfs reader against images that mksquashfs made from real files."""

from __future__ import annotations

import os
import shutil
import stat
import struct
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from helpers.sif_corpus import HELLO
from helpers.squashfs_trees import (
    OLD_MTIME,
    build_tree,
    mksquashfs,
    regular_files,
    source_entries,
    unsquashfs_list,
)
from hpcrun.errors import HpcrunError, ImageError
from hpcrun.image import squashfs
from hpcrun.image.fs import DIR, FILE, SYMLINK, Node, Overlay, Tree
from hpcrun.image.squashfs import SquashfsBackend, fallback_read

LIB = "/usr/lib/x86_64-linux-gnu"


def _h(node: Optional[Node]) -> Any:
    """The squashfs handle inside a node (tests look at internals such as block lists)."""
    assert node is not None
    return node.ref


@pytest.fixture(scope="session")
def big_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with Debian's MPICH (40 MB), UCX, hwloc, links, devices, 2000-entry dir."""
    return build_tree(tmp_path_factory.mktemp("sqfs-src") / "root", big=True, many=2000)


@pytest.fixture(scope="session")
def big_image(big_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``big_source`` as a default mksquashfs image (gzip, 128 KiB blocks)."""
    return mksquashfs(big_source, tmp_path_factory.mktemp("sqfs-img") / "big.sqfs")


@pytest.fixture()
def tree(big_image: Path) -> Iterator[Tree]:
    backend = SquashfsBackend(str(big_image))
    yield Tree(backend)
    backend.close()


def _inode_type(backend: SquashfsBackend, node: Node) -> int:
    """The on-disk inode type (1-14) of a node, read from its inode header."""
    ref = _h(node).ref
    raw, _, _ = backend._meta(backend.inode_table + (ref >> 16), ref & 0xFFFF, 2, backend.dir_table)
    return int(struct.unpack("<H", raw)[0])


def test_every_entry_matches_the_source(tree: Tree, big_source: Path) -> None:
    """kind, mode, size and mtime of every entry as os.lstat reports them for the source."""
    backend = tree.backend
    assert isinstance(backend, SquashfsBackend)
    seen: Dict[str, Tuple[str, int, int, int]] = {}
    for path, node in backend.walk():
        if path.startswith("/dev/"):
            continue  # pseudo devices, checked below
        size = node.size if node.kind == FILE else 0
        seen[path] = (node.kind, node.mode, size, node.mtime)
    expected = source_entries(big_source)
    assert seen == expected


def test_file_contents_byte_for_byte(tree: Tree, big_source: Path) -> None:
    count = 0
    for rel, src in regular_files(big_source):
        assert tree.read(rel) == src.read_bytes(), rel
        count += 1
    assert count > 2000


def test_symlink_targets(tree: Tree, big_source: Path) -> None:
    for rel, (kind, *_rest) in source_entries(big_source).items():
        if kind == SYMLINK:
            assert tree.readlink(rel) == os.readlink(big_source / rel.lstrip("/")), rel


def test_listdir_matches_os_listdir(tree: Tree, big_source: Path) -> None:
    for rel in ("/", "/usr/lib/x86_64-linux-gnu", "/many", "/data", "/etc", "/deep/a/b"):
        assert tree.listdir(rel) == sorted(os.listdir(big_source / rel.lstrip("/"))), rel
    assert tree.listdir("/dev") == [".wh.gone", "null", "sda"]


def test_listing_matches_unsquashfs(big_image: Path, tree: Tree) -> None:
    listed = unsquashfs_list(big_image)
    if listed is None:
        pytest.skip("unsquashfs is not available")
    backend = tree.backend
    assert isinstance(backend, SquashfsBackend)
    assert sorted(path for path, _node in backend.walk()) == sorted(listed)


def test_large_directory_uses_its_index(tree: Tree, big_source: Path) -> None:
    """/many spans several metadata blocks: an extended dir with an index; every name found."""
    backend = tree.backend
    assert isinstance(backend, SquashfsBackend)
    node = tree.lookup("/many")
    assert node is not None and _inode_type(backend, node) == 8
    assert _h(node).icount > 1
    for name in os.listdir(big_source / "many"):
        found = backend.child(node, name)
        assert found is not None and found.kind == FILE, name
        assert backend.read(found) == (big_source / "many" / name).read_bytes()
    assert backend.child(node, "file-99999") is None
    assert backend.child(node, "a-before-everything") is None
    assert backend.child(node, "zzz-after-everything") is None


def test_lookup_reads_only_the_blocks_on_the_path(big_image: Path) -> None:
    """A lookup in a 2000-entry directory decompresses a handful of metadata blocks."""
    backend = SquashfsBackend(str(big_image))
    tree = Tree(backend)
    assert tree.lookup("/many/file-01999-with-a-longer-name.txt") is not None
    assert len(backend._meta_cache) <= 6
    assert backend._data_cache == {}


def test_opening_reads_only_the_superblock(
    big_image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Open reads the superblock, the 2-byte headers of the inode table's blocks and the
    small uid/gid table (what unsquashfs checks); a deep lookup then reads a few metadata
    blocks, no data blocks."""
    calls: List[Tuple[int, int]] = []
    real_pread = os.pread

    def counting(fd: int, size: int, offset: int) -> bytes:
        calls.append((size, offset))
        return real_pread(fd, size, offset)

    monkeypatch.setattr(squashfs.os, "pread", counting)
    backend = SquashfsBackend(str(big_image))
    assert calls[0] == (96, 0)
    headers = [c for c in calls[1:] if c[0] == 2]
    assert headers and all(backend.inode_table <= at < backend.dir_table for _, at in headers)
    others = calls[1 + len(headers):]
    assert len(others) == 2 and others[0][1] == backend.id_table  # the index, then its block
    opened = len(calls)
    assert Tree(backend).lookup("/deep/a/b/c/d/leaf") is not None
    assert 1 < len(calls) - opened <= 8
    assert all(offset >= backend.inode_table for _size, offset in calls[1:])


def test_partial_reads_touch_only_covering_blocks(tree: Tree, big_source: Path) -> None:
    """Reading an ELF header of the 40 MB library decompresses one data block."""
    backend = tree.backend
    assert isinstance(backend, SquashfsBackend)
    whole = (big_source / "usr/lib/x86_64-linux-gnu/libmpich.so.12.2.2").read_bytes()
    with tree.open("/lib/x86_64-linux-gnu/libmpich.so.12") as handle:
        assert handle.read(64) == whole[:64]
        assert len(backend._data_cache) == 1
        handle.seek(len(whole) - 5000)
        assert handle.read() == whole[-5000:]
    assert len(backend._data_cache) <= 3
    bs = backend.block_size
    for offset, size in ((bs - 10, 20), (3 * bs, bs), (5, 0), (len(whole) - 1, 100)):
        assert tree.read("/lib64/libmpich.so.12.2.2", offset, size) == whole[offset : offset + size]
    assert tree.read("/lib64/libmpich.so.12.2.2", len(whole) + 10, 10) == b""


def test_small_and_odd_sized_files(tree: Tree, big_source: Path) -> None:
    data = big_source / "data"
    for name in ("exact4096", "exact131072", "exact4095", "exact4097", "big", "sparse"):
        expected = (data / name).read_bytes()
        node = tree.lookup(f"/data/{name}")
        assert node is not None and node.size == len(expected)
        assert tree.read(f"/data/{name}") == expected, name
    assert tree.read("/etc/empty") == b""
    assert tree.read("/etc/empty", 0, 10) == b""
    assert (data / "big").stat().st_size > 1 << 20


def test_sparse_blocks_are_zeros(tree: Tree, big_source: Path) -> None:
    node = tree.lookup("/data/sparse")
    assert node is not None
    backend = tree.backend
    assert isinstance(backend, SquashfsBackend)
    assert tree.read("/data/sparse", 300_000, 1000) == bytes(1000)
    backend._load_blocks(_h(node))
    assert 0 in _h(node).words  # mksquashfs stored a hole


def test_hard_links_share_an_inode(tree: Tree) -> None:
    one, two = tree.lookup("/data/hard1"), tree.lookup("/data/hard2")
    assert one is not None and two is not None
    assert _h(one).ref == _h(two).ref
    assert tree.read("/data/hard1") == tree.read("/data/hard2")


def test_extended_inodes_are_read(tree: Tree, big_source: Path) -> None:
    """Hard links and xattrs make mksquashfs write extended file inodes."""
    backend = tree.backend
    assert isinstance(backend, SquashfsBackend)
    node = tree.lookup("/data/hard1")
    assert node is not None and _inode_type(backend, node) == 9
    assert tree.read("/data/hard1") == (big_source / "data/hard1").read_bytes()


def test_modes_and_mtimes(tree: Tree) -> None:
    setuid = tree.lookup("/data/setuid")
    assert setuid is not None and stat.S_IMODE(setuid.mode) == 0o4755
    private = tree.lookup("/private")
    assert private is not None and private.kind == DIR and stat.S_IMODE(private.mode) == 0o700
    old = tree.lookup("/private/old")
    assert old is not None and old.mtime == OLD_MTIME


def test_devices_fifos_sockets_and_whiteouts(tree: Tree) -> None:
    backend = tree.backend
    assert isinstance(backend, SquashfsBackend)
    null = tree.lookup("/dev/null")
    assert null is not None and stat.S_ISCHR(null.mode) and not null.whiteout
    assert backend.rdev(null) == (1, 3)
    sda = tree.lookup("/dev/sda")
    assert sda is not None and stat.S_ISBLK(sda.mode) and backend.rdev(sda) == (8, 0)
    dev = tree.lookup("/dev")
    assert dev is not None
    gone = backend.child(dev, ".wh.gone")
    assert gone is not None and gone.whiteout
    assert tree.lookup("/dev/.wh.gone") is None  # Tree treats whiteouts as absent
    fifo, sock = tree.lookup("/fifo"), tree.lookup("/socket")
    assert fifo is not None and stat.S_ISFIFO(fifo.mode)
    assert sock is not None and stat.S_ISSOCK(sock.mode)
    with pytest.raises(ImageError, match="not a regular file"):
        tree.read("/dev/null")


def test_path_resolution_through_fs_tree(tree: Tree) -> None:
    """Links mid-path, final links, absolute targets, .., dangling links and loops."""
    real = f"{LIB}/libmpich.so.12.2.2"
    assert tree.realpath("/lib/x86_64-linux-gnu/libmpich.so.12") == real
    assert tree.realpath("/lib64/libmpich.so") == real
    assert tree.realpath("/usr/bin/ucp-link") == f"{LIB}/libucp.so.0.0.0"
    assert tree.resolve("/usr/bin/ucp-link", follow_final=False)[0] == "/usr/bin/ucp-link"
    # ".." after a link applies to the link's target, as in the kernel
    assert tree.realpath("/lib/../etc/hostname") == "/usr/etc/hostname"
    assert tree.lookup("/lib/../etc/hostname") is None
    assert tree.read("/lib64/../../../etc/hostname") == b"container\n"
    assert tree.lookup("/dangling") is None
    assert tree.readlink("/dangling") == "/nonexistent/file"
    assert tree.lookup("/etc/hostname/x") is None
    for loop in ("/etc/loop1", "/etc/self", "/etc/loop2/x"):
        with pytest.raises(ImageError, match="symbolic link"):
            tree.lookup(loop)


def test_overlay_with_whiteout(big_image: Path, tmp_path: Path) -> None:
    """An upper squashfs whose char device 0:0 deletes a name of the lower one."""
    upper_src = tmp_path / "upper"
    (upper_src / "etc").mkdir(parents=True)
    (upper_src / "etc/hostname").write_text("upper\n")
    upper = mksquashfs(upper_src, tmp_path / "upper.sqfs", pseudo=False)
    shutil.copy(upper, tmp_path / "upper2.sqfs")
    wh = tmp_path / "wh.sqfs"
    mksquashfs(upper_src, wh, "-p", "etc/empty c 000 root root 0 0", pseudo=False)
    merged = Tree(Overlay([SquashfsBackend(str(wh)), SquashfsBackend(str(big_image))]))
    assert merged.read("/etc/hostname") == b"upper\n"
    assert merged.lookup("/etc/empty") is None
    assert "empty" not in merged.listdir("/etc") and "loop1" in merged.listdir("/etc")


def test_partition_at_an_offset(big_image: Path, tmp_path: Path, big_source: Path) -> None:
    """A squashfs inside a bigger file (as in a SIF), with bytes after it."""
    blob = tmp_path / "container.bin"
    payload = big_image.read_bytes()
    blob.write_bytes(os.urandom(12288) + payload + os.urandom(5000))
    backend = SquashfsBackend(str(blob), offset=12288, size=len(payload))
    tree = Tree(backend)
    assert "12288" in backend.name
    assert tree.read("/etc/hostname") == b"container\n"
    expected = (big_source / "usr/lib/x86_64-linux-gnu/libucp.so.0.0.0").read_bytes()
    assert tree.read("/lib64/libucp.so.0") == expected
    with pytest.raises(ImageError, match="truncated"):
        SquashfsBackend(str(blob), offset=12288, size=len(payload) // 2)


def test_real_sif_partition(sif_data: Path) -> None:
    """The gzip squashfs partition of one-group.sif (written by ``apptainer sif add``)."""
    sif = sif_data / "images" / "one-group.sif"
    raw = sif.read_bytes()
    offset = raw.find(b"hsqs")
    assert offset > 0
    tree = Tree(SquashfsBackend(str(sif), offset=offset))
    assert tree.listdir("/") == ["hello.txt"]
    assert tree.read("/hello.txt") == HELLO
    if shutil.which("unsquashfs"):
        assert fallback_read(str(sif), offset, "/hello.txt") == tree.read("/hello.txt")


def test_fallback_read_matches(big_image: Path) -> None:
    if not shutil.which("unsquashfs"):
        pytest.skip("unsquashfs is not available")
    tree = Tree(SquashfsBackend(str(big_image)))
    path = "/usr/lib/x86_64-linux-gnu/libhwloc.so.15.6.1"
    if tree.lookup(path) is None:
        path = "/data/big"
    assert fallback_read(str(big_image), 0, path) == tree.read(path)
    with pytest.raises(ImageError, match="unsquashfs could not read"):
        fallback_read(str(big_image), 0, "/no/such/file")


def test_backend_protocol_type_errors(tree: Tree) -> None:
    backend = tree.backend
    file_node = tree.lookup("/etc/hostname")
    dir_node = tree.lookup("/etc")
    assert file_node is not None and dir_node is not None
    with pytest.raises(ImageError):
        backend.listdir(file_node)
    with pytest.raises(ImageError):
        backend.readlink(file_node)
    with pytest.raises(ImageError):
        backend.read(dir_node)
    with pytest.raises(ImageError, match="not a directory"):
        tree.listdir("/etc/hostname")


# -- bad input -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def small_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small image with uncompressed metadata (-noI), so tests can patch entries."""
    base = tmp_path_factory.mktemp("sqfs-small")
    src = base / "root"
    (src / "a/b").mkdir(parents=True)
    (src / "a/b/file").write_bytes(Path("/usr/lib/x86_64-linux-gnu/libhwloc.so.15").read_bytes())
    (src / "top").write_text("top\n")
    return mksquashfs(src, base / "small.sqfs", "-noI", pseudo=False)


def _patched(image: Path, tmp_path: Path, changes: Dict[int, bytes]) -> Path:
    data = bytearray(image.read_bytes())
    for at, value in changes.items():
        data[at : at + len(value)] = value
    out = tmp_path / "patched.sqfs"
    out.write_bytes(bytes(data))
    return out


def test_missing_file() -> None:
    with pytest.raises(ImageError, match="cannot open"):
        SquashfsBackend("/nonexistent/image.sqfs")


def test_wrong_magic_names_file_and_offset(tmp_path: Path) -> None:
    elf = Path("/usr/lib/x86_64-linux-gnu/libucp.so.0")
    with pytest.raises(ImageError, match=r"libucp.so.0.*not a squashfs 4.0 image at offset 0"):
        SquashfsBackend(str(elf))
    with pytest.raises(ImageError, match="at offset 4096"):
        SquashfsBackend(str(elf), offset=4096)


def test_truncated_superblock(small_image: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.sqfs"
    short.write_bytes(small_image.read_bytes()[:50])
    with pytest.raises(ImageError, match=r"short.sqfs: truncated squashfs superblock"):
        SquashfsBackend(str(short))


def test_truncated_image(small_image: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.sqfs"
    cut.write_bytes(small_image.read_bytes()[:1000])
    with pytest.raises(ImageError, match="truncated squashfs image"):
        SquashfsBackend(str(cut))


def test_bad_version_mentions_unsquashfs(small_image: Path, tmp_path: Path) -> None:
    bad = _patched(small_image, tmp_path, {28: struct.pack("<HH", 3, 1)})
    with pytest.raises(ImageError, match=r"version 3\.1") as info:
        SquashfsBackend(str(bad))
    assert "unsquashfs" in info.value.hint


def test_invalid_block_size(small_image: Path, tmp_path: Path) -> None:
    bad = _patched(small_image, tmp_path, {12: struct.pack("<I", 12345)})
    with pytest.raises(ImageError, match="block size 12345"):
        SquashfsBackend(str(bad))


def test_unknown_compressor_mentions_unsquashfs(small_image: Path, tmp_path: Path) -> None:
    """Compression id 9 passes the superblock, fails at the first compressed block."""
    bad = _patched(small_image, tmp_path, {20: struct.pack("<H", 9)})
    tree = Tree(SquashfsBackend(str(bad)))
    with pytest.raises(ImageError, match="compression id 9") as info:
        tree.read("/a/b/file")
    assert "unsquashfs" in info.value.hint


def test_tables_out_of_range(small_image: Path, tmp_path: Path) -> None:
    size = small_image.stat().st_size
    bad = _patched(small_image, tmp_path, {64: struct.pack("<Q", size * 4)})
    with pytest.raises(ImageError, match="inode table"):
        SquashfsBackend(str(bad))


def test_root_inode_out_of_range(small_image: Path, tmp_path: Path) -> None:
    bad = _patched(small_image, tmp_path, {32: struct.pack("<Q", 0x7FFF_0000_0000)})
    with pytest.raises(ImageError, match=r"inode reference .* outside the inode table"):
        Tree(SquashfsBackend(str(bad))).listdir("/")


def test_metadata_block_beyond_the_table(small_image: Path, tmp_path: Path) -> None:
    """A metadata header claiming more bytes than its table has."""
    backend = SquashfsBackend(str(small_image))
    at = backend.inode_table
    backend.close()
    bad = _patched(small_image, tmp_path, {at: struct.pack("<H", 0x8000 | 0x7FFF)})
    with pytest.raises(ImageError, match=f"inode table's metadata block at byte offset {at}"):
        SquashfsBackend(str(bad))  # refused at open, as unsquashfs refuses it


def test_corrupt_compressed_data(small_image: Path, tmp_path: Path) -> None:
    """Garbage inside the (gzip) data blocks of a file."""
    backend = SquashfsBackend(str(small_image))
    node = Tree(backend).lookup("/a/b/file")
    assert node is not None
    backend._load_blocks(_h(node))
    first = _h(node).offsets[0]
    backend.close()
    bad = _patched(small_image, tmp_path, {first: b"\xff" * 64})
    tree = Tree(SquashfsBackend(str(bad)))
    with pytest.raises(ImageError, match=f"corrupt squashfs: data block at offset {first}"):
        tree.read("/a/b/file")


def test_directory_cycle(small_image: Path, tmp_path: Path) -> None:
    """Point the entry "b" of /a back at /a itself (the directory table is uncompressed)."""
    backend = SquashfsBackend(str(small_image))
    tree = Tree(backend)
    a_node, b_node = tree.lookup("/a"), tree.lookup("/a/b")
    assert a_node is not None and b_node is not None
    a_ref, b_ref = _h(a_node).ref, _h(b_node).ref
    assert a_ref >> 16 == b_ref >> 16  # same inode block: only the offset differs
    raw = small_image.read_bytes()
    # entry: offset u16, inode delta s16, type u16, name size - 1 u16, name
    needle = struct.pack("<H", b_ref & 0xFFFF)
    at = raw.find(struct.pack("<HH", 1, 0) + b"b", backend.dir_table) - 4
    assert raw[at : at + 2] == needle
    backend.close()
    bad = _patched(small_image, tmp_path, {at: struct.pack("<H", a_ref & 0xFFFF)})
    broken = SquashfsBackend(str(bad))
    with pytest.raises(ImageError, match="directory cycle"):
        Tree(broken).lookup("/a/b")
    with pytest.raises(ImageError, match="directory cycle"):
        list(broken.walk())


def test_errors_are_hpcrun_errors_with_hints(small_image: Path, tmp_path: Path) -> None:
    bad = _patched(small_image, tmp_path, {0: b"XXXX"})
    with pytest.raises(HpcrunError) as info:
        SquashfsBackend(str(bad))
    assert info.value.hint
