"""Build the plan: profile + command line + host facts + image facts + decisions -> Plan.

Pure: reads no file, starts no process, touches no network.  What the host has of the
profile's paths comes in as :class:`~hpcrun.plan.hostpaths.HostPaths` (surveyed by the
caller); the decisions of the resolver, GPU, threads and wire-up stages come in as
:class:`~hpcrun.plan.model.Contribution` values.

Rules applied here:

* Host library files are made visible under the private prefix (``/.hpcrun/lib``), never
  over or in front of the image's ``/lib*``/``/usr/lib*``; a bind onto those trees is an
  error diagnostic.
* A resolver contribution (one with a verdict) replaces the profile-derived library binds.
* Environment precedence: user (``--env``) > profile > computed defaults; a later ``set``
  or ``unset`` of the same variable in the same scope drops the earlier entries.
* Every bind, variable and flag carries its reason; the order is deterministic.
"""

from __future__ import annotations

import posixpath
import re

from hpcrun import records
from hpcrun.host.facts import HostFacts
from hpcrun.image.facts import ImageFacts
from hpcrun.launch.launchers import (
    GENERIC_MPI,
    HYDRA,
    OPENMPI,
    base_name,
    launcher_family,
    merge_defaults,
)
from hpcrun.plan.appcheck import certain_missing_app
from hpcrun.plan.hostpaths import GLOB_CHARS, HostPaths
from hpcrun.plan.model import (
    ERROR,
    INFO,
    NOT_CHECKED,
    WARNING,
    Bind,
    Contribution,
    Diagnostic,
    EnvVar,
    Flag,
    Plan,
    Request,
)
from hpcrun.profiles.model import Profile
from hpcrun.resolve.hostlibs import PLUGIN_DIRS, plugin_subdir

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Mapping, Optional, Sequence, Tuple

GPU_FLAGS = ("--nv", "--nvccli", "--rocm")
# The image's own library directories: nothing of the host may be bound over them.
LIBRARY_DIRS = ("/lib", "/lib64", "/lib32", "/libx32", "/usr/lib", "/usr/lib64", "/usr/lib32",
                "/usr/libx32", "/usr/local/lib", "/usr/local/lib64")
_MULTIARCH = re.compile(r"/(usr/)?lib/[a-z0-9_]+-linux-[a-z0-9_]+\Z")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _binary_name(kind: str) -> str:
    return {"charliecloud": "ch-run"}.get(kind, kind)


def _runtime_binary(profile: Profile, host: HostFacts, kind: str) -> str:
    """The profile's explicit runtime path, else the program name (found on PATH by the
    launcher and on every node), never this node's absolute path."""
    if profile.runtime.path and host.runtime.binary == profile.runtime.path:
        return profile.runtime.path
    if host.runtime.binary:
        return posixpath.basename(host.runtime.binary)
    return _binary_name(kind)


def gpu_active(contributions: Sequence[Contribution]) -> bool:
    """Whether a GPU is on: a GPU runtime flag (--nv, --nvccli, --rocm), or -- for
    Charliecloud, whose ch-run has no such flag -- binds of kind ``"gpu"`` (the driver the
    GPU stage binds itself).  Decides ``gpu.libraries`` and ``when = "gpu"`` variables."""
    return any(flag.flag in GPU_FLAGS for c in contributions for flag in c.flags) or any(
        bind.kind == "gpu" for c in contributions for bind in c.binds)


def is_library_dir(path: str) -> bool:
    """Whether ``path`` is one of the image's library directories (/lib, /usr/lib64,
    /usr/lib/x86_64-linux-gnu ...): binding over it hides the image's own libraries."""
    return path in LIBRARY_DIRS or bool(_MULTIARCH.match(path))


def _inside_library_dir(path: str) -> str:
    """The image library directory ``path`` lies inside, or ""."""
    parent = posixpath.dirname(path)
    while parent not in ("/", ""):
        if is_library_dir(parent):
            return parent
        parent = posixpath.dirname(parent)
    return ""


def _why(key: str, reason: str) -> str:
    """``key: reason``, or the key alone when the profile gives no reason."""
    return f"{key}: {reason}" if reason else key


def _looks_like_file(path: str, host: Optional[HostPaths]) -> bool:
    if host is not None and host.exists(path):
        return not host.is_dir(path)
    return ".so" in posixpath.basename(path)


class _Builder:
    """Accumulates binds, variables and diagnostics in a deterministic order."""

    def __init__(self, profile: Profile, host_paths: Optional[HostPaths]) -> None:
        self.profile = profile
        self.host = host_paths
        self.binds: List[Bind] = []
        self.diagnostics: List[Diagnostic] = []
        self.prefix = posixpath.normpath(profile.container.prefix or "/.hpcrun")
        self.libdir = self.prefix + "/lib"
        self.plugin_dirs: Dict[str, str] = {}  # plugin subdirectory -> its container path

    def diag(self, severity: str, code: str, message: str, hint: str = "",
             source: str = "") -> None:
        self.diagnostics.append(Diagnostic(severity, code, message, hint, source))

    def check_exists(self, path: str, key: str, optional: bool = False) -> bool:
        """Warn (or inform, when optional) about a profile path missing on this host."""
        if self.host is None or self.host.exists(path):
            return True
        if optional:
            self.diag(INFO, "optional-path-missing", f"{key}: {path} is absent on this host: "
                      "not bound", source=key)
            return False
        self.diag(WARNING, "host-path-missing", f"{key}: {path} does not exist on this host",
                  "check the profile, or run on a node that has it (compute nodes may differ)",
                  source=key)
        return True

    def library(self, path: str, key: str, reason: str) -> str:
        """Bind one host library file under the private prefix; return its container path.

        A module of a plugin directory (``ucx/``, ``libfabric/``) keeps that subdirectory,
        as in the resolver (``hpcrun.resolve.hostlibs.PLUGIN_DIRS``)."""
        if self.check_exists(path, key):
            sub = plugin_subdir(path)
            if sub:
                self.plugin_dirs[sub] = self.libdir + "/" + sub
            destination = "/".join(filter(None, (self.libdir, sub, posixpath.basename(path))))
            self.binds.append(Bind(path, destination, True, _why(key, reason),
                                   "library"))
            return destination
        return ""

    def library_glob(self, pattern: str, key: str, reason: str) -> List[str]:
        """Bind every match of a profile glob under the prefix."""
        if not any(c in pattern for c in GLOB_CHARS):
            return [self.library(pattern, key, reason)]
        matches = self.host.expand(pattern) if self.host is not None else None
        if matches is None:
            self.diag(WARNING, "glob-not-expanded", f"{key}: {pattern} is a glob and the host "
                      "was not surveyed: nothing bound", source=key)
            return []
        if not matches:
            self.diag(WARNING, "glob-no-match", f"{key}: {pattern} matches nothing on this host",
                      "check the profile's [[libraries]] path", source=key)
        return [self.library(m, key, reason) for m in matches]


def _profile_library_binds(b: _Builder, profile: Profile) -> None:
    mpi = profile.mpi
    if mpi is not None:
        for i, path in enumerate(mpi.libraries):
            b.library(path, f"mpi.libraries[{i}]", mpi.reason)
        if not mpi.libraries:
            for name in (*mpi.sonames, *mpi.fortran, *mpi.cxx):
                found = b.host.soname(name) if b.host is not None else ""
                if found:
                    b.library(found, "mpi.sonames", f"{name} found in mpi.library_dirs")
                elif b.host is not None:
                    b.diag(WARNING, "soname-not-found", f"mpi.sonames: {name} not found in "
                           f"{', '.join(mpi.library_dirs) or 'mpi.library_dirs (empty)'}",
                           "list the files in mpi.libraries", source="mpi.sonames")
    for i, lib in enumerate(profile.libraries):
        b.library_glob(lib.path, f"libraries[{i}]", lib.reason)


def _profile_binds(b: _Builder, profile: Profile) -> None:
    for i, spec in enumerate(profile.binds):
        key = f"binds[{i}]"
        if not b.check_exists(spec.source, key, spec.optional):
            continue
        destination = spec.destination or spec.source
        if spec.source.startswith("/etc/"):
            kind = "config"
        elif b.host is not None and b.host.is_dir(spec.source):
            kind = "filesystem"
        else:
            kind = "path"
        b.binds.append(Bind(spec.source, destination, spec.read_only,
                            _why(key, spec.reason), kind))


def _container_path(binds: Sequence[Bind], host_path: str) -> str:
    """Where a host path is visible in the container through the binds, or ""."""
    for bind in binds:
        if host_path == bind.source:
            return bind.destination
        if host_path.startswith(bind.source.rstrip("/") + "/"):
            return bind.destination.rstrip("/") + host_path[len(bind.source.rstrip("/")):]
    return ""


def _check_binds(b: _Builder, binds: Sequence[Bind]) -> Tuple[Bind, ...]:
    """Validate destinations, drop exact duplicates, report conflicts and shadowing."""
    seen: Dict[str, Bind] = {}
    kept: List[Bind] = []
    for bind in binds:
        destination = posixpath.normpath(bind.destination) if bind.destination else ""
        if not bind.source.startswith("/") or not destination.startswith("/"):
            b.diag(ERROR, "bind-not-absolute", f"bind {bind.source} -> {bind.destination}: "
                   "source and destination must be absolute paths",
                   source=bind.reason.split(":")[0])
            continue
        if destination in seen:
            other = seen[destination]
            if other.source != bind.source:
                b.diag(ERROR, "bind-conflict", f"two host paths bound to {destination}: "
                       f"{other.source} ({other.reason}) and {bind.source} ({bind.reason})",
                       "remove one of them from the profile", source=destination)
            continue
        key = bind.reason.split(":")[0]
        if is_library_dir(destination):
            b.diag(ERROR, "bind-shadows-image-libraries", f"{bind.source} would be bound over "
                   f"the image's library directory {destination}", f"bind it elsewhere (e.g. "
                   f"{b.prefix}{destination}) and add that to container.library_path, or list "
                   "single library files under [[libraries]]", source=key)
            continue
        parent = _inside_library_dir(destination)
        if parent:
            what = "file" if _looks_like_file(bind.source, b.host) else "directory"
            b.diag(WARNING, "bind-inside-image-libraries", f"{bind.source} is bound over the "
                   f"image's {what} {destination} (inside {parent}): the image's own copy, if "
                   "any, is hidden", "list host libraries under [[libraries]]: they go under "
                   f"{b.libdir} instead", source=key)
        bind = records.replace(bind, destination=destination)
        seen[destination] = bind
        kept.append(bind)
    return tuple(kept)


def _fold_env(b: _Builder, entries: Sequence[EnvVar]) -> Tuple[EnvVar, ...]:
    """Drop entries overridden by a later set/unset of the same variable and scope."""
    kept: List[EnvVar] = []
    for entry in entries:
        if not _NAME.match(entry.name):
            b.diag(ERROR, "bad-variable-name", f"{entry.name!r} is not a valid variable name "
                   f"({entry.reason or entry.source})", "use letters, digits and _",
                   source=entry.reason)
            continue
        if entry.action in ("set", "unset"):
            for old in [k for k in kept if k.name == entry.name and k.scope == entry.scope]:
                kept.remove(old)
                if old.source != entry.source:
                    b.diag(INFO, "variable-overridden", f"{entry.name} ({entry.scope}) from "
                           f"{old.source} overridden by {entry.source} ({entry.reason})",
                           source=entry.name)
        kept.append(entry)
    return tuple(kept)


def _launcher(b: _Builder, profile: Profile, request: Request) -> Tuple[str, ...]:
    if not request.launcher:
        return ()
    name = base_name(request.launcher[0])
    defaults = profile.launcher_defaults(name)
    if defaults is None or not defaults.options:
        return tuple(request.launcher)
    family = launcher_family(request.launcher[0])
    if family == GENERIC_MPI and profile.mpi is not None:
        family = {"mpich": HYDRA, "openmpi": OPENMPI}.get(profile.mpi.family, GENERIC_MPI)
    merged, added = merge_defaults(family, request.launcher, defaults.options)
    if added:
        b.diag(INFO, "launcher-default", f"added {' '.join(added)} to {name} "
               f"(launchers.{name}{': ' + defaults.reason if defaults.reason else ''})",
               source=f"launchers.{name}")
    return merged


def build_plan(profile: Profile, request: Request, host: HostFacts,
               image: Optional[ImageFacts], contributions: Sequence[Contribution],
               host_paths: Optional[HostPaths] = None,
               environ: Optional[Mapping[str, str]] = None,
               mount_slots: Optional[Sequence[str]] = None) -> Plan:
    """Build the launch plan.  Pure: the same inputs always give the same plan.

    ``host_paths`` is the survey of the profile's host paths (None: not checked, no
    warnings about missing paths, globs not expanded).  ``environ`` is the caller's whole
    environment (launcher-scope prepend/append, an existing bind path); default
    ``host.environ``.  ``mount_slots`` are the image's empty ``/mnt/N`` directories
    (Charliecloud; None: unknown).  The returned plan includes its rendered
    :class:`~hpcrun.plan.model.Invocation`.
    """
    b = _Builder(profile, host_paths)
    gpu = gpu_active(contributions)
    resolver = next((c for c in contributions if c.verdict), None)

    launcher = _launcher(b, profile, request)

    # Binds: profile paths, then libraries (profile-derived, or the resolver's closure).
    _profile_binds(b, profile)
    if resolver is None:
        _profile_library_binds(b, profile)
    preload: List[str] = []
    for i, path in enumerate(profile.container.preload if resolver is None else ()):
        inside = _container_path(b.binds, path) or b.library(path, f"container.preload[{i}]",
                                                              profile.container.reason)
        if inside:
            preload.append(inside)
    if gpu:
        for i, path in enumerate(profile.gpu.libraries):
            inside = b.library(path, f"gpu.libraries[{i}]", profile.gpu.reason)
            if inside:
                preload.append(inside)
    elif profile.gpu.libraries:
        b.diag(INFO, "gpu-libraries-skipped", "gpu.libraries not bound: no GPU is active",
               source="gpu.libraries")
    for contribution in contributions:
        b.binds.extend(contribution.binds)
        preload.extend(contribution.preload)
    binds = _check_binds(b, b.binds)

    # Environment, in precedence order: computed defaults, decisions, profile, user.
    env: List[EnvVar] = []
    library_path: List[str] = []
    if any(bind.destination.startswith(b.libdir + "/") for bind in binds):
        library_path.append(b.libdir)
    library_path.extend(profile.container.library_path)
    for contribution in contributions:
        library_path.extend(contribution.library_path)
    library_path = list(dict.fromkeys(library_path))
    keep = profile.container.keep_image_library_path
    if library_path or not keep:
        env.append(EnvVar("LD_LIBRARY_PATH", ":".join(library_path), "container",
                          "prepend" if keep else "set", "profile",
                          "host libraries under " + b.libdir + " + container.library_path"
                          + (" + the image's own value" if keep else " (image value dropped: "
                             "container.keep_image_library_path = false)")))
    if preload:
        env.append(EnvVar("LD_PRELOAD", ":".join(dict.fromkeys(preload)), "container",
                          "prepend", "profile", "container.preload"
                          + (" + gpu.libraries" if gpu and profile.gpu.libraries else "")))
    for sub, directory in b.plugin_dirs.items():
        if PLUGIN_DIRS[sub][1]:
            env.append(EnvVar(PLUGIN_DIRS[sub][1], directory, "container", "set", "default",
                              f"the host's {sub} modules are bound to {directory}"))
    for contribution in contributions:
        env.extend(contribution.env)
    for i, spec in enumerate(profile.env):
        key = f"env[{i}]"
        if spec.when == "gpu" and not gpu:
            b.diag(INFO, "gpu-variable-skipped", f"{key}: {spec.name} applies only with a GPU "
                   "(none is active): not set", source=key)
            continue
        scopes = ("container", "launcher") if spec.scope == "both" else (spec.scope,)
        for scope in scopes:
            env.append(EnvVar(spec.name, spec.value, scope, spec.action, "profile",
                              _why(key, spec.reason)))
    for name, value in request.user_env:
        env.append(EnvVar(name, value, "container", "set", "user", "--env"))
    folded = _fold_env(b, env)

    # Runtime flags and arguments.
    flags: List[Flag] = []
    for contribution in contributions:
        for flag in contribution.flags:
            if flag.flag not in [f.flag for f in flags]:
                flags.append(flag)
    kind = host.runtime.kind or "apptainer"
    if request.cleanenv and kind == "charliecloud":
        # ch-run's only tool, --unset-env=GLOB, would also drop the per-rank wire-up
        # variables the launcher sets after hpcrun ran; no flag, no silent half-measure.
        b.diag(WARNING, "cleanenv-not-supported", "--cleanenv: ch-run has no clean-environment "
               "option that keeps the launcher's wire-up variables, so hpcrun does not clean "
               "the environment: the container keeps the caller's variables",
               "to drop specific variables, add ch-run's --unset-env=GLOB to runtime.options "
               "(sparing PMI_*, PMIX_*, SLURM_*)", source="--cleanenv")
    elif request.cleanenv and "--cleanenv" not in [f.flag for f in flags]:
        flags.append(Flag("--cleanenv", "--cleanenv requested"))
    options = (*profile.runtime.options, *request.runtime_options)
    if kind == "charliecloud":
        image_kind = image.kind if image is not None else ""
        if image_kind in ("sif", "ext3") or (not image_kind and request.image.endswith(".sif")):
            b.diag(ERROR, "ch-run-image-kind", f"ch-run cannot run {request.image}: it takes "
                   f"an image directory or a squashfs file, not a {image_kind or 'SIF'} image",
                   "convert it (ch-convert IMAGE.sif DIR, or unsquashfs/ mksquashfs), or use "
                   "--runtime apptainer|singularity", source="image")
        caller = host.environ if environ is None else environ
        if caller is not None and not dict(caller).get("USER"):
            b.diag(ERROR, "ch-run-needs-user", "ch-run refuses to start without $USER, which "
                   "is not set", "export USER=$(id -un) before launching", source="runtime")
        if flags:
            b.diag(WARNING, "flags-ignored", "ch-run has no equivalent of "
                   f"{' '.join(f.flag for f in flags)}: ignored", source="runtime")
        runtime_args: Tuple[str, ...] = tuple(options)
    else:
        runtime_args = ("exec", *(f.flag for f in flags), *options)

    wrapper: Tuple[str, ...] = tuple(w for c in contributions for w in c.wrapper)
    missing = certain_missing_app(request.command, image, binds,
                                  dict(host.environ if environ is None else environ))
    for contribution in contributions:
        b.diagnostics.extend(d for d in contribution.diagnostics
                             if missing is None or d.code != "app-missing")
    if missing is not None:  # the warning "not found in the image" is a certain failure here
        b.diagnostics.append(missing)

    plan = Plan(
        site=profile.name,
        runtime=kind,
        runtime_binary=_runtime_binary(profile, host, kind),
        launcher=launcher,
        runtime_args=runtime_args,
        image=request.image,
        mpmd=request.mpmd,
        command=tuple(request.command),
        binds=binds,
        env=folded,
        flags=tuple(flags),
        diagnostics=tuple(b.diagnostics),
        verdict=resolver.verdict if resolver is not None else NOT_CHECKED,
        wrapper=wrapper,
        runtime_reason=host.runtime.reason,
    )
    from hpcrun.render.runtimes import render_invocation

    family = ""
    if launcher:
        family = launcher_family(launcher[0])
        if family == GENERIC_MPI and profile.mpi is not None:
            family = {"mpich": HYDRA, "openmpi": OPENMPI}.get(profile.mpi.family, family)
    invocation, extra = render_invocation(plan, dict(host.environ if environ is None else environ),
                                          image.environment if image is not None else None,
                                          flavour=host.runtime.flavour,
                                          version=host.runtime.version,
                                          launcher_family=family, prefix=b.prefix,
                                          mount_slots=mount_slots)
    return records.replace(plan, invocation=invocation,
                               diagnostics=plan.diagnostics + tuple(extra))
