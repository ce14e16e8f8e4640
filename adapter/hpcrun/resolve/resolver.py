"""The resolver: which host library files enter the container, under which names, and whether
the host MPI can serve the application at all.

``resolve(profile, request, host, image)`` returns a
:class:`~hpcrun.plan.model.Contribution`: binds of host files into the private prefix
(``<container.prefix>/lib``, first on ``LD_LIBRARY_PATH``) with the chain that needed each
one as its reason, alias binds where the app's MPI soname differs from the host's (always
beside the real file, so ``$ORIGIN`` RUNPATHs keep working), subdirectories reached through
``$ORIGIN/...`` reproduced, environment for mpi4py, diagnostics and the verdict.

Reads host files (under ``root``) through the ELF reader; everything else is pure.
"""

from __future__ import annotations

import fnmatch
import glob as globmod
import os
import posixpath
from pathlib import Path

from hpcrun.errors import ElfError
from hpcrun.host.facts import HostFacts
from hpcrun.image.facts import AppFacts, ImageFacts, MpiLibrary
from hpcrun.plan.model import (
    ERROR,
    INFO,
    NOT_CHECKED,
    WARNING,
    Bind,
    Contribution,
    Diagnostic,
    EnvVar,
    Request,
)
from hpcrun.profiles.model import Mpi, Profile
from hpcrun.records import record
from hpcrun.resolve import families, hostlibs, verdict
from hpcrun.resolve.closure import ROOT, Closure, HostLibrary, cached_host_closure, host_closure

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

    from hpcrun.elf.model import ElfInfo

    Reader = Callable[[str], ElfInfo]


def _reader(reader: Optional[Reader]) -> Reader:
    if reader is not None:
        return reader
    return _read_elf_file


def _read_elf_file(path: str) -> ElfInfo:
    """:func:`hpcrun.elf.reader.read_elf_file`, imported when a file is first read."""
    from hpcrun.elf.reader import read_elf_file

    return read_elf_file(path)


@record
class HostMpi:
    """The host MPI as the profile names it and its files say."""

    family: str
    libraries: Tuple[MpiLibrary, ...] = ()
    implementation: str = ""
    version: str = ""
    library_dirs: Tuple[str, ...] = ()
    diagnostics: Tuple[Diagnostic, ...] = ()

    def triples(self) -> List[Tuple[str, str, str]]:
        """(soname, host path, family) for :func:`families.find_provider`."""
        return [(lib.soname, lib.path, lib.family) for lib in self.libraries]


def _classify(soname: str, path: str, real: str, info: ElfInfo, root: Path,
              declared: str, scan: bool = True) -> MpiLibrary:
    """Family, role, implementation and version of one host MPI library.

    ``scan`` false trusts the profile (its version and implementation are given) and skips
    reading the library's strings, which costs tens of milliseconds per launch.
    """
    fs_path = str(hostlibs.host_path(root, real))
    found: Optional[MpiLibrary] = None
    if not scan:
        return MpiLibrary(soname=soname, path=path, real_path=real,
                          family=families.soname_family(soname, declared),
                          role=families.soname_role(soname) or "c")
    from hpcrun.elf.mpi import classify_mpi  # its version tables only when scanning

    try:
        found = classify_mpi(soname, path, info, lambda: open(fs_path, "rb"), real_path=real)
    except (ElfError, OSError):
        found = None
    role = families.soname_role(soname) or "c"
    family = families.soname_family(soname, declared)
    if found is None:
        return MpiLibrary(soname=soname, path=path, real_path=real, family=family, role=role)
    if found.family == families.OPENMPI or found.family == families.MPI_ABI:
        family = found.family
    return MpiLibrary(soname=soname, path=path, real_path=real, family=family, role=found.role,
                      implementation=found.implementation, version=found.version,
                      version_string=found.version_string)


def host_mpi(mpi: Optional[Mpi], root: Path = Path("/"), reader: Optional[Reader] = None
             ) -> HostMpi:
    """The host MPI libraries a profile names, read and classified.

    ``mpi.libraries`` are host paths (globs and GNU ld scripts followed); each soname in
    ``mpi.sonames``/``fortran``/``cxx`` not among them is looked up in ``mpi.library_dirs``;
    with neither, the MPI libraries found in ``library_dirs`` are taken.  A named library
    that is absent is an error diagnostic.  With the real ELF reader the result is
    remembered across runs while no file or directory it consulted changes (facts cache).
    """
    if mpi is None or mpi.family == "none":
        return HostMpi(family="none")
    if reader is not None:
        return _host_mpi(mpi, root, reader, set())[0]
    from hpcrun.image.cache import remembered

    def walk(seen: Set[str]) -> Tuple[HostMpi, bool]:
        return _host_mpi(mpi, root, _read_elf_file, seen)

    return remembered(_host_mpi_key(mpi, root), root, walk, _host_mpi_to_json,
                      _host_mpi_from_json)


HOST_MPI_FORMAT = 1


def _host_mpi_key(mpi: Mpi, root: Path) -> str:
    import json

    from hpcrun import __version__
    from hpcrun.image.cache import sha256_hex

    raw = json.dumps([HOST_MPI_FORMAT, __version__, repr(mpi), str(root)])
    return "host-mpi-" + sha256_hex(raw.encode("utf-8", "surrogatepass"))


_MPI_FIELDS = ("soname", "path", "real_path", "family", "role", "implementation", "version",
               "version_string")


def _host_mpi_to_json(value: HostMpi) -> Dict[str, object]:
    return {"family": value.family, "implementation": value.implementation,
            "version": value.version, "library_dirs": list(value.library_dirs),
            "libraries": [[getattr(lib, name) for name in _MPI_FIELDS]
                          for lib in value.libraries],
            "diagnostics": [[d.severity, d.code, d.message, d.hint, d.source]
                            for d in value.diagnostics]}


def _host_mpi_from_json(data: object) -> Optional[HostMpi]:
    """The stored HostMpi, or None when ``data`` is not one (a damaged entry)."""
    if not isinstance(data, dict):
        return None
    try:
        libraries = tuple(MpiLibrary(**dict(zip(_MPI_FIELDS, row)))
                          for row in data["libraries"])
        diagnostics = tuple(Diagnostic(sev, code, message, hint=hint, source=source)
                            for sev, code, message, hint, source in data["diagnostics"])
        value = HostMpi(family=data["family"], libraries=libraries,
                        implementation=data["implementation"], version=data["version"],
                        library_dirs=tuple(data["library_dirs"]), diagnostics=diagnostics)
    except (KeyError, TypeError, ValueError):
        return None
    texts = [value.family, value.implementation, value.version, *value.library_dirs,
             *(getattr(lib, name) for lib in libraries for name in _MPI_FIELDS),
             *(t for d in diagnostics for t in (d.severity, d.code, d.message, d.hint, d.source))]
    if not all(isinstance(t, str) for t in texts) or \
            any(len(row) != len(_MPI_FIELDS) for row in data["libraries"]):
        return None
    return value


def _host_mpi(mpi: Mpi, root: Path, read: Reader, seen: Set[str]) -> Tuple[HostMpi, bool]:
    """:func:`host_mpi`'s work; adds to ``seen`` every host path it consulted, and says
    whether the result may be remembered."""
    from hpcrun.resolve.closure import resolve_host_path

    cacheable = True
    diagnostics: List[Diagnostic] = []
    paths: List[str] = []
    for entry in mpi.libraries:
        if any(c in entry for c in "*?["):
            head = posixpath.dirname(posixpath.normpath("/" + entry.lstrip("/")))
            if any(c in head for c in "*?["):
                cacheable = False
            seen.add(head)
            prefix = str(root).rstrip("/")
            matches = sorted(globmod.glob(str(hostlibs.host_path(root, entry))))
            paths.extend("/" + m[len(prefix):].lstrip("/") for m in matches)
        else:
            paths.append(entry)
    wanted = [*mpi.sonames, *mpi.fortran, *mpi.cxx]
    seen_names = {posixpath.basename(p) for p in paths}
    for soname in wanted:
        if soname in seen_names:
            continue
        for directory in mpi.library_dirs:
            candidate = posixpath.join(directory, soname)
            seen.add(posixpath.dirname(candidate))
            if os.path.lexists(hostlibs.host_path(root, candidate)):
                paths.append(candidate)
                seen_names.add(soname)
                break
    if not paths:
        for directory in mpi.library_dirs:
            seen.add(directory)
            try:
                names = sorted(os.listdir(hostlibs.host_path(root, directory)))
            except OSError:
                continue
            for name in names:
                parsed = families.parse_soname(name)
                if families.is_mpi_name(name) and len(parsed.version) == 1:
                    paths.append(posixpath.join(directory, name))
    libraries: List[MpiLibrary] = []
    todo = [(p, 0) for p in paths]
    while todo:
        path, depth = todo.pop(0)
        real, exists = resolve_host_path(root, path, None, seen)
        if not exists:
            diagnostics.append(Diagnostic(
                ERROR, "mpi-library-missing", f"host MPI library {path} does not exist",
                hint="fix mpi.libraries / mpi.library_dirs in the site profile", source=path))
            continue
        seen.add(real)
        try:
            info = read(str(hostlibs.host_path(root, real)))
        except ElfError as error:
            diagnostics.append(Diagnostic(
                ERROR, "mpi-library-unreadable", f"host MPI library {path}: {error.message}",
                hint="name the real shared library in the site profile", source=path))
            continue
        if info.is_ld_script:
            if depth < 4:
                here = posixpath.dirname(path)
                todo.extend((n if n.startswith("/") else posixpath.join(here, n), depth + 1)
                            for n in info.ld_script_inputs)
            continue
        soname = info.soname or posixpath.basename(path)
        if any(lib.real_path == real for lib in libraries):
            continue
        if not families.is_mpi_name(soname):
            diagnostics.append(Diagnostic(
                INFO, "mpi-library-other",
                f"host library {path} (soname {soname}) is bound but is no MPI library hpcrun "
                "knows by name", source=path))
        libraries.append(_classify(soname, path, real, info, root, mpi.family,
                                   scan=not (mpi.version and mpi.implementation)))
    for soname in wanted:
        if not any(lib.soname == soname or posixpath.basename(lib.path) == soname
                   for lib in libraries):
            diagnostics.append(Diagnostic(
                ERROR, "mpi-library-missing",
                f"the site profile names MPI library {soname} but no host file provides it",
                hint="fix mpi.sonames / mpi.library_dirs in the site profile", source="mpi"))
    family = mpi.family
    c_families = {lib.family for lib in libraries if lib.role == "c"}
    if family in (families.MPICH, families.OPENMPI) and c_families and family not in c_families:
        actual = sorted(c_families)[0]
        diagnostics.append(Diagnostic(
            ERROR, "mpi-profile-family",
            f"the site profile says the host MPI is {families.family_label(family)} but its "
            f"library is {families.family_label(actual)}",
            hint=f"set mpi.family = \"{actual}\" in the site profile", source="mpi.family"))
        family = actual
    implementation = mpi.implementation
    version = mpi.version
    for lib in libraries:
        if lib.role in ("c", "abi") and lib.implementation and not implementation:
            implementation = lib.implementation
        if lib.role in ("c", "abi") and lib.version and not version:
            version = lib.version
    return HostMpi(family=family, libraries=tuple(libraries), implementation=implementation,
                   version=version, library_dirs=tuple(mpi.library_dirs),
                   diagnostics=tuple(diagnostics)), cacheable


@record
class AppNeeds:
    """What MPI the application needs: sonames, family, how we know, env to set."""

    needed: Tuple[str, ...] = ()
    family: str = ""
    known: bool = False  # False: no app or container MPI to go by
    static: bool = False
    label: str = ""
    symbols: Tuple[str, ...] = ()
    env: Tuple[EnvVar, ...] = ()
    diagnostics: Tuple[Diagnostic, ...] = ()


def _app_family(app: AppFacts) -> str:
    names = app.mpi_needed or tuple(n for n in app.needed if families.is_mpi_name(n))
    return app.mpi_family or families.family_of_names(names)


def app_needs(image: ImageFacts, host_family: str, host_sonames: Sequence[str]) -> AppNeeds:
    """The MPI sonames the application will ask the loader for, and its ABI family.

    Without an app, the container's own MPI libraries stand for it.  For a Python app with
    mpi4py >= 4.1 (one extension per ABI), the extension of the host's family is the one
    that loads, selected through ``MPI4PY_MPIABI``.
    """
    app = image.app
    if app is None or app.kind in ("missing", "unknown", "script"):
        names = tuple(m.soname for m in image.mpi if m.role in ("c", "fortran", "cxx", "abi"))
        diags: List[Diagnostic] = []
        if app is not None and app.kind == "missing":
            diags.append(Diagnostic(
                WARNING, "app-missing", f"{' '.join(app.command)} was not found in the image; "
                "the container's MPI stands for it", source="app"))
        family = families.family_of_names(names, _family_hint(image.mpi))
        return AppNeeds(needed=names, family=family, known=bool(names),
                        label="the container's MPI", diagnostics=tuple(diags))
    label = app.path or " ".join(app.command)
    symbols = tuple(getattr(app, "mpi_symbols", ()) or ())
    if app.static_mpi:
        return AppNeeds(family=app.mpi_family, known=True, static=True, label=label,
                        diagnostics=(verdict.static_mpi(label),))
    if app.kind == "python" and app.extensions:
        return _python_needs(app, host_family, host_sonames, label)
    needed = app.mpi_needed or tuple(n for n in app.needed if families.is_mpi_name(n))
    return AppNeeds(needed=tuple(needed), family=_app_family(app) if needed else "", known=True,
                    label=label, symbols=symbols)


def _family_hint(libs: Sequence[MpiLibrary]) -> str:
    for lib in libs:
        if lib.role == "c" and lib.family != families.UNKNOWN:
            return lib.family
    return ""


MPI4PY_ABI = {families.MPICH: "mpich", families.OPENMPI: "openmpi", families.MPI_ABI: "mpiabi"}


def _python_needs(app: AppFacts, host_family: str, host_sonames: Sequence[str],
                  label: str) -> AppNeeds:
    by_family: Dict[str, AppFacts] = {}
    for ext in app.extensions:
        names = ext.mpi_needed or tuple(n for n in ext.needed if families.is_mpi_name(n))
        if not names:
            continue
        by_family.setdefault(_app_family(ext) or families.UNKNOWN, ext)
    if not by_family:
        return AppNeeds(known=True, label=label)
    env: Tuple[EnvVar, ...] = ()
    choice = host_family
    if choice == families.MPI_ABI and choice not in by_family and "libmpi.so.12" in host_sonames:
        choice = families.MPICH  # MPICH 5 ships both libmpi_abi.so.1 and libmpi.so.12
    if len(by_family) > 1:
        if choice in by_family:
            env = (EnvVar("MPI4PY_MPIABI", MPI4PY_ABI[choice], source="resolver",
                          reason=f"mpi4py carries one extension per MPI ABI; the host MPI is "
                          f"{families.family_label(host_family)}"),)
        else:
            choice = sorted(by_family)[0]
    else:
        choice = next(iter(by_family))
    ext = by_family[choice]
    needed = ext.mpi_needed or tuple(n for n in ext.needed if families.is_mpi_name(n))
    return AppNeeds(needed=tuple(needed), family=_app_family(ext), known=True,
                    label=ext.path or label, symbols=tuple(getattr(ext, "mpi_symbols", ()) or ()),
                    env=env)


class _Layout:
    """Where host files go in the container; binds accumulate here (a plain class: no
    dataclass to build at import)."""

    def __init__(self, libdir: str, prefix: str, binds: List[Bind],
                 diagnostics: List[Diagnostic], taken: Dict[str, str], dirs: Dict[str, str],
                 bound_dirs: Dict[str, str]) -> None:
        self.libdir = libdir
        self.prefix = prefix
        self.binds = binds
        self.diagnostics = diagnostics
        self.taken = taken  # container destination -> host source
        self.dirs = dirs  # host path of a library -> its container directory
        self.bound_dirs = bound_dirs  # host dir -> container dir bound whole

    def add(self, source: str, destination: str, reason: str, kind: str = "library") -> None:
        previous = self.taken.get(destination)
        if previous is not None:
            if previous != source:
                self.diagnostics.append(Diagnostic(
                    WARNING, "library-name-clash",
                    f"{destination} would be both {previous} and {source}; keeping {previous}",
                    hint="list only one of them in the site profile", source=source))
            return
        self.taken[destination] = source
        self.binds.append(Bind(source=source, destination=destination, read_only=True,
                               reason=reason, kind=kind))


def _container_dir(lib: HostLibrary, layout: _Layout) -> str:
    """The container directory for a closure library (``$ORIGIN`` layouts reproduced)."""
    entry = lib.search_dir
    if lib.found_via in ("rpath", "runpath") and ("$ORIGIN" in entry or "${ORIGIN}" in entry):
        loader_dir = layout.dirs.get(lib.loader, layout.libdir)
        rel = posixpath.relpath(posixpath.dirname(lib.path), posixpath.dirname(lib.loader))
        target = posixpath.normpath(posixpath.join(loader_dir, rel))
        if target == layout.prefix or target.startswith(layout.prefix + "/"):
            return target
    return layout.libdir


def _bindable_dir(root: Path, host_dir: str) -> bool:
    """A directory may be bound whole when it holds no glibc-family file (a package's own)."""
    try:
        names = os.listdir(hostlibs.host_path(root, host_dir))
    except OSError:
        return False
    return not any(hostlibs.is_glibc_family(n) for n in names)


def _covering(host_path: str, bound_dirs: Dict[str, str]) -> Optional[str]:
    """The container path of ``host_path`` when a directory bound whole contains it."""
    for host_dir, cdir in bound_dirs.items():
        if host_path.startswith(host_dir + "/"):
            return cdir + host_path[len(host_dir):]
    return None


def _place(closure: Closure, bound: Sequence[HostLibrary], layout: _Layout, root: Path,
           origin: Dict[str, str]) -> Dict[str, str]:
    """Bind each bound closure library under the names the loader will ask for.

    A directory reached through an ``$ORIGIN/...`` entry is bound whole (it is the
    package's own, like the MPICH wheel's ``mpich/``: its dlopened UCX modules and libfabric
    providers come along); files inside it are then not bound again one by one.

    A module in a plugin directory (``hostlibs.PLUGIN_DIRS``: UCX's ``ucx/``, libfabric's
    ``libfabric/``) listed by the profile goes into the same subdirectory beside its owner's
    container copy (``/.hpcrun/lib/ucx/libuct_ib.so.0`` next to ``/.hpcrun/lib/libucs.so.0``).
    Returns those modules: host path -> container directory.
    """
    plugins: Dict[str, str] = {}
    for lib in closure.libraries:
        layout.dirs[lib.path] = _container_dir(lib, layout)
    for lib in closure.libraries:
        sub = hostlibs.plugin_subdir(lib.path) if lib.found_via == ROOT else ""
        if sub:
            # Beside the owner's container copy, as the owner expects (libucs -> ucx/).
            host_dir = posixpath.dirname(posixpath.dirname(lib.path))
            stem = hostlibs.PLUGIN_DIRS[sub][0]
            owner = next((o for o in closure.libraries
                          if posixpath.dirname(o.path) == host_dir
                          and posixpath.basename(o.path).startswith(stem)), None)
            owner_dir = layout.dirs[owner.path] if owner is not None else layout.libdir
            plugins[lib.path] = layout.dirs[lib.path] = posixpath.join(owner_dir, sub)
    for lib in bound:
        cdir = layout.dirs[lib.path]
        host_dir = posixpath.dirname(lib.path)
        if cdir == layout.libdir or host_dir in layout.bound_dirs or lib.path in plugins:
            continue
        if _covering(lib.path, layout.bound_dirs) is None and _bindable_dir(root, host_dir):
            layout.bound_dirs[host_dir] = cdir
            layout.add(host_dir, cdir, f"{lib.chain}: RUNPATH {lib.search_dir} of "
                       f"{posixpath.basename(lib.loader)} expects this directory")
    for lib in bound:
        covered = _covering(lib.path, layout.bound_dirs)
        if covered is not None:
            layout.dirs[lib.path] = posixpath.dirname(covered)
            continue
        cdir = layout.dirs[lib.path]
        reason = lib.chain + (f" ({origin[lib.path]})" if lib.path in origin else "")
        names = [n for n in (*lib.names, posixpath.basename(lib.path)) if "/" not in n]
        for name in dict.fromkeys(names):
            layout.add(lib.real_path, posixpath.join(cdir, name), reason)
    return plugins


def _container_has(image: ImageFacts, soname: str) -> bool:
    if any(d.soname == soname for d in image.version_defs):
        return True
    return any(name == soname for name, _path in image.ld_cache)


def _not_checked(profile: Profile, request: Request, host: HostFacts, root: Path,
                 reader: Optional[Reader]) -> Contribution:
    """--no-check, or no image facts: every library the profile names, no app, no verdict."""
    mpi = host_mpi(profile.mpi, root, reader)
    if request.no_check:
        why = "the image was not inspected (--no-check)"
        hint = "drop --no-check to let hpcrun check the image against the host MPI"
    else:  # a registry URI with no cached SIF, or an image kind hpcrun cannot read
        why = "the image could not be inspected"
        hint = ("give a local SIF, squashfs or sandbox image (or a registry URI pinned by "
                "digest that the runtime has cached) to have it checked")
    diagnostics: List[Diagnostic] = [Diagnostic(
        WARNING, verdict.NOT_CHECKED,
        f"{why}: host MPI compatibility is not verified", hint=hint, source="image")]
    diagnostics.extend(mpi.diagnostics)
    roots = [lib.path for lib in mpi.libraries]
    return _bind_all(profile, mpi, roots, None, diagnostics, root, reader, all_aliases=True,
                     verdict_value=NOT_CHECKED, env=())


def _canonical_aliases(mpi: HostMpi) -> List[families.Provision]:
    """Aliases under every name of the host's family (no app to ask): libmpi <-> libmpich."""
    out: List[families.Provision] = []
    names = {lib.soname for lib in mpi.libraries}
    for lib in mpi.libraries:
        if lib.family != families.MPICH:
            continue
        for other in ({"c": ("libmpi.so.12", "libmpich.so.12"),
                       "fortran": ("libmpifort.so.12", "libmpichfort.so.12"),
                       "cxx": ("libmpicxx.so.12", "libmpichcxx.so.12")}.get(lib.role, ())):
            if other not in names and other != lib.soname:
                names.add(other)
                out.append(families.Provision(
                    other, lib.soname, lib.path, True,
                    f"apps built elsewhere ask for {other}; host "
                    f"{families.family_label(lib.family)} "
                    f"provides it as {lib.soname}"))
    return out


def _closure(roots: Sequence[str], root: Path, reader: Optional[Reader],
             library_path: Sequence[str]) -> Closure:
    """The host closure; with the real ELF reader, remembered across runs (facts cache)."""
    if reader is None:
        return cached_host_closure(roots, root=root, library_path=library_path)
    return host_closure(roots, root=root, reader=reader, library_path=library_path)


def _is_glob(path: str) -> bool:
    return "*" in path or "?" in path or "[" in path


def _bind_all(profile: Profile, mpi: HostMpi, mpi_roots: Sequence[str],
              image: Optional[ImageFacts], diagnostics: List[Diagnostic], root: Path,
              reader: Optional[Reader], all_aliases: bool, verdict_value: str,
              env: Tuple[EnvVar, ...], provisions: Sequence[families.Provision] = (),
              include_libraries: bool = True, app_symbols: Sequence[str] = (),
              companions: Sequence[str] = ()) -> Contribution:
    """Closure + layout + binds (+ symbol checks when the image is known)."""
    prefix = (profile.container.prefix or "/.hpcrun").rstrip("/") or "/.hpcrun"
    libdir = prefix + "/lib"
    origin: Dict[str, str] = {}
    roots: List[str] = []
    for path in mpi_roots:
        roots.append(path)
        origin[path] = "mpi.libraries"
    if include_libraries:
        for i, library in enumerate(profile.libraries):
            roots.append(library.path)
            origin[library.path] = f"libraries[{i}]" + (f": {library.reason}" if library.reason
                                                         else "")
    preload = list(profile.container.preload)
    roots.extend(preload)
    for path in preload:
        origin[path] = "container.preload"
    closure = _closure(roots, root, reader, mpi.library_dirs)
    if mpi_roots and include_libraries and profile.libraries:
        kept = _drop_unrelated(profile, roots, closure, origin, diagnostics)
        if kept != roots:
            roots = kept
            closure = _closure(roots, root, reader, mpi.library_dirs)
    preloaded: List[str] = []
    for companion in companions:
        if closure.find(companion) is None and \
                closure.find(posixpath.basename(companion)) is None:
            # Intel MPI's libmpifort/libmpicxx do not link libmpi: the container's
            # libmpichfort did; without the C library loaded their PMPI_* stay undefined.
            preloaded.append(companion)
            origin[companion] = "preloaded: the host's Fortran/C++ MPI library needs it"
            diagnostics.append(Diagnostic(
                INFO, "mpi-preload-c",
                f"host {posixpath.basename(companion)} is preloaded: the host's Fortran/C++ MPI "
                "library does not load it itself", source=companion))
    if preloaded:
        roots = [*preloaded, *roots]
        closure = _closure(roots, root, reader, mpi.library_dirs)
    diagnostics.extend(closure.diagnostics)
    # Globbed roots: note their origin by their expanded paths too.  The patterns are
    # listed once (in origin's order, the last match wins), not rescanned per library.
    patterns = [p for p in origin if _is_glob(p)]
    for lib in closure.libraries:
        if lib.found_via == ROOT and lib.path not in origin:
            for pattern in list(patterns):
                if fnmatch.fnmatchcase(lib.path, pattern):
                    if lib.path not in origin and _is_glob(lib.path):
                        patterns.append(lib.path)
                    origin[lib.path] = origin[pattern]
    # A preload the profile's own binds already make visible (setonix binds /opt/xpmem and
    # preloads /opt/xpmem/lib64/libxpmem.so.0, as the site module does) is preloaded there,
    # not bound a second time, unless another library asks the loader for it by name.
    wanted = {name for lib in closure.libraries for name in lib.info.needed}
    visible: Dict[str, str] = {}
    for path in preload:
        found = closure.find(path)
        inside = _through_profile_binds(profile, path)
        if found is not None and inside and found.soname not in wanted:
            visible[found.path] = inside
    bound: List[HostLibrary] = []
    for lib in closure.libraries:
        if lib.is_runtime and lib.found_via != ROOT:
            if image is None or _container_has(image, lib.soname):
                continue  # the container's own runtime serves (checked below)
        if lib.path in visible:
            continue
        bound.append(lib)
    layout = _Layout(libdir=libdir, prefix=prefix, binds=[], diagnostics=diagnostics, taken={},
                     dirs={}, bound_dirs={})
    plugins = _place(closure, bound, layout, root, origin)
    for sub, cdir in sorted({(posixpath.basename(d), d) for d in plugins.values()}):
        variable = hostlibs.PLUGIN_DIRS[sub][1]
        if variable and not any(e.name == variable for e in env):
            env = (*env, EnvVar(variable, cdir, source="resolver",
                                reason=f"the host's {sub} modules are bound to {cdir}; the "
                                       f"library looks for them through {variable}"))
    for prov in (*provisions, *(_canonical_aliases(mpi) if all_aliases else ())):
        if not prov.alias:
            continue
        target = closure.find(prov.host_path) or closure.find(prov.host_soname)
        if target is None:
            continue
        cdir = layout.dirs.get(target.path, libdir)
        layout.add(target.real_path, posixpath.join(cdir, prov.needed), prov.reason,
                   kind="alias")
    if image is not None:
        loading = [verdict.Loading(lib.soname, lib.chain, lib.info) for lib in bound]
        host_defs: Dict[str, Tuple[str, ...]] = {}
        for lib in bound:
            for name in (*lib.names, lib.soname):
                host_defs.setdefault(name, lib.info.version_defs)
        if image.version_defs:
            optional = _optional_starts(profile, closure)
            core = [item for item in loading if item.chain.split(" -> ")[0] not in optional]
            diagnostics.extend(verdict.check_symbol_versions(
                core, host_defs, image.version_defs, image.libc))
            diagnostics.extend(verdict.optional_modules(verdict.check_symbol_versions(
                [item for item in loading if item.chain.split(" -> ")[0] in optional],
                host_defs, image.version_defs, image.libc)))
        elif loading:
            diagnostics.append(Diagnostic(
                INFO, verdict.SYMBOLS_NOT_CHECKED,
                "the image facts list no libc/libstdc++ symbol versions: host libraries' "
                "symbol-version needs were not checked", source="image"))
        archs = {lib.info.architecture for lib in bound if lib.info.architecture}
        already = any(d.code == verdict.ARCH_MISMATCH for d in diagnostics)
        if image.architecture and archs and image.architecture not in archs and not already:
            diagnostics.extend(verdict.check_architecture(sorted(archs)[0], image.architecture))
        if app_symbols and provisions:
            # MPI symbols come from the MPI libraries themselves (C, Fortran, C++, ABI).
            defined = _defined_symbols(
                [lib for lib in bound if families.is_mpi_name(lib.soname)], root)
            diagnostics.extend(verdict.check_undefined(
                app_symbols, defined, ", ".join(sorted({p.host_soname for p in provisions}))))
    preload_paths = tuple(visible.get(lib.path) or
                          posixpath.join(layout.dirs.get(lib.path, libdir), lib.soname)
                          for lib in (closure.find(p) for p in (*preloaded, *preload))
                          if lib is not None)
    final = verdict_value or verdict.verdict_of(diagnostics)
    return Contribution(binds=tuple(layout.binds), env=env, diagnostics=tuple(diagnostics),
                        library_path=(libdir,) if layout.binds else (), preload=preload_paths,
                        verdict=final)


def _optional_starts(profile: Profile, closure: Closure) -> Set[str]:
    """Chain heads of the run-time opened modules among the roots: UCX modules, libfabric
    providers, PMIx plugins (in their plugin directories) and the profile's ``provider``
    libraries.  Their owners skip a module that fails to load, so a module that cannot
    load in the container costs its transport, not the job."""
    from hpcrun.resolve.providers import module_owner_dir

    patterns = [lib.path for lib in profile.libraries if lib.kind == "provider"]
    out: Set[str] = set()
    for lib in closure.libraries:
        if lib.found_via != ROOT or not lib.needed_by:
            continue
        if module_owner_dir(lib.path)[0] is not None or any(
                lib.path == p or (_is_glob(p) and fnmatch.fnmatchcase(lib.path, p))
                for p in patterns):
            out.add(lib.needed_by[0])
    return out


def _drop_unrelated(profile: Profile, roots: List[str], closure: Closure,
                    origin: Dict[str, str], diagnostics: List[Diagnostic]) -> List[str]:
    """The roots without listed UCX/libfabric/PMIx modules of a copy the MPI never loads.

    The MPICH 5 wheel's ``libucs`` opens the wheel's ``mpich/ucx/``; the system's
    ``/usr/lib/x86_64-linux-gnu/ucx/`` modules listed by a profile would never be used, and
    would bring the system UCX's dependencies (and their glibc needs) into the container.
    Each such directory is a warning naming it and the owner the MPI does load.
    """
    from hpcrun.resolve.providers import unrelated_modules

    listed = [p for p in (lib.path for lib in profile.libraries)]
    module_roots = [lib.path for lib in closure.libraries if lib.found_via == ROOT
                    and any(lib.path == p or (_is_glob(p) and fnmatch.fnmatchcase(lib.path, p))
                            for p in listed)]
    unrelated = unrelated_modules(closure, module_roots)
    if not unrelated:
        return roots
    dropped = {path for item in unrelated for path in item.paths}
    for item in unrelated:
        loads = (f"it loads {posixpath.basename(item.loaded)} from "
                 f"{posixpath.dirname(item.loaded)}" if item.loaded
                 else f"it loads no {item.owner_stem}*")
        source = origin.get(item.paths[0], "") or next(
            (origin[p] for p in listed if _is_glob(p) and p in origin
             and fnmatch.fnmatchcase(item.paths[0], p)), item.directory)
        diagnostics.append(Diagnostic(
            WARNING, verdict.PROVIDER_UNRELATED,
            f"{item.directory}: {len(item.paths)} {item.what} of another "
            f"{item.owner_stem}* than the host MPI's ({loads}) are not bound",
            hint="remove them from the site profile's [[libraries]] (hpcrun site validate "
            "--deep names them)", source=source.split(":")[0]))
    kept: List[str] = []
    for path in roots:
        if path not in listed:
            kept.append(path)
        elif _is_glob(path):
            matches = [lib.path for lib in closure.libraries if lib.found_via == ROOT
                       and fnmatch.fnmatchcase(lib.path, path)]
            if not matches or not set(matches) <= dropped:
                rest = [m for m in matches if m not in dropped]
                kept.extend([path] if len(rest) == len(matches) else rest)
                for match in rest:
                    origin.setdefault(match, origin.get(path, ""))
        elif path not in dropped:
            kept.append(path)
    return kept


def _through_profile_binds(profile: Profile, host_path: str) -> str:
    """Where the profile's ``[[binds]]`` make ``host_path`` visible in the container, or ""."""
    for spec in profile.binds:
        source = spec.source.rstrip("/") or "/"
        destination = (spec.destination or spec.source).rstrip("/") or "/"
        if host_path == source:
            return destination
        if host_path.startswith(source + "/"):
            return destination + host_path[len(source):]
    return ""


def _defined_symbols(bound: Sequence[HostLibrary], root: Path) -> frozenset:
    from hpcrun.elf.reader import dynamic_symbols

    out: set = set()
    for lib in bound:
        try:
            with open(hostlibs.host_path(root, lib.real_path), "rb") as stream:
                defined, _undefined = dynamic_symbols(stream)
        except (OSError, ElfError):
            continue
        out |= defined
    return frozenset(out)


def _policy(profile: Profile, request: Request) -> str:
    value = request.abi_policy or (profile.mpi.abi_policy if profile.mpi else "") or "full"
    if value not in verdict.POLICIES:
        from hpcrun.errors import UsageError

        raise UsageError(f"unknown ABI policy {value!r}", hint="use major, full or strict")
    return value


def resolve(profile: Profile, request: Request, host: HostFacts, image: Optional[ImageFacts],
            root: Path = Path("/"), reader: Optional[Reader] = None,
            app_symbols: Optional[Sequence[str]] = None) -> Contribution:
    """Decide the host library binds and the verdict for one launch.

    ``image`` None (or ``request.no_check``) binds what the profile names and returns the
    verdict ``not-checked`` with a warning.  Otherwise the app's MPI needs (from
    ``image.app``, or the container's MPI) are matched against the host MPI: ABI family,
    soname major, version policy (``request.abi_policy`` over ``mpi.abi_policy``), symbol
    versions of every host library that loads, undefined MPI symbols of the app
    (``app_symbols`` or ``AppFacts.mpi_symbols`` when known), static MPI, architecture.
    Host files are read under ``root``; ``reader`` replaces the ELF reader (tests).
    """
    policy = _policy(profile, request)
    if image is None or request.no_check:
        return _not_checked(profile, request, host, root, reader)
    diagnostics: List[Diagnostic] = []
    diagnostics.extend(verdict.check_architecture(host.architecture, image.architecture))
    mpi = host_mpi(profile.mpi, root, reader)
    diagnostics.extend(mpi.diagnostics)
    host_sonames = [lib.soname for lib in mpi.libraries]
    needs = app_needs(image, mpi.family, host_sonames)
    diagnostics.extend(needs.diagnostics)
    symbols = tuple(app_symbols) if app_symbols is not None else needs.symbols
    if mpi.family == "none":
        if needs.needed:
            diagnostics.append(Diagnostic(
                WARNING, verdict.NO_HOST_MPI,
                f"the app needs {', '.join(needs.needed)} but the site profile has no host MPI: "
                "the container's own MPI will run (hybrid mode)", source="mpi"))
        return _bind_all(profile, mpi, [], image, diagnostics, root, reader, False, "",
                         needs.env, include_libraries=False)
    if needs.static:
        return Contribution(diagnostics=tuple(diagnostics),
                            verdict=verdict.verdict_of(diagnostics))
    if needs.known and not needs.needed:
        diagnostics.append(Diagnostic(
            INFO, verdict.NOT_USED, f"{needs.label} does not use MPI: no host MPI library is bound",
            source="app"))
        return _bind_all(profile, mpi, [], image, diagnostics, root, reader, False, "", needs.env,
                         include_libraries=False)
    if not needs.known:
        diagnostics.append(Diagnostic(
            INFO, "mpi-app-unknown", "no application and no MPI in the image to check against: "
            "the whole host MPI is bound", source="app"))
        return _bind_all(profile, mpi, [lib.path for lib in mpi.libraries], image, diagnostics,
                         root, reader, True, "", needs.env)
    provisions, mpi_diags = _match(needs, mpi, image, policy, symbols)
    diagnostics.extend(mpi_diags)
    roots = list(dict.fromkeys(p.host_path for p in provisions))
    roles = {families.soname_role(p.needed) for p in provisions}
    companions: List[str] = []
    if roles & {"fortran", "cxx"} and not roles & {"c", "abi"}:
        companions = [lib.path for lib in mpi.libraries
                      if lib.role == "c" and lib.family == mpi.family][:1]
    return _bind_all(profile, mpi, roots, image, diagnostics, root, reader, False, "",
                     needs.env, provisions=provisions, app_symbols=symbols,
                     companions=companions)


def _match(needs: AppNeeds, mpi: HostMpi, image: ImageFacts, policy: str,
           symbols: Sequence[str] = ()) -> Tuple[List[families.Provision], List[Diagnostic]]:
    """Providers for each needed MPI soname, and the family / major / version findings."""
    diagnostics: List[Diagnostic] = []
    provisions: List[families.Provision] = []
    app_family = needs.family or families.family_of_names(needs.needed)
    if app_family == families.UNKNOWN:
        diagnostics.append(Diagnostic(
            WARNING, verdict.FAMILY_UNKNOWN,
            f"the ABI family of {', '.join(needs.needed)} is unknown; assuming the host's",
            source="app"))
        app_family = mpi.family
    triples = mpi.triples()
    if app_family == families.MPI_ABI:
        # Any implementation shipping libmpi_abi.so.1 serves an MPI-5 ABI app.
        triples = [(s, p, families.MPI_ABI if s.startswith("libmpi_abi.") else f)
                   for s, p, f in triples]
    elif app_family != mpi.family:
        diagnostics.append(verdict.family_mismatch(app_family, mpi.family, needs.needed))
        return provisions, diagnostics
    for needed in needs.needed:
        role = families.soname_role(needed)
        prov = families.find_provider(needed, app_family, triples)
        if prov is None:
            if app_family == families.MPI_ABI:
                diagnostics.append(Diagnostic(
                    ERROR, verdict.ABI_MISSING,
                    f"the app is built for the MPI-5 standard ABI ({needed}) but the host MPI "
                    "ships no libmpi_abi.so.1",
                    hint="use a host MPI that ships the standard ABI ("
                    f"{_abi_implementations()})", source="mpi"))
                continue
            have = ", ".join(lib.soname for lib in mpi.libraries if lib.role == role) or "none"
            diagnostics.append(Diagnostic(
                ERROR, verdict.SONAME_MISMATCH,
                f"the app needs {needed} but the host {families.family_label(mpi.family)} "
                f"provides {have}",
                hint="the host library must have the soname major the app was built with" if
                role == "c" else f"add the host's {role} MPI library to the site profile",
                source="mpi"))
            continue
        provisions.append(prov)
        if prov.alias:
            diagnostics.append(Diagnostic(INFO, verdict.ALIAS, prov.reason, source=prov.host_path))
        if role not in ("c", "abi"):
            continue
        host_lib = next(lib for lib in mpi.libraries if lib.path == prov.host_path)
        container = _container_mpi(image, needed, role, app_family)
        if app_family == families.MPI_ABI and role == "abi":
            from hpcrun.resolve import abi

            caveat = abi.header_caveat(host_lib.implementation or mpi.implementation,
                                       container.implementation if container else "",
                                       symbols, source=prov.host_path)
            if caveat is not None:
                diagnostics.append(caveat)
        if container is None:
            diagnostics.append(Diagnostic(
                INFO, verdict.NOT_IN_CONTAINER,
                f"the container has no {needed} of its own: the host's is bound", source="image"))
            continue
        diagnostics.extend(verdict.check_version(host_lib, container, policy, mpi.version,
                                                 mpi.implementation))
    return provisions, diagnostics


def _abi_implementations() -> str:
    from hpcrun.resolve import abi

    return abi.implementations_text()


def _container_mpi(image: ImageFacts, needed: str, role: str, family: str
                   ) -> Optional[MpiLibrary]:
    for lib in image.mpi:
        if lib.soname == needed:
            return lib
    for lib in image.mpi:
        if lib.role == role and lib.family == family:
            return lib
    return None
