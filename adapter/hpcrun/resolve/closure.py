"""The host library closure: every host file the host MPI needs, found as ld.so finds it.

Starting from root libraries (the host MPI and the profile's run-time opened providers),
``DT_NEEDED`` entries are followed breadth-first, in the dynamic loader's order:

1. a name containing ``/`` is a path;
2. an object already loaded under that name or soname (or the same file) is reused;
3. ``DT_RPATH`` of the loading object, then of the object that loaded it, and up (only
   while the loading object has no ``DT_RUNPATH``; an object's RPATH is ignored when it has
   a RUNPATH);
4. ``library_path`` (the ``LD_LIBRARY_PATH`` the site's MPI environment would set);
5. ``DT_RUNPATH`` of the loading object only;
6. the host's ``/etc/ld.so.cache``, then the ``ld.so.conf`` directories (a fake or stale
   cache may lack them), then the default directories.

``$ORIGIN``/``${ORIGIN}`` is the directory of the path the loader *opened* (never the target
of a symbolic link), ``$LIB`` and ``$PLATFORM`` expand as the host's loader would.
Candidates of another ELF class or machine are skipped.  GNU ld scripts given as roots are
followed through their ``INPUT``.  glibc-family names are never followed (the container
keeps its own, see :mod:`hpcrun.resolve.hostlibs`).

All paths in the result are *host* paths; files are read under ``root`` so that tests run
on fake host trees.  The ELF reader is a parameter.
"""

from __future__ import annotations

import glob as globmod
import os
import posixpath
import stat
from collections import deque
from pathlib import Path

from hpcrun import records
from hpcrun.errors import ElfError
from hpcrun.plan.model import ERROR, WARNING, Diagnostic
from hpcrun.resolve import hostlibs

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Set, Tuple

    from hpcrun.elf.model import ElfInfo

    Reader = Callable[[str], ElfInfo]

MAX_SYMLINKS = 40
MAX_LIBRARIES = 5000

ROOT = "root"
RPATH = "rpath"
LIBRARY_PATH = "library_path"
RUNPATH = "runpath"
CACHE = "ld.so.cache"
LD_SO_CACHE = "/etc/ld.so.cache"
CONF = "ld.so.conf"
DEFAULT = "default"
DIRECT = "path"


def _default_reader(path: str) -> ElfInfo:
    from hpcrun.elf.reader import read_elf_file

    return read_elf_file(path)


@records.record
class HostLibrary:
    """One host file in the closure.

    ``path`` is the path the loader opened (what ``$ORIGIN`` derives from), ``real_path``
    the file after symbolic links; ``links`` the chain from ``path`` to ``real_path``
    (``libmpich.so.12 -> libmpich.so.12.2.2``); ``names`` every name it was requested under
    (DT_NEEDED names, and the soname).  ``needed_by`` is the chain of names from a root to
    it (``libmpi.so.12``, ``libfabric.so.1``); ``loader`` the host path of the object that
    loaded it ("" for roots); ``found_via`` how it was found and ``search_dir`` the (unexpanded)
    search entry that matched, e.g. ``$ORIGIN/mpich``.
    """

    path: str
    real_path: str
    info: ElfInfo
    names: Tuple[str, ...] = ()
    links: Tuple[str, ...] = ()
    needed_by: Tuple[str, ...] = ()
    loader: str = ""
    found_via: str = ROOT
    search_dir: str = ""

    @property
    def soname(self) -> str:
        """The library's DT_SONAME, or its opened file name when it has none."""
        return self.info.soname or posixpath.basename(self.path)

    @property
    def chain(self) -> str:
        """The chain as people read it: ``libmpi.so.12 -> libfabric.so.1``."""
        return " -> ".join(self.needed_by)

    @property
    def is_runtime(self) -> bool:
        """Whether this is a compiler runtime the container may provide itself."""
        return hostlibs.is_compiler_runtime(self.soname)


@records.record
class Closure:
    """The minimal set of host files the roots load, in load order, with findings."""

    libraries: Tuple[HostLibrary, ...] = ()
    # (glibc-family name, chain): needs left to the container's own glibc
    glibc_needs: Tuple[Tuple[str, str], ...] = ()
    diagnostics: Tuple[Diagnostic, ...] = ()
    missing: Tuple[Tuple[str, str], ...] = ()  # (DT_NEEDED name found nowhere, chain needing it)
    elf_class: int = 0
    architecture: str = ""

    def find(self, name: str) -> Optional[HostLibrary]:
        """The library requested as / named ``name`` (a soname, file name or host path)."""
        for lib in self.libraries:
            if name in lib.names or name == lib.path or name == lib.real_path:
                return lib
        return None


class _State:
    """The walk's working state (a plain class: no dataclass to build at import)."""

    def __init__(self, root: Path, reader: Reader, library_path: Tuple[str, ...],
                 elf_class: int = 0, machine: str = "", architecture: str = "") -> None:
        self.root = root
        self.reader = reader
        self.library_path = library_path
        self.elf_class = elf_class
        self.machine = machine
        self.architecture = architecture
        self.cache: Optional[Dict[str, str]] = None
        self.conf: Optional[Tuple[str, ...]] = None
        self.infos: Dict[str, Optional[ElfInfo]] = {}
        self.errors: Dict[str, str] = {}
        self.dirs: Dict[str, Tuple[str, bool]] = {}  # resolve_host_path memo
        self.diagnostics: List[Diagnostic] = []
        # host paths whose stat signature decides whether a cached closure is still valid:
        # every file read, every directory a name was looked up in or listed
        self.seen: Set[str] = set()
        self.cacheable = True


def resolve_host_path(root: Path, path: str,
                      memo: Optional[Dict[str, Tuple[str, bool]]] = None,
                      seen: Optional[Set[str]] = None) -> Tuple[str, bool]:
    """Resolve a host path under ``root`` like the kernel: every link followed, root-relative.

    Returns the canonical host path and whether it exists as a regular file or directory.
    Absolute link targets restart at ``root`` (never at the real ``/``); ``..`` stops at
    the root; loops count as absent.  ``memo`` caches directories already resolved (the
    closure resolves hundreds of candidates in a handful of directories).  ``seen`` collects
    the directories in which a name was looked up (their mtime changes when entries do).
    """
    base = str(root).rstrip("/")
    parts = [p for p in path.split("/") if p and p != "."]
    parts.reverse()
    resolved: List[str] = []
    hops = 0
    while parts:
        name = parts.pop()
        if name == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = "/" + "/".join([*resolved, name])
        if memo is not None and parts and candidate in memo:
            real_dir, ok = memo[candidate]
            if not ok:
                return "/" + "/".join([real_dir.strip("/"), *reversed(parts)]), False
            resolved = [p for p in real_dir.split("/") if p]
            continue
        if seen is not None:
            seen.add("/" + "/".join(resolved))
        try:
            mode = os.lstat(base + candidate).st_mode
        except OSError:
            return "/" + "/".join([*resolved, name, *reversed(parts)]), False
        if stat.S_ISLNK(mode):
            hops += 1
            if hops > MAX_SYMLINKS:
                return candidate, False
            target = os.readlink(base + candidate)
            if target.startswith("/"):
                resolved = []
            parts.extend(reversed([p for p in target.split("/") if p and p != "."]))
            continue
        resolved.append(name)
        if memo is not None and parts and stat.S_ISDIR(mode):
            memo.setdefault(candidate, ("/" + "/".join(resolved), True))
    final = "/" + "/".join(resolved)
    return final, True


def _link_chain(root: Path, path: str, seen: Optional[Set[str]] = None) -> Tuple[str, ...]:
    """The hops of the last component's symbolic links (host paths), for people to read."""
    chain = [path]
    current = path
    for _ in range(MAX_SYMLINKS):
        if seen is not None:
            seen.add(posixpath.dirname(current))
        where = hostlibs.host_path(root, current)
        if not where.is_symlink():
            break
        target = os.readlink(where)
        here = posixpath.dirname(current)
        nxt = target if target.startswith("/") else posixpath.join(here, target)
        current = posixpath.normpath(nxt)
        chain.append(current)
    return tuple(chain)


def _read(state: _State, host: str) -> Optional[ElfInfo]:
    """ELF facts of a host file (cached by canonical path); None when not readable as ELF."""
    if host in state.infos:
        return state.infos[host]
    info: Optional[ElfInfo]
    state.seen.add(host)
    try:
        info = state.reader(str(hostlibs.host_path(state.root, host)))
    except ElfError as error:
        state.errors[host] = error.message
        info = None
    state.infos[host] = info
    return info


def _fits(state: _State, info: ElfInfo) -> bool:
    if info.is_ld_script:
        return False
    if state.elf_class and info.elf_class != state.elf_class:
        return False
    return not (state.machine and info.machine != state.machine)


def _expand(entry: str, origin: str, state: _State, info: ElfInfo) -> Optional[str]:
    """Expand dynamic string tokens in one search entry; None when it cannot apply."""
    value = entry
    for token in ("${ORIGIN}", "$ORIGIN"):
        value = value.replace(token, origin)
    lib = hostlibs.lib_token(state.root, info.elf_class or state.elf_class,
                             info.architecture or state.architecture, state.seen)
    for token in ("${LIB}", "$LIB"):
        value = value.replace(token, lib)
    platform = info.architecture or state.architecture
    for token in ("${PLATFORM}", "$PLATFORM"):
        value = value.replace(token, platform)
    if "$" in value or not value.startswith("/"):
        return None  # unknown token, or a relative entry (relative to the cwd: never trusted)
    return posixpath.normpath(value)


def _try(state: _State, directory: str, name: str) -> Optional[Tuple[str, str, ElfInfo]]:
    """Open ``directory/name`` as the loader would: (opened path, real path, info) if it fits."""
    candidate = posixpath.join(directory, name)
    real, exists = resolve_host_path(state.root, candidate, state.dirs, state.seen)
    if not exists or not os.path.isfile(str(state.root).rstrip("/") + real):
        return None
    info = _read(state, real)
    if info is None or not _fits(state, info):
        return None
    return candidate, real, info


def _search(state: _State, name: str, loader: Optional[HostLibrary],
            loaders: Sequence[HostLibrary]) -> Tuple[Optional[Tuple[str, str, ElfInfo]], str, str]:
    """Find a DT_NEEDED name: (found, found_via, search entry)."""
    if "/" in name:
        return _try(state, posixpath.dirname(name) or "/", posixpath.basename(name)), DIRECT, name
    if loader is None or not loader.info.runpath:
        for owner in loaders:
            if owner.info.runpath:
                continue  # an object's DT_RPATH is ignored when it has DT_RUNPATH
            for entry in owner.info.rpath:
                directory = _expand(entry, posixpath.dirname(owner.path), state, owner.info)
                if directory:
                    found = _try(state, directory, name)
                    if found:
                        return found, RPATH, entry
    for directory in state.library_path:
        found = _try(state, directory, name)
        if found:
            return found, LIBRARY_PATH, directory
    if loader is not None:
        for entry in loader.info.runpath:
            directory = _expand(entry, posixpath.dirname(loader.path), state, loader.info)
            if directory:
                found = _try(state, directory, name)
                if found:
                    return found, RUNPATH, entry
    if state.cache is None:
        state.seen.add(LD_SO_CACHE)
        state.cache = hostlibs.ld_cache(state.root, state.architecture)
    cached = state.cache.get(name)
    if cached:
        found = _try(state, posixpath.dirname(cached), posixpath.basename(cached))
        if found:
            return found, CACHE, cached
    if state.conf is None:
        state.conf = hostlibs.ld_so_conf_dirs(state.root, state.seen)
    for directory in state.conf:
        found = _try(state, directory, name)
        if found:
            return found, CONF, directory
    for directory in hostlibs.default_dirs(state.root, state.elf_class, state.architecture,
                                           state.seen):
        found = _try(state, directory, name)
        if found:
            return found, DEFAULT, directory
    return None, "", ""


def _expand_roots(state: _State, roots: Sequence[str]) -> List[Tuple[str, str]]:
    """Root paths with globs expanded and ld scripts followed: (host path, requested name)."""
    out: List[Tuple[str, str]] = []
    for root in roots:
        if any(c in root for c in "*?["):
            head = posixpath.dirname(posixpath.normpath("/" + root.lstrip("/")))
            if any(c in head for c in "*?["):
                state.cacheable = False  # a wildcard directory: too many places to watch
            state.seen.add(head)
            pattern = str(hostlibs.host_path(state.root, root))
            matches = sorted(globmod.glob(pattern))
            if not matches:
                state.diagnostics.append(Diagnostic(
                    WARNING, "library-glob-empty", f"no host file matches {root}",
                    hint="check the path in the site profile", source=root))
            prefix = str(state.root).rstrip("/")
            for match in matches:
                out.append(("/" + match[len(prefix):].lstrip("/"), posixpath.basename(match)))
            continue
        out.append((posixpath.normpath("/" + root.lstrip("/")), posixpath.basename(root)))
    return out


def host_closure(roots: Sequence[str], root: Path = Path("/"), reader: Optional[Reader] = None,
                 library_path: Sequence[str] = (), elf_class: int = 0, machine: str = "",
                 architecture: str = "") -> Closure:
    """The host files that loading ``roots`` pulls in, as the host's ld.so would find them.

    ``roots`` are host paths (globs allowed; GNU ld scripts followed through ``INPUT``).
    ``library_path`` plays ``LD_LIBRARY_PATH``.  The process's ELF class and machine are
    those of the first ELF root unless given.  A DT_NEEDED name found nowhere is an error
    diagnostic naming it and the chain that needs it; so is a missing or non-ELF root.
    Nothing raises for bad files: findings are diagnostics.
    """
    return _walk(roots, root, reader, library_path, elf_class, machine, architecture)[0]


def _walk(roots: Sequence[str], root: Path, reader: Optional[Reader],
          library_path: Sequence[str], elf_class: int, machine: str,
          architecture: str) -> Tuple[Closure, _State]:
    """:func:`host_closure`, with the walk's state (what it consulted)."""
    state = _State(root=root, reader=reader or _default_reader, library_path=tuple(library_path),
                   elf_class=elf_class, machine=machine, architecture=architecture)
    loaded: List[HostLibrary] = []
    by_real: Dict[str, int] = {}
    by_name: Dict[str, int] = {}
    glibc: List[Tuple[str, str]] = []
    missing: List[Tuple[str, str]] = []
    queue: Deque[int] = deque()

    def add(lib: HostLibrary) -> None:
        index = len(loaded)
        loaded.append(lib)
        by_real[lib.real_path] = index
        for name in (*lib.names, lib.soname):
            by_name.setdefault(name, index)
        queue.append(index)

    def alias(index: int, name: str) -> None:
        lib = loaded[index]
        if name not in lib.names:
            loaded[index] = records.replace(lib, names=(*lib.names, name))
        by_name.setdefault(name, index)

    pending: Deque[Tuple[str, str, int]] = deque((p, n, 0) for p, n in _expand_roots(state, roots))
    while pending:
        path, requested, depth = pending.popleft()
        real, exists = resolve_host_path(root, path, None, state.seen)
        if not exists or not hostlibs.host_path(root, real).is_file():
            state.diagnostics.append(Diagnostic(
                ERROR, "host-library-missing", f"host library {path} does not exist",
                hint="fix the path in the site profile (mpi.libraries / libraries)", source=path))
            continue
        info = _read(state, real)
        if info is None:
            state.diagnostics.append(Diagnostic(
                ERROR, "host-library-unreadable",
                f"host library {path} is not a shared library: {state.errors.get(real, '')}",
                hint="name the real library file in the site profile", source=path))
            continue
        if info.is_ld_script:
            if depth > 8:
                continue
            here = posixpath.dirname(path)
            for name in info.ld_script_inputs:
                target = name if name.startswith("/") else posixpath.join(here, name)
                pending.append((target, posixpath.basename(name), depth + 1))
            continue
        if not state.elf_class:
            state.elf_class = info.elf_class
            state.machine = state.machine or info.machine
            state.architecture = state.architecture or info.architecture
        if not _fits(state, info):
            state.diagnostics.append(Diagnostic(
                ERROR, "host-library-class",
                f"host library {path} is {info.elf_class}-bit {info.architecture}, not "
                f"{state.elf_class}-bit {state.architecture} like the other roots",
                hint="list libraries of one architecture in the site profile", source=path))
            continue
        if real in by_real:
            alias(by_real[real], requested)
            continue
        names = tuple(dict.fromkeys(n for n in (requested, info.soname) if n))
        add(HostLibrary(path=path, real_path=real, info=info, names=names,
                        links=_link_chain(root, path, state.seen),
                        needed_by=(info.soname or requested,)))

    while queue:
        index = queue.popleft()
        if len(loaded) > MAX_LIBRARIES:
            break
        owner = loaded[index]
        loaders = _loader_chain(owner, loaded)
        for name in owner.info.needed:
            if hostlibs.is_glibc_family(name):
                glibc.append((name, owner.chain))
                continue
            if name in by_name:
                continue
            found, via, entry = _search(state, name, owner, loaders)
            if found is None:
                missing.append((name, owner.chain))
                state.diagnostics.append(Diagnostic(
                    ERROR, "library-missing",
                    f"{name}, needed by host {owner.soname} ({owner.chain} -> {name}), "
                    "is not found on the host",
                    hint="install it on the host, or add its directory to mpi.library_dirs in "
                    "the site profile", source=owner.path))
                continue
            opened, real, info = found
            if real in by_real:
                alias(by_real[real], name)
                continue
            names = tuple(dict.fromkeys(n for n in (name, info.soname) if n))
            add(HostLibrary(path=opened, real_path=real, info=info, names=names,
                            links=_link_chain(root, opened, state.seen),
                            needed_by=(*owner.needed_by, name),
                            loader=owner.path, found_via=via, search_dir=entry))
    closure = Closure(libraries=tuple(loaded), glibc_needs=tuple(dict.fromkeys(glibc)),
                      diagnostics=tuple(state.diagnostics), missing=tuple(missing),
                      elf_class=state.elf_class,
                      architecture=state.architecture)
    return closure, state


def _loader_chain(lib: HostLibrary, loaded: Sequence[HostLibrary]) -> List[HostLibrary]:
    """``lib`` then the object that loaded it, and so on up to a root (for DT_RPATH)."""
    chain = [lib]
    by_path = {item.path: item for item in loaded}
    current = lib
    while current.loader and len(chain) < 64:
        parent = by_path.get(current.loader)
        if parent is None:
            break
        chain.append(parent)
        current = parent
    return chain


# --- the closure cache -------------------------------------------------------------------
# Walking a big host MPI (Open MPI with its MCA components: ~150 libraries) parses every
# ELF file each launch.  The result only changes when a file it read or a directory it
# searched changes, so it is kept in the facts cache with the stat signature of each of
# them; checking a few hundred stats is far cheaper than parsing the ELF files again.

CLOSURE_FORMAT = 1
def closure_cache_key(roots: Sequence[str], root: Path, library_path: Sequence[str],
                      elf_class: int, machine: str, architecture: str) -> str:
    """The facts-cache key of one closure: its inputs, hpcrun's version, the entry format."""
    import json

    from hpcrun import __version__
    from hpcrun.image.cache import sha256_hex

    raw = json.dumps([CLOSURE_FORMAT, __version__, list(roots), str(root), list(library_path),
                      elf_class, machine, architecture])
    return "closure-" + sha256_hex(raw.encode("utf-8", "surrogatepass"))


def _info_to_json(info: ElfInfo) -> List[Any]:
    return [info.path, info.elf_class, info.machine, info.architecture, info.elf_type,
            info.soname, list(info.needed), list(info.rpath), list(info.runpath),
            info.interpreter, list(info.version_defs),
            [[need.file, list(need.versions)] for need in info.version_needs],
            info.is_ld_script, list(info.ld_script_inputs)]


def _info_from_json(data: List[Any]) -> ElfInfo:
    from hpcrun.elf.model import ElfInfo, VersionNeed

    (path, elf_class, machine, architecture, elf_type, soname, needed, rpath, runpath,
     interpreter, version_defs, version_needs, is_ld_script, ld_script_inputs) = data
    return ElfInfo(path=path, elf_class=elf_class, machine=machine, architecture=architecture,
                   elf_type=elf_type, soname=soname, needed=tuple(needed), rpath=tuple(rpath),
                   runpath=tuple(runpath), interpreter=interpreter,
                   version_defs=tuple(version_defs),
                   version_needs=tuple(VersionNeed(file=f, versions=tuple(v))
                                       for f, v in version_needs),
                   is_ld_script=is_ld_script, ld_script_inputs=tuple(ld_script_inputs))


def closure_to_json(closure: Closure) -> Dict[str, Any]:
    """A closure as JSON values (for the facts cache)."""
    return {
        "libraries": [[lib.path, lib.real_path, _info_to_json(lib.info), list(lib.names),
                       list(lib.links), list(lib.needed_by), lib.loader, lib.found_via,
                       lib.search_dir] for lib in closure.libraries],
        "glibc_needs": [list(pair) for pair in closure.glibc_needs],
        "diagnostics": [[d.severity, d.code, d.message, d.hint, d.source]
                        for d in closure.diagnostics],
        "missing": [list(pair) for pair in closure.missing],
        "elf_class": closure.elf_class,
        "architecture": closure.architecture,
    }


def closure_from_json(data: Any) -> Optional[Closure]:
    """The closure :func:`closure_to_json` stored, or None when ``data`` is not one."""
    try:
        libraries = tuple(
            HostLibrary(path=path, real_path=real, info=_info_from_json(info),
                        names=tuple(names), links=tuple(links), needed_by=tuple(needed_by),
                        loader=loader, found_via=via, search_dir=entry)
            for path, real, info, names, links, needed_by, loader, via, entry
            in data["libraries"])
        closure = Closure(
            libraries=libraries,
            glibc_needs=tuple((name, chain) for name, chain in data["glibc_needs"]),
            diagnostics=tuple(Diagnostic(severity, code, message, hint=hint, source=source)
                              for severity, code, message, hint, source in data["diagnostics"]),
            missing=tuple((name, chain) for name, chain in data["missing"]),
            elf_class=data["elf_class"], architecture=data["architecture"])
    except (KeyError, TypeError, ValueError):
        return None
    if not _well_typed(closure):
        return None
    return closure


def _well_typed(closure: Closure) -> bool:
    """A loose type check of a decoded closure (a damaged entry must not reach the resolver)."""
    if not isinstance(closure.elf_class, int) or not isinstance(closure.architecture, str):
        return False
    for lib in closure.libraries:
        info = lib.info
        strings = (lib.path, lib.real_path, lib.loader, lib.found_via, lib.search_dir,
                   info.path, info.machine, info.architecture, info.elf_type, info.soname,
                   info.interpreter, *lib.names, *lib.links, *lib.needed_by, *info.needed,
                   *info.rpath, *info.runpath, *info.version_defs, *info.ld_script_inputs,
                   *(need.file for need in info.version_needs),
                   *(v for need in info.version_needs for v in need.versions))
        if not all(isinstance(value, str) for value in strings):
            return False
        if not isinstance(info.elf_class, int) or not isinstance(info.is_ld_script, bool):
            return False
    pairs = (*closure.glibc_needs, *closure.missing)
    texts = [value for pair in pairs for value in pair]
    for d in closure.diagnostics:
        texts.extend((d.severity, d.code, d.message, d.hint, d.source))
    return all(isinstance(value, str) for value in texts)


def cached_host_closure(roots: Sequence[str], root: Path = Path("/"),
                        library_path: Sequence[str] = (), elf_class: int = 0,
                        machine: str = "", architecture: str = "",
                        cache: Any = None) -> Closure:
    """:func:`host_closure` with the default ELF reader, remembered across runs.

    The entry (in ``cache``, by default the user's :class:`~hpcrun.image.cache.FactsCache`)
    is keyed by the inputs and holds the stat signature (inode, size, mtime) of every file
    the walk read and every directory it looked a name up in or listed, ``/etc/ld.so.cache``
    and the ``ld.so.conf`` files included.  A library replaced, added to or removed from a
    searched directory changes one of them and the closure is walked again.  A corrupt or
    foreign entry is a miss; the cache never changes the result.
    """

    def walk(seen: Set[str]) -> Tuple[Closure, bool]:
        closure, state = _walk(roots, root, None, library_path, elf_class, machine,
                               architecture)
        seen.update(state.seen)
        return closure, state.cacheable

    from hpcrun.image.cache import remembered

    key = closure_cache_key(roots, root, library_path, elf_class, machine, architecture)
    return remembered(key, root, walk, closure_to_json, closure_from_json, cache)
