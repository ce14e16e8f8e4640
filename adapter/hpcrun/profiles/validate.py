"""Check a site profile against the host it describes.

:func:`validate_profile` is cheap (stat calls only): every host path is looked up under
``root`` (``/`` in production, a fake tree in tests), and the values are checked for what
the runtimes can express.  :func:`deep_checks` also opens every library file the profile
names and checks that it is an ELF shared object of this host's architecture (or reports
a GNU ld script, which the dynamic loader cannot load).
"""

from __future__ import annotations

import glob
import os
import platform
import re
import struct
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from hpcrun.plan.model import ERROR, INFO, WARNING, Diagnostic
from hpcrun.profiles.model import Profile

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


def _check_host_file(root: Path, key: str, path: str, what: str,
                     allow_glob: bool = False) -> List[Diagnostic]:
    bad = _check_absolute(key, path, what)
    if bad:
        return [bad]
    problem = bind_syntax_problem(path)
    if problem:
        return [_diag(ERROR, "unbindable-path", key, f"{what} {path!r} {problem}")]
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


def _check_runtime(profile: Profile, root: Path) -> List[Diagnostic]:
    out: List[Diagnostic] = []
    if profile.runtime.path:
        out += _check_host_file(root, "runtime.path", profile.runtime.path, "runtime binary")
        found = host_path(root, profile.runtime.path)
        if not out and not (found.is_file() and os.access(found, os.X_OK)):
            out.append(_diag(ERROR, "not-executable", "runtime.path",
                             f"runtime binary {profile.runtime.path} is not an executable file"))
    return out


def _soname_found(root: Path, soname: str, dirs: Iterable[str], files: Iterable[str]) -> bool:
    if any(os.path.basename(f) == soname for f in files):
        return True
    return any(os.path.lexists(host_path(root, d) / soname) for d in dirs)


def _check_mpi(profile: Profile, root: Path) -> List[Diagnostic]:
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
        if not found and not host_path(root, path).is_dir():
            found = [_diag(ERROR, "not-a-directory", key, f"{path} is not a directory")]
        out += found
    if not mpi.sonames:
        out.append(_diag(WARNING, "no-sonames", "mpi.sonames",
                         "no MPI sonames: hpcrun cannot tell which library serves the "
                         "application", 'e.g. sonames = ["libmpi.so.12"]'))
    # Only worth saying when the places to look exist (else the errors above say it all).
    present = any(host_path(root, d).is_dir() for d in mpi.library_dirs) or any(
        os.path.lexists(host_path(root, f)) for f in mpi.libraries)
    for group in ("sonames", "fortran", "cxx"):
        for index, soname in enumerate(getattr(mpi, group)):
            key = f"mpi.{group}[{index}]"
            if "/" in soname or not soname:
                out.append(_diag(ERROR, "bad-soname", key,
                                 f"{soname!r} is not a soname (a file name like libmpi.so.12)"))
            elif present and not _soname_found(root, soname, mpi.library_dirs,
                                               mpi.libraries):
                out.append(_diag(WARNING, "soname-not-found", key,
                                 f"{soname} is neither in mpi.libraries nor in mpi.library_dirs",
                                 "add the directory holding it to mpi.library_dirs"))
    return out


def _check_binds(profile: Profile, root: Path) -> List[Diagnostic]:
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


def _check_misc(profile: Profile, root: Path) -> List[Diagnostic]:
    out: List[Diagnostic] = []
    for index, lib in enumerate(profile.libraries):
        out += _check_host_file(root, f"libraries[{index}].path", lib.path, "library",
                                allow_glob=True)
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


def validate_profile(profile: Profile, root: Path = Path("/")) -> List[Diagnostic]:
    """Every finding about ``profile`` on the host whose file system is at ``root``.

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


def deep_checks(profile: Profile, root: Path = Path("/"), machine: str = "") -> List[Diagnostic]:
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
