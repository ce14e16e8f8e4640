"""A small ELF reader for the dynamic-linking facts hpcrun needs.

Only the structures the resolver and the image inspector use are parsed: the ELF and
program headers, ``PT_INTERP``, the dynamic section (``DT_NEEDED``, ``DT_SONAME``,
``DT_RPATH``, ``DT_RUNPATH``) and the GNU symbol-version tables (``.gnu.version_d``,
``.gnu.version_r``); on demand the dynamic symbol table and strings in ``.rodata``.

Why not pyelftools for this path: importing it costs about 50 ms and parsing one library
several milliseconds, while the launch path reads dozens of libraries, often through lazy
squashfs streams.  This reader reaches everything through the program headers (at the
start of the file) with a handful of ``seek`` + small ``read`` calls, and works for both
classes and byte orders.  The tests cross-check it against pyelftools on every library of
the host and the MPI wheels.

Measured (``benchmarks/bench_elf.py``, 502 libraries of Debian 12's x86_64 multiarch dir,
2 shared cores): the same facts take 0.14 ms per library here against 3.2 ms with
pyelftools 0.33 (idle machine; 0.6 vs 7.4 ms under load), ``.dynsym`` names 0.6 ms against
16 ms, and the import costs about 10 ms against 50 ms.  ``read_elf`` of Debian's 41 MB
libmpich.so.12 reads 17 kB of it.
"""

from __future__ import annotations

import io
import struct

from hpcrun.elf.ldscript import MAX_SCRIPT_BYTES, looks_like_ld_script, parse_ld_script
from hpcrun.elf.model import ElfInfo, VersionNeed
from hpcrun.errors import (
    HINT_ACCESS,
    HINT_NOT_ELF,
    HINT_TRUNCATED,
    ElfError,
)
from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import (
        BinaryIO,
        Dict,
        FrozenSet,
        Iterable,
        Iterator,
        List,
        Optional,
        Sequence,
        Tuple,
    )

ELF_MAGIC = b"\x7fELF"

ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}

# e_machine -> (pyelftools-style name, uname -m for 64-bit LE, 64-bit BE, 32-bit LE, 32-bit BE)
_MACHINES: Dict[int, Tuple[str, str, str, str, str]] = {
    3: ("EM_386", "i686", "i686", "i686", "i686"),
    62: ("EM_X86_64", "x86_64", "x86_64", "x86_64", "x86_64"),  # x32 is 32-bit x86_64
    183: ("EM_AARCH64", "aarch64", "aarch64_be", "aarch64", "aarch64_be"),
    40: ("EM_ARM", "armv7l", "armv7b", "armv7l", "armv7b"),
    21: ("EM_PPC64", "ppc64le", "ppc64", "ppc64le", "ppc64"),
    20: ("EM_PPC", "ppcle", "ppc", "ppcle", "ppc"),
    22: ("EM_S390", "s390x", "s390x", "s390", "s390"),
    243: ("EM_RISCV", "riscv64", "riscv64", "riscv32", "riscv32"),
    8: ("EM_MIPS", "mips64", "mips64", "mips", "mips"),
    43: ("EM_SPARCV9", "sparc64", "sparc64", "sparc", "sparc"),
    2: ("EM_SPARC", "sparc", "sparc", "sparc", "sparc"),
    50: ("EM_IA_64", "ia64", "ia64", "ia64", "ia64"),
    258: ("EM_LOONGARCH", "loongarch64", "loongarch64", "loongarch32", "loongarch32"),
    9: ("EM_S370", "s390", "s390", "s390", "s390"),
    0: ("EM_NONE", "unknown", "unknown", "unknown", "unknown"),
}

PT_LOAD = 1
PT_DYNAMIC = 2
PT_INTERP = 3

DT_NULL = 0
DT_NEEDED = 1
DT_HASH = 4
DT_STRTAB = 5
DT_SYMTAB = 6
DT_STRSZ = 10
DT_SYMENT = 11
DT_SONAME = 14
DT_RPATH = 15
DT_RUNPATH = 29
DT_GNU_HASH = 0x6FFFFEF5
DT_VERDEF = 0x6FFFFFFC
DT_VERDEFNUM = 0x6FFFFFFD
DT_VERNEED = 0x6FFFFFFE
DT_VERNEEDNUM = 0x6FFFFFFF

SHT_SYMTAB = 2
SHT_DYNSYM = 11
VER_FLG_BASE = 1

# Guards against corrupt headers asking for absurd amounts of work.
MAX_HEADERS = 65535
MAX_TABLE_BYTES = 64 * 1024 * 1024
MAX_VERSION_ENTRIES = 100000


# The private records below are hpcrun records, not dataclasses or NamedTuples: this
# module is imported by every launch that reads a host library; a dataclass costs about
# half a millisecond to create at import, and NamedTuple means importing typing.


@record
class _Header:
    """The decoded ELF header plus the layout helpers derived from it."""

    path: str
    elf_class: int
    endian: str  # "<" or ">"
    elf_type: int
    machine: int
    phoff: int
    shoff: int
    phentsize: int
    phnum: int
    shentsize: int
    shnum: int
    shstrndx: int
    size: int  # of the whole file


@record
class _Segment:
    kind: int
    offset: int
    vaddr: int
    filesz: int
    flags: int


@record
class _Section:
    name_offset: int
    kind: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


class _Reader:
    """Bounded reads from a seekable stream; every short read is an ElfError."""

    def __init__(self, stream: BinaryIO, path: str) -> None:
        self.stream = stream
        self.path = path
        try:
            self.size = stream.seek(0, io.SEEK_END)
        except (OSError, ValueError) as error:
            raise ElfError(f"{path}: cannot seek: {error}", hint=HINT_ACCESS) from error

    def at(self, offset: int, size: int, what: str) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size or size > MAX_TABLE_BYTES:
            raise ElfError(
                f"{self.path}: truncated or corrupt ELF file ({what} at offset {offset}, "
                f"{size} bytes, beyond the file's {self.size} bytes)",
                hint="the file is damaged or not a complete library; rebuild or reinstall it",
            )
        try:
            self.stream.seek(offset)
            data = self.stream.read(size)
        except (OSError, ValueError) as error:
            raise ElfError(f"{self.path}: cannot read {what}: {error}", hint=HINT_ACCESS) from error
        if len(data) != size:
            raise ElfError(f"{self.path}: truncated ELF file (short read of {what})",
                           hint=HINT_TRUNCATED)
        return data


def _corrupt(path: str, what: str) -> ElfError:
    return ElfError(
        f"{path}: corrupt ELF file ({what})",
        hint="the file is damaged or not a complete library; rebuild or reinstall it",
    )


def _header(reader: _Reader, ident: bytes) -> _Header:
    path = reader.path
    if len(ident) < 16:
        raise ElfError(f"{path}: truncated ELF header", hint=HINT_TRUNCATED)
    klass, data = ident[4], ident[5]
    if klass not in (1, 2):
        raise _corrupt(path, f"unknown ELF class {klass}")
    if data not in (1, 2):
        raise _corrupt(path, f"unknown byte order {data}")
    endian = "<" if data == 1 else ">"
    if klass == 2:
        raw = reader.at(0, 64, "ELF header")
        fields = struct.unpack(endian + "HHIQQQIHHHHHH", raw[16:64])
    else:
        raw = reader.at(0, 52, "ELF header")
        fields = struct.unpack(endian + "HHIIIIIHHHHHH", raw[16:52])
    e_type, e_machine, _v, _entry, phoff, shoff, _flags, _ehsize = fields[:8]
    phentsize, phnum, shentsize, shnum, shstrndx = fields[8:]
    return _Header(
        path=path,
        elf_class=64 if klass == 2 else 32,
        endian=endian,
        elf_type=e_type,
        machine=e_machine,
        phoff=phoff,
        shoff=shoff,
        phentsize=phentsize,
        phnum=phnum,
        shentsize=shentsize,
        shnum=shnum,
        shstrndx=shstrndx,
        size=reader.size,
    )


def _segments(reader: _Reader, h: _Header) -> List[_Segment]:
    if h.phnum == 0 or h.phoff == 0:
        return []
    want = 56 if h.elf_class == 64 else 32
    if h.phentsize < want:
        raise _corrupt(h.path, f"program header size {h.phentsize}")
    table = reader.at(h.phoff, h.phentsize * h.phnum, "program headers")
    out = []
    for i in range(h.phnum):
        raw = table[i * h.phentsize : i * h.phentsize + want]
        if h.elf_class == 64:
            p_type, p_flags, off, vaddr, _pa, filesz, _mem, _al = struct.unpack(
                h.endian + "IIQQQQQQ", raw
            )
        else:
            p_type, off, vaddr, _pa, filesz, _mem, p_flags, _al = struct.unpack(
                h.endian + "IIIIIIII", raw
            )
        out.append(_Segment(p_type, off, vaddr, filesz, p_flags))
    return out


def _sections(reader: _Reader, h: _Header) -> List[_Section]:
    if h.shnum == 0 or h.shoff == 0:
        return []
    want = 64 if h.elf_class == 64 else 40
    if h.shentsize < want:
        raise _corrupt(h.path, f"section header size {h.shentsize}")
    table = reader.at(h.shoff, h.shentsize * h.shnum, "section headers")
    out = []
    fmt = h.endian + ("IIQQQQIIQQ" if h.elf_class == 64 else "IIIIIIIIII")
    for i in range(h.shnum):
        name, kind, flags, addr, off, size, link, _info, _align, entsize = struct.unpack(
            fmt, table[i * h.shentsize : i * h.shentsize + want]
        )
        out.append(_Section(name, kind, flags, addr, off, size, link, entsize))
    return out


def _vaddr_to_offset(h: _Header, loads: Sequence[_Segment], vaddr: int) -> int:
    for seg in loads:
        if seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
            return seg.offset + (vaddr - seg.vaddr)
    raise _corrupt(h.path, f"address {vaddr:#x} is in no loadable segment")


def _cstring(table: bytes, offset: int, path: str) -> str:
    if offset < 0 or offset >= len(table):
        raise _corrupt(path, f"string offset {offset} outside the string table")
    end = table.find(b"\0", offset)
    if end < 0:
        end = len(table)
    return table[offset:end].decode("utf-8", "surrogateescape")


class _Dynamic:
    """The dynamic section decoded: tags -> values (DT_NEEDED etc. in order)."""

    __slots__ = ("entries", "strtab")

    def __init__(self, entries: List[Tuple[int, int]], strtab: bytes) -> None:
        self.entries = entries
        self.strtab = strtab

    def values(self, tag: int) -> List[int]:
        return [v for t, v in self.entries if t == tag]

    def first(self, tag: int) -> Optional[int]:
        for t, v in self.entries:
            if t == tag:
                return v
        return None


def _dynamic(reader: _Reader, h: _Header, segments: Sequence[_Segment]) -> Optional[_Dynamic]:
    dyn = [s for s in segments if s.kind == PT_DYNAMIC]
    if not dyn or dyn[0].filesz == 0:
        return None
    seg = dyn[0]
    entsize = 16 if h.elf_class == 64 else 8
    # A few linkers pad the segment; the table ends at DT_NULL anyway.
    count = seg.filesz // entsize
    raw = reader.at(seg.offset, count * entsize, "dynamic section")
    fmt = h.endian + ("QQ" if h.elf_class == 64 else "II")
    entries: List[Tuple[int, int]] = []
    for tag, value in struct.iter_unpack(fmt, raw):
        if tag == DT_NULL:
            break
        entries.append((tag, value))
    dynamic = _Dynamic(entries, b"")
    strtab_addr = dynamic.first(DT_STRTAB)
    strsz = dynamic.first(DT_STRSZ)
    if strtab_addr is None or strsz is None:
        return dynamic
    loads = [s for s in segments if s.kind == PT_LOAD]
    offset = _vaddr_to_offset(h, loads, strtab_addr)
    dynamic.strtab = reader.at(offset, strsz, "dynamic string table")
    return dynamic


def _version_defs(
    reader: _Reader, h: _Header, loads: Sequence[_Segment], dyn: _Dynamic
) -> Tuple[str, ...]:
    addr = dyn.first(DT_VERDEF)
    if addr is None:
        return ()
    count = dyn.first(DT_VERDEFNUM) or 0
    offset = _vaddr_to_offset(h, loads, addr)
    names: List[str] = []
    e = h.endian
    for _ in range(min(count, MAX_VERSION_ENTRIES)):
        _ver, flags, _ndx, cnt, _hash, aux, nxt = struct.unpack(
            e + "HHHHIII", reader.at(offset, 20, "version definition")
        )
        if cnt and not flags & VER_FLG_BASE:
            name_off, _next = struct.unpack(e + "II", reader.at(offset + aux, 8, "verdaux"))
            name = _cstring(dyn.strtab, name_off, h.path)
            if name not in names:
                names.append(name)
        if nxt == 0:
            break
        offset += nxt
    return tuple(names)


def _version_needs(
    reader: _Reader, h: _Header, loads: Sequence[_Segment], dyn: _Dynamic
) -> Tuple[VersionNeed, ...]:
    addr = dyn.first(DT_VERNEED)
    if addr is None:
        return ()
    count = dyn.first(DT_VERNEEDNUM) or 0
    offset = _vaddr_to_offset(h, loads, addr)
    needs: List[VersionNeed] = []
    e = h.endian
    for _ in range(min(count, MAX_VERSION_ENTRIES)):
        _ver, cnt, file_off, aux, nxt = struct.unpack(
            e + "HHIII", reader.at(offset, 16, "version need")
        )
        versions: List[str] = []
        aux_off = offset + aux
        for _j in range(min(cnt, MAX_VERSION_ENTRIES)):
            _hash, _flags, _other, name_off, anext = struct.unpack(
                e + "IHHII", reader.at(aux_off, 16, "vernaux")
            )
            versions.append(_cstring(dyn.strtab, name_off, h.path))
            if anext == 0:
                break
            aux_off += anext
        needs.append(VersionNeed(_cstring(dyn.strtab, file_off, h.path), tuple(versions)))
        if nxt == 0:
            break
        offset += nxt
    return tuple(needs)


def machine_name(machine: int) -> str:
    """The ``EM_*`` name of an e_machine value (``EM_<number>`` when unknown)."""
    known = _MACHINES.get(machine)
    return known[0] if known else f"EM_{machine}"


def architecture_of(machine: int, elf_class: int, little_endian: bool = True) -> str:
    """The ``uname -m`` spelling for an e_machine/class/byte order (x86_64, aarch64, i686 ...)."""
    known = _MACHINES.get(machine)
    if not known:
        return f"unknown-{machine}"
    if elf_class == 64:
        return known[1] if little_endian else known[2]
    return known[3] if little_endian else known[4]


def _split_path(value: str) -> Tuple[str, ...]:
    return tuple(p for p in value.split(":") if p)


def _ld_script(stream: BinaryIO, path: str, head: bytes) -> ElfInfo:
    try:
        stream.seek(0)
        data = stream.read(MAX_SCRIPT_BYTES)
    except (OSError, ValueError) as error:
        raise ElfError(f"{path}: cannot read: {error}", hint=HINT_ACCESS) from error
    if not looks_like_ld_script(data):
        raise ElfError(
            f"{path}: not an ELF file (starts with {head[:8]!r}) and not a GNU ld script",
            hint="a file named like a library must be a shared library or a linker script",
        )
    inputs = parse_ld_script(data.decode("utf-8"))
    return ElfInfo(
        path=path,
        elf_class=0,
        machine="",
        architecture="",
        is_ld_script=True,
        ld_script_inputs=inputs,
    )


def read_elf(stream: BinaryIO, path: str) -> ElfInfo:
    """Read the dynamic-linking facts of one ELF file (or GNU ld script) from a seekable stream.

    ``path`` names the file in messages and in the result.  Only headers and the small
    tables they point to are read.  Files of any class, byte order and machine are read
    (the caller decides whether they fit); a non-ELF file that is not an ld script, and a
    truncated or corrupt ELF file, raise :class:`~hpcrun.errors.ElfError` naming ``path``.
    """
    try:
        stream.seek(0)
        head = stream.read(64)
    except (OSError, ValueError) as error:
        raise ElfError(f"{path}: cannot read: {error}", hint=HINT_ACCESS) from error
    if not head.startswith(ELF_MAGIC):
        return _ld_script(stream, path, head)
    try:
        return _read_elf(_Reader(stream, path), head)
    except struct.error as error:  # a table shorter than its entries claim
        raise _corrupt(path, str(error)) from error


def _read_elf(reader: _Reader, head: bytes) -> ElfInfo:
    h = _header(reader, head)
    path = h.path
    segments = _segments(reader, h)
    interpreter = ""
    for seg in segments:
        if seg.kind == PT_INTERP:
            raw = reader.at(seg.offset, seg.filesz, "PT_INTERP")
            interpreter = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            break
    base = dict(
        path=path,
        elf_class=h.elf_class,
        machine=machine_name(h.machine),
        architecture=architecture_of(h.machine, h.elf_class, h.endian == "<"),
        elf_type=ET_NAMES.get(h.elf_type, f"ET_{h.elf_type:#x}"),
        interpreter=interpreter,
    )
    dyn = _dynamic(reader, h, segments)
    if dyn is None:
        return ElfInfo(**base)  # type: ignore[arg-type]
    loads = [s for s in segments if s.kind == PT_LOAD]

    def strings(tag: int) -> List[str]:
        return [_cstring(dyn.strtab, v, path) for v in dyn.values(tag)]

    soname = strings(DT_SONAME)
    rpath: List[str] = []
    for value in strings(DT_RPATH):
        rpath.extend(_split_path(value))
    runpath: List[str] = []
    for value in strings(DT_RUNPATH):
        runpath.extend(_split_path(value))
    return ElfInfo(
        soname=soname[0] if soname else "",
        needed=tuple(strings(DT_NEEDED)),
        rpath=tuple(rpath),
        runpath=tuple(runpath),
        version_defs=_version_defs(reader, h, loads, dyn),
        version_needs=_version_needs(reader, h, loads, dyn),
        **base,  # type: ignore[arg-type]
    )


def read_elf_file(path: str) -> ElfInfo:
    """:func:`read_elf` on a host file; an unreadable file is an ElfError naming it."""
    try:
        with open(path, "rb") as stream:
            return read_elf(stream, path)
    except OSError as error:
        raise ElfError(f"{path}: cannot open: {error.strerror or error}",
                       hint=HINT_ACCESS) from error


def _elf(stream: BinaryIO, path: str) -> Tuple[_Reader, _Header]:
    try:
        stream.seek(0)
        head = stream.read(64)
    except (OSError, ValueError) as error:
        raise ElfError(f"{path}: cannot read: {error}", hint=HINT_ACCESS) from error
    if not head.startswith(ELF_MAGIC):
        raise ElfError(f"{path}: not an ELF file", hint=HINT_NOT_ELF)
    reader = _Reader(stream, path)
    return reader, _header(reader, head)


def _stream_name(stream: BinaryIO) -> str:
    return str(getattr(stream, "name", "") or "<stream>")


def _symbol_count_from_hash(
    reader: _Reader, h: _Header, loads: Sequence[_Segment], dyn: _Dynamic
) -> int:
    """The number of dynamic symbols when there are no section headers (DT_HASH/DT_GNU_HASH)."""
    e = h.endian
    addr = dyn.first(DT_HASH)
    if addr is not None:
        _nbucket, nchain = struct.unpack(
            e + "II", reader.at(_vaddr_to_offset(h, loads, addr), 8, "DT_HASH")
        )
        return int(nchain)
    addr = dyn.first(DT_GNU_HASH)
    if addr is None:
        return 0
    off = _vaddr_to_offset(h, loads, addr)
    nbuckets, symoffset, bloom_size, _shift = struct.unpack(
        e + "IIII", reader.at(off, 16, "DT_GNU_HASH")
    )
    word = 8 if h.elf_class == 64 else 4
    buckets_off = off + 16 + bloom_size * word
    buckets = struct.unpack(
        e + f"{nbuckets}I", reader.at(buckets_off, 4 * nbuckets, "GNU hash buckets")
    )
    last = max(buckets) if buckets else 0
    if last < symoffset:
        return int(symoffset)
    chain_off = buckets_off + 4 * nbuckets + 4 * (last - symoffset)
    while True:
        (value,) = struct.unpack(e + "I", reader.at(chain_off, 4, "GNU hash chain"))
        last += 1
        chain_off += 4
        if value & 1:
            return int(last)


def dynamic_symbols(stream: BinaryIO, path: str = "") -> Tuple[FrozenSet[str], FrozenSet[str]]:
    """Names of the dynamic symbols an ELF file defines and leaves undefined.

    ``path`` names the file in messages.  Global and weak symbols only.  A defined symbol
    includes data copied into an executable by a copy relocation (Open MPI's
    ``ompi_mpi_comm_world`` in an application).  Read on demand: tables can be large.
    Corrupt files raise ElfError.
    """
    path = path or _stream_name(stream)
    try:
        reader, h = _elf(stream, path)
        return _strip_weak(_symbols(reader, h, SHT_DYNSYM))
    except struct.error as error:
        raise _corrupt(path, str(error)) from error


def dynamic_symbols_split(
    stream: BinaryIO, path: str = ""
) -> Tuple[FrozenSet[str], FrozenSet[str], FrozenSet[str]]:
    """(defined, strong undefined, weak undefined) dynamic symbol names.

    An undefined strong symbol must be provided by some loaded library or the program
    fails to load (or to call it); a weak one may stay missing.
    """
    path = path or _stream_name(stream)
    try:
        reader, h = _elf(stream, path)
        defined, undefined = _symbols(reader, h, SHT_DYNSYM)
    except struct.error as error:
        raise _corrupt(path, str(error)) from error
    weak = frozenset(s[1:] for s in undefined if s.startswith("\0"))
    strong = frozenset(s for s in undefined if not s.startswith("\0"))
    return defined, strong, weak


def static_symbols(stream: BinaryIO, path: str = "") -> Tuple[FrozenSet[str], FrozenSet[str]]:
    """Like :func:`dynamic_symbols` for the full symbol table ``.symtab`` (empty if stripped).

    Tells whether an executable has MPI linked in statically (``MPI_Init`` defined there
    but not exported).
    """
    path = path or _stream_name(stream)
    try:
        reader, h = _elf(stream, path)
        return _strip_weak(_symbols(reader, h, SHT_SYMTAB))
    except struct.error as error:
        raise _corrupt(path, str(error)) from error


def _symbol_table(reader: _Reader, h: _Header, kind: int) -> Optional[Tuple[bytes, bytes]]:
    """(symbol table, its string table) of section type ``kind``; for ``.dynsym`` without
    section headers, through the dynamic section; None when there is none."""
    entsize = 24 if h.elf_class == 64 else 16
    sections = _sections(reader, h)
    for sec in sections:
        if sec.kind == kind:
            if sec.link >= len(sections):
                raise _corrupt(h.path, "dynamic symbol table links to no string table")
            link = sections[sec.link]
            strtab = reader.at(link.offset, link.size, "dynamic string table")
            size = sec.size - sec.size % entsize
            return reader.at(sec.offset, size, "dynamic symbol table"), strtab
    if kind == SHT_SYMTAB:
        return None
    segments = _segments(reader, h)
    dyn = _dynamic(reader, h, segments)
    if dyn is None or dyn.first(DT_SYMTAB) is None:
        return None
    loads = [s for s in segments if s.kind == PT_LOAD]
    count = _symbol_count_from_hash(reader, h, loads, dyn)
    offset = _vaddr_to_offset(h, loads, dyn.first(DT_SYMTAB) or 0)
    return reader.at(offset, count * entsize, "dynamic symbol table"), dyn.strtab


def _entries(h: _Header, table: bytes) -> Iterator[Tuple[int, int, int, int, int]]:
    """(name offset, st_info, st_shndx, st_value, st_size) of each symbol in ``table``."""
    if h.elf_class == 64:
        for name, info, _other, shndx, value, size in struct.iter_unpack(h.endian + "IBBHQQ",
                                                                          table):
            yield name, info, shndx, value, size
    else:
        for name, value, size, info, _other, shndx in struct.iter_unpack(h.endian + "IIIBBH",
                                                                          table):
            yield name, info, shndx, value, size


def _symbols(reader: _Reader, h: _Header, kind: int) -> Tuple[FrozenSet[str], FrozenSet[str]]:
    found = _symbol_table(reader, h, kind)
    if found is None:
        return frozenset(), frozenset()
    table, strtab = found
    defined: List[str] = []
    undefined: List[str] = []
    for name, info, shndx, _value, _size in _entries(h, table):
        _add_symbol(name, info, shndx, strtab, defined, undefined, h.path)
    return frozenset(defined), frozenset(undefined)


MAX_SYMBOL_STRING = 256


def _find_defined(h: _Header, table: bytes, strtab: bytes, names: Iterable[str]
                  ) -> Dict[str, Tuple[int, int, int, int]]:
    """(st_info, st_shndx, st_value, st_size) of the defined symbols among ``names``.

    Found through the string table, not by decoding every entry: each place a name's text
    ends in ``strtab`` is a possible st_name, looked for as the first word of an entry
    (libraries with thousands of symbols are answered in microseconds).
    """
    entsize = 24 if h.elf_class == 64 else 16
    word = struct.Struct(h.endian + "I")
    out: Dict[str, Tuple[int, int, int, int]] = {}
    for name in names:
        text = name.encode() + b"\0"
        at = strtab.find(text)
        while at >= 0 and name not in out:
            key = word.pack(at)
            pos = table.find(key)
            while pos >= 0:
                if pos % entsize == 0:
                    _n, info, shndx, value, size = next(_entries(h, table[pos : pos + entsize]))
                    if shndx != 0 and info >> 4 != 0:  # defined, global or weak
                        out[name] = (info, shndx, value, size)
                        break
                pos = table.find(key, pos + 1)
            at = strtab.find(text, at + 1)
    return out


def defined_symbols(stream: BinaryIO, names: Iterable[str], path: str = "") -> FrozenSet[str]:
    """Which of ``names`` the file's dynamic symbol table defines (global or weak).

    Cheaper than :func:`dynamic_symbols` when only a few names matter (Open MPI's
    ``ompi_mpi_comm_world`` in a ``libmpi.so.12``).  Corrupt files raise ElfError.
    """
    path = path or _stream_name(stream)
    try:
        reader, h = _elf(stream, path)
        found = _symbol_table(reader, h, SHT_DYNSYM)
        if found is None:
            return frozenset()
        return frozenset(_find_defined(h, found[0], found[1], names))
    except struct.error as error:
        raise _corrupt(path, str(error)) from error


def symbol_strings(stream: BinaryIO, names: Iterable[str], path: str = "") -> Dict[str, str]:
    """The text each defined dynamic data symbol of ``names`` holds (up to its NUL).

    For exported version strings (Open MPI's ``ompi_version_string``, MPICH's
    ``MPII_Version_string``): one small read each instead of a scan of ``.rodata``.
    Symbols that are absent, undefined, not data, not in a loaded segment or not text are
    left out.  Corrupt files raise ElfError.
    """
    path = path or _stream_name(stream)
    out: Dict[str, str] = {}
    try:
        reader, h = _elf(stream, path)
        found = _symbol_table(reader, h, SHT_DYNSYM)
        if found is None:
            return out
        places = _find_defined(h, found[0], found[1], names)
        loads = [s for s in _segments(reader, h) if s.kind == PT_LOAD]
        for key, (info, _shndx, value, size) in places.items():
            if info & 0xF != 1:  # STT_OBJECT
                continue
            try:
                offset = _vaddr_to_offset(h, loads, value)
            except ElfError:
                continue
            length = min(size or MAX_SYMBOL_STRING, MAX_SYMBOL_STRING, reader.size - offset)
            raw = reader.at(offset, length, f"symbol {key}").split(b"\0", 1)[0]
            try:
                text = raw.decode("ascii")
            except UnicodeDecodeError:
                continue
            if text.isprintable():
                out[key] = text
    except struct.error as error:
        raise _corrupt(path, str(error)) from error
    return out


def _strip_weak(
    table: Tuple[FrozenSet[str], FrozenSet[str]],
) -> Tuple[FrozenSet[str], FrozenSet[str]]:
    defined, undefined = table
    return defined, frozenset(s[1:] if s.startswith("\0") else s for s in undefined)


def _add_symbol(
    name: int,
    info: int,
    shndx: int,
    strtab: bytes,
    defined: List[str],
    undefined: List[str],
    path: str,
) -> None:
    if name == 0 or info >> 4 == 0:  # unnamed, or STB_LOCAL
        return
    text = _cstring(strtab, name, path)
    if shndx != 0:
        defined.append(text)
    elif info >> 4 == 2:  # STB_WEAK: the loader accepts it missing
        undefined.append("\0" + text)
    else:
        undefined.append(text)


def _section_name_table(reader: _Reader, h: _Header, sections: Sequence[_Section]) -> bytes:
    if not sections or h.shstrndx >= len(sections):
        return b""
    sec = sections[h.shstrndx]
    return reader.at(sec.offset, sec.size, "section names")


READ_CHUNK = 1 << 20
CHUNK_OVERLAP = 4096  # a string cut by a chunk boundary is whole in the next chunk


def _rodata_ranges(reader: _Reader, h: _Header) -> List[Tuple[int, int]]:
    sections = _sections(reader, h)
    names = _section_name_table(reader, h, sections)
    ranges: List[Tuple[int, int]] = []
    for sec in sections:
        if sec.kind == 8 or not names or sec.name_offset >= len(names):  # SHT_NOBITS
            continue
        if _cstring(names, sec.name_offset, h.path) == ".rodata":
            ranges.append((sec.offset, sec.size))
    if not ranges:
        for seg in _segments(reader, h):
            if seg.kind == PT_LOAD and not seg.flags & 1:  # loadable, not executable
                ranges.append((seg.offset, seg.filesz))
    return ranges


def iter_rodata(stream: BinaryIO, path: str = "") -> Iterator[Tuple[int, bytes]]:
    """``(file offset, bytes)`` chunks of the file's ``.rodata``, overlapping a little.

    Without a ``.rodata`` section (stripped section headers) the read-only loadable
    segments are used.  Consumers that count matches should key them by absolute offset
    (``offset + match.start()``): the overlap shows some bytes twice.
    """
    path = path or _stream_name(stream)
    try:
        reader, h = _elf(stream, path)
        ranges = _rodata_ranges(reader, h)
    except struct.error as error:
        raise _corrupt(path, str(error)) from error
    for start, size in ranges:
        end = min(start + size, reader.size)
        pos = start
        while pos < end:
            length = min(READ_CHUNK + CHUNK_OVERLAP, end - pos)
            yield pos, reader.at(pos, length, ".rodata")
            if pos + length >= end:
                break
            pos += READ_CHUNK


def find_strings(stream: BinaryIO, prefixes: Iterable[str], path: str = "") -> List[str]:
    """NUL-terminated strings starting with one of ``prefixes`` in the file's ``.rodata``.

    Used for version banners (``MPICH Version:``, ``Intel(R) MPI Library ...``).  Strings
    come back in file order per prefix, without duplicates.  A prefix may also match inside
    a longer string (the text from the prefix to the NUL is returned).
    """
    wanted = [p.encode() for p in prefixes if p]
    found: List[str] = []
    if not wanted:
        return found
    for _offset, chunk in iter_rodata(stream, path):
        for prefix in wanted:
            at = chunk.find(prefix)
            while at >= 0:
                stop = chunk.find(b"\0", at)
                if stop >= 0:
                    text = chunk[at:stop].decode("utf-8", "replace")
                    if text not in found:
                        found.append(text)
                at = chunk.find(prefix, at + 1)
    return found
