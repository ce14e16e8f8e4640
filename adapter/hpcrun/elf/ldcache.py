"""The dynamic loader's cache, ``/etc/ld.so.cache``, in both of glibc's formats.

* the old format: magic ``ld.so-1.7.0``, ``nlibs``, entries of (flags, key, value) whose
  string offsets count from the end of the entry array.  glibc's ``compat`` format is
  this followed (8-byte aligned) by a complete new-format cache; then the old entries'
  offsets count from the start of that new header, whose strings both share.
* the new format: magic ``glibc-ld.so.cache1.1``, ``nlibs``, ``len_strings``, a flags
  byte (byte order), an extension offset, then entries of (flags, key, value, osversion,
  hwcap); string offsets count from the start of the new header.

When a compat file carries both, the new part is authoritative (it is what ld.so reads).
An image's own cache lists every library its loader knows: reading it is the fast way to
find ``libmpi*``, ``libc.so.6`` or CUDA without walking the tree.
"""

from __future__ import annotations

import struct

from hpcrun.errors import ElfError

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

    Entry = Tuple[str, int, str]

OLD_MAGIC = b"ld.so-1.7.0"
NEW_MAGIC = b"glibc-ld.so.cache1.1"

FLAG_TYPE_MASK = 0x00FF
FLAG_REQUIRED_MASK = 0xFF00
FLAG_ELF_LIBC6 = 0x0003

# FLAG_REQUIRED_MASK values -> (ldconfig -p spelling, uname -m style architecture)
_REQUIRED = {
    0x0000: ("", ""),
    0x0100: ("64bit", "sparc64"),
    0x0200: ("IA-64", "ia64"),
    0x0300: ("x86-64", "x86_64"),
    0x0400: ("64bit", "s390x"),
    0x0500: ("64bit", "ppc64"),
    0x0600: ("N32", "mips64"),
    0x0700: ("64bit", "mips64"),
    0x0800: ("x32", "x32"),
    0x0900: ("hard-float", "armv7l"),
    0x0A00: ("AArch64", "aarch64"),
    0x0B00: ("soft-float", "armv7l"),
    0x0C00: ("nan2008", "mips"),
    0x0D00: ("N32,nan2008", "mips64"),
    0x0E00: ("64bit,nan2008", "mips64"),
    0x0F00: ("soft-float", "riscv64"),
    0x1000: ("double-float", "riscv64"),
    0x1100: ("soft-float", "loongarch64"),
    0x1200: ("double-float", "loongarch64"),
}

_TYPES = {0: "libc4", 1: "ELF", 2: "libc5", 3: "libc6"}

# 64-bit architectures whose libraries carry a "required" flag; entries without one are
# the companion 32-bit ABI there (i386 libraries in an x86-64 image).
_REQUIRED_ARCHS = {arch for _, arch in _REQUIRED.values() if arch and arch != "armv7l"}
_REQUIRED_ARCHS.add("ppc64le")

MAX_ENTRIES = 1_000_000


def flags_description(flags: int) -> str:
    """How ``ldconfig -p`` shows entry flags: ``libc6,x86-64``, ``libc6``, ``libc6,AArch64``."""
    kind = _TYPES.get(flags & FLAG_TYPE_MASK, f"type{flags & FLAG_TYPE_MASK}")
    required = _REQUIRED.get(flags & FLAG_REQUIRED_MASK, (f"flags{flags & 0xFF00:#x}", ""))[0]
    return f"{kind},{required}" if required else kind


def flags_architecture(flags: int) -> str:
    """The architecture an entry's flags demand (``x86_64``, ``aarch64``; ``""`` for none).

    Entries without a required flag are the "plain" ABI of the system: 32-bit x86 on an
    x86-64 system, the only ABI on 32-bit systems.
    """
    return _REQUIRED.get(flags & FLAG_REQUIRED_MASK, ("", "unknown"))[1]


def flags_match(flags: int, architecture: str) -> bool:
    """Whether a cache entry can serve a process of ``architecture`` (uname -m spelling).

    The loader itself makes this check; hpcrun uses it to ignore the i386 libraries in a
    multiarch image's cache.  ``ppc64le`` and ``ppc64`` share one flag.
    """
    if flags & FLAG_TYPE_MASK not in (1, FLAG_ELF_LIBC6):
        return False
    wanted = flags_architecture(flags)
    if wanted == "":
        # No required flag: the system's 32-bit (or only) ABI.
        return architecture not in _REQUIRED_ARCHS
    if wanted == "ppc64":
        return architecture in ("ppc64", "ppc64le")
    if wanted == "armv7l":
        return architecture.startswith("arm")
    return wanted == architecture


def _bad(name: str, what: str) -> ElfError:
    return ElfError(
        f"{name}: corrupt ld.so cache ({what})",
        hint="regenerate it with ldconfig (in the image: run ldconfig when building it)",
    )


def _string(data: bytes, offset: int, name: str) -> str:
    if offset < 0 or offset >= len(data):
        raise _bad(name, f"string offset {offset} outside the file")
    end = data.find(b"\0", offset)
    if end < 0:
        raise _bad(name, f"unterminated string at {offset}")
    return data[offset:end].decode("utf-8", "surrogateescape")


def _parse_new(data: bytes, base: int, name: str) -> List[Entry]:
    if len(data) < base + 48:
        raise _bad(name, "truncated header")
    order = data[base + 28] & 3
    endian = ">" if order == 3 else "<"
    nlibs, _len_strings = struct.unpack_from(endian + "II", data, base + 20)
    if nlibs > MAX_ENTRIES or base + 48 + nlibs * 24 > len(data):
        raise _bad(name, f"{nlibs} entries do not fit in {len(data)} bytes")
    out: List[Entry] = []
    for i in range(nlibs):
        flags, key, value, _osv, _hwcap = struct.unpack_from(
            endian + "iIIIQ", data, base + 48 + i * 24
        )
        out.append((_string(data, base + key, name), flags, _string(data, base + value, name)))
    return out


def _parse_old(data: bytes, name: str) -> Tuple[List[Entry], Optional[int]]:
    """Old entries, and the offset of an appended new-format cache if there is one."""
    if len(data) < 16:
        raise _bad(name, "truncated header")
    nlibs = struct.unpack_from("<I", data, 12)[0]
    endian = "<"
    if nlibs > MAX_ENTRIES or 16 + nlibs * 12 > len(data):
        nlibs = struct.unpack_from(">I", data, 12)[0]
        endian = ">"
        if nlibs > MAX_ENTRIES or 16 + nlibs * 12 > len(data):
            raise _bad(name, "entry count does not fit the file")
    end = 16 + nlibs * 12
    new_at = (end + 7) & ~7
    if data[new_at : new_at + len(NEW_MAGIC)] == NEW_MAGIC:
        return [], new_at
    out: List[Entry] = []
    for i in range(nlibs):
        flags, key, value = struct.unpack_from(endian + "iII", data, 16 + i * 12)
        out.append((_string(data, end + key, name), flags, _string(data, end + value, name)))
    return out, None


def parse_ld_cache(data: bytes, name: str = "/etc/ld.so.cache") -> List[Entry]:
    """Entries of an ``ld.so.cache`` as ``(soname, flags, path)``, in the file's order.

    Both formats (and old+new "compat" files) are understood; ``name`` is the file's path
    for messages.  The order is the loader's preference order (newer/hwcap first).
    Anything malformed raises :class:`~hpcrun.errors.ElfError` naming the file.
    """
    if data.startswith(NEW_MAGIC):
        return _parse_new(data, 0, name)
    if data.startswith(OLD_MAGIC):
        entries, new_at = _parse_old(data, name)
        if new_at is not None:
            return _parse_new(data, new_at, name)
        return entries
    raise ElfError(
        f"{name}: not an ld.so cache (unknown magic {data[:12]!r})",
        hint="regenerate it with ldconfig",
    )


def cache_for_architecture(entries: List[Entry], architecture: str) -> List[Tuple[str, str]]:
    """``(soname, path)`` pairs usable by a process of ``architecture``, first entry wins."""
    seen = set()
    out: List[Tuple[str, str]] = []
    for soname, flags, path in entries:
        if soname in seen or not flags_match(flags, architecture):
            continue
        seen.add(soname)
        out.append((soname, path))
    return out
