"""The compatibility verdict between a host MPI and a containerised application: pure rules.

Each rule returns :class:`~hpcrun.plan.model.Diagnostic` values with stable codes; the
verdict is the worst severity found (:func:`verdict_of`).  Rules (bind-model.md section 4):

* ABI family: MPICH ABI, Open MPI and the MPI-5 ABI do not mix; an app built for the MPI-5
  ABI (``libmpi_abi.so.1``) is served by any host shipping that library.
* soname major: the host library must carry the major the app asks for.
* version order, policy as Sarus: ``major`` (same major), ``full`` (host minor >= container
  minor; lower is a warning and still attempted), ``strict`` (major and minor equal).
* symbol versions (auditwheel's technique): every ``.gnu.version_r`` need of every host
  library that loads must be defined by the provider that will serve it in the container.
* undefined symbols: what the app expects from the MPI library must be defined there.
* static MPI, architecture mismatch: errors with hints.
"""

from __future__ import annotations

import re

from hpcrun.image.facts import Libc, MpiLibrary, VersionDefs
from hpcrun.plan.model import (
    COMPATIBLE,
    COMPATIBLE_WITH_WARNINGS,
    ERROR,
    INCOMPATIBLE,
    INFO,
    WARNING,
    Diagnostic,
)
from hpcrun.records import record
from hpcrun.resolve import families

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

    from hpcrun.elf.model import ElfInfo

POLICIES = ("major", "full", "strict")

# Stable diagnostic codes.
ARCH_MISMATCH = "arch-mismatch"
FAMILY_MISMATCH = "mpi-family-mismatch"
SONAME_MISMATCH = "mpi-soname-mismatch"
ABI_MISSING = "mpi-abi-missing"
VERSION_OLDER = "mpi-version-older"
VERSION_DIFFERS = "mpi-version-differs"
VERSION_NOT_COMPARED = "mpi-version-not-compared"
STATIC_MPI = "mpi-static"
NOT_USED = "mpi-not-used"
NO_HOST_MPI = "mpi-no-host-mpi"
NOT_IN_CONTAINER = "mpi-not-in-container"
ALIAS = "mpi-alias"
SYMBOL_VERSION = "symbol-version-missing"
SYMBOLS_NOT_CHECKED = "symbol-versions-not-checked"
NOT_GLIBC = "container-not-glibc"
UNDEFINED = "mpi-undefined-symbols"
FAMILY_UNKNOWN = "mpi-family-unknown"
NOT_CHECKED = "not-checked"
PROVIDER_UNRELATED = "provider-unrelated"
PROVIDER_UNLOADABLE = "provider-unloadable"


def verdict_of(diagnostics: Iterable[Diagnostic]) -> str:
    """compatible, warnings or incompatible: the worst severity among ``diagnostics``."""
    severities = {d.severity for d in diagnostics}
    if ERROR in severities:
        return INCOMPATIBLE
    if WARNING in severities:
        return COMPATIBLE_WITH_WARNINGS
    return COMPATIBLE


def numeric_version(text: str) -> Tuple[int, ...]:
    """``4.0.2`` -> (4, 0, 2); ``2021.19.0`` -> (2021, 19, 0); text after the numbers ignored."""
    match = re.match(r"\s*(\d+(?:\.\d+)*)", text or "")
    if not match:
        return ()
    return tuple(int(p) for p in match.group(1).split("."))


def _norm_impl(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def check_architecture(host: str, image: str) -> List[Diagnostic]:
    """An image of another architecture than the host cannot run here (error)."""
    if host and image and host != image:
        return [Diagnostic(ERROR, ARCH_MISMATCH,
                           f"the image is built for {image} but this host is {host}",
                           hint=f"use an image built for {host}", source="image")]
    return []


def check_version(host: MpiLibrary, container: MpiLibrary, policy: str,
                  host_version: str = "", host_implementation: str = "") -> List[Diagnostic]:
    """The version-order rule between the host MPI library and the container's.

    Sarus compares ``libmpi.so.MAJOR.MINOR.PATCH`` file names: used when both real file
    names carry at least MAJOR.MINOR.  Otherwise implementation versions are compared, but
    only between the same implementation (MPICH 4.0 and Intel MPI 2021 are not ordered);
    then ``major`` checks nothing beyond the soname, ``full`` wants host (major, minor) >=
    container's, ``strict`` equal.
    """
    policy = policy if policy in POLICIES else "full"
    host_file = families.parse_soname(host.real_path or host.path).version
    cont_file = families.parse_soname(container.real_path or container.path).version
    source = host.real_path or host.path
    if len(host_file) >= 2 and len(cont_file) >= 2:
        what = (f"host {families.parse_soname(host.real_path or host.path).name} vs container "
                f"{families.parse_soname(container.real_path or container.path).name}")
        return _order(host_file[0], host_file[1], cont_file[0], cont_file[1], policy, what,
                      source)
    h_impl = _norm_impl(host_implementation or host.implementation)
    c_impl = _norm_impl(container.implementation)
    h_ver = numeric_version(host_version or host.version)
    c_ver = numeric_version(container.version)
    if not (h_impl and c_impl and h_impl == c_impl and len(h_ver) >= 2 and len(c_ver) >= 2):
        return [Diagnostic(
            INFO, VERSION_NOT_COMPARED,
            f"versions not ordered: host {host_implementation or host.implementation or '?'} "
            f"{host_version or host.version or '?'}, container {container.implementation or '?'} "
            f"{container.version or '?'}", source=source)]
    if policy == "major":
        return []
    what = (f"host {host_implementation or host.implementation} {host_version or host.version} "
            f"vs container {container.version}")
    if policy == "strict" and h_ver[:2] != c_ver[:2]:
        return [Diagnostic(ERROR, VERSION_DIFFERS,
                           f"policy strict needs equal major.minor versions: {what}",
                           hint="use --abi-policy full to allow a newer host, or a matching "
                           "container", source=source)]
    if h_ver[:2] < c_ver[:2]:
        return [Diagnostic(WARNING, VERSION_OLDER,
                           f"the host MPI is older than the container's: {what}",
                           hint="the app may use functions the host lacks; rebuild the "
                           "container with the host's MPI version if it fails", source=source)]
    return []


def _order(h_major: int, h_minor: int, c_major: int, c_minor: int, policy: str, what: str,
           source: str) -> List[Diagnostic]:
    if h_major != c_major:
        return [Diagnostic(ERROR, SONAME_MISMATCH, f"major versions differ: {what}",
                           hint="use a host MPI of the container's major version", source=source)]
    if policy == "major":
        return []
    if policy == "strict" and h_minor != c_minor:
        return [Diagnostic(ERROR, VERSION_DIFFERS,
                           f"policy strict needs equal minor versions: {what}",
                           hint="use --abi-policy full to allow a newer host, or a matching "
                           "container", source=source)]
    if h_minor < c_minor:
        severity = ERROR if policy == "strict" else WARNING
        return [Diagnostic(severity, VERSION_OLDER,
                           f"the host MPI is older than the container's: {what}",
                           hint="the app may use functions the host lacks; rebuild the "
                           "container with the host's MPI version if it fails", source=source)]
    return []


@record
class Loading:
    """A host library that will load in the container, for the symbol-version rule."""

    name: str  # soname, for messages
    chain: str
    info: ElfInfo


def _version_key(name: str) -> Tuple[str, Tuple[int, ...]]:
    match = re.match(r"^([A-Za-z_]+?)_?(\d+(?:\.\d+)*)$", name)
    if not match:
        return name, ()
    return match.group(1), tuple(int(p) for p in match.group(2).split("."))


def highest_version(defined: Iterable[str], like: str) -> str:
    """The highest version in ``defined`` with the same prefix as ``like`` (GLIBC_2.30)."""
    prefix = _version_key(like)[0]
    best: Optional[Tuple[Tuple[int, ...], str]] = None
    for name in defined:
        key = _version_key(name)
        if key[0] == prefix and key[1] and (best is None or key[1] > best[0]):
            best = (key[1], name)
    return best[1] if best else ""


def check_symbol_versions(loading: Sequence[Loading], host_defs: Dict[str, Tuple[str, ...]],
                          container_defs: Sequence[VersionDefs], libc: Libc) -> List[Diagnostic]:
    """Every version a loading host library needs must be defined where it will resolve.

    ``host_defs`` maps names of host libraries that will be bound (soname and the names
    they are reached under) to the versions they define; other names resolve to the
    container's providers ``container_defs`` (matched by soname, then file name).  A host
    library's need on a provider the container lacks is not judged here (the closure
    reports missing libraries); a container without glibc is one error.
    """
    by_name: Dict[str, VersionDefs] = {}
    for defs in container_defs:
        by_name.setdefault(defs.soname, defs)
        by_name.setdefault(defs.path.rsplit("/", 1)[-1], defs)
    out: List[Diagnostic] = []
    glibc_reported = False
    for lib in loading:
        for need in lib.info.version_needs:
            if need.file in host_defs:
                defined: Set[str] = set(host_defs[need.file])
                where = f"host {need.file}"
            elif need.file in by_name:
                defined = set(by_name[need.file].versions)
                where = _container_label(need.file, libc)
            else:
                from hpcrun.resolve.hostlibs import is_glibc_family

                if is_glibc_family(need.file) and libc.kind not in ("glibc", "unknown", ""):
                    if not glibc_reported:
                        glibc_reported = True
                        out.append(Diagnostic(
                            ERROR, NOT_GLIBC,
                            f"the container's C library is {libc.kind} {libc.version}; host "
                            f"{lib.name} needs glibc ({need.file})",
                            hint="host MPI libraries need a glibc-based image", source="image"))
                continue
            missing = [v for v in need.versions if v not in defined]
            if not missing:
                continue
            missing.sort(key=lambda v: _version_key(v))
            worst = missing[-1]
            top = highest_version(defined, worst)
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            upto = f"defines up to {top}" if top else "does not define it"
            out.append(Diagnostic(
                ERROR, SYMBOL_VERSION,
                f"host {lib.name} needs {worst}{more} from {need.file}; {where} {upto}",
                hint=f"{lib.name} cannot load in this container ({lib.chain}); use an image with "
                f"a newer {need.file.split('.so')[0]} or a host MPI built for older systems",
                source=lib.info.path))
    return out


def optional_modules(found: Sequence[Diagnostic]) -> List[Diagnostic]:
    """Symbol-version findings of run-time opened modules (UCX transports, libfabric
    providers) as warnings: UCX and libfabric skip a module that fails to ``dlopen``, so the
    job runs without that transport rather than failing."""
    out: List[Diagnostic] = []
    for item in found:
        if item.severity != ERROR:
            out.append(item)
            continue
        chain = item.hint.split("(", 1)[-1].split(")", 1)[0] if "(" in item.hint else ""
        module = chain.split(" -> ")[0] if chain else item.source
        out.append(Diagnostic(
            WARNING, PROVIDER_UNLOADABLE,
            f"{item.message}: the run-time module {module} cannot load in this container and "
            "is skipped, so the transport it provides is not available here",
            hint="an image with a newer C library can use it; the job runs without it",
            source=item.source))
    return out


def _container_label(file: str, libc: Libc) -> str:
    from hpcrun.resolve.hostlibs import is_glibc_family

    if is_glibc_family(file) and libc.kind == "glibc" and libc.version:
        return f"the container's glibc {libc.version} ({file})"
    return f"the container's {file}"


# Symbols an application takes from the MPI library (C, Fortran, internals).
_MPI_SYMBOL = r"^(P?MPIX?_|MPI[IRDU]_|MPL_|ompi_|mpi_|pmpi_|mpix_|MPIR|MPII|MPID)"


def mpi_symbols(undefined: Iterable[str]) -> Tuple[str, ...]:
    """The subset of an application's undefined symbols that the MPI library must define."""
    match = re.compile(_MPI_SYMBOL).match  # compiled here, at first use (re caches it)
    return tuple(sorted({s for s in undefined if match(s)}))


def check_undefined(app_symbols: Iterable[str], host_defined: Iterable[str],
                    host_label: str) -> List[Diagnostic]:
    """Every MPI symbol the app leaves undefined must be defined by the host MPI (error)."""
    defined = set(host_defined)
    missing = [s for s in mpi_symbols(app_symbols) if s not in defined]
    if not missing:
        return []
    def listed(names: Sequence[str]) -> str:
        return ", ".join(names[:8]) + (f" (and {len(names) - 8} more)" if len(names) > 8 else "")

    profiling = [s for s in missing if s.upper().startswith("PMPI_")]
    calls = [s for s in missing if not s.upper().startswith("PMPI_")]
    parts = [listed(calls)] if calls else []
    if profiling:
        # PMPI_ names are what profiling and tracing tools (and some apps) call: name them.
        parts.append(f"profiling interface entry points {listed(profiling)}")
    shown = "; ".join(parts)
    internal = any(not s.upper().startswith(("MPI_", "PMPI_")) for s in missing)
    hint = ("the app uses MPI implementation internals; rebuild it against the standard MPI "
            "interface" if internal else "the host MPI lacks functions the app calls; use a "
            "newer host MPI or rebuild the app")
    return [Diagnostic(ERROR, UNDEFINED,
                       f"symbols the app expects from MPI are not defined by host {host_label}: "
                       f"{shown}", hint=hint, source=host_label)]


def family_mismatch(app_family: str, host_family: str, needed: Sequence[str]) -> Diagnostic:
    """The error for an app of one ABI family and a host MPI of another."""
    return Diagnostic(
        ERROR, FAMILY_MISMATCH,
        f"the app is built for {families.family_label(app_family)} ({', '.join(needed)}) but the "
        f"host MPI is {families.family_label(host_family)}",
        hint="use an image built with an MPI of the host's family, a site profile for another "
        "host MPI, a translation layer (Wi4MPI), or run the container's own MPI (hybrid mode)",
        source="mpi.family")


def static_mpi(app: str) -> Diagnostic:
    """The error for an app that linked MPI statically: no host library can replace it."""
    return Diagnostic(
        ERROR, STATIC_MPI, f"{app} is linked statically with MPI: the host MPI cannot replace it",
        hint="rebuild the app with a shared MPI library, or run the container's own MPI in hybrid "
        "mode (a site profile without [mpi])", source=app)
