"""A lazy, read-only ext2/ext3/ext4 reader (SIF overlay and data partitions, ext3 images).

Only what path resolution and file reads need: the superblock, group descriptors (32- and
64-bit), inodes (any inode size), block maps (direct, indirect, double, triple) and extent
trees, linear directories (hash-indexed directories read linearly: their index blocks look
like empty entries), fast and slow symbolic links.  Nothing is read until asked for, and
the journal is ignored (images are read as last written).
"""

from __future__ import annotations

import functools
import os
import stat
import struct

from hpcrun.errors import (
    HINT_ACCESS,
    HINT_DAMAGED,
    HINT_TRUNCATED,
    ImageError,
)
from hpcrun.image.fs import DIR, FILE, OTHER, SYMLINK, Node

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

    _T = TypeVar("_T")

EXT_MAGIC = 0xEF53
SUPERBLOCK_OFFSET = 1024
ROOT_INODE = 2

# incompat features (s_feature_incompat)
INCOMPAT_NAMES = {
    0x1: "compression",
    0x2: "filetype",
    0x4: "needs_recovery",
    0x8: "journal_dev",
    0x10: "meta_bg",
    0x40: "extent",
    0x80: "64bit",
    0x100: "mmp",
    0x200: "flex_bg",
    0x400: "ea_inode",
    0x1000: "dirdata",
    0x2000: "metadata_csum_seed",
    0x4000: "large_dir",
    0x8000: "inline_data",
    0x10000: "encrypt",
    0x20000: "casefold",
}
INCOMPAT_FILETYPE = 0x2
INCOMPAT_64BIT = 0x80
# What this reader understands; anything else set in the superblock is refused by name.
SUPPORTED_INCOMPAT = (
    0x2 | 0x4 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x2000 | 0x4000 | 0x20000
)

EXTENTS_FL = 0x80000
INLINE_DATA_FL = 0x10000000
EXTENT_MAGIC = 0xF30A
MAX_EXTENT_DEPTH = 5
MAX_READ = 1 << 31  # one read call never allocates more than this (corrupt sizes)


def _guard(method: Callable[..., _T]) -> Callable[..., _T]:
    """Turn decoding errors on corrupt bytes into ImageError naming the image."""

    @functools.wraps(method)
    def wrapper(self: Ext3Backend, *args: Any, **kwargs: Any) -> _T:
        try:
            return method(self, *args, **kwargs)
        except (struct.error, ValueError, IndexError, OverflowError, RecursionError) as exc:
            raise ImageError(
                f"{self.name}: corrupt ext2/3/4 file system ({exc})",
                hint="the image is damaged: rebuild it",
            ) from exc

    return wrapper


def _run_in(pointers: Sequence[int], index: int) -> Tuple[int, int]:
    """(first block, length) of the run of consecutive blocks (or of holes) at ``index``."""
    first = pointers[index]
    n = 1
    step = 1 if first else 0
    while index + n < len(pointers) and pointers[index + n] == first + n * step:
        n += 1
    return first, n


class _Inode:
    __slots__ = ("blocks_lo", "file_acl", "flags", "i_block", "mode", "mtime", "number", "size")

    def __init__(self, number: int, raw: bytes) -> None:
        self.number = number
        self.mode = struct.unpack_from("<H", raw, 0)[0]
        size_lo = struct.unpack_from("<I", raw, 4)[0]
        self.mtime = struct.unpack_from("<I", raw, 0x10)[0]
        self.blocks_lo = struct.unpack_from("<I", raw, 0x1C)[0]
        self.flags = struct.unpack_from("<I", raw, 0x20)[0]
        self.i_block = raw[0x28:0x64]
        self.file_acl = struct.unpack_from("<I", raw, 0x68)[0]
        size_hi = struct.unpack_from("<I", raw, 0x6C)[0] if len(raw) >= 0x70 else 0
        self.size = size_lo | (size_hi << 32)


class Ext3Backend:
    """An ext2/3/4 file system at ``offset`` (``size`` bytes, -1 = to the end) of ``path``."""

    def __init__(self, path: str, offset: int = 0, size: int = -1, name: str = "") -> None:
        self.path = path
        self.offset = offset
        self.name = name or (path if offset == 0 else f"{path}@{offset}")
        try:
            self._file = open(path, "rb")
        except OSError as exc:
            raise ImageError(
                f"{self.name}: cannot open: {exc.strerror}", hint="check the image path"
            ) from exc
        try:
            total = os.fstat(self._file.fileno()).st_size
        except OSError as exc:  # pragma: no cover - fstat on an open file
            raise ImageError(f"{self.name}: cannot stat: {exc.strerror}", hint=HINT_ACCESS) from exc
        self.size = total - offset if size < 0 else size
        if offset < 0 or offset + self.size > total:
            raise ImageError(f"{self.name}: the partition lies beyond the end of the file",
                             hint=HINT_TRUNCATED)
        self._inodes: Dict[int, _Inode] = {}
        self._dirs: Dict[int, Dict[str, int]] = {}
        self._extents: Dict[int, List[Tuple[int, int, int, bool]]] = {}
        self._indirect: Dict[int, Tuple[int, ...]] = {}
        self._superblock()

    # --- low level -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the image file."""
        self._file.close()

    def __del__(self) -> None:
        try:
            self._file.close()
        except Exception:
            pass

    def _pread(self, pos: int, length: int) -> bytes:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise ImageError(
                f"{self.name}: corrupt ext2/3/4 file system (a read at byte {pos} goes past "
                f"the end of the {self.size}-byte partition)",
                hint="the image is truncated or damaged: rebuild it",
            )
        try:
            data = os.pread(self._file.fileno(), length, self.offset + pos)
        except OSError as exc:
            raise ImageError(f"{self.name}: cannot read: {exc.strerror}", hint=HINT_ACCESS) from exc
        if len(data) != length:
            raise ImageError(f"{self.name}: the image is truncated", hint=HINT_TRUNCATED)
        return data

    def _block(self, number: int) -> bytes:
        if number >= self.blocks_count:
            raise ImageError(
                f"{self.name}: corrupt ext2/3/4 file system (block {number} is past the "
                f"{self.blocks_count} blocks of the file system)",
                hint="the image is damaged: rebuild it",
            )
        return self._pread(number * self.block_size, self.block_size)

    def _map_block(self, number: int) -> Tuple[int, ...]:
        """An indirect block's pointers, cached: sequential reads use the same one often."""
        table = self._indirect.get(number)
        if table is None:
            raw = self._block(number)
            table = struct.unpack(f"<{len(raw) // 4}I", raw)
            if len(self._indirect) > 64:
                self._indirect.clear()
            self._indirect[number] = table
        return table

    @_guard
    def _superblock(self) -> None:
        sb = self._pread(SUPERBLOCK_OFFSET, 1024)
        magic = struct.unpack_from("<H", sb, 0x38)[0]
        if magic != EXT_MAGIC:
            raise ImageError(
                f"{self.name}: not an ext2/3/4 file system (bad magic 0x{magic:04x})",
                hint="the partition is damaged or holds another file system",
            )
        self.inodes_count = struct.unpack_from("<I", sb, 0)[0]
        blocks_lo = struct.unpack_from("<I", sb, 4)[0]
        self.first_data_block = struct.unpack_from("<I", sb, 0x14)[0]
        log_block = struct.unpack_from("<I", sb, 0x18)[0]
        self.blocks_per_group = struct.unpack_from("<I", sb, 0x20)[0]
        self.inodes_per_group = struct.unpack_from("<I", sb, 0x28)[0]
        rev = struct.unpack_from("<I", sb, 0x4C)[0]
        self.inode_size = struct.unpack_from("<H", sb, 0x58)[0] if rev >= 1 else 128
        self.incompat = struct.unpack_from("<I", sb, 0x60)[0]
        unsupported = self.incompat & ~SUPPORTED_INCOMPAT
        if unsupported:
            names = [
                INCOMPAT_NAMES.get(bit, f"0x{bit:x}")
                for bit in (1 << i for i in range(32))
                if unsupported & bit
            ]
            raise ImageError(
                f"{self.name}: the ext4 file system uses feature(s) hpcrun cannot read: "
                + ", ".join(names),
                hint="rebuild the image without them (mke2fs -O ^feature), or launch with "
                "--no-check",
            )
        if log_block > 6:
            raise ImageError(
                f"{self.name}: corrupt ext2/3/4 superblock (block size 2^{log_block + 10})",
                                                            hint=HINT_DAMAGED
            )
        self.block_size = 1024 << log_block
        is64 = bool(self.incompat & INCOMPAT_64BIT)
        blocks_hi = struct.unpack_from("<I", sb, 0x150)[0] if is64 else 0
        self.blocks_count = blocks_lo | (blocks_hi << 32)
        self.desc_size = struct.unpack_from("<H", sb, 0xFE)[0] if is64 else 32
        if is64 and self.desc_size < 64:
            self.desc_size = 64 if self.desc_size else 32
        if (
            self.blocks_per_group == 0
            or self.inodes_per_group == 0
            or self.inode_size < 128
            or self.inode_size > self.block_size
            or self.inode_size & (self.inode_size - 1)
        ):
            raise ImageError(f"{self.name}: corrupt ext2/3/4 superblock", hint=HINT_DAMAGED)
        self.filetype = bool(self.incompat & INCOMPAT_FILETYPE)
        groups = -(-(self.blocks_count - self.first_data_block) // self.blocks_per_group)
        self.group_count = max(1, groups)
        self._gdt_block = self.first_data_block + 1
        self._group_tables: Dict[int, int] = {}

    def _inode_table(self, group: int) -> int:
        table = self._group_tables.get(group)
        if table is None:
            if group >= self.group_count:
                raise ImageError(f"{self.name}: corrupt ext2/3/4 file system (inode group {group})",
                                 hint=HINT_DAMAGED)
            pos = self._gdt_block * self.block_size + group * self.desc_size
            raw = self._pread(pos, self.desc_size)
            table = struct.unpack_from("<I", raw, 8)[0]
            if self.desc_size >= 64:
                table |= struct.unpack_from("<I", raw, 0x28)[0] << 32
            if table == 0 or table >= self.blocks_count:
                raise ImageError(
                    f"{self.name}: corrupt ext2/3/4 group descriptor {group} (inode table at "
                    f"block {table})",
                    hint="the image is damaged: rebuild it",
                )
            self._group_tables[group] = table
        return table

    def _inode(self, number: int) -> _Inode:
        inode = self._inodes.get(number)
        if inode is not None:
            return inode
        if number < 1 or number > self.inodes_count:
            raise ImageError(f"{self.name}: corrupt ext2/3/4 file system (inode {number})",
                             hint=HINT_DAMAGED)
        group, index = divmod(number - 1, self.inodes_per_group)
        pos = self._inode_table(group) * self.block_size + index * self.inode_size
        inode = _Inode(number, self._pread(pos, min(self.inode_size, 256)))
        if inode.flags & INLINE_DATA_FL:
            raise ImageError(
                f"{self.name}: inode {number} uses inline_data, which hpcrun cannot read",
                hint="rebuild the image without inline_data (mke2fs -O ^inline_data)",
            )
        if len(self._inodes) > 4096:
            self._inodes.clear()
        self._inodes[number] = inode
        return inode

    # --- block mapping -------------------------------------------------------------------

    def _extent_list(self, inode: _Inode) -> List[Tuple[int, int, int, bool]]:
        """(logical start, length, physical start, uninitialised) of every leaf extent."""
        cached = self._extents.get(inode.number)
        if cached is not None:
            return cached
        out: List[Tuple[int, int, int, bool]] = []
        self._walk_extents(inode.i_block, 0, out)
        out.sort()
        if len(self._extents) > 256:
            self._extents.clear()
        self._extents[inode.number] = out
        return out

    def _walk_extents(self, node: bytes, level: int, out: List[Tuple[int, int, int, bool]]) -> None:
        magic, entries, _max, depth = struct.unpack_from("<HHHH", node, 0)
        if magic != EXTENT_MAGIC or level > MAX_EXTENT_DEPTH or depth > MAX_EXTENT_DEPTH:
            raise ImageError(
                f"{self.name}: corrupt ext4 extent tree", hint="the image is damaged: rebuild it"
            )
        for i in range(entries):
            base = 12 + 12 * i
            if depth == 0:
                lblock, length, start_hi, start_lo = struct.unpack_from("<IHHI", node, base)
                uninit = length > 32768
                if uninit:
                    length -= 32768
                out.append((lblock, length, start_lo | (start_hi << 32), uninit))
            else:
                _lblock, leaf_lo, leaf_hi = struct.unpack_from("<IIH", node, base)
                self._walk_extents(self._block(leaf_lo | (leaf_hi << 32)), level + 1, out)

    def _map_extent(self, inode: _Inode, lblock: int) -> Tuple[int, int]:
        """(physical block or 0 for a hole, blocks in this run) for logical block ``lblock``."""
        extents = self._extent_list(inode)
        lo, hi = 0, len(extents)
        while lo < hi:  # last extent starting at or before lblock
            mid = (lo + hi) // 2
            if extents[mid][0] <= lblock:
                lo = mid + 1
            else:
                hi = mid
        if lo:
            start, length, phys, uninit = extents[lo - 1]
            if lblock < start + length:
                run = start + length - lblock
                return (0 if uninit else phys + lblock - start), run
        nxt = extents[lo][0] - lblock if lo < len(extents) else 1
        return 0, max(1, nxt)

    def _map_indirect(self, inode: _Inode, lblock: int) -> Tuple[int, int]:
        per = self.block_size // 4
        ptrs = struct.unpack_from("<15I", inode.i_block)
        if lblock < 12:
            return _run_in(ptrs[:12], lblock)
        lblock -= 12
        for level, slot in ((1, 12), (2, 13), (3, 14)):
            span = per**level
            if lblock < span:
                block = ptrs[slot]
                for depth in range(level - 1, -1, -1):
                    if block == 0:  # a hole: the whole subtree below is unallocated
                        sub = per ** (depth + 1)
                        return 0, sub - lblock % sub
                    table = self._map_block(block)
                    index = (lblock // per**depth) % per
                    if depth == 0:
                        return _run_in(table, index)
                    block = table[index]
            lblock -= span
        raise ImageError(f"{self.name}: corrupt ext2/3 block map (file too large)",
                         hint=HINT_DAMAGED)

    def _map(self, inode: _Inode, lblock: int) -> Tuple[int, int]:
        if inode.flags & EXTENTS_FL:
            return self._map_extent(inode, lblock)
        return self._map_indirect(inode, lblock)

    def _read_inode(self, inode: _Inode, offset: int, size: int) -> bytes:
        end = min(inode.size, offset + size) if size >= 0 else inode.size
        if offset >= end:
            return b""
        # A corrupt size must not make us allocate gigabytes of "holes": one call reads at
        # most a few times the partition (callers read big files in ranges).
        if end - offset > min(MAX_READ, max(4 * self.size, 256 << 20)):
            raise ImageError(
                f"{self.name}: refusing a {end - offset}-byte read of inode {inode.number} "
                "(corrupt size?)",
                hint="read the file in ranges, or check the image",
            )
        bs = self.block_size
        out: List[bytes] = []
        pos = offset
        while pos < end:
            lblock, within = divmod(pos, bs)
            phys, run = self._map(inode, lblock)
            # Extend over physically contiguous blocks to read them in one call.
            want = end - pos
            if phys:
                count = min(run, -(-(within + want) // bs))
                if phys + count > self.blocks_count:
                    raise ImageError(
                        f"{self.name}: corrupt ext2/3/4 file system (block {phys + count - 1} "
                        f"of inode {inode.number} is past the end)", hint=HINT_TRUNCATED
                    )
                chunk = self._pread(phys * bs + within, min(count * bs - within, want))
            else:
                chunk = b"\0" * min(run * bs - within, want)
            out.append(chunk)
            pos += len(chunk)
        return b"".join(out)

    # --- directories ---------------------------------------------------------------------

    def _entries(self, inode: _Inode) -> Dict[str, int]:
        cached = self._dirs.get(inode.number)
        if cached is not None:
            return cached
        data = self._read_inode(inode, 0, inode.size)
        entries: Dict[str, int] = {}
        bs = self.block_size
        for block_start in range(0, len(data), bs):
            pos = block_start
            block_end = min(block_start + bs, len(data))
            while pos + 8 <= block_end:
                ino, rec_len, name_len, ftype = struct.unpack_from("<IHBB", data, pos)
                if not self.filetype:
                    name_len |= ftype << 8
                if rec_len == 0 and bs >= 65536:
                    rec_len = bs
                if rec_len < 8 or pos + rec_len > block_end or 8 + name_len > rec_len:
                    raise ImageError(
                        f"{self.name}: corrupt directory (inode {inode.number})",
                        hint="the image is damaged: rebuild it",
                    )
                if ino:
                    name = data[pos + 8 : pos + 8 + name_len].decode("utf-8", "surrogateescape")
                    if name not in (".", ".."):
                        entries[name] = ino
                pos += rec_len
        if len(self._dirs) > 1024:
            self._dirs.clear()
        self._dirs[inode.number] = entries
        return entries

    # --- Backend protocol ----------------------------------------------------------------

    def _node(self, inode: _Inode) -> Node:
        fmt = stat.S_IFMT(inode.mode)
        whiteout = False
        if fmt == stat.S_IFDIR:
            kind = DIR
        elif fmt == stat.S_IFREG:
            kind = FILE
        elif fmt == stat.S_IFLNK:
            kind = SYMLINK
        else:
            kind = OTHER
            if fmt == stat.S_IFCHR:
                old, new = struct.unpack_from("<II", inode.i_block)
                whiteout = old == 0 and new == 0
        return Node(kind, inode.size, inode.mode, inode.mtime, inode.number, whiteout)

    @_guard
    def root(self) -> Node:
        """The root directory (inode 2)."""
        node = self._node(self._inode(ROOT_INODE))
        if node.kind != DIR:
            raise ImageError(f"{self.name}: corrupt ext2/3/4 file system (root is not a directory)",
                             hint=HINT_DAMAGED)
        return node

    @_guard
    def child(self, directory: Node, name: str) -> Optional[Node]:
        """The entry ``name`` of ``directory``, or None."""
        number = self._entries(self._inode(int(directory.ref)))  # type: ignore[call-overload]
        ino = number.get(name)
        return None if ino is None else self._node(self._inode(ino))

    @_guard
    def readlink(self, node: Node) -> str:
        """A symbolic link's target: in the inode (fast, < 60 bytes) or in its data block."""
        inode = self._inode(int(node.ref))  # type: ignore[call-overload]
        ea_blocks = (self.block_size // 512) if inode.file_acl else 0
        if (
            inode.size < 60
            and not inode.flags & EXTENTS_FL
            and inode.blocks_lo - ea_blocks == 0
        ):
            raw = inode.i_block[: inode.size]
        else:
            if inode.size > 4096 * 4:
                raise ImageError(f"{self.name}: corrupt symbolic link (inode {inode.number})",
                                 hint=HINT_DAMAGED)
            raw = self._read_inode(inode, 0, inode.size)
        return raw.decode("utf-8", "surrogateescape")

    @_guard
    def read(self, node: Node, offset: int = 0, size: int = -1) -> bytes:
        """Bytes of a regular file (holes read as zeros)."""
        return self._read_inode(self._inode(int(node.ref)), offset, size)  # type: ignore[call-overload]

    @_guard
    def listdir(self, directory: Node) -> List[str]:
        """Names in a directory (without ``.`` and ``..``)."""
        return list(self._entries(self._inode(int(directory.ref))))  # type: ignore[call-overload]
