"""Recognise MPI libraries and their ABI family, implementation and version, statically.

Pure over streams: the same code classifies libraries inside an image (lazy tree streams)
and on the host (plain files).

Family from the name (bind-model.md section 3): ``libmpi.so.12`` and its siblings are the
MPICH ABI, ``libmpi.so.40``/``.20`` Open MPI, ``libmpi_abi.so.1`` the MPI-5 standard ABI;
a ``libmpi.so.12`` that defines ``ompi_mpi_comm_world`` is Open MPI 1.10.  Implementation
and version from the strings in ``.rodata``: MPICH-derived libraries carry banner
formats (``MPICH Version:\\t%s``) with the values stored next to the ABI and release date;
Open MPI keeps its ``OMPI_VERSION`` string; when no string is found, Open MPI's
libtool file name (``libmpi.so.40.30.4``) gives the release series (``4.1``).
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter

from hpcrun.elf.model import ElfInfo
from hpcrun.elf.reader import defined_symbols, iter_rodata, symbol_strings
from hpcrun.image.facts import MpiLibrary

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, Callable, Dict, Optional, Tuple, Union

    StreamOpener = Callable[[], BinaryIO]

MPICH = "mpich"
OPENMPI = "openmpi"
MPI_ABI = "mpi-abi"
UNKNOWN = "unknown"

# (regex on the soname/file name, family, role).  First match wins.
_NAMES: Tuple[Tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern), family, role)
    for pattern, family, role in (
        (r"^libmpi_abi\.so(\.\d+)*$", MPI_ABI, "abi"),
        (r"^libmpifort_abi\.so(\.\d+)*$", MPI_ABI, "fortran"),
        # MPICH ABI (MPICH, Intel MPI, Cray MPICH, MVAPICH2, Debian's libmpich names)
        (
            r"^lib(mpi|mpich|mpi_cray|mpi_gnu_\d+|mpi_intel_\d+|mpi_nvidia_\d+)\.so\.12(\.\d+)*$",
            MPICH,
            "c",
        ),
        (
            r"^lib(mpifort|mpichfort|mpifort_cray|mpifort_gnu_\d+|mpifort_intel_\d+)\.so\.12(\.\d+)*$",
            MPICH,
            "fortran",
        ),
        (r"^lib(mpicxx|mpichcxx|mpicxx_cray|mpicxx_gnu_\d+)\.so\.12(\.\d+)*$", MPICH, "cxx"),
        # Open MPI
        (r"^libmpi\.so\.(40|20|1|0)(\.\d+)*$", OPENMPI, "c"),
        (
            r"^libmpi_(mpifh|usempif08|usempi_ignore_tkr|usempi)(-\w+)?\.so\.\d+(\.\d+)*$",
            OPENMPI,
            "fortran",
        ),
        (r"^libmpi_cxx\.so\.\d+(\.\d+)*$", OPENMPI, "cxx"),
    )
)

# Names that look like MPI but whose ABI is neither family (Intel's ILP64 interface).
_OTHER = re.compile(r"^libmpi_ilp64\.so(\.\d+)*$")

# Open MPI data symbols: MPI_COMM_WORLD etc. are their addresses in Open MPI's mpi.h.
OMPI_SYMBOLS = frozenset(
    {
        "ompi_mpi_comm_world",
        "ompi_mpi_comm_self",
        "ompi_mpi_comm_null",
        "ompi_mpi_int",
        "ompi_mpi_double",
        "ompi_mpi_char",
        "ompi_mpi_byte",
        "ompi_mpi_op_sum",
        "ompi_mpi_info_null",
        "ompi_mpi_group_empty",
        "ompi_mpi_errors_are_fatal",
    }
)


def mpi_name(name: str) -> Optional[Tuple[str, str]]:
    """``(family, role)`` the file or soname ``name`` suggests, or None if it is no MPI library.

    ``libmpi.so.12`` says "mpich" here; only its symbols can reveal Open MPI 1.10
    (:func:`classify_mpi` checks).  Development names without a version (``libmpi.so``)
    are not MPI libraries to the loader and give None.
    """
    base = posixpath.basename(name)
    for pattern, family, role in _NAMES:
        if pattern.match(base):
            return family, role
    if _OTHER.match(base):
        return UNKNOWN, "c"
    return None


def is_mpi_soname(name: str) -> bool:
    """Whether ``name`` is the soname (or file name) of an MPI library hpcrun knows."""
    return mpi_name(name) is not None


# --- version strings -------------------------------------------------------------------

_BANNERS: Tuple[Tuple[bytes, str], ...] = (
    (b"Intel(R) MPI Library", "Intel MPI"),
    (b"CRAY MPICH version", "Cray MPICH"),
    (b"MVAPICH2 Version", "MVAPICH2"),
    (b"MVAPICH Version", "MVAPICH"),
    (b"MPICH Version:", "MPICH"),
    (b"Open MPI v", "Open MPI"),
)

# MPICH stores MPIR_Version_string right after the libtool ABI triple and the release date.
_MPICH_VERSION = re.compile(
    rb"\0(\d+:\d+:\d+)\0+[^\0]{4,64}\0+(\d+\.\d+(?:\.\d+)*(?:(?:a|b|rc|p)\d+)?)\0"
)
_CRAY_VERSION = re.compile(rb"CRAY MPICH version (\d+(?:\.\d+)+)")
_MVAPICH_VERSION = re.compile(rb"MVAPICH2? Version:?\s*(\d+(?:\.\d+)+\w*)\0")
_INTEL_VERSION = re.compile(rb"\0(20\d\d(?: Update \d+)?|20\d\d\.\d+(?:\.\d+)?)\0")
_OMPI_VERSION = re.compile(rb"\0(\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?)\0")
_OMPI_REPO = re.compile(rb"\0v(\d+\.\d+\.\d+)(?:[a-z]+\d*)?\0")
_LITERAL_MPICH = re.compile(rb"MPICH Version:\s*(\d+(?:\.\d+)+\w*)\0")

# Open MPI's libmpi libtool "age" (the file name's second number) -> release series.
_OMPI_SERIES = {
    (40, 0): "3.0",
    (40, 10): "3.1",
    (40, 20): "4.0",
    (40, 30): "4.1",
    (40, 40): "5.0",
    (20, 0): "2.0",
    (20, 10): "2.1",
    (12, 0): "1.10",
    (12, 10): "1.10",
}


def openmpi_series_from_filename(name: str) -> str:
    """The Open MPI release series a ``libmpi.so.MAJOR.AGE.REV`` file name implies, or ''.

    Open MPI's libtool numbers map to releases per series (``40.30.x`` is 4.1.x,
    ``40.20.x`` 4.0.x, ``40.40.x`` 5.0.x); the revision is not the patch release, so only
    the series is reported.
    """
    match = re.search(r"\.so\.(\d+)\.(\d+)(?:\.(\d+))?$", posixpath.basename(name))
    if not match:
        return ""
    return _OMPI_SERIES.get((int(match.group(1)), int(match.group(2))), "")


# Every _MPICH_VERSION match holds this, and starts at the NUL before it: searching for it
# first is several times faster than running the pattern at every NUL of .rodata.
_MPICH_ABI_TAIL = re.compile(rb":\d+:\d+\0")

# Version candidates by kind: the pattern, the group holding the version, and where matches
# can start: the literal text every match starts with, or a pattern every match holds right
# after its leading NUL (b"": anywhere, the pattern runs over all of .rodata).
_PATTERNS: Dict[str, Tuple[re.Pattern[bytes], int, Union[bytes, re.Pattern[bytes]]]] = {
    "mpich": (_MPICH_VERSION, 2, _MPICH_ABI_TAIL),
    "cray": (_CRAY_VERSION, 1, b"CRAY MPICH version "),
    "mvapich": (_MVAPICH_VERSION, 1, b"MVAPICH"),
    "intel": (_INTEL_VERSION, 1, b""),
    "ompi": (_OMPI_VERSION, 1, b""),
    "repo": (_OMPI_REPO, 1, b""),
    "literal": (_LITERAL_MPICH, 1, b"MPICH Version:"),
}

# The version strings MPI libraries export as data symbols (read directly when present).
_EXPORTED = ("ompi_version_string", "MPII_Version_string", "MPIR_Version_string")
_VERSION_TEXT = re.compile(r"^\d+\.\d+(?:\.\d+)*(?:(?:a|b|rc|p)\d+)?$")


def _scan(stream: BinaryIO, path: str) -> Tuple[Dict[str, int], Callable[[str], Counter]]:
    """Banner offsets by implementation, and a function counting version candidates of one
    kind.

    The rodata is read once; a kind's pattern runs only when :func:`_identify` asks for it
    (the banners decide which), since each pass over a large library's strings costs
    milliseconds.
    """
    chunks = list(iter_rodata(stream, path))
    banners: Dict[str, int] = {}
    for offset, chunk in chunks:
        for banner, implementation in _BANNERS:
            if implementation not in banners:
                at = chunk.find(banner)
                if at >= 0:
                    banners[implementation] = offset + at

    def count(kind: str) -> Counter:
        pattern, group, anchor = _PATTERNS[kind]
        found: Dict[int, str] = {}  # by absolute offset: chunks overlap a little
        for offset, chunk in chunks:
            if isinstance(anchor, bytes) and anchor:  # only where the literal start is
                at = chunk.find(anchor)
                while at >= 0:
                    match = pattern.match(chunk, at)
                    if match:
                        found[offset + at] = match.group(group).decode("ascii")
                    at = chunk.find(anchor, at + 1)
                continue
            if not isinstance(anchor, bytes):  # only from the NUL before each core
                for core in anchor.finditer(chunk):
                    at = chunk.rfind(b"\0", 0, core.start())
                    match = pattern.match(chunk, at) if at >= 0 else None
                    if match:
                        found[offset + at] = match.group(group).decode("ascii")
                continue
            for match in pattern.finditer(chunk):
                found[offset + match.start()] = match.group(group).decode("ascii")
        return Counter(found.values())

    return banners, count


def _most_common(counter: Counter) -> str:
    if not counter:
        return ""
    # Highest count, then the first seen (Counter keeps insertion order).
    return max(counter.items(), key=lambda kv: kv[1])[0]


def _intel_numeric(text: str) -> str:
    match = re.match(r"(20\d\d) Update (\d+)$", text)
    return f"{match.group(1)}.{match.group(2)}" if match else text


def _exported_version(exported: Dict[str, str], *names: str) -> str:
    for name in names:
        text = exported.get(name, "")
        if _VERSION_TEXT.match(text):
            return text
    return ""


def _identify(
    family: str, stream: BinaryIO, file_name: str, exported: Dict[str, str]
) -> Tuple[str, str, str]:
    """``(implementation, version, version_string)`` from the library's strings.

    ``exported``: the version strings the library exports (:data:`_EXPORTED`).  Open MPI's
    ``ompi_version_string`` settles an Open MPI library without reading its ``.rodata``;
    MPICH-derived libraries are told apart by their banners, so their strings are scanned,
    but MPICH's exported ``MPII_Version_string`` saves the pattern search for the version.
    """
    if family == OPENMPI:
        version = _exported_version(exported, "ompi_version_string")
        if version:
            return "Open MPI", version, f"Open MPI v{version}"
    banners, count = _scan(stream, file_name)
    if "Intel MPI" in banners:
        release = _most_common(count("intel"))
        if release:
            return (
                "Intel MPI",
                _intel_numeric(release),
                f"Intel(R) MPI Library {release} for Linux* OS",
            )
        return "Intel MPI", "", ""
    if "Cray MPICH" in banners:
        version = _most_common(count("cray"))
        return "Cray MPICH", version, f"CRAY MPICH version {version}" if version else ""
    for name in ("MVAPICH2", "MVAPICH"):
        if name in banners:
            version = _most_common(count("mvapich"))
            return name, version, f"{name} Version:\t{version}" if version else ""
    if "MPICH" in banners:
        version = (
            _exported_version(exported, "MPII_Version_string", "MPIR_Version_string")
            or _most_common(count("literal"))
            or _most_common(count("mpich"))
        )
        return "MPICH", version, f"MPICH Version:\t{version}" if version else ""
    if "Open MPI" in banners or family == OPENMPI:
        version = _most_common(count("ompi")) or _most_common(count("repo"))
        if version:
            return "Open MPI", version, f"Open MPI v{version}"
        return "Open MPI", openmpi_series_from_filename(file_name), ""
    return "", "", ""


def classify_mpi(
    soname: str,
    path: str,
    info: ElfInfo,
    stream_opener: StreamOpener,
    real_path: str = "",
) -> Optional[MpiLibrary]:
    """Describe the MPI library ``soname`` at ``path`` (None when it is not one).

    ``info`` is the file's :func:`~hpcrun.elf.reader.read_elf`; ``stream_opener()`` opens
    a fresh seekable stream of the file (closed here); ``real_path`` is the file the name
    resolves to (its name carries Open MPI's libtool version).  The role is c, fortran,
    cxx, or abi (``libmpi_abi.so``, the MPI-5 ABI's C library).  GNU ld scripts and
    files of unreadable content give None / an ElfError respectively.
    """
    if info.is_ld_script:
        return None
    name = soname or info.soname or posixpath.basename(path)
    guess = mpi_name(name) or (mpi_name(info.soname) if info.soname else None)
    if guess is None:
        return None
    family, role = guess
    file_name = real_path or path
    stream = stream_opener()
    try:
        if family == MPICH and role == "c" and re.match(r"^libmpi\.so\.12", name):
            if defined_symbols(stream, OMPI_SYMBOLS, file_name):
                family = OPENMPI  # Open MPI 1.10 used libmpi.so.12 too
        exported = symbol_strings(stream, _EXPORTED, file_name) if role in ("c", "abi") else {}
        implementation, version, version_string = _identify(family, stream, file_name, exported)
    finally:
        try:
            stream.close()
        except OSError:
            pass
    return MpiLibrary(
        soname=name,
        path=path,
        real_path=real_path,
        family=family,
        role=role,
        implementation=implementation,
        version=version,
        version_string=version_string,
    )


def symbols_family(defined: frozenset, undefined: frozenset) -> str:
    """An application's MPI family from its dynamic symbols: openmpi, mpich or ''.

    Open MPI handles are addresses of ``ompi_mpi_*`` data symbols (undefined, or defined
    by a copy relocation); MPICH-family handles are integer constants, so such binaries
    reference only ``MPI_*``/``PMPI_*`` functions.
    """
    if (defined | undefined) & OMPI_SYMBOLS or any(s.startswith("ompi_mpi_") for s in undefined):
        return OPENMPI
    if any(s.startswith(("MPI_", "PMPI_")) for s in undefined):
        return MPICH
    return ""
