"""A lazy, read-only squashfs 4.0 reader (the :class:`~hpcrun.image.fs.Backend` for squashfs).

Written from the squashfs 4.0 on-disk format.  Opening reads only the 96-byte superblock;
a path lookup decompresses only the metadata blocks of the inodes and directory listings
on that path (using the directory index of extended directory inodes to jump into large
directories); a file read decompresses only the data blocks that cover the requested
range.  So finding ``libmpi.so.12`` in a 100,000-file image and parsing its ELF headers
touches a few dozen kilobytes.

Layout reminders (all little-endian):

* superblock (96 bytes) at the start of the partition;
* metadata blocks: a 16-bit header (bit 15 set = stored uncompressed, low 15 bits = stored
  size) followed by at most 8 KiB once decompressed; tables are runs of such blocks and
  references are ``(block start relative to the table) << 16 | offset in the block``;
* inodes start with a 16-byte common header (type, permissions, uid/gid index, mtime,
  inode number); types 1-7 are basic dir/file/symlink/block/char/fifo/socket, 8-14 the
  extended variants;
* a directory listing is a sequence of headers (count - 1, inode block, base inode number)
  each followed by up to 256 entries (offset, inode delta, type, name size - 1, name),
  sorted by name;
* file data: consecutive data blocks whose sizes follow the file inode (bit 24 set =
  stored uncompressed, size 0 = a sparse block of zeros), plus an optional tail packed in
  a shared fragment block listed in the fragment table.
"""

from __future__ import annotations

import os
import stat
import struct

from hpcrun.errors import (
    HINT_ACCESS,
    HINT_DAMAGED,
    HINT_INSIDE,
    EnvironmentNotFoundError,
    HpcrunError,
    ImageError,
)
from hpcrun.image.fs import DIR, FILE, OTHER, SYMLINK, Node

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

    from hpcrun.image.compress import Step

MAGIC = 0x73717368  # "hsqs"
MAGIC_BIG_ENDIAN = 0x68737173  # "sqsh": squashfs 1-3 on big-endian machines
SUPERBLOCK = struct.Struct("<IIIIIHHHHHHQQQQQQQQ")  # 96 bytes
METADATA_SIZE = 8192
NO_FRAGMENT = 0xFFFFFFFF
NO_TABLE = 0xFFFFFFFFFFFFFFFF
DATA_UNCOMPRESSED = 1 << 24
MAX_NAME = 256
MAX_SYMLINK = 4096

_INODE_HEADER = struct.Struct("<HHHHII")
_BASIC_DIR = struct.Struct("<IIHHI")
_EXT_DIR = struct.Struct("<IIIIHHI")
_BASIC_FILE = struct.Struct("<IIII")
_EXT_FILE = struct.Struct("<QQQIIII")
_DIR_HEADER = struct.Struct("<III")
_DIR_ENTRY = struct.Struct("<HhHH")
_DIR_INDEX = struct.Struct("<III")
_FRAGMENT = struct.Struct("<QII")
_U32 = struct.Struct("<I")
_U32X2 = struct.Struct("<II")
_U64 = struct.Struct("<Q")

_META_CACHE = 256  # decompressed metadata blocks kept (at most 2 MiB)
_DATA_CACHE = 32  # decompressed data/fragment blocks kept (at most 32 blocks' bytes)
_STEP = 32 << 10  # partly decoded blocks grow by this much at least
_CHUNK_CACHE = 256  # decoded parts of directory listings kept (name -> inode reference)
_INODE_CACHE = 4096  # parsed inodes kept

_KIND = {1: DIR, 2: FILE, 3: SYMLINK, 4: OTHER, 5: OTHER, 6: OTHER, 7: OTHER}
_IFMT = {
    1: stat.S_IFDIR,
    2: stat.S_IFREG,
    3: stat.S_IFLNK,
    4: stat.S_IFBLK,
    5: stat.S_IFCHR,
    6: stat.S_IFIFO,
    7: stat.S_IFSOCK,
}

_CORRUPT_HINT = (
    "the squashfs image is corrupt or truncated; check it with `unsquashfs -s IMAGE` "
    "and rebuild or re-download it"
)
_UNSUPPORTED_HINT = (
    "hpcrun cannot read this squashfs variant itself; extract it with `unsquashfs -d DIR "
    "IMAGE` (add `-o OFFSET` for a SIF partition) and use the directory, or run with "
    "--no-check"
)


class _Dir:
    """A directory inode: where its listing is, and its directory index (extended only)."""

    __slots__ = ("block", "icount", "index", "index_at", "ino", "offset", "parent", "ref", "size")

    def __init__(
        self,
        ref: int,
        ino: int,
        parent: int,
        block: int,
        offset: int,
        size: int,
        icount: int = 0,
        index_at: Tuple[int, int] = (0, 0),
    ) -> None:
        self.ref = ref
        self.ino = ino
        self.parent = parent
        self.block = block
        self.offset = offset
        self.size = size  # listing size + 3 (the kernel's invented "." and "..")
        self.icount = icount
        self.index_at = index_at  # (metadata block position, offset) of the index
        self.index: Optional[List[Tuple[bytes, int, int]]] = None


class _File:
    """A regular file inode; the block-size list is read on the first read."""

    __slots__ = (
        "frag",
        "frag_off",
        "list_at",
        "nblocks",
        "offsets",
        "ref",
        "size",
        "start",
        "words",
    )

    def __init__(
        self,
        ref: int,
        start: int,
        size: int,
        frag: int,
        frag_off: int,
        nblocks: int,
        list_at: Tuple[int, int],
    ) -> None:
        self.ref = ref
        self.start = start
        self.size = size
        self.frag = frag
        self.frag_off = frag_off
        self.nblocks = nblocks
        self.list_at = list_at
        self.words: Optional[Tuple[int, ...]] = None
        self.offsets: Optional[List[int]] = None


class _Partial:
    """A data block decoded only as far as reads have needed (see ``_data_block``)."""

    __slots__ = ("data", "ended", "step")

    def __init__(self, step: Step) -> None:
        self.step = step
        self.data = b""
        self.ended = False


class _Leaf:
    """A symbolic link (``target``) or a device/fifo/socket (``rdev``)."""

    __slots__ = ("rdev", "ref", "target")

    def __init__(self, ref: int, target: str = "", rdev: int = 0) -> None:
        self.ref = ref
        self.target = target
        self.rdev = rdev


def _guard(method: Callable) -> Callable:
    """Turn stray parsing exceptions on corrupt input into ImageError (a safety net)."""

    def wrapper(self: SquashfsBackend, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except HpcrunError:
            raise
        except (struct.error, IndexError, ValueError, OverflowError, KeyError) as exc:
            raise ImageError(
                f"{self.name}: corrupt squashfs metadata ({exc})", hint=_CORRUPT_HINT
            ) from None

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


class SquashfsBackend:
    """A squashfs 4.0 file system read lazily from ``path`` (or a partition inside it).

    ``offset``/``size`` select a partition (a SIF's system partition); ``size`` -1 means
    "to the end of the file".  The file descriptor stays open until :meth:`close`.
    """

    def __init__(self, path: str, offset: int = 0, size: int = -1, name: str = "") -> None:
        self.path = path
        self.name = name or (path if offset == 0 else f"{path} (squashfs at offset {offset})")
        self._base = offset
        self._meta_cache: Dict[int, Tuple[bytes, int]] = {}
        self._data_cache: Dict[int, Union[bytes, _Partial]] = {}
        self._frag_index: Dict[int, int] = {}
        self._codec: Optional[Callable[[bytes, int], bytes]] = None
        self._root: Optional[Node] = None
        self._chunks: Dict[Tuple[int, int], Dict[bytes, int]] = {}
        self._inodes: Dict[int, Node] = {}
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ImageError(
                f"{path}: cannot open the image: {exc.strerror}",
                hint="check the path and its permissions",
            ) from None
        try:
            self._open(size)
        except BaseException:
            self.close()
            raise

    # -- opening -----------------------------------------------------------------------

    def _open(self, size: int) -> None:
        try:
            file_size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise ImageError(f"{self.name}: cannot stat the image: {exc.strerror}",
                             hint=HINT_ACCESS) from None
        avail = file_size - self._base if size < 0 else min(size, file_size - self._base)
        if avail < SUPERBLOCK.size:
            raise ImageError(
                f"{self.name}: truncated squashfs superblock at offset {self._base}: "
                f"{max(avail, 0)} of {SUPERBLOCK.size} bytes present",
                hint=_CORRUPT_HINT,
            )
        raw = os.pread(self._fd, SUPERBLOCK.size, self._base)
        (
            magic,
            self.inode_count,
            self.mtime,
            self.block_size,
            self.fragment_count,
            self.compression,
            block_log,
            self.flags,
            self.id_count,
            major,
            minor,
            self.root_ref,
            bytes_used,
            id_table,
            xattr_table,
            inode_table,
            dir_table,
            frag_table,
            export_table,
        ) = SUPERBLOCK.unpack(raw)
        if magic != MAGIC:
            what = (
                "a big-endian squashfs (version 3 or older)"
                if magic == MAGIC_BIG_ENDIAN
                else f"magic {raw[:4]!r}, expected b'hsqs'"
            )
            raise ImageError(
                f"{self.name}: not a squashfs 4.0 image at offset {self._base} ({what})",
                hint="pass a SIF or squashfs image built by Apptainer/Singularity or mksquashfs",
            )
        if (major, minor) != (4, 0):
            raise ImageError(
                f"{self.name}: squashfs version {major}.{minor} at offset {self._base} is "
                "not supported (only 4.0)",
                hint=_UNSUPPORTED_HINT,
            )
        bs = self.block_size
        if bs < 4096 or bs > 1 << 20 or bs & (bs - 1) or (1 << block_log) != bs:
            raise ImageError(
                f"{self.name}: invalid squashfs block size {bs} (log {block_log}) at "
                f"offset {self._base}",
                hint=_CORRUPT_HINT,
            )
        if bytes_used > avail:
            raise ImageError(
                f"{self.name}: truncated squashfs image: the superblock says {bytes_used} "
                f"bytes, only {avail} are present after offset {self._base}",
                hint=_CORRUPT_HINT,
            )
        if not SUPERBLOCK.size <= inode_table < dir_table <= bytes_used:
            raise ImageError(
                f"{self.name}: squashfs inode table ({inode_table}) and directory table "
                f"({dir_table}) offsets are out of range (image size {bytes_used})",
                hint=_CORRUPT_HINT,
            )
        self.bytes_used = bytes_used
        self.inode_table = inode_table
        self.dir_table = dir_table
        self.frag_table = frag_table
        self.id_table = id_table
        # The directory table ends where the next table begins.
        following = [
            t
            for t in (frag_table, export_table, id_table, xattr_table, bytes_used)
            if t != NO_TABLE and dir_table < t <= bytes_used
        ]
        self.dir_end = min(following) if following else bytes_used
        if self.fragment_count and not (dir_table < frag_table < bytes_used):
            raise ImageError(
                f"{self.name}: squashfs fragment table offset {frag_table} is out of range",
                hint=_CORRUPT_HINT,
            )
        self._check_tables()

    def _check_tables(self) -> None:
        """What ``unsquashfs`` checks before it lists anything, cheaply: the inode table is a
        chain of metadata blocks that ends exactly where the directory table starts (one
        2-byte header read per block, nothing decompressed), and the uid/gid table is there
        and complete (one small block).  A damaged table is refused at open, not called
        compatible because the few paths hpcrun reads happened to avoid it."""
        pos = self.inode_table
        while pos < self.dir_table:
            raw = self._pread(pos, 2, "inode table block")
            stored = (raw[0] | (raw[1] << 8)) & 0x7FFF
            if stored == 0 or pos + 2 + stored > self.dir_table:
                raise self._corrupt(
                    f"the inode table's metadata block at byte offset {pos} has size "
                    f"{stored}, which does not fit before the directory table at "
                    f"{self.dir_table}")
            pos += 2 + stored
        count = self.id_count
        blocks = (count * 4 + METADATA_SIZE - 1) // METADATA_SIZE
        index_end = self.id_table + 8 * blocks
        if count == 0 or self.id_table == NO_TABLE or not (
                self.dir_table < self.id_table and index_end <= self.bytes_used):
            raise self._corrupt(
                f"the uid/gid table ({count} ids, index at byte offset {self.id_table}) lies "
                f"outside the image ({self.bytes_used} bytes)")
        index = self._pread(self.id_table, 8 * blocks, "uid/gid table index")
        got = 0
        for i in range(blocks):
            start = struct.unpack_from("<Q", index, 8 * i)[0]
            if not self.dir_table < start < self.id_table:
                raise self._corrupt(
                    f"the uid/gid table index entry {i} (byte offset {self.id_table + 8 * i}) "
                    f"points at byte offset {start}, outside the table")
            got += len(self._mblock(start, self.id_table)[0])
        if got < count * 4:
            raise self._corrupt(
                f"the uid/gid table at byte offset {self.id_table} holds {got // 4} of its "
                f"{count} ids")

    def close(self) -> None:
        """Close the image file."""
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            os.close(fd)
            self._fd = -1

    def __enter__(self) -> SquashfsBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    # -- low level -----------------------------------------------------------------------

    def _corrupt(self, message: str) -> ImageError:
        return ImageError(f"{self.name}: corrupt squashfs: {message}", hint=_CORRUPT_HINT)

    def _pread(self, pos: int, n: int, what: str) -> bytes:
        if pos < 0 or n < 0 or pos + n > self.bytes_used:
            raise self._corrupt(
                f"{what} at offset {pos} (+{n} bytes) lies beyond the end of the image "
                f"({self.bytes_used} bytes)"
            )
        try:
            data = os.pread(self._fd, n, self._base + pos)
        except OSError as exc:
            raise ImageError(f"{self.name}: cannot read offset {pos}: {exc.strerror}",
                             hint=HINT_ACCESS) from None
        if len(data) != n:
            raise self._corrupt(f"{what} at offset {pos}: the file is truncated")
        return data

    def _decompress(self, raw: bytes, limit: int, where: int, what: str) -> bytes:
        if self._codec is None:
            from hpcrun.image.compress import decompressor

            try:
                self._codec = decompressor(self.compression)
            except ImageError as exc:
                hint = (
                    f"{exc.hint}; or extract the image with `unsquashfs -d DIR IMAGE`"
                    if exc.hint
                    else _UNSUPPORTED_HINT
                )
                raise ImageError(f"{self.name}: {exc.message}", hint=hint) from None
        try:
            return self._codec(raw, limit)
        except ImageError as exc:
            raise self._corrupt(f"{what} at offset {where}: {exc.message}") from None

    def _mblock(self, pos: int, end: int) -> Tuple[bytes, int]:
        """The decompressed metadata block at ``pos`` and the position of the next one."""
        hit = self._meta_cache.get(pos)
        if hit is not None:
            return hit
        if pos < 0 or pos + 2 > end:
            raise self._corrupt(
                f"metadata block at offset {pos} lies outside its table (ends at {end})"
            )
        raw = self._pread(pos, min(METADATA_SIZE + 2, end - pos), "metadata block")
        header = raw[0] | (raw[1] << 8)
        stored = header & 0x7FFF
        if stored == 0 or pos + 2 + stored > end:
            raise self._corrupt(
                f"metadata block at offset {pos} has an invalid size {stored} (table ends at {end})"
            )
        payload = raw[2 : 2 + stored]
        if header & 0x8000:
            data = payload
        else:
            data = self._decompress(payload, METADATA_SIZE, pos, "metadata block")
        if not data:
            raise self._corrupt(f"metadata block at offset {pos} is empty")
        entry = (data, pos + 2 + stored)
        cache = self._meta_cache
        if len(cache) >= _META_CACHE:
            del cache[next(iter(cache))]  # the oldest entry
        cache[pos] = entry
        return entry

    def _meta(self, pos: int, off: int, n: int, end: int) -> Tuple[bytes, int, int]:
        """``n`` bytes of a metadata table from (block ``pos``, ``off``), and where it ends."""
        data, nxt = self._mblock(pos, end)
        if off + n <= len(data):
            return data[off : off + n], pos, off + n
        parts = []
        while True:
            while off >= len(data):
                off -= len(data)
                pos = nxt
                data, nxt = self._mblock(pos, end)
            take = min(n, len(data) - off)
            parts.append(data[off : off + take])
            n -= take
            off += take
            if n == 0:
                return b"".join(parts), pos, off

    # -- inodes -------------------------------------------------------------------------

    def _inode(self, ref: int) -> Node:
        node = self._inodes.get(ref)
        if node is None:
            node = self._parse_inode(ref)
            if len(self._inodes) >= _INODE_CACHE:
                del self._inodes[next(iter(self._inodes))]
            self._inodes[ref] = node
        return node

    def _parse_inode(self, ref: int) -> Node:
        block, off = ref >> 16, ref & 0xFFFF
        end = self.dir_table
        if off >= METADATA_SIZE or self.inode_table + block >= end:
            raise self._corrupt(f"inode reference {ref:#x} points outside the inode table")
        pos = self.inode_table + block
        raw, pos, off = self._meta(pos, off, 16, end)
        itype, perm, _uid, _gid, mtime, ino = _INODE_HEADER.unpack(raw)
        basic = itype - 7 if itype > 7 else itype
        if itype < 1 or itype > 14:
            raise self._corrupt(f"inode {ref:#x} has unknown type {itype}")
        kind = _KIND[basic]
        mode = _IFMT[basic] | (perm & 0o7777)
        if itype == 1:
            raw, pos, off = self._meta(pos, off, _BASIC_DIR.size, end)
            dblock, _nlink, dsize, doff, parent = _BASIC_DIR.unpack(raw)
            ref_obj: object = _Dir(ref, ino, parent, dblock, doff, dsize)
            size = dsize
        elif itype == 8:
            raw, pos, off = self._meta(pos, off, _EXT_DIR.size, end)
            _nlink, dsize, dblock, parent, icount, doff, _xattr = _EXT_DIR.unpack(raw)
            ref_obj = _Dir(ref, ino, parent, dblock, doff, dsize, icount, (pos, off))
            size = dsize
        elif itype in (2, 9):
            if itype == 2:
                raw, pos, off = self._meta(pos, off, _BASIC_FILE.size, end)
                start, frag, frag_off, size = _BASIC_FILE.unpack(raw)
            else:
                raw, pos, off = self._meta(pos, off, _EXT_FILE.size, end)
                start, size, _sparse, _nlink, frag, frag_off, _xattr = _EXT_FILE.unpack(raw)
            bs = self.block_size
            nblocks = size // bs if frag != NO_FRAGMENT else (size + bs - 1) // bs
            ref_obj = _File(ref, start, size, frag, frag_off, nblocks, (pos, off))
        elif itype in (3, 10):
            raw, pos, off = self._meta(pos, off, 8, end)
            _nlink, tsize = _U32X2.unpack(raw)
            if tsize > MAX_SYMLINK:
                raise self._corrupt(f"symbolic link inode {ref:#x} has a {tsize}-byte target")
            target, pos, off = self._meta(pos, off, tsize, end)
            ref_obj = _Leaf(ref, target=os.fsdecode(target))
            size = tsize
        elif basic in (4, 5):
            raw, pos, off = self._meta(pos, off, 8, end)
            _nlink, rdev = _U32X2.unpack(raw)
            ref_obj = _Leaf(ref, rdev=rdev)
            size = 0
        else:
            ref_obj = _Leaf(ref)
            size = 0
        whiteout = basic == 5 and isinstance(ref_obj, _Leaf) and ref_obj.rdev == 0
        return Node(kind, size, mode, mtime, ref_obj, whiteout)

    # -- directories ----------------------------------------------------------------------

    def _listing_start(self, d: _Dir) -> Tuple[int, int, int]:
        """(metadata block, offset, bytes done) where a directory's listing starts."""
        if d.size < 3:
            raise self._corrupt(f"directory inode {d.ref:#x} has an invalid size {d.size}")
        if d.offset >= METADATA_SIZE:
            raise self._corrupt(f"directory inode {d.ref:#x} has listing offset {d.offset}")
        return self.dir_table + d.block, d.offset, 0

    def _entries(
        self, d: _Dir, start: Optional[Tuple[int, int, int]] = None, until: int = -1
    ) -> Iterator[Tuple[bytes, int, int]]:
        """(name, inode reference, inode number) of a directory's entries, in stored order.

        ``start`` (from the directory index) and ``until`` (a listing offset at a header
        boundary) restrict the scan to a part of the listing.
        """
        total = d.size - 3
        pos, off, done = self._listing_start(d) if start is None else start
        stop = total if until < 0 else min(until, total)
        end = self.dir_end
        meta = self._meta
        mblock = self._mblock
        header_from = _DIR_HEADER.unpack_from
        entry_from = _DIR_ENTRY.unpack_from
        data, _nxt = mblock(pos, end)
        while done < stop:
            # Fast path: the record lies inside the current block; else stitch blocks.
            if off + 12 <= len(data):
                count, iblock, base = header_from(data, off)
                off += 12
            else:
                raw, pos, off = meta(pos, off, 12, end)
                data, _nxt = mblock(pos, end)
                count, iblock, base = _DIR_HEADER.unpack(raw)
            count += 1
            done += 12
            if count > MAX_NAME:
                raise self._corrupt(
                    f"directory inode {d.ref:#x}: a listing header claims {count} entries"
                )
            for _ in range(count):
                if off + 8 <= len(data):
                    ioff, delta, _etype, nsize = entry_from(data, off)
                    off += 8
                else:
                    raw, pos, off = meta(pos, off, 8, end)
                    data, _nxt = mblock(pos, end)
                    ioff, delta, _etype, nsize = _DIR_ENTRY.unpack(raw)
                nsize += 1
                done += 8 + nsize
                if nsize > MAX_NAME or done > total:
                    raise self._corrupt(
                        f"directory inode {d.ref:#x}: entries overrun the listing ({total} bytes)"
                    )
                if off + nsize <= len(data):
                    name = data[off : off + nsize]
                    off += nsize
                else:
                    name, pos, off = meta(pos, off, nsize, end)
                    data, _nxt = mblock(pos, end)
                yield name, (iblock << 16) | ioff, base + delta

    def _dir_index(self, d: _Dir) -> List[Tuple[bytes, int, int]]:
        """The directory index of an extended directory: (first name, listing offset, block)."""
        if d.index is None:
            found = []
            ipos, ioff = d.index_at
            for _ in range(d.icount):
                raw, ipos, ioff = self._meta(ipos, ioff, 12, self.dir_table)
                index, start, nsize = _DIR_INDEX.unpack(raw)
                if nsize >= MAX_NAME:
                    raise self._corrupt(f"directory inode {d.ref:#x} has a corrupt index")
                name, ipos, ioff = self._meta(ipos, ioff, nsize + 1, self.dir_table)
                found.append((name, index, start))
            d.index = found
        return d.index

    def _chunk(self, d: _Dir, want: bytes) -> Tuple[Tuple[int, int, int], int]:
        """The part of a listing that holds ``want`` if anything does: (start, until).

        Index entries mark listing headers at metadata block starts, named by their first
        entry; names are sorted, so ``want`` lies between the last index name not after it
        and the next one.
        """
        start = self._listing_start(d)
        if not d.icount:
            return start, -1
        best: Optional[Tuple[int, int]] = None
        until = -1
        for name, index, block in self._dir_index(d):
            if name > want:
                until = index
                break
            best = (index, block)
        if best is None:
            return start, until
        index, block = best
        if index >= d.size - 3 or self.dir_table + block >= self.dir_end:
            raise self._corrupt(f"directory inode {d.ref:#x} has an index entry out of range")
        return (self.dir_table + block, (d.offset + index) % METADATA_SIZE, index), until

    def _dir(self, node: Node) -> _Dir:
        if not isinstance(node.ref, _Dir):
            raise ImageError(f"{self.name}: not a directory", hint=HINT_INSIDE)
        return node.ref

    def _checked_child(self, d: _Dir, ref: int) -> Node:
        node = self._inode(ref)
        if node.kind == DIR:
            sub = node.ref
            assert isinstance(sub, _Dir)
            is_root = d.ref == self.root_ref
            if sub.ino == d.ino or sub.ref == d.ref or (not is_root and sub.ino == d.parent):
                raise self._corrupt(
                    f"directory cycle: inode {sub.ino} is listed inside directory inode {d.ino}"
                )
        return node

    # -- the Backend protocol -------------------------------------------------------------

    @_guard
    def root(self) -> Node:
        """The root directory."""
        if self._root is not None:
            return self._root
        node = self._inode(self.root_ref)
        if node.kind != DIR:
            raise self._corrupt(f"the root inode {self.root_ref:#x} is not a directory")
        self._root = node
        return node

    @_guard
    def child(self, directory: Node, name: str) -> Optional[Node]:
        """The entry ``name`` of ``directory`` (None when absent)."""
        d = self._dir(directory)
        want = os.fsencode(name)
        start, until = self._chunk(d, want)
        # A part of a listing is decoded once into a dict: resolving many paths in one
        # large directory (/usr/lib/x86_64-linux-gnu) then costs a dict lookup each.
        key = (d.ref, start[2])
        table = self._chunks.get(key)
        if table is None:
            table = {}
            for entry, ref, _ino in self._entries(d, start, until):
                table.setdefault(entry, ref)
            if len(self._chunks) >= _CHUNK_CACHE:
                del self._chunks[next(iter(self._chunks))]
            self._chunks[key] = table
        found = table.get(want)
        return None if found is None else self._checked_child(d, found)

    @_guard
    def listdir(self, directory: Node) -> List[str]:
        """The names in ``directory``, in stored (sorted) order."""
        d = self._dir(directory)
        return [os.fsdecode(name) for name, _ref, _ino in self._entries(d)]

    @_guard
    def readlink(self, node: Node) -> str:
        """The target of a symbolic link."""
        if node.kind != SYMLINK or not isinstance(node.ref, _Leaf):
            raise ImageError(f"{self.name}: not a symbolic link", hint=HINT_INSIDE)
        return node.ref.target

    @_guard
    def read(self, node: Node, offset: int = 0, size: int = -1) -> bytes:
        """``size`` bytes of a regular file from ``offset`` (all when -1), decompressing only
        the blocks that cover the range."""
        f = node.ref
        if not isinstance(f, _File):
            raise ImageError(f"{self.name}: not a regular file", hint=HINT_INSIDE)
        offset = max(0, offset)
        end = f.size if size < 0 else min(f.size, offset + size)
        if offset >= end:
            return b""
        if f.words is None:
            self._load_blocks(f)
        assert f.words is not None and f.offsets is not None
        bs = self.block_size
        parts = []
        for index in range(offset // bs, (end - 1) // bs + 1):
            first = index * bs
            if index < f.nblocks:
                data = self._data_block(
                    f.offsets[index],
                    f.words[index],
                    min(bs, f.size - first),
                    "data block",
                    min(end - first, bs),
                )
            else:
                data = self._tail(f)
            parts.append(data[max(offset, first) - first : min(end, first + bs) - first])
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # -- file data --------------------------------------------------------------------------

    def _load_blocks(self, f: _File) -> None:
        pos, off = f.list_at
        if f.nblocks * 4 > (self.dir_table - self.inode_table) * METADATA_SIZE:
            raise self._corrupt(f"file inode {f.ref:#x} claims {f.nblocks} blocks")
        raw, _, _ = self._meta(pos, off, 4 * f.nblocks, self.dir_table)
        words = struct.unpack(f"<{f.nblocks}I", raw)
        offsets = []
        at = f.start
        for word in words:
            offsets.append(at)
            at += word & ~DATA_UNCOMPRESSED
        if at > self.bytes_used:
            raise self._corrupt(
                f"file inode {f.ref:#x}: data blocks end at offset {at}, beyond the image"
            )
        f.words = words
        f.offsets = offsets

    def _data_block(
        self, pos: int, word: int, expected: int, what: str, need: int = -1
    ) -> bytes:
        """A decompressed data or fragment block (``expected`` bytes; -1: up to a block).

        With ``need`` >= 0 only the first ``need`` bytes must be there: gzip, xz and lzma
        blocks are then decoded that far (and on, by later reads), so the result may be
        shorter than the block.
        """
        stored = word & ~DATA_UNCOMPRESSED
        if stored == 0:
            if expected < 0:
                raise self._corrupt(f"{what} at offset {pos} has size 0")
            return bytes(expected)  # a sparse block
        hit = self._data_cache.get(pos)
        if hit is None:
            if stored > self.block_size or word >> 25:
                raise self._corrupt(f"{what} at offset {pos} has an invalid size word {word:#x}")
            raw = self._pread(pos, stored, what)
            if word & DATA_UNCOMPRESSED:
                hit = raw
            else:
                from hpcrun.image.compress import stepper

                step = stepper(self.compression, raw) if need >= 0 else None
                if step is None:
                    hit = self._decompress(raw, self.block_size, pos, what)
                else:
                    hit = _Partial(step)
            cache = self._data_cache
            if len(cache) >= _DATA_CACHE:
                del cache[next(iter(cache))]
            cache[pos] = hit
        if isinstance(hit, _Partial):
            hit = self._grow(hit, pos, expected, what, need)
            if isinstance(hit, _Partial):
                return hit.data
        if expected >= 0 and len(hit) != expected:
            raise self._corrupt(
                f"{what} at offset {pos} holds {len(hit)} bytes, expected {expected}"
            )
        return hit

    def _grow(
        self, part: _Partial, pos: int, expected: int, what: str, need: int
    ) -> Union[bytes, _Partial]:
        """Decode ``part`` to at least ``need`` bytes (all when -1): the whole block as
        bytes once it is complete (the cache then holds it), else ``part`` itself."""
        limit = self.block_size
        target = limit if need < 0 else min(limit, -(-need // _STEP) * _STEP)
        data = part.data
        try:
            while len(data) < target and not part.ended:
                more, part.ended = part.step(target - len(data))
                data += more
            if not part.ended and len(data) >= limit:
                more, part.ended = part.step(1)  # the stream must end at a block
                if more:
                    raise ImageError(f"corrupt data: decompresses to more than {limit} bytes",
                                     hint=HINT_DAMAGED)
        except ImageError as exc:
            self._data_cache.pop(pos, None)
            raise self._corrupt(f"{what} at offset {pos}: {exc.message}") from None
        part.data = data
        if not part.ended:
            return part
        self._data_cache[pos] = data
        return data

    def _tail(self, f: _File) -> bytes:
        """The end of a file stored in a fragment block."""
        index = f.frag
        if index >= self.fragment_count:
            raise self._corrupt(
                f"file inode {f.ref:#x} uses fragment {index} of {self.fragment_count}"
            )
        group = index // 512
        ptr = self._frag_index.get(group)
        if ptr is None:
            (ptr,) = _U64.unpack(
                self._pread(self.frag_table + 8 * group, 8, "fragment table index")
            )
            self._frag_index[group] = ptr
        raw, _, _ = self._meta(ptr, (index % 512) * 16, 16, self.frag_table)
        start, word, _unused = _FRAGMENT.unpack(raw)
        tail = f.size % self.block_size
        data = self._data_block(start, word, -1, "fragment block", f.frag_off + tail)
        if f.frag_off + tail > len(data):
            raise self._corrupt(
                f"file inode {f.ref:#x}: its tail ({tail} bytes at {f.frag_off}) lies "
                f"outside fragment {index} ({len(data)} bytes)"
            )
        return data[f.frag_off : f.frag_off + tail]

    # -- extras -------------------------------------------------------------------------------

    def walk(self, top: Optional[Node] = None, prefix: str = "") -> Iterator[Tuple[str, Node]]:
        """Every (path, node) below ``top`` (default: the root), depth first.

        Raises ImageError on a directory cycle (a directory inode reached twice) and on
        corrupt metadata, like the other methods.
        """
        steps = self._walk(top, prefix)
        while True:
            try:
                item = next(steps)
            except StopIteration:
                return
            except HpcrunError:
                raise
            except (struct.error, IndexError, ValueError, OverflowError, KeyError) as exc:
                raise self._corrupt(f"while walking the tree: {exc}") from None
            yield item

    def _walk(self, top: Optional[Node], prefix: str) -> Iterator[Tuple[str, Node]]:
        seen = set()
        stack: List[Tuple[str, Node]] = [(prefix, top if top is not None else self.root())]
        while stack:
            path, node = stack.pop()
            d = self._dir(node)
            if d.ref in seen:
                raise self._corrupt(f"directory cycle at {path or '/'}")
            seen.add(d.ref)
            for name, ref, _ino in list(self._entries(d)):
                sub = self._checked_child(d, ref)
                subpath = f"{path}/{os.fsdecode(name)}"
                yield subpath, sub
                if sub.kind == DIR:
                    stack.append((subpath, sub))

    def rdev(self, node: Node) -> Tuple[int, int]:
        """(major, minor) of a block or character device node."""
        leaf = node.ref
        if not isinstance(leaf, _Leaf):
            raise ImageError(f"{self.name}: not a device", hint=HINT_INSIDE)
        dev = leaf.rdev
        return (dev >> 8) & 0xFFF, (dev & 0xFF) | ((dev >> 12) & 0xFFF00)


def fallback_read(path: str, offset: int, inner_path: str) -> bytes:
    """Read one file of a squashfs image (at ``offset`` in ``path``) with ``unsquashfs -cat``.

    For images this reader cannot handle (other versions, exotic compressors): an escape
    hatch, never the normal path.  ``-o`` needs squashfs-tools 4.4 or later.
    """
    import subprocess

    cmd = ["unsquashfs"]
    if offset:
        cmd += ["-o", str(offset)]
    cmd += ["-cat", path, inner_path.lstrip("/")]
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False)
    except FileNotFoundError:
        raise EnvironmentNotFoundError(
            "unsquashfs is not installed", hint="install squashfs-tools (4.4 or later)"
        ) from None
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ImageError(
            f"{path}: unsquashfs could not read {inner_path}: "
            f"{message[-1] if message else 'exit status ' + str(proc.returncode)}",
            hint="check the path inside the image; unsquashfs 4.4 or later is needed for "
            "SIF partitions (-o)",
        )
    return proc.stdout
