"""What an image must offer so that a site's host MPI can serve it: the resolver's facts,
gathered for ``hpcrun recipe`` before any image exists.

The same stages a launch uses decide it: :func:`~hpcrun.resolve.resolver.host_mpi` reads
and classifies the host MPI (family, soname, implementation, version), the host closure
(:mod:`hpcrun.resolve.closure`) lists every host file that will load in the container, and
:func:`~hpcrun.resolve.resolver.resolve` without an image gives the binds of the plan.  From
them:

* the highest symbol version the closure needs from the glibc family (``GLIBC_2.34``): the
  container keeps its own glibc, so the image's must define it;
* the highest versions needed from the compiler runtimes (``GLIBCXX_``, ``CXXABI_``,
  ``GCC_``, ``GFORTRAN_``): the image's own copy serves when it defines them, else the
  host's is bound;
* the directories and files the plan binds into (``/.hpcrun/lib``, the profile's binds):
  with ``enable overlay = no`` Apptainer cannot create missing destinations, so the image
  should carry them.

Host files are read under ``root`` (tests use fake trees); the ELF reader is a parameter.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

from hpcrun.host.facts import HostFacts
from hpcrun.plan.model import ERROR, Diagnostic, Request
from hpcrun.profiles.model import Profile
from hpcrun.records import record
from hpcrun.resolve import hostlibs
from hpcrun.resolve.closure import cached_host_closure, host_closure
from hpcrun.resolve.resolver import host_mpi, resolve

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, Optional, Tuple

    from hpcrun.elf.model import ElfInfo

    Reader = Callable[[str], ElfInfo]


@record
class SymbolNeed:
    """The highest version of one symbol-version family the host closure needs.

    ``prefix`` is ``GLIBC``, ``GLIBCXX``, ``CXXABI``, ``GCC`` or ``GFORTRAN``; ``version``
    the full name (``GLIBC_2.34``); ``provider`` the library that must define it
    (``libc.so.6``); ``needed_by`` the host library that needs it and ``chain`` how it loads.
    """

    prefix: str
    version: str
    provider: str
    needed_by: str
    chain: str = ""

    @property
    def number(self) -> Tuple[int, ...]:
        """The numeric part: ``GLIBC_2.34`` -> (2, 34)."""
        return version_number(self.version)


@record
class MountPoint:
    """A path the plan binds into: ``kind`` is ``dir`` or ``file``."""

    path: str
    kind: str
    reason: str = ""


@record
class HostRequirements:
    """Everything a recipe needs to know about a site's host MPI.

    ``family`` is the host's ABI family (``mpich``, ``openmpi``, ``mpi-abi``, ``none``);
    ``c_soname``/``c_file`` the host's C MPI library (``libmpich.so.12`` /
    ``libmpich.so.12.2.2``); ``abi_soname`` is ``libmpi_abi.so.1`` when the host also ships
    the MPI-5 standard ABI.  ``diagnostics`` are errors about the host MPI itself (a library
    the profile names is missing): a recipe for it would be a guess.
    """

    site: str
    family: str
    implementation: str = ""
    version: str = ""
    policy: str = "full"
    c_soname: str = ""
    c_file: str = ""
    abi_soname: str = ""
    architecture: str = ""
    needs: Tuple[SymbolNeed, ...] = ()
    mount_points: Tuple[MountPoint, ...] = ()
    prefix: str = "/.hpcrun"
    diagnostics: Tuple[Diagnostic, ...] = ()

    def need(self, prefix: str) -> Optional[SymbolNeed]:
        """The need of one version family (``GLIBC``), or None when nothing needs it."""
        for item in self.needs:
            if item.prefix == prefix:
                return item
        return None


_VERSION = re.compile(r"^([A-Z]+)_(\d+(?:\.\d+)*)$")
PREFIXES = ("GLIBC", "GLIBCXX", "CXXABI", "GCC", "GFORTRAN")


def version_number(name: str) -> Tuple[int, ...]:
    """``GLIBC_2.34`` -> (2, 34); ``2.36`` -> (2, 36); () when there is no number."""
    found = _VERSION.match(name)
    text = found.group(2) if found else name
    if not re.match(r"^\d+(\.\d+)*$", text or ""):
        return ()
    return tuple(int(p) for p in text.split("."))


def _prefix(name: str) -> str:
    found = _VERSION.match(name)
    return found.group(1) if found else ""


def host_requirements(profile: Profile, root: Path = Path("/"),
                      reader: Optional[Reader] = None, architecture: str = "") -> HostRequirements:
    """The host MPI's requirements on an image, read from the host under ``root``."""
    mpi = host_mpi(profile.mpi, root, reader)
    policy = (profile.mpi.abi_policy if profile.mpi else "") or "full"
    prefix = (profile.container.prefix or "/.hpcrun").rstrip("/") or "/.hpcrun"
    errors = [d for d in mpi.diagnostics if d.severity == ERROR]
    c_lib = next((lib for lib in mpi.libraries if lib.role == "c"), None)
    abi_lib = next((lib for lib in mpi.libraries if lib.soname.startswith("libmpi_abi.")),
                   None)
    roots = [lib.path for lib in mpi.libraries]
    roots += [lib.path for lib in profile.libraries] + list(profile.container.preload)
    if reader is None:
        closure = cached_host_closure(roots, root=root, library_path=mpi.library_dirs)
    else:
        closure = host_closure(roots, root=root, reader=reader, library_path=mpi.library_dirs)
    best: Dict[str, SymbolNeed] = {}
    for lib in closure.libraries:
        if lib.is_runtime and lib.found_via != "root":
            continue  # the image's own copy serves (it comes with the base); see hostlibs
        for need in lib.info.version_needs:
            glibc = hostlibs.is_glibc_family(need.file)
            if not (glibc or hostlibs.is_compiler_runtime(need.file)):
                continue
            for version in need.versions:
                kind = _prefix(version)
                if kind not in PREFIXES:
                    continue
                current = best.get(kind)
                if current is None or version_number(version) > current.number:
                    best[kind] = SymbolNeed(kind, version, need.file, lib.soname, lib.chain)
    request = Request(launcher=(), image="", command=(), no_check=True)
    contribution = resolve(profile, request, HostFacts(architecture=architecture), None,
                           root, reader)
    points: Dict[str, MountPoint] = {}
    for bind in contribution.binds:
        directory = posixpath.dirname(bind.destination)
        if directory and directory != "/":
            points.setdefault(directory, MountPoint(directory, "dir", "host libraries"))
    for index, spec in enumerate(profile.binds):
        destination = spec.destination or spec.source
        if any(c in spec.source for c in "*?["):
            continue
        source = hostlibs.host_path(root, spec.source)
        kind = "file" if os.path.isfile(source) else "dir"
        if spec.optional and not os.path.lexists(source):
            continue
        points.setdefault(destination, MountPoint(destination, kind, spec.reason or
                                                  f"binds[{index}]"))
    return HostRequirements(
        site=profile.name, family=mpi.family, implementation=mpi.implementation,
        version=mpi.version, policy=policy,
        c_soname=c_lib.soname if c_lib else "",
        c_file=posixpath.basename(c_lib.real_path or c_lib.path) if c_lib else "",
        abi_soname=abi_lib.soname if abi_lib else "",
        architecture=architecture or closure.architecture,
        needs=tuple(best[k] for k in PREFIXES if k in best),
        mount_points=tuple(sorted(points.values(), key=lambda p: p.path)),
        prefix=prefix, diagnostics=tuple(errors))

