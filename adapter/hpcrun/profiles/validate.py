"""Check a site profile against the host it describes.

:func:`validate_profile` is cheap (stat calls only): every host path is looked up under
``root`` (``/`` in production, a fake tree in tests), and the values are checked for what
the runtimes can express.  :func:`deep_checks` also opens the library files: each must be
an ELF shared object of this host's architecture (a GNU ld script is reported), every
``DT_NEEDED`` of their closure must be found as the host's loader finds it, the MPI
libraries must be the family and version ``[mpi]`` claims, and the providers opened at
run time (verbs, libfabric, UCX) must exist and be visible in the container.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import platform
import posixpath
import re
import struct
from pathlib import Path

from hpcrun.plan.model import ERROR, INFO, WARNING, Diagnostic
from hpcrun.profiles.model import Profile

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

    from hpcrun.elf.model import ElfInfo
    from hpcrun.image.facts import MpiLibrary
    from hpcrun.resolve.closure import Closure

GLOB_CHARS = re.compile(r"[*?\[]")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Container directories a bind must never cover: the image's own system libraries/programs.
SYSTEM_DIRS = frozenset({
    "/", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/usr/bin",
    "/usr/sbin", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/local", "/usr/local/lib",
    "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu", "/etc", "/proc", "/sys", "/dev",
})
# uname -m -> (EI_CLASS, e_machine) of the libraries that can load on this host.
HOST_ELF = {
    "x86_64": (2, 62), "aarch64": (2, 183), "arm64": (2, 183), "ppc64le": (2, 21),
    "ppc64": (2, 21), "s390x": (2, 22), "riscv64": (2, 243), "i686": (1, 3), "i386": (1, 3),
    "armv7l": (1, 40), "loongarch64": (2, 258),
}
MACHINE_NAMES = {3: "i386", 21: "ppc64", 22: "s390x", 40: "arm", 62: "x86_64", 183: "aarch64",
                 243: "riscv", 258: "loongarch"}


def _diag(severity: str, code: str, key: str, message: str, hint: str = "") -> Diagnostic:
    return Diagnostic(severity=severity, code=f"profile.{code}", message=message, hint=hint,
                      source=key)


def host_path(root: Path, path: str) -> Path:
    """Where the absolute host ``path`` lives when the host's ``/`` is ``root``."""
    return Path(root) / path.lstrip("/")


def bind_syntax_problem(path: str) -> str:
    """Why ``path`` cannot be written in Apptainer's ``src[:dst[:opts]]`` syntax, or "".

    Commas and colons are escaped with a backslash; a backslash itself, control characters
    (newline, NUL ...) cannot be expressed.
    """
    for char in path:
        if ord(char) < 32 or char == "\x7f":
            return f"contains the control character {char!r}"
    if "\\" in path:
        return "contains a backslash, which the bind syntax uses as its escape character"
    return ""


def _check_absolute(key: str, path: str, what: str) -> Optional[Diagnostic]:
    if not path:
        return _diag(ERROR, "empty-path", key, f"{what} is empty")
    if not path.startswith("/"):
        return _diag(ERROR, "relative-path", key, f"{what} {path!r} is not an absolute path",
                     "write the full path starting with /")
    return None


def _check_host_file(root: Optional[Path], key: str, path: str, what: str,
                     allow_glob: bool = False) -> List[Diagnostic]:
    bad = _check_absolute(key, path, what)
    if bad:
        return [bad]
    problem = bind_syntax_problem(path)
    if problem:
        return [_diag(ERROR, "unbindable-path", key, f"{what} {path!r} {problem}")]
    if root is None:  # offline: the host is not looked at
        return []
    if allow_glob and GLOB_CHARS.search(path):
        if not glob.glob(str(host_path(root, path))):
            return [_diag(ERROR, "glob-no-match", key, f"{what} {path} matches no file on "
                          "this host", "fix the pattern or remove the entry")]
        return []
    if not os.path.lexists(host_path(root, path)):
        return [_diag(ERROR, "missing-path", key, f"{what} {path} does not exist on this host",
                      "fix the path, install the package that provides it, or remove the "
                      "entry")]
    if not os.path.exists(host_path(root, path)):
        return [_diag(ERROR, "dangling-link", key, f"{what} {path} is a dangling symbolic link")]
    return []


def _check_container_path(key: str, path: str, what: str) -> List[Diagnostic]:
    if not path.startswith("/"):
        return [_diag(WARNING, "relative-destination", key,
                      f"{what} {path!r} is not an absolute container path",
                      "write the full path starting with /")]
    problem = bind_syntax_problem(path)
    if problem:
        return [_diag(ERROR, "unbindable-path", key, f"{what} {path!r} {problem}")]
    return []


def _norm(path: str) -> str:
    return os.path.normpath(path) if path else path


def _check_runtime(profile: Profile, root: Optional[Path]) -> List[Diagnostic]:
    out: List[Diagnostic] = []
    if profile.runtime.path:
        out += _check_host_file(root, "runtime.path", profile.runtime.path, "runtime binary")
        if root is None:
            return out
        found = host_path(root, profile.runtime.path)
        if not out and not (found.is_file() and os.access(found, os.X_OK)):
            out.append(_diag(ERROR, "not-executable", "runtime.path",
                             f"runtime binary {profile.runtime.path} is not an executable file"))
    return out


def _soname_found(root: Path, soname: str, dirs: Iterable[str], files: Iterable[str]) -> bool:
    if any(os.path.basename(f) == soname for f in files):
        return True
    return any(os.path.lexists(host_path(root, d) / soname) for d in dirs)


def _check_mpi(profile: Profile, root: Optional[Path]) -> List[Diagnostic]:
    mpi = profile.mpi
    if mpi is None or mpi.family == "none":
        return []
    out: List[Diagnostic] = []
    if not mpi.libraries and not mpi.library_dirs:
        out.append(_diag(WARNING, "mpi-without-libraries", "mpi",
                         f"[mpi] family {mpi.family!r} names neither libraries nor library_dirs",
                         "list the MPI library files (mpi.libraries) or their directory "
                         "(mpi.library_dirs), or set family = \"none\""))
    for index, path in enumerate(mpi.libraries):
        out += _check_host_file(root, f"mpi.libraries[{index}]", path, "MPI library")
    for index, path in enumerate(mpi.library_dirs):
        key = f"mpi.library_dirs[{index}]"
        found = _check_host_file(root, key, path, "MPI library directory")
        if not found and root is not None and not host_path(root, path).is_dir():
            found = [_diag(ERROR, "not-a-directory", key, f"{path} is not a directory")]
        out += found
    if not mpi.sonames:
        out.append(_diag(WARNING, "no-sonames", "mpi.sonames",
                         "no MPI sonames: hpcrun cannot tell which library serves the "
                         "application", 'e.g. sonames = ["libmpi.so.12"]'))
    # Only worth saying when the places to look exist (else the errors above say it all).
    present = root is not None and (
        any(host_path(root, d).is_dir() for d in mpi.library_dirs)
        or any(os.path.lexists(host_path(root, f)) for f in mpi.libraries))
    for group in ("sonames", "fortran", "cxx"):
        for index, soname in enumerate(getattr(mpi, group)):
            key = f"mpi.{group}[{index}]"
            if "/" in soname or not soname:
                out.append(_diag(ERROR, "bad-soname", key,
                                 f"{soname!r} is not a soname (a file name like libmpi.so.12)"))
            elif present and root is not None and not _soname_found(root, soname, mpi.library_dirs,
                                               mpi.libraries):
                out.append(_diag(WARNING, "soname-not-found", key,
                                 f"{soname} is neither in mpi.libraries nor in mpi.library_dirs",
                                 "add the directory holding it to mpi.library_dirs"))
    return out


def _check_binds(profile: Profile, root: Optional[Path]) -> List[Diagnostic]:
    out: List[Diagnostic] = []
    seen: Dict[str, str] = {}
    prefix = _norm(profile.container.prefix)
    for index, bind in enumerate(profile.binds):
        key = f"binds[{index}]"
        problems = _check_host_file(root, f"{key}.source", bind.source, "bind source")
        if problems and bind.optional and problems[0].code == "profile.missing-path":
            problems = [_diag(INFO, "optional-missing", f"{key}.source",
                              f"optional bind {bind.source} is absent on this host: skipped")]
        out += problems
        if GLOB_CHARS.search(bind.source):
            out.append(_diag(WARNING, "glob-in-bind", f"{key}.source",
                             f"{bind.source} contains glob characters, which binds take "
                             "literally", "globs are expanded in [[libraries]] paths only"))
        destination = bind.destination or bind.source
        if bind.destination:
            out += _check_container_path(f"{key}.destination", bind.destination,
                                         "bind destination")
        norm = _norm(destination)
        if norm in SYSTEM_DIRS:
            out.append(_diag(WARNING, "shadows-system-dir", key,
                             f"binding over {norm} hides the container's own files there",
                             "bind single files or a subdirectory, or list libraries under "
                             "[[libraries]] (made visible under the private prefix)"))
        if prefix and (norm == prefix or norm.startswith(prefix + "/")):
            out.append(_diag(WARNING, "inside-prefix", key,
                             f"destination {norm} is inside hpcrun's private prefix {prefix}",
                             "choose another destination"))
        if norm in seen:
            out.append(_diag(WARNING, "duplicate-destination", key,
                             f"destination {norm} is also bound by {seen[norm]}",
                             "remove one of the two entries"))
        else:
            seen[norm] = key
    return out


def _check_env(profile: Profile) -> List[Diagnostic]:
    out: List[Diagnostic] = []
    seen: Dict[Tuple[str, str, str], str] = {}
    for index, env in enumerate(profile.env):
        key = f"env[{index}]"
        if not ENV_NAME.match(env.name):
            out.append(_diag(ERROR, "bad-env-name", f"{key}.name",
                             f"{env.name!r} is not a valid environment variable name"))
            continue
        if "\x00" in env.value:
            out.append(_diag(ERROR, "bad-env-value", f"{key}.value", "value contains NUL"))
        if env.action == "unset" and env.value:
            out.append(_diag(WARNING, "unset-with-value", f"{key}.value",
                             f"{env.name} is unset: its value is ignored"))
        if env.name in ("LD_LIBRARY_PATH", "LD_PRELOAD"):
            other = "library_path" if env.name == "LD_LIBRARY_PATH" else "preload"
            out.append(_diag(WARNING, "managed-variable", f"{key}.name",
                             f"{env.name} is managed by hpcrun",
                             f"use [container] {other} instead"))
        scopes = ("container", "launcher") if env.scope == "both" else (env.scope,)
        for scope in scopes:
            ident = (env.name, scope, env.when)
            if env.action == "set" and ident in seen:
                out.append(_diag(WARNING, "duplicate-env", key,
                                 f"{env.name} is also set by {seen[ident]} (scope {scope})",
                                 "the later entry wins; remove one"))
            elif env.action == "set":
                seen[ident] = key
    return out


def _check_misc(profile: Profile, root: Optional[Path]) -> List[Diagnostic]:
    out: List[Diagnostic] = []
    for index, lib in enumerate(profile.libraries):
        key = f"libraries[{index}].path"
        found = _check_host_file(root, key, lib.path, "library", allow_glob=True)
        if (not found and root is not None and not GLOB_CHARS.search(lib.path)
                and host_path(root, lib.path).is_dir()):
            found = [_diag(WARNING, "library-is-directory", key,
                           f"{lib.path} is a directory, not a library file",
                           f"name its files with a glob such as {lib.path.rstrip('/')}/*.so, "
                           "or bind the directory under [[binds]]")]
        out += found
    for index, path in enumerate(profile.gpu.libraries):
        out += _check_host_file(root, f"gpu.libraries[{index}]", path, "GPU library")
    if profile.gpu.vendor == "none" and profile.gpu.libraries:
        out.append(_diag(WARNING, "gpu-libraries-unused", "gpu.libraries",
                         "gpu.vendor is \"none\": these libraries are never used"))
    for index, path in enumerate(profile.container.preload):
        out += _check_host_file(root, f"container.preload[{index}]", path, "preloaded library")
    for index, path in enumerate(profile.container.library_path):
        out += _check_container_path(f"container.library_path[{index}]", path,
                                     "library path entry")
    prefix = profile.container.prefix
    if not prefix.startswith("/") or _norm(prefix) in SYSTEM_DIRS:
        out.append(_diag(ERROR, "bad-prefix", "container.prefix",
                         f"prefix {prefix!r} must be an absolute private directory",
                         'keep the default "/.hpcrun"'))
    elif bind_syntax_problem(prefix) or ":" in prefix or "," in prefix:
        out.append(_diag(ERROR, "bad-prefix", "container.prefix",
                         f"prefix {prefix!r} must be a plain path (no ':' ',' '\\\\' or "
                         "control characters): it goes into LD_LIBRARY_PATH"))
    for name, defaults in profile.launchers:
        for index, option in enumerate(defaults.options):
            if not option.startswith("-"):
                out.append(_diag(WARNING, "launcher-option", f"launchers.{name}.options[{index}]",
                                 f"{option!r} does not look like an option of {name}",
                                 "give each option as one string, e.g. \"--mpi=pmi2\""))
    for index, name in enumerate(profile.threads.variables):
        if not ENV_NAME.match(name):
            out.append(_diag(ERROR, "bad-env-name", f"threads.variables[{index}]",
                             f"{name!r} is not a valid environment variable name"))
    for index, pattern in enumerate(profile.wireup.forward):
        if not pattern or not re.match(r"^[A-Za-z_*?\[][A-Za-z0-9_*?\[\]!-]*$", pattern):
            out.append(_diag(ERROR, "bad-pattern", f"wireup.forward[{index}]",
                             f"{pattern!r} is not a variable name pattern",
                             "use names or shell globs such as \"I_MPI_*\""))
    return out


def validate_profile(profile: Profile, root: Optional[Path] = Path("/")) -> List[Diagnostic]:
    """Every finding about ``profile`` on the host whose file system is at ``root``.

    ``root=None`` is the offline check (``hpcrun site validate --offline``): the values
    alone (absolute paths, bind syntax, names, patterns, duplicates), no host file looked at,
    so a laptop or a site's CI can check a profile written for a cluster.

    Errors: required host paths that are missing, relative host paths, values that cannot
    be passed to the runtime.  Warnings: questionable but usable settings.  Info: optional
    paths that are absent.  The result is in profile order.
    """
    out: List[Diagnostic] = []
    if not profile.name.strip():
        out.append(_diag(ERROR, "no-name", "name", "the profile has an empty name"))
    out += _check_runtime(profile, root)
    out += _check_mpi(profile, root)
    out += _check_misc(profile, root)
    out += _check_binds(profile, root)
    out += _check_env(profile)
    return out


# --- deep checks -------------------------------------------------------------------------


def host_elf_target(machine: str = "") -> Tuple[int, int]:
    """(EI_CLASS, e_machine) for ``machine`` (default: this host's ``uname -m``)."""
    return HOST_ELF.get(machine or platform.machine(), (0, 0))


def classify_library(path: Path, target: Tuple[int, int]) -> Tuple[str, str]:
    """("elf" | "ld-script" | "wrong-arch" | "not-elf" | "unreadable", detail) for a file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
            if head[:4] != b"\x7fELF":
                text = head + handle.read(4096)
                if _looks_like_ld_script(text):
                    return "ld-script", ""
                return "not-elf", ""
    except OSError as error:
        return "unreadable", error.strerror or str(error)
    if len(head) < 20:
        return "not-elf", "truncated ELF header"
    elf_class, data = head[4], head[5]
    endian = "<" if data == 1 else ">"
    (elf_type, machine) = struct.unpack(endian + "HH", head[16:20])
    want_class, want_machine = target
    if want_machine and (elf_class != want_class or machine != want_machine):
        bits = {1: "32-bit", 2: "64-bit"}.get(elf_class, "unknown-class")
        return "wrong-arch", f"{bits} {MACHINE_NAMES.get(machine, f'e_machine {machine}')}"
    if elf_type != 3:  # ET_DYN
        return "wrong-arch", f"ELF type {elf_type}, not a shared object"
    return "elf", ""


def _looks_like_ld_script(text: bytes) -> bool:
    if b"\x00" in text:
        return False
    return bool(re.search(rb"\b(INPUT|GROUP|OUTPUT_FORMAT)\s*\(", text))


def _library_files(profile: Profile, root: Path) -> List[Tuple[str, str]]:
    """(key, host path) of every library file the profile names, globs expanded."""
    files: List[Tuple[str, str]] = []
    mpi = profile.mpi
    if mpi is not None and mpi.family != "none":
        files += [(f"mpi.libraries[{i}]", p) for i, p in enumerate(mpi.libraries)]
        named = {os.path.basename(p) for p in mpi.libraries}
        for group in ("sonames", "fortran", "cxx"):
            for i, soname in enumerate(getattr(mpi, group)):
                if soname in named or "/" in soname:
                    continue
                for directory in mpi.library_dirs:
                    candidate = os.path.join(directory, soname)
                    if os.path.lexists(host_path(root, candidate)):
                        files.append((f"mpi.{group}[{i}]", candidate))
                        break
    for i, lib in enumerate(profile.libraries):
        if GLOB_CHARS.search(lib.path):
            base = str(root).rstrip("/")
            for match in sorted(glob.glob(str(host_path(root, lib.path)))):
                files.append((f"libraries[{i}].path", match[len(base):] or "/"))
        else:
            files.append((f"libraries[{i}].path", lib.path))
    files += [(f"gpu.libraries[{i}]", p) for i, p in enumerate(profile.gpu.libraries)]
    files += [(f"container.preload[{i}]", p) for i, p in enumerate(profile.container.preload)]
    return files


def library_file_checks(profile: Profile, root: Path = Path("/"),
                        machine: str = "") -> List[Diagnostic]:
    """Open every library file the profile names (MPI libraries, the sonames found in the
    MPI directories, run-time opened libraries with globs expanded, GPU libraries,
    preloads) and check that each is an ELF shared object of the host architecture.

    A GNU ld script (a text ``.so`` such as ``INPUT(libmpi.so.12)``) is a warning: the
    dynamic loader cannot load it.  Missing files are left to :func:`validate_profile`.
    Directories are skipped (a bind of a whole directory is not a library).
    """
    target = host_elf_target(machine)
    out: List[Diagnostic] = []
    for key, path in _library_files(profile, root):
        found = host_path(root, path)
        if not found.exists() or found.is_dir():
            continue
        kind, detail = classify_library(found, target)
        if kind == "ld-script":
            out.append(_diag(WARNING, "ld-script", key,
                             f"{path} is a GNU ld script, not a library: the dynamic loader "
                             "cannot load it", "name the file it points to (its INPUT(...))"))
        elif kind == "not-elf":
            out.append(_diag(ERROR, "not-elf", key, f"{path} is not an ELF file"
                             + (f" ({detail})" if detail else "")))
        elif kind == "wrong-arch":
            out.append(_diag(ERROR, "wrong-architecture", key,
                             f"{path} is {detail}; this host needs "
                             f"{machine or platform.machine()} shared objects"))
        elif kind == "unreadable":
            out.append(_diag(ERROR, "unreadable", key, f"cannot read {path}: {detail}"))
    return out


def deep_checks(profile: Profile, root: Path = Path("/"), machine: str = "") -> List[Diagnostic]:
    """Every finding that needs the library files' contents, on the host at ``root``.

    1. each library file is an ELF shared object of the host's architecture
       (:func:`library_file_checks`);
    2. the closure is complete: from the MPI libraries, ``[[libraries]]`` (globs expanded)
       and ``container.preload``, ``DT_NEEDED`` is followed as the host's ld.so would
       (:func:`hpcrun.resolve.closure.host_closure`); a name found nowhere is an error
       naming the library that needs it (``profile.needed-missing``);
    3. the MPI libraries are the family, version and implementation the ``[mpi]`` table
       claims, and provide its ``sonames``/``fortran``/``cxx``;
    4. run-time opened providers exist and are visible: verbs providers named by the
       bound ``/etc/libibverbs.d/*.driver`` files, the ``libfabric/`` provider directory
       beside libfabric and the ``ucx/`` module directory beside libucs.

    Missing files are left to :func:`validate_profile`.  Nothing raises for bad files.
    """
    out = library_file_checks(profile, root, machine)
    files = [(key, posixpath.normpath("/" + path.lstrip("/")))
             for key, path in _library_files(profile, root) if not key.startswith("gpu.")]
    roots = [(key, path) for key, path in files if host_path(root, path).is_file()]
    closure = _closure(profile, root, [path for _key, path in roots])
    keys = _root_keys(closure, roots)
    out += _missing_needed(closure, keys)
    out += _mpi_identity(profile, root, [(k, p) for k, p in roots if k.startswith("mpi.")],
                         closure)
    visible = _Visibility.of(profile, root, roots)
    out += _verbs_providers(profile, root, closure, visible)
    out += _module_dirs(profile, root, closure, keys, visible, dict((p, k) for k, p in roots))
    return out


# --- deep: the closure ---------------------------------------------------------------------


def _usable(path: str) -> bool:
    """Whether a profile path can be looked up at all (validate_profile reports the rest)."""
    return path.startswith("/") and not bind_syntax_problem(path)


def _closure(profile: Profile, root: Path, paths: Sequence[str]) -> Closure:
    from hpcrun.resolve.closure import cached_host_closure

    library_path: Tuple[str, ...] = ()
    if profile.mpi is not None and profile.mpi.family != "none":
        library_path = tuple(d for d in profile.mpi.library_dirs if _usable(d))
    # remembered across runs while no file or directory it consulted changes
    return cached_host_closure(list(dict.fromkeys(paths)), root=root, library_path=library_path)


def _root_keys(closure: Closure, roots: Sequence[Tuple[str, str]]) -> Dict[str, str]:
    """The profile key of each closure root, by the first name of its chain."""
    from hpcrun.resolve.closure import ROOT

    by_path: Dict[str, str] = {}
    for key, path in roots:
        by_path.setdefault(path, key)
    out: Dict[str, str] = {}
    for lib in closure.libraries:
        if lib.found_via == ROOT and lib.needed_by and lib.path in by_path:
            out.setdefault(lib.needed_by[0], by_path[lib.path])
    return out


def _chain_key(keys: Dict[str, str], chain: str) -> str:
    return keys.get(chain.split(" -> ")[0], "libraries")


def _missing_needed(closure: Closure, keys: Dict[str, str]) -> List[Diagnostic]:
    """One error per (library, DT_NEEDED name) the host's loader would not find."""
    by_chain = {lib.chain: lib for lib in closure.libraries}
    out: List[Diagnostic] = []
    seen = set()
    for name, chain in closure.missing:
        owner = by_chain.get(chain)
        owner_path = owner.path if owner is not None else chain
        if (owner_path, name) in seen:
            continue
        seen.add((owner_path, name))
        through = f" (loaded through {chain})" if " -> " in chain else ""
        out.append(_diag(
            ERROR, "needed-missing", _chain_key(keys, chain),
            f"{owner_path} needs {name}, which the host's loader does not find{through}",
            f"install the package that provides {name}, or add the directory holding it to "
            "mpi.library_dirs"))
    return out


# --- deep: what the MPI library is ---------------------------------------------------------

FAMILY_TEXT = {"mpich": "the MPICH ABI", "openmpi": "Open MPI", "mpi-abi": "the MPI-5 standard ABI"}


def _elf_info(closure: Closure, root: Path, path: str, real: str) -> Optional[ElfInfo]:
    lib = closure.find(path) or closure.find(real)
    if lib is not None:
        return lib.info
    from hpcrun.elf.reader import read_elf_file
    from hpcrun.errors import HpcrunError

    try:
        return read_elf_file(str(host_path(root, real)))
    except HpcrunError:
        return None


def _classified(root: Path, files: Sequence[Tuple[str, str]], closure: Closure
                ) -> Tuple[List[MpiLibrary], Dict[str, str]]:
    """The MPI libraries among ``files`` as :func:`classify_mpi` describes them, and every
    name (file name, DT_SONAME) they provide -> host path."""
    from hpcrun.elf.mpi import classify_mpi
    from hpcrun.errors import HpcrunError
    from hpcrun.resolve.closure import resolve_host_path

    libraries: List[MpiLibrary] = []
    provided: Dict[str, str] = {}
    seen = set()
    for _key, path in files:
        real, exists = resolve_host_path(root, path)
        if not exists:
            continue
        info = _elf_info(closure, root, path, real)
        if info is None or info.is_ld_script:
            continue
        provided.setdefault(posixpath.basename(path), path)
        if info.soname:
            provided.setdefault(info.soname, path)
        if real in seen:
            continue
        seen.add(real)
        where = str(host_path(root, real))
        try:
            found = classify_mpi(info.soname or posixpath.basename(path), path, info,
                                 lambda where=where: open(where, "rb"),  # type: ignore[misc]
                                 real_path=real)
        except (HpcrunError, OSError):
            continue
        if found is not None:
            libraries.append(found)
    return libraries, provided


def _version_parts(version: str) -> List[str]:
    version = re.sub(r"^(\d+) Update (\d+)", r"\1.\2", version.strip())
    return [p for p in re.split(r"[.\s]+", version) if p]


def versions_agree(claimed: str, found: str) -> bool:
    """Whether a profile's MPI version and the one read from the library are the same
    release, compared on the parts both give (``4.1.4`` agrees with the series ``4.1``
    that Open MPI's file name tells; ``2021 Update 10`` with ``2021.10``)."""
    left, right = _version_parts(claimed), _version_parts(found)
    size = min(len(left), len(right))
    return size > 0 and left[:size] == right[:size]


def _simple(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _family_text(lib: MpiLibrary) -> str:
    if lib.family == "openmpi" and re.match(r"^libmpi\.so\.12(\.|$)", lib.soname):
        return ("Open MPI 1.10 (its libmpi.so.12 defines Open MPI's ompi_mpi_* symbols), "
                "not the MPICH ABI")
    label = FAMILY_TEXT.get(lib.family, lib.family)
    if lib.implementation:
        label += f" ({lib.implementation}{' ' + lib.version if lib.version else ''})"
    return label


def _mpi_identity(profile: Profile, root: Path, files: Sequence[Tuple[str, str]],
                  closure: Closure) -> List[Diagnostic]:
    """Family, version, implementation and sonames of the MPI files against ``[mpi]``."""
    mpi = profile.mpi
    if mpi is None or mpi.family == "none" or not files:
        return []
    libraries, provided = _classified(root, files, closure)
    out: List[Diagnostic] = []
    claimed = mpi.family
    families = [lib for lib in libraries if lib.family in FAMILY_TEXT]
    if claimed == "mpi-abi":
        if families and not any(lib.family == "mpi-abi" for lib in families):
            out.append(_diag(ERROR, "mpi-family-mismatch", "mpi.family",
                             f"the profile says the MPI-5 standard ABI, but {families[0].path} "
                             f"is {_family_text(families[0])} and no libmpi_abi.so is named",
                             "name the libmpi_abi.so.1 library in mpi.libraries, or set "
                             "family to the library's family"))
    else:
        wrong: Dict[str, List[MpiLibrary]] = {}
        for lib in families:
            if lib.family != claimed and lib.family != "mpi-abi":
                wrong.setdefault(lib.family, []).append(lib)
        for family, libs in wrong.items():
            more = f" (and {len(libs) - 1} more MPI libraries)" if len(libs) > 1 else ""
            out.append(_diag(ERROR, "mpi-family-mismatch", "mpi.family",
                             f"the profile says {FAMILY_TEXT.get(claimed, claimed)}, but "
                             f"{libs[0].path} is {_family_text(libs[0])}{more}",
                             f"set family = \"{family}\" in [mpi], or name the "
                             f"{claimed} libraries"))
    for lib in libraries:
        if lib.role not in ("c", "abi") or lib.family not in FAMILY_TEXT:
            continue  # Intel's libmpi_ilp64 is of no family: its version is not compared
        what = f"{lib.implementation or FAMILY_TEXT.get(lib.family, lib.family)}"
        if not lib.version:
            said = (f"the profile's version {mpi.version} is not checked" if mpi.version
                    else "nor does the profile give mpi.version")
            out.append(_diag(WARNING, "mpi-version-unknown", "mpi.version",
                             f"the MPI version cannot be read from {lib.path}: {said}",
                             "check the version by hand (mpichversion, ompi_info) and set "
                             "mpi.version"))
        elif not mpi.version:
            out.append(_diag(INFO, "mpi-version-unset", "mpi.version",
                             f"the profile gives no mpi.version; {lib.path} is {what} "
                             f"{lib.version}", f"set version = \"{lib.version}\" in [mpi]"))
        elif not versions_agree(mpi.version, lib.version):
            out.append(_diag(ERROR, "mpi-version-mismatch", "mpi.version",
                             f"the profile says version {mpi.version}, but {lib.path} is "
                             f"{what} {lib.version}",
                             f"set version = \"{lib.version}\" in [mpi], or name the "
                             f"{mpi.version} libraries"))
        if (mpi.implementation and lib.implementation
                and _simple(mpi.implementation) != _simple(lib.implementation)):
            out.append(_diag(WARNING, "mpi-implementation-mismatch", "mpi.implementation",
                             f"the profile says {mpi.implementation}, but {lib.path} is "
                             f"{lib.implementation}",
                             f"set implementation = \"{lib.implementation}\" in [mpi]"))
    if provided:
        for group in ("sonames", "fortran", "cxx"):
            for index, soname in enumerate(getattr(mpi, group)):
                if not soname or "/" in soname or soname in provided:
                    continue
                out.append(_diag(ERROR, "soname-not-provided", f"mpi.{group}[{index}]",
                                 f"no MPI library file of the profile is or provides {soname} "
                                 f"(they provide {', '.join(sorted(provided))})",
                                 "correct the soname, or name the file providing it in "
                                 "mpi.libraries or its directory in mpi.library_dirs"))
    return out


# --- deep: run-time opened providers ---------------------------------------------------------

VERBS_CONFIG = "/etc/libibverbs.d"
MODULE_NAME = re.compile(r"\.so(\.\d+)*$")


def _under(path: str, directory: str) -> bool:
    return directory == "/" or path == directory or path.startswith(directory + "/")


class _Visibility:
    """What the profile makes visible in the container: its library roots (by path, and by
    real file with the names they are listed under) and its bind sources."""

    def __init__(self, paths: Set[str], names: Dict[str, Set[str]],
                 binds: Sequence[Tuple[str, str, str]]) -> None:
        self.paths = paths
        self.names = names  # real file -> the file names it is listed under
        self.binds = binds  # (key, source, real source)

    @classmethod
    def of(cls, profile: Profile, root: Path, roots: Sequence[Tuple[str, str]]) -> _Visibility:
        from hpcrun.resolve.closure import resolve_host_path

        paths = {path for _key, path in roots}
        names: Dict[str, Set[str]] = {}
        for path in paths:
            names.setdefault(resolve_host_path(root, path)[0], set()).add(
                posixpath.basename(path))
        binds = []
        for index, bind in enumerate(profile.binds):
            if _usable(bind.source):
                source = posixpath.normpath(bind.source)
                binds.append((f"binds[{index}].source", source,
                              resolve_host_path(root, source)[0]))
        return cls(paths, names, binds)

    def bind_of(self, path: str, real: str = "") -> str:
        """The key of the bind that makes ``path`` visible, or ""."""
        for key, source, real_source in self.binds:
            if _under(path, source) or (real and _under(real, real_source)):
                return key
        return ""

    def shows(self, path: str, real: str, by_real: bool) -> bool:
        """Whether the file at ``path`` (``real`` after links) is visible in the container:
        listed (``by_real``: under any name; else under its own file name, which is what
        a dlopen by name needs) or under a bind."""
        listed = self.names.get(real, set())
        if path in self.paths or (listed and (by_real or posixpath.basename(path) in listed)):
            return True
        return bool(self.bind_of(path, real))


def driver_names(text: str) -> List[str]:
    """Provider names of a libibverbs ``*.driver`` file (``driver mlx5`` lines)."""
    names = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] == "driver":
            names.append(words[1])
    return names


def _verbs_dirs(profile: Profile, root: Path, closure: Closure) -> List[str]:
    """Directories libibverbs loads providers from: ``libibverbs/`` beside it (its
    compiled-in directory on current rdma-core), then the loader's search path; canonical
    host paths (symbolic links resolved), each once."""
    from hpcrun.resolve import hostlibs
    from hpcrun.resolve.closure import resolve_host_path

    bases: List[str] = []
    for lib in closure.libraries:
        if lib.soname.startswith("libibverbs.so"):
            bases += [posixpath.dirname(lib.path), posixpath.dirname(lib.real_path)]
    if profile.mpi is not None:
        bases += [d for d in profile.mpi.library_dirs if _usable(d)]
    architecture = closure.architecture or platform.machine()
    bases += list(hostlibs.ld_so_conf_dirs(root))
    bases += list(hostlibs.default_dirs(root, closure.elf_class or 64, architecture))
    out: List[str] = []
    seen = set()
    for base in bases:
        for directory in (posixpath.join(base, "libibverbs"), base):
            real, exists = resolve_host_path(root, directory)
            if exists and real not in seen and host_path(root, real).is_dir():
                seen.add(real)
                out.append(real)
    return out


def _verbs_providers(profile: Profile, root: Path, closure: Closure,
                     visible: _Visibility) -> List[Diagnostic]:
    """Providers named by the bound ``/etc/libibverbs.d/*.driver`` files: present, visible."""
    from hpcrun.resolve.closure import resolve_host_path

    config = host_path(root, VERBS_CONFIG)
    drivers = [(visible.bind_of(f"{VERBS_CONFIG}/{p.name}"), f"{VERBS_CONFIG}/{p.name}", p)
               for p in sorted(config.glob("*.driver"))] if config.is_dir() else []
    drivers = [item for item in drivers if item[0]]
    if not drivers:
        return []
    dirs = _verbs_dirs(profile, root, closure)
    out: List[Diagnostic] = []
    hidden: Dict[str, List[str]] = {}
    hidden_key: Dict[str, str] = {}
    for key, driver, where in drivers:
        try:
            names = driver_names(where.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        for name in names:
            if name.startswith("/"):
                patterns = [f"{name}-rdmav*.so"]
                shown = f"{name}-rdmav*.so"
            else:
                patterns = [posixpath.join(d, f"lib{name}-rdmav*.so") for d in dirs] + [
                    posixpath.join(d, f"lib{name}.so") for d in dirs]
                shown = f"lib{name}-rdmav*.so or lib{name}.so"
            base = str(root).rstrip("/")
            files = [m[len(base):] for pattern in patterns
                     for m in sorted(glob.glob(str(host_path(root, pattern))))
                     if os.path.isfile(m)]
            if not files:
                looked = f" in {', '.join(dirs)}" if dirs and not name.startswith("/") else ""
                out.append(_diag(WARNING, "verbs-provider-missing", key,
                                 f"{driver} names the verbs provider {name}, but no {shown} "
                                 f"is on this host{looked}: libibverbs will warn on every rank",
                                 "install the provider (rdma-core's ibverbs-providers), or "
                                 "bind a libibverbs.d without this driver file"))
                continue
            if any(visible.shows(f, resolve_host_path(root, f)[0], by_real=False)
                   for f in files):
                continue
            directory = posixpath.dirname(files[0])
            hidden.setdefault(directory, []).append(name)
            hidden_key.setdefault(directory, key)
    for directory, names in hidden.items():
        out.append(_diag(WARNING, "verbs-providers-hidden", hidden_key[directory],
                         f"{directory} holds the verbs providers {', '.join(names)} named in "
                         f"{VERBS_CONFIG}, but the profile does not make them visible: "
                         "libibverbs in the container cannot load them",
                         f"add [[libraries]] path = \"{directory}/lib*-rdmav*.so\" "
                         f"(kind = \"provider\"), or bind {directory}"))
    return out


def _module_files(root: Path, directory: str) -> Dict[str, List[str]]:
    """Loadable files of a module directory: real host path -> the names pointing at it."""
    from hpcrun.resolve.closure import resolve_host_path

    try:
        names = sorted(os.listdir(host_path(root, directory)))
    except OSError:
        return {}
    out: Dict[str, List[str]] = {}
    for name in names:
        if not MODULE_NAME.search(name):
            continue
        real, exists = resolve_host_path(root, posixpath.join(directory, name))
        if exists and host_path(root, real).is_file():
            out.setdefault(real, []).append(name)
    return out


def _module_dirs(profile: Profile, root: Path, closure: Closure, keys: Dict[str, str],
                 visible: _Visibility, root_keys: Dict[str, str]) -> List[Diagnostic]:
    """Provider directories of the libfabric, UCX and PMIx the closure loads (found as they
    are at run time, :mod:`hpcrun.resolve.providers`) must be visible; listed modules of a
    copy the MPI does not load are reported."""
    from hpcrun.resolve.providers import PMIX, provider_dirs, unrelated_modules

    out: List[Diagnostic] = []
    fi_path = [d for e in profile.env if e.name == "FI_PROVIDER_PATH" and e.scope != "container"
               for d in e.value.split(":") if d.startswith("/")]
    for found in provider_dirs(closure.libraries, root, fi_path):
        if found.kind == PMIX:
            continue  # compiled-in directories, bound by the profile (not moved)
        modules = _module_files(root, found.directory)
        modules = {real: names for real, names in modules.items()
                   if any(fnmatch.fnmatchcase(n, found.pattern) for n in names)}
        hidden = sorted(min(names, key=len) for real, names in modules.items()
                        if not any(visible.shows(posixpath.join(found.directory, n), real,
                                                 by_real=True) for n in names))
        if not hidden:
            continue
        code = {"ucx": "ucx-modules-hidden"}.get(found.kind, f"{found.kind}-providers-hidden")
        listed = ", ".join(hidden[:6]) + (", ..." if len(hidden) > 6 else "")
        out.append(_diag(WARNING, code, _chain_key(keys, found.chain),
                         f"{found.directory} holds {len(hidden)} {found.what} ({listed}) that "
                         f"{found.owner_soname} ({found.chain}) opens at run time, but the "
                         "profile does not make them visible",
                         f"add [[libraries]] path = \"{found.glob}\" (kind = "
                         f"\"provider\"), or bind {found.directory}"))
    listed_roots = [path for path, key in root_keys.items() if key.startswith("libraries[")]
    for item in unrelated_modules(closure, listed_roots):
        key = root_keys.get(item.paths[0], "libraries")
        loads = (f"it loads {posixpath.basename(item.loaded)} from "
                 f"{posixpath.dirname(item.loaded)}" if item.loaded
                 else f"it loads no {item.owner_stem}*")
        out.append(_diag(WARNING, "provider-unrelated", key,
                         f"{item.directory} holds {item.what} of the {item.owner_stem}* in "
                         f"{posixpath.dirname(item.directory)}, which the host MPI never "
                         f"loads ({loads}): they would not be used, and their own "
                         "dependencies would enter the container",
                         "remove them from [[libraries]]; `hpcrun site detect` lists the "
                         "providers beside the libraries the MPI really loads"))
    return out
