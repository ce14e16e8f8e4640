"""Run-time providers of the host MPI's stack, found where the libraries it loads open them.

UCX, libfabric and PMIx open their transport modules with ``dlopen`` after start-up, from a
directory tied to the *copy of the library that was loaded*, not from anywhere on the
system:

* UCX's ``libucs`` opens ``ucx/libuct_*.so*`` from the ``ucx/`` directory beside its own
  file (found with ``dladdr``);
* libfabric opens ``*-fi.so`` providers from ``FI_PROVIDER_PATH`` when the MPI's
  environment sets it, else from its compiled-in ``<libdir>/libfabric``; Intel MPI keeps
  its libfabric in its own tree with the providers in ``prov/`` beside it, and its
  ``mpivars`` points ``FI_PROVIDER_PATH`` there;
* PMIx's ``libpmix`` opens its plugins from ``pmix/`` beside its real file (Debian's
  ``pmix2/lib/pmix``).

So the providers of an MPI are found from the host library closure of that MPI
(:mod:`hpcrun.resolve.closure`: RUNPATH with ``$ORIGIN``, the MPI's library directories,
then ``ld.so.cache``), never from a system copy the MPI does not load: the MPICH 5 wheel's
``lib/mpich/libucs.so.0`` opens ``lib/mpich/ucx/``, not ``/usr/lib/x86_64-linux-gnu/ucx/``.
Used by ``hpcrun site detect``, ``site validate --deep`` and the resolver alike.  Pure
apart from listing directories under ``root``.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from pathlib import Path

from hpcrun.records import record
from hpcrun.resolve import hostlibs

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple

    from hpcrun.resolve.closure import Closure, HostLibrary

UCX = "ucx"
LIBFABRIC = "libfabric"
PMIX = "pmix"


@record
class Owner:
    """A library that opens modules from a directory beside it."""

    kind: str  # ucx, libfabric, pmix
    stem: str  # soname prefix of the owning library (``libucs.so``)
    subdirs: Tuple[str, ...]  # directories beside the owner's file that hold its modules
    pattern: str  # file-name glob of the modules
    what: str  # what they are, for people
    variable: str = ""  # environment variable that replaces the directory ("" none)


OWNERS: Tuple[Owner, ...] = (
    Owner(UCX, "libucs.so", ("ucx",), "*.so*", "UCX modules"),
    Owner(LIBFABRIC, "libfabric.so", ("libfabric", "prov"), "*-fi.so", "libfabric providers",
          "FI_PROVIDER_PATH"),
    Owner(PMIX, "libpmix.so", ("pmix",), "*.so", "PMIx plugins"),
)


@record
class ProviderDir:
    """A directory of run-time opened modules, and the loaded library that opens them.

    ``directory`` is the canonical host path (links resolved); ``owner`` the host path
    the owning library was loaded from, ``chain`` how the MPI reaches it
    (``libmpi.so.12 -> libucs.so.0``); ``modules`` the module file names found there.
    """

    kind: str
    directory: str
    owner: str
    owner_soname: str
    chain: str
    pattern: str
    what: str
    modules: Tuple[str, ...] = ()
    from_variable: bool = False  # found through FI_PROVIDER_PATH

    @property
    def glob(self) -> str:
        """The ``[[libraries]]`` path that lists the modules."""
        return posixpath.join(self.directory, self.pattern)

    @property
    def reason(self) -> str:
        via = "FI_PROVIDER_PATH" if self.from_variable else f"the directory beside {self.owner}"
        return (f"{self.what} opened at run time by {self.owner_soname} ({self.chain}) "
                f"from {via}")


def owner_of(soname: str) -> Optional[Owner]:
    """The :class:`Owner` entry of a library by soname (``libucs.so.0``), or None."""
    for owner in OWNERS:
        if soname == owner.stem or soname.startswith(owner.stem + "."):
            return owner
    return None


def _modules(root: Path, directory: str, pattern: str) -> Tuple[str, ...]:
    try:
        names = sorted(os.listdir(hostlibs.host_path(root, directory)))
    except OSError:
        return ()
    return tuple(n for n in names if fnmatch.fnmatchcase(n, pattern)
                 and hostlibs.host_path(root, posixpath.join(directory, n)).is_file())


def provider_dirs(libraries: Sequence[HostLibrary], root: Path = Path("/"),
                  fi_provider_path: Sequence[str] = ()) -> List[ProviderDir]:
    """The module directories that the closure ``libraries`` open at run time.

    ``fi_provider_path``: the directories of ``FI_PROVIDER_PATH`` as the MPI's environment
    sets it; when given, a loaded libfabric takes its providers from there only (as
    libfabric does).  Directories are canonical host paths, each listed once, in the
    order their owners were loaded; a directory without a matching module is left out.
    """
    from hpcrun.resolve.closure import resolve_host_path

    out: List[ProviderDir] = []
    done = set()
    for lib in libraries:
        owner = owner_of(lib.soname)
        if owner is None:
            continue
        candidates: List[Tuple[str, bool]] = []
        if owner.kind == LIBFABRIC and fi_provider_path:
            candidates = [(d, True) for d in fi_provider_path if d.startswith("/")]
        else:
            for base in dict.fromkeys((posixpath.dirname(lib.path),
                                       posixpath.dirname(lib.real_path))):
                candidates += [(posixpath.join(base, sub), False) for sub in owner.subdirs]
        for directory, from_variable in candidates:
            real, exists = resolve_host_path(root, posixpath.normpath(directory))
            if not exists or real in done or not hostlibs.host_path(root, real).is_dir():
                continue
            modules = _modules(root, real, owner.pattern)
            if not modules:
                continue
            done.add(real)
            out.append(ProviderDir(kind=owner.kind, directory=real, owner=lib.path,
                                   owner_soname=lib.soname, chain=lib.chain,
                                   pattern=owner.pattern, what=owner.what, modules=modules,
                                   from_variable=from_variable))
    return out


@record
class Unrelated:
    """Listed modules whose owning library is not the one the host MPI loads."""

    directory: str  # host directory of the modules, as listed
    paths: Tuple[str, ...]  # the listed module files
    what: str
    owner_stem: str
    loaded: str  # host path of the owner the MPI does load, or ""


def module_owner_dir(path: str) -> Tuple[Optional[Owner], str]:
    """For a module file inside a plugin directory (``.../ucx/libuct_ib.so.0``): its
    :class:`Owner` entry and the directory where the owning library is expected.

    Intel MPI's ``libfabric/prov/libtcp-fi.so`` belongs to ``libfabric/libfabric.so.1``.
    """
    parent = posixpath.dirname(path)
    sub, name = posixpath.basename(parent), posixpath.basename(path)
    for owner in OWNERS:
        if sub in owner.subdirs and fnmatch.fnmatchcase(name, owner.pattern) \
                and not name.startswith(owner.stem):
            return owner, posixpath.dirname(parent)
    return None, ""


def unrelated_modules(closure: Closure, module_roots: Sequence[str]) -> List[Unrelated]:
    """Listed modules (closure roots among ``module_roots``) of a UCX, libfabric or PMIx that
    the rest of the closure (the MPI and the profile's other libraries) does not load.

    Such modules are never opened by the MPI (its own ``libucs`` opens its own ``ucx/``)
    and would bring a second UCX's dependencies, and their symbol-version needs, into the
    container.  A module counts as related when an owning library in its parent directory
    (by opened path or real file) was loaded through a chain that does not start at one of
    the listed modules.
    """
    roots = set(module_roots)
    starts = set()
    listed: List[Tuple[HostLibrary, Owner, str]] = []
    for lib in closure.libraries:
        if lib.path not in roots:
            continue
        owner, owner_dir = module_owner_dir(lib.path)
        if owner is None:
            continue
        listed.append((lib, owner, owner_dir))
        starts.add(lib.needed_by[0] if lib.needed_by else lib.soname)
    by_dir: Dict[str, Unrelated] = {}
    for lib, owner, owner_dir in listed:
        loaded = [o for o in closure.libraries if owner_of(o.soname) == owner
                  and (o.needed_by[:1] and o.needed_by[0] not in starts)]
        real_dir = posixpath.dirname(lib.real_path)
        real_owner_dir = posixpath.dirname(real_dir)
        if any(posixpath.dirname(o.path) in (owner_dir, real_owner_dir)
               or posixpath.dirname(o.real_path) in (owner_dir, real_owner_dir)
               for o in loaded):
            continue
        directory = posixpath.dirname(lib.path)
        entry = by_dir.get(directory)
        paths = (*(entry.paths if entry else ()), lib.path)
        by_dir[directory] = Unrelated(directory=directory, paths=paths, what=owner.what,
                                      owner_stem=owner.stem,
                                      loaded=loaded[0].path if loaded else "")
    return list(by_dir.values())
