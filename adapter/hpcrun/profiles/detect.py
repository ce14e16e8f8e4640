"""Write a first site profile by probing the host (``hpcrun site detect``).

Everything is read under ``root`` (``/`` in production, a fake tree in tests) and from an
``environ`` mapping; the few programs asked (``mpichversion``, ``ompi_info``, ``mpirun
--version``, ``srun --mpi=list``, ``ldconfig -p``) run through an injectable runner, never
traced.  What cannot be known for sure is written with a ``# GUESS:`` comment for the
sysadmin to review before ``hpcrun site validate`` and publishing.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from hpcrun.errors import HpcrunError, UsageError
from hpcrun.profiles.model import (
    BindSpec,
    EnvSpec,
    Gpu,
    LauncherDefaults,
    Library,
    Mpi,
    Profile,
    Runtime,
    Wireup,
)
from hpcrun.records import record, replace

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

    from hpcrun.resolve.closure import Closure

    Runner = Callable[[Sequence[str]], Optional[str]]


GUESS = "GUESS: "
PARALLEL_FS = ("lustre", "gpfs", "beegfs", "nfs", "nfs4", "ceph", "panfs", "wekafs")
SKIP_MOUNTS = ("/proc", "/sys", "/dev", "/run", "/boot", "/var/lib", "/snap")
SYSTEM_LIB_DIRS = ("/usr/lib64", "/lib64", "/usr/lib/x86_64-linux-gnu",
                   "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                   "/lib/aarch64-linux-gnu", "/usr/lib/powerpc64le-linux-gnu", "/usr/lib")


def run_program(argv: Sequence[str]) -> Optional[str]:
    """Run ``argv`` with no input and a time limit; its stdout+stderr, or None if it could
    not be started or timed out.  The exit status is ignored: the text is what matters."""
    try:
        done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.decode("utf-8", "replace")


@record
class MpiCandidate:
    """An MPI C library found on the host, and where the hint came from."""

    path: str  # host path (the name the loader would use)
    family: str
    implementation: str = ""
    version: str = ""
    origin: str = ""


@record
class Detection:
    """The detected profile plus comments for the TOML file (``GUESS:`` marks guesses)."""

    profile: Profile
    notes: Tuple[Tuple[str, str], ...] = ()
    alternatives: Tuple[MpiCandidate, ...] = ()


@dataclass
class _Probe:
    root: Path
    environ: Mapping[str, str]
    runner: Runner
    notes: List[Tuple[str, str]] = field(default_factory=list)
    _cache: Optional[List[Tuple[str, str]]] = None
    _dirs: Dict[str, str] = field(default_factory=dict)

    # --- paths ---------------------------------------------------------------------------

    def host(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def exists(self, path: str) -> bool:
        return os.path.exists(self.host(path))

    def isdir(self, path: str) -> bool:
        return self.host(path).is_dir()

    def glob(self, pattern: str) -> List[str]:
        base = str(self.root).rstrip("/")
        return sorted(m[len(base):] or "/" for m in glob.glob(str(self.host(pattern))))

    def realpath(self, path: str) -> str:
        """The host path ``path`` resolves to, symlinks followed inside ``root``."""
        current = path
        for _ in range(40):
            target = self.host(current)
            if not target.is_symlink():
                break
            link = os.readlink(target)
            current = os.path.normpath(os.path.join(os.path.dirname(current), link)
                                       if not link.startswith("/") else link)
        parent = os.path.dirname(current)
        if parent != current and parent != "/":
            return os.path.join(self.realpath(parent), os.path.basename(current))
        return current

    def which(self, program: str) -> str:
        for entry in self.environ.get("PATH", "").split(":"):
            if entry and os.access(self.host(os.path.join(entry, program)), os.X_OK) and \
                    not self.isdir(os.path.join(entry, program)):
                return os.path.join(entry, program)
        return ""

    def run(self, argv: Sequence[str]) -> str:
        """Run a host program (by host path) and return its output, "" if it failed."""
        program = argv[0]
        if "/" not in program:
            program = self.which(program)
            if not program:
                return ""
        return self.runner([str(self.host(program)), *argv[1:]]) or ""

    def note(self, key: str, text: str) -> None:
        self.notes.append((key, text))

    # --- ld.so.cache -----------------------------------------------------------------------

    def ld_cache(self) -> List[Tuple[str, str]]:
        """(soname, host path) pairs of the host's ``/etc/ld.so.cache``, loader order."""
        if self._cache is None:
            self._cache = [(name, self.canonical(path)) for name, path in self._read_cache()]
        return self._cache

    def _read_cache(self) -> List[Tuple[str, str]]:
        cache_file = self.host("/etc/ld.so.cache")
        try:
            data = cache_file.read_bytes()
        except OSError:
            return []
        try:
            from hpcrun.elf.ldcache import cache_for_architecture, parse_ld_cache

            return cache_for_architecture(parse_ld_cache(data, str(cache_file)),
                                          platform.machine())
        except (ImportError, HpcrunError):
            text = self.runner(["ldconfig", "-p", "-C", str(cache_file)]) or ""
            return parse_ldconfig_p(text)

    def canonical(self, path: str) -> str:
        """``path`` with its directory's symbolic links resolved (``/lib`` -> ``/usr/lib``)
        and the file name kept: the loader's name, in the directory people know."""
        directory = os.path.dirname(path)
        real = self._dirs.get(directory)
        if real is None:
            real = self.realpath(directory)
            self._dirs[directory] = real
        return os.path.join(real, os.path.basename(path))

    def cache_lookup(self, soname: str) -> str:
        for name, path in self.ld_cache():
            if name == soname:
                return path
        return ""


def parse_ldconfig_p(text: str) -> List[Tuple[str, str]]:
    """(soname, path) pairs from ``ldconfig -p`` output."""
    out = []
    for line in text.splitlines():
        found = re.match(r"^\s+(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)\s*$", line)
        if found:
            out.append((found.group(1), found.group(3)))
    return out


def parse_srun_mpi_list(text: str) -> List[str]:
    """Plugin names from ``srun --mpi=list`` (``pmi2``, ``pmix``, ``pmix_v4`` ...)."""
    names: List[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.lower().startswith(("srun:", "mpi plugin")):
            continue
        if line.lower().startswith("specific pmix"):
            line = line.split(":", 1)[-1]
        for word in re.split(r"[\s,]+", line):
            word = word.strip().removeprefix("mpi/")
            if re.match(r"^[a-z][a-z0-9_]*$", word) and word not in names:
                names.append(word)
    return names


def parse_mounts(text: str) -> List[Tuple[str, str]]:
    """(mount point, file system type) from ``/proc/mounts``, octal escapes decoded."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[1])
            out.append((point, parts[2]))
    return out


# --- MPI -------------------------------------------------------------------------------


def _classify(probe: _Probe, path: str) -> Optional[MpiCandidate]:
    """Family, implementation and version of the MPI library at host ``path``."""
    from hpcrun.elf.mpi import classify_mpi, mpi_name
    from hpcrun.elf.reader import read_elf

    guess = mpi_name(os.path.basename(path))
    if guess is None or guess[1] not in ("c", "abi"):
        return None
    real = probe.host(path)
    try:
        with open(real, "rb") as stream:
            info = read_elf(stream, path)
        found = classify_mpi(os.path.basename(path), path, info, lambda: open(real, "rb"),
                             probe.realpath(path))
    except (OSError, HpcrunError):
        return MpiCandidate(path, guess[0])
    if found is None:
        return None
    return MpiCandidate(path, found.family, found.implementation, found.version)


def _mpi_in_dir(probe: _Probe, directory: str) -> List[str]:
    """MPI C library sonames present in a host directory (``libmpi.so.12`` style names)."""
    from hpcrun.elf.mpi import mpi_name

    out = []
    for path in probe.glob(os.path.join(directory, "lib*.so.*")):
        base = os.path.basename(path)
        guess = mpi_name(base)
        if guess and guess[1] in ("c", "abi") and re.match(r"^[^.]+\.so\.\d+$", base):
            out.append(path)
    return out


def _env_dirs(probe: _Probe) -> List[Tuple[str, str]]:
    env = probe.environ
    dirs: List[Tuple[str, str]] = []
    if env.get("I_MPI_ROOT"):
        base = env["I_MPI_ROOT"]
        for sub in ("intel64/lib/release", "intel64/lib", "lib/release", "lib"):
            dirs.append((os.path.join(base, sub), "$I_MPI_ROOT"))
    if env.get("CRAY_MPICH_DIR"):
        base = env["CRAY_MPICH_DIR"]
        for sub in ("lib-abi-mpich", "lib"):
            dirs.append((os.path.join(base, sub), "$CRAY_MPICH_DIR"))
    if env.get("MPI_HOME"):
        for sub in ("lib", "lib64"):
            dirs.append((os.path.join(env["MPI_HOME"], sub), "$MPI_HOME"))
    for entry in env.get("LD_LIBRARY_PATH", "").split(":"):
        if entry.startswith("/"):
            dirs.append((entry, "$LD_LIBRARY_PATH"))
    return dirs


def _launcher_family(probe: _Probe) -> str:
    """The family of the ``mpirun``/``mpiexec`` on PATH, from its ``--version``."""
    for program in ("mpirun", "mpiexec"):
        if not probe.which(program):
            continue
        text = probe.run([program, "--version"])
        if "Open MPI" in text or "OpenRTE" in text:
            return "openmpi"
        if re.search(r"HYDRA|MPICH|Intel\(R\) MPI", text):
            return "mpich"
    return ""


def find_mpi_candidates(probe: _Probe, mpi: str) -> List[MpiCandidate]:
    """MPI C libraries in preference order: ``--mpi`` PATH, else the environment
    ($I_MPI_ROOT, $CRAY_MPICH_DIR, $MPI_HOME, $LD_LIBRARY_PATH), the MPI of the ``mpirun``
    on PATH, then ``ld.so.cache``."""
    paths: List[Tuple[str, str]] = []
    if mpi and mpi != "auto":
        if not mpi.startswith("/"):
            mpi = os.path.abspath(mpi)
        if not probe.exists(mpi):
            raise UsageError(f"--mpi {mpi}: no such file or directory",
                             "give the MPI library file, its directory or the MPI prefix")
        if probe.isdir(mpi):
            for sub in ("", "lib", "lib64", "lib-abi-mpich", "intel64/lib/release",
                        "intel64/lib", "lib/release"):
                directory = os.path.normpath(os.path.join(mpi, sub))
                paths += [(p, f"--mpi {mpi}") for p in _mpi_in_dir(probe, directory)]
                if paths:
                    break
        else:
            paths.append((mpi, f"--mpi {mpi}"))
        found = [c for c in (_classify(probe, p) for p, _ in paths) if c is not None]
        if not found:
            raise UsageError(f"--mpi {mpi}: no MPI library found there",
                             "give libmpi.so.12 / libmpich.so.12 / libmpi.so.40, or the "
                             "directory that holds it")
        return [replace(c, origin=origin) for c, (_, origin) in zip(found, paths)]
    for directory, origin in _env_dirs(probe):
        paths += [(p, origin) for p in _mpi_in_dir(probe, directory)]
    cache = [(path, "ld.so.cache") for _, path in probe.ld_cache()
             if _mpi_in_dir_name(path)]
    preferred = _launcher_family(probe)
    candidates: List[MpiCandidate] = []
    seen = set()
    for path, origin in paths + cache:
        key = probe.realpath(path)
        if key in seen:
            continue
        seen.add(key)
        found_one = _classify(probe, path)
        if found_one is not None:
            candidates.append(replace(found_one, origin=origin))
    if preferred:
        env_first = [c for c in candidates if c.origin != "ld.so.cache"]
        rest = [c for c in candidates if c.origin == "ld.so.cache"]
        rest.sort(key=lambda c: c.family != preferred)
        for c in rest:
            if c.family == preferred:
                rest[rest.index(c)] = replace(c, origin="ld.so.cache, family of `mpirun` on PATH")
                break
        candidates = env_first + rest
    return candidates


def _mpi_in_dir_name(path: str) -> bool:
    from hpcrun.elf.mpi import mpi_name

    base = os.path.basename(path)
    guess = mpi_name(base)
    return bool(guess and guess[1] in ("c", "abi") and re.match(r"^[^.]+\.so\.\d+$", base))


def _soname_of(probe: _Probe, path: str) -> str:
    from hpcrun.elf.reader import read_elf

    try:
        with open(probe.host(path), "rb") as stream:
            return read_elf(stream, path).soname or os.path.basename(path)
    except (OSError, HpcrunError):
        return os.path.basename(path)


def _version_from_programs(probe: _Probe, chosen: MpiCandidate) -> Tuple[str, str]:
    """(implementation, version) from mpichversion / ompi_info / mpirun --version."""
    bindir = os.path.normpath(os.path.join(os.path.dirname(chosen.path), "..", "bin"))

    def ask(program: str, *args: str) -> str:
        local = os.path.join(bindir, program)
        if os.access(probe.host(local), os.X_OK):
            return probe.run([local, *args])
        return probe.run([program, *args])

    if chosen.family == "openmpi":
        found = re.search(r"Open MPI v?(\d+\.\d+(?:\.\d+)?\w*)", ask("ompi_info", "--version"))
        if found:
            return "Open MPI", found.group(1)
    else:
        found = re.search(r"MPICH Version:\s*(\S+)", ask("mpichversion"))
        if found:
            return "MPICH", found.group(1)
        text = ask("mpirun", "--version")
        found = re.search(r"Intel\(R\) MPI Library.*?Version (\d+)(?: Update (\d+))?", text)
        if found:
            return "Intel MPI", found.group(1) + (f".{found.group(2)}" if found.group(2) else "")
    return "", ""


def build_mpi(probe: _Probe, chosen: MpiCandidate) -> Mpi:
    """The [mpi] table for the chosen library: its directory, sonames, version."""
    from hpcrun.elf.mpi import mpi_name

    directory = os.path.dirname(chosen.path)
    roles: Dict[str, List[str]] = {"c": [], "fortran": [], "cxx": []}
    files: List[str] = []
    for path in probe.glob(os.path.join(directory, "lib*.so.*")):
        base = os.path.basename(path)
        guess = mpi_name(base)
        if not guess:
            continue
        standard = guess[0] == "mpi-abi" and chosen.family != "mpi-abi"
        if (guess[0] != chosen.family and not standard) or guess[1] not in (*roles, "abi"):
            continue
        soname = _soname_of(probe, path)
        if soname != base or "-" in base:  # only loader names; no compiler-specific copies
            continue
        if not standard:
            roles[guess[1]].append(soname)
        files.append(path)  # the MPI-5 standard ABI libraries serve apps built for it
    if os.path.basename(chosen.path) not in roles["c"]:
        roles["c"].insert(0, os.path.basename(chosen.path))
        files.insert(0, chosen.path)
    implementation, version = chosen.implementation, chosen.version
    if not version:
        implementation2, version = _version_from_programs(probe, chosen)
        implementation = implementation or implementation2
    if not version:
        probe.note("mpi.version", GUESS + "the version could not be read from the library or "
                   "from mpichversion/ompi_info: fill it in")
    cray = "cray" in implementation.lower()
    intel = "intel" in implementation.lower()
    policy = "major" if (cray or intel) else "full"
    probe.note("mpi", f"Found {os.path.basename(chosen.path)} via {chosen.origin}.")
    library_dirs: Tuple[str, ...] = (directory,)
    if intel:
        fabric = _intel_libfabric(probe, Mpi(family=chosen.family, library_dirs=library_dirs))
        if fabric and os.path.dirname(fabric) != directory:
            # Intel's mpivars puts its own libfabric first on LD_LIBRARY_PATH.
            library_dirs += (os.path.dirname(fabric),)
    return Mpi(
        family=chosen.family,
        implementation=implementation,
        version=version,
        libraries=tuple(files),
        library_dirs=library_dirs,
        sonames=tuple(roles["c"]),
        fortran=tuple(roles["fortran"]),
        cxx=tuple(roles["cxx"]),
        abi_policy=policy,
        reason=f"detected: {implementation or chosen.family} {version} in {directory}".strip(),
    )


# --- interconnect, PMI, plugins ---------------------------------------------------------


def _lib_dirs(probe: _Probe, mpi: Optional[Mpi]) -> List[str]:
    dirs: List[str] = list(mpi.library_dirs) if mpi else []
    for directory in SYSTEM_LIB_DIRS:
        if probe.isdir(directory) and directory not in dirs:
            dirs.append(directory)
    return dirs


def _plugin_dir(probe: _Probe, libraries: List[Library], binds: List[BindSpec], directory: str,
                pattern: str, kind: str, reason: str, bind_reason: str = "") -> bool:
    if not probe.glob(os.path.join(directory, pattern)):
        return False
    path = os.path.join(directory, pattern)
    if any(lib.path == path for lib in libraries):
        return True
    libraries.append(Library(path=path, kind=kind, reason=reason))
    if bind_reason:
        binds.append(BindSpec(source=directory, read_only=True, reason=bind_reason))
    return True


def _component_dir(probe: _Probe, mpi: Mpi) -> str:
    """Open MPI's component directory (pkglibdir): asked of the ``ompi_info`` of this MPI
    (beside its library), else the usual places below its library directory."""
    bindir = os.path.normpath(os.path.join(mpi.library_dirs[0], "..", "bin"))
    local = os.path.join(bindir, "ompi_info")
    program = local if os.access(probe.host(local), os.X_OK) else ""
    if not program and probe.realpath(mpi.library_dirs[0]) in (
            probe.realpath(d) for d in SYSTEM_LIB_DIRS):
        program = "ompi_info"  # a system Open MPI: the ompi_info on PATH is its own
    if program:
        found = re.search(r"Pkglibdir:\s*(\S+)", probe.run([program, "--path", "pkglibdir"]))
        if found and probe.glob(os.path.join(found.group(1), "mca_*.so")):
            return found.group(1)
    for pattern in ("openmpi/lib/openmpi*", "openmpi"):
        for candidate in probe.glob(os.path.join(mpi.library_dirs[0], pattern)):
            if probe.glob(os.path.join(candidate, "mca_*.so")):
                return candidate
    return ""


def _intel_libfabric(probe: _Probe, mpi: Mpi) -> str:
    """The libfabric.so.1 in Intel MPI's own tree (2019: ``lib/libfabric/``; oneAPI:
    ``opt/mpi/libfabric/lib/``), or ""."""
    for directory in mpi.library_dirs[:1]:
        for sub in ("libfabric", "../libfabric/lib", "../opt/mpi/libfabric/lib",
                    "../../libfabric/lib"):
            path = os.path.normpath(os.path.join(directory, sub, "libfabric.so.1"))
            if probe.exists(path):
                return path
    return ""


def _mpi_closure(probe: _Probe, roots: Sequence[str], mpi: Mpi) -> Closure:
    """The host closure of the MPI (and its dlopened components) as the loader finds it."""
    from hpcrun.resolve.closure import host_closure

    return host_closure(list(roots), root=probe.root, library_path=mpi.library_dirs)


def probe_stack(probe: _Probe, mpi: Optional[Mpi]) -> Tuple[List[Library], List[BindSpec],
                                                            List[EnvSpec], List[str]]:
    """Run-time opened libraries, config binds, variables and wire-up patterns.

    Providers come from the libraries this MPI really loads (its closure: RUNPATH with
    ``$ORIGIN``, its library directories, then ``ld.so.cache``): the ``ucx/`` beside the
    ``libucs`` it resolves, the providers of the libfabric it resolves (or of
    ``FI_PROVIDER_PATH``), the plugins of its ``libpmix``; never a system copy it does not
    load (:mod:`hpcrun.resolve.providers`).
    """
    from hpcrun.resolve.providers import LIBFABRIC, PMIX, UCX, provider_dirs

    libraries: List[Library] = []
    binds: List[BindSpec] = []
    env: List[EnvSpec] = []
    forward: List[str] = []
    dirs = _lib_dirs(probe, mpi)
    family = mpi.family if mpi else ""
    intel = mpi is not None and "intel" in mpi.implementation.lower()
    roots: List[str] = list(mpi.libraries) if mpi else []

    # Open MPI components and PMIx plugins: opened from compiled-in directories.
    if family == "openmpi" and mpi:
        pkglib = _component_dir(probe, mpi)
        if pkglib:
            _plugin_dir(probe, libraries, binds, pkglib, "*.so", "provider",
                        "Open MPI MCA components opened at MPI_Init",
                        "Open MPI looks for its components in this compiled-in directory")
            roots.append(os.path.join(pkglib, "*.so"))
        else:
            probe.note("libraries", GUESS + "no mca_*.so in Open MPI's component directory "
                       "(pkglibdir): its components are probably built into the library "
                       "(as in the PyPI wheel); otherwise add them as [[libraries]]")
        forward.append("UCX_*")
    if intel and mpi:
        fabric = _intel_libfabric(probe, mpi)
        if fabric:
            libraries.append(Library(path=fabric, kind="dependency",
                                     reason="Intel MPI's own libfabric, which its mpivars "
                                     "puts first on LD_LIBRARY_PATH"))
            roots.append(fabric)
        else:
            env.append(EnvSpec(name="I_MPI_FABRICS", value="shm", scope="both",
                               reason="Intel MPI's tree has no libfabric: shared memory "
                               "only (one node)"))
            probe.note(f"env[{len(env) - 1}]", GUESS + "no libfabric.so.1 in Intel MPI's "
                       "tree (pip's impi-rt without libfabric): install Intel's libfabric "
                       "and list it in [[libraries]] for jobs across nodes")
        forward.append("I_MPI_*")

    fi_path = [d for d in probe.environ.get("FI_PROVIDER_PATH", "").split(":")
               if d.startswith("/")]
    closure = _mpi_closure(probe, roots, mpi) if mpi and roots else None
    loaded = closure.libraries if closure is not None else ()
    for found in provider_dirs(loaded, probe.root, fi_path):
        if found.kind == PMIX:
            _plugin_dir(probe, libraries, binds, found.directory, found.pattern, "pmi",
                        found.reason, "libpmix looks for its plugins in this compiled-in "
                        "directory")
            continue
        if any(lib.path == found.glob for lib in libraries):
            continue
        libraries.append(Library(path=found.glob, kind="provider", reason=found.reason))
        if found.kind == UCX and not any(e.name == "UCX_POSIX_USE_PROC_LINK" for e in env):
            env.append(EnvSpec(name="UCX_POSIX_USE_PROC_LINK", value="n",
                               reason="ranks in separate user namespaces (Charliecloud) "
                               "cannot open /proc/PID/fd of their peers"))
            probe.note(f"env[{len(env) - 1}]", GUESS + "only needed when each rank has its own "
                       "user namespace (Charliecloud, rootless runtimes); harmless otherwise")
        if found.kind == LIBFABRIC and found.from_variable:
            env.append(EnvSpec(name="FI_PROVIDER_PATH", value=":".join(fi_path),
                               reason="the MPI's environment sets it: libfabric takes its "
                               "providers from there"))
    names = {lib.soname for lib in loaded}
    if any(n.startswith(("libucs.so", "libucp.so")) for n in names) and "UCX_*" not in forward:
        forward.append("UCX_*")
    if any(n.startswith("libfabric.so") for n in names) and "FI_*" not in forward:
        forward.append("FI_*")

    # Slingshot CXI, xpmem.
    for soname, kind, reason in (
            ("libcxi.so.1", "provider", "Slingshot CXI library opened by libfabric's cxi "
             "provider"),
            ("libxpmem.so.0", "dependency", "xpmem, for on-node transfers")):
        path = probe.cache_lookup(soname)
        if path:
            libraries.append(Library(path=path, kind=kind, reason=reason))

    # InfiniBand verbs: providers named in /etc/libibverbs.d.
    drivers = []
    for driver_file in probe.glob("/etc/libibverbs.d/*.driver"):
        try:
            text = probe.host(driver_file).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "driver":
                drivers.append(parts[1])
    devices = probe.glob("/sys/class/infiniband/*")
    if drivers and devices:
        for directory in dirs:
            provider_dir = os.path.join(directory, "libibverbs")
            found_any = False
            for name in drivers:
                for path in probe.glob(os.path.join(provider_dir, f"lib{name}-rdmav*.so")):
                    if not probe.exists(path):
                        continue
                    libraries.append(Library(path=path, kind="provider",
                                             reason=f"verbs provider '{name}' from "
                                             "/etc/libibverbs.d"))
                    found_any = True
            if found_any:
                probe.note(f"libraries[{len(libraries) - 1}]", GUESS + "every provider named "
                           "in /etc/libibverbs.d is listed: keep the one(s) of your HCA "
                           f"({', '.join(os.path.basename(d) for d in devices)})")
                binds.append(BindSpec(source=provider_dir, read_only=True,
                                      reason="libibverbs opens providers from this "
                                      "compiled-in directory"))
                break
        binds.append(BindSpec(source="/etc/libibverbs.d", read_only=True,
                              reason="verbs provider list read by libibverbs"))
    elif drivers:
        probe.note("libraries", f"{len(drivers)} verbs providers are named in "
                   "/etc/libibverbs.d but /sys/class/infiniband has no device: none listed.")

    # DAPL.
    if probe.exists("/etc/dat.conf"):
        binds.append(BindSpec(source="/etc/dat.conf", read_only=True,
                              reason="DAPL provider configuration read by libdat2"))
        try:
            text = probe.host("/etc/dat.conf").read_text(errors="replace")
        except OSError:
            text = ""
        wanted = {"libdat2.so.2"}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 5 and not line.lstrip().startswith("#"):
                wanted.add(parts[4])
        for soname in sorted(wanted):
            path = probe.cache_lookup(soname)
            if path:
                libraries.append(Library(path=path, kind="provider" if soname != "libdat2.so.2"
                                         else "dependency", reason="DAPL (from /etc/dat.conf)"))
    return libraries, binds, env, forward


def probe_binds(probe: _Probe) -> List[BindSpec]:
    """Parallel file systems from /proc/mounts, the munge socket and Slurm configuration."""
    binds: List[BindSpec] = []
    try:
        mounts = parse_mounts(probe.host("/proc/mounts").read_text(errors="replace"))
    except OSError:
        mounts = []
    chosen: List[str] = []
    for point, fstype in mounts:
        base_type = fstype.split(".")[0]
        if base_type not in PARALLEL_FS or point == "/" or any(
                point == s or point.startswith(s + "/") for s in SKIP_MOUNTS):
            continue
        if any(point == c or point.startswith(c.rstrip("/") + "/") for c in chosen):
            continue
        chosen.append(point)
        binds.append(BindSpec(source=point, reason=f"{fstype} file system"))
        probe.note(f"binds[{len(binds) - 1}]", GUESS + f"mounted here as {fstype}; remove it "
                   "if containers should not see it")
    for socket in ("/var/run/munge/munge.socket.2", "/run/munge/munge.socket.2"):
        if probe.exists(socket):
            binds.append(BindSpec(source=socket, optional=True,
                                  reason="munge socket for Slurm commands inside the container"))
            probe.note(f"binds[{len(binds) - 1}]", GUESS + "only needed when applications run "
                       "Slurm commands inside the container")
            break
    return binds


def probe_gpu(probe: _Probe) -> Gpu:
    """GPU vendor from device nodes and the NVIDIA driver's /proc entry."""
    if probe.glob("/dev/nvidia[0-9]*") or probe.exists("/proc/driver/nvidia/version"):
        return Gpu(vendor="nvidia", reason="detected: /dev/nvidia* or /proc/driver/nvidia")
    if probe.exists("/dev/kfd"):
        return Gpu(vendor="rocm", reason="detected: /dev/kfd (AMD ROCm)")
    probe.note("gpu.vendor", GUESS + "no GPU on this node; auto probes each node at launch")
    return Gpu(vendor="auto")


def probe_runtime(probe: _Probe) -> Runtime:
    """The container runtime on PATH."""
    for program, kind in (("apptainer", "apptainer"), ("singularity", "singularity"),
                          ("ch-run", "charliecloud")):
        if probe.which(program):
            return Runtime(kind=kind, reason=f"detected: {probe.which(program)}")
    probe.note("runtime.kind", GUESS + "no apptainer, singularity or ch-run on PATH here")
    return Runtime()


def probe_srun(probe: _Probe, mpi: Optional[Mpi]) -> Tuple[Tuple[str, LauncherDefaults], ...]:
    """srun's default --mpi plugin for this MPI, from ``srun --mpi=list``."""
    if not probe.which("srun") or mpi is None:
        return ()
    plugins = parse_srun_mpi_list(probe.run(["srun", "--mpi=list"]))
    cray = "cray" in mpi.implementation.lower()
    if cray:
        wanted = ["cray_shasta"]
    elif mpi.family == "openmpi":
        wanted = ["pmix"] + [p for p in plugins if p.startswith("pmix_")]
    else:
        wanted = ["pmi2"]
    choice = next((p for p in wanted if p in plugins), "")
    key = "launchers.srun"
    if not choice:
        choice = wanted[0]
        probe.note(key, GUESS + f"`srun --mpi=list` did not confirm {choice!r} "
                   f"(it offered: {', '.join(plugins) or 'nothing readable'})")
    reason = {"pmi2": "MPICH-family libraries speak PMI-2 to Slurm",
              "pmix": "Open MPI wires up through Slurm's PMIx plugin",
              "cray_shasta": "Cray MPICH wires up through Cray PMI / PALS"}.get(choice, "")
    return (("srun", LauncherDefaults(options=(f"--mpi={choice}",), reason=reason)),)


def _cluster_name(probe: _Probe) -> str:
    for conf in ("/etc/slurm/slurm.conf", "/etc/slurm-llnl/slurm.conf"):
        try:
            text = probe.host(conf).read_text(errors="replace")
        except OSError:
            continue
        found = re.search(r"^\s*ClusterName\s*=\s*(\S+)", text, re.M | re.I)
        if found:
            return found.group(1)
    return ""


def detect_site(root: Path = Path("/"), environ: Optional[Mapping[str, str]] = None,
                runner: Runner = run_program, mpi: str = "auto", name: str = "") -> Detection:
    """Probe the host at ``root`` and return a profile with notes for its TOML.

    ``mpi`` is ``auto`` or a host path (library file, library directory or MPI prefix).
    Raises UsageError when ``--mpi PATH`` holds no MPI library.
    """
    probe = _Probe(Path(root), os.environ if environ is None else environ, runner)
    candidates = find_mpi_candidates(probe, mpi)
    mpi_table: Optional[Mpi] = None
    if candidates:
        mpi_table = build_mpi(probe, candidates[0])
        others = [f"{c.path} ({c.implementation or c.family} {c.version}, via {c.origin})"
                  for c in candidates[1:]]
        if others:
            probe.note("mpi", GUESS + "chosen among several MPIs; the others: "
                       + "; ".join(others) + ". Rerun with --mpi PATH to pick another.")
    else:
        probe.note("", GUESS + "no MPI library found: rerun with --mpi PATH, or keep this "
                   "profile for GPU-only or serial containers")
    libraries, stack_binds, env, forward = probe_stack(probe, mpi_table)
    binds = probe_binds(probe) + stack_binds
    cluster = _cluster_name(probe)
    site_name = name or re.sub(r"[^a-z0-9._-]+", "-", cluster.lower()).strip("-") or "site"
    if not name and not cluster:
        probe.note("name", GUESS + "no ClusterName in slurm.conf: give --name")
    if mpi_table is not None:
        what = f"{mpi_table.implementation or mpi_table.family} {mpi_table.version}".strip()
    else:
        what = "no MPI"
    profile = Profile(
        schema=1,
        name=site_name,
        description=f"{cluster or site_name}: {what} (detected)",
        runtime=probe_runtime(probe),
        mpi=mpi_table,
        libraries=tuple(libraries),
        binds=tuple(binds),
        env=tuple(env),
        gpu=probe_gpu(probe),
        launchers=probe_srun(probe, mpi_table),
        wireup=Wireup(forward=tuple(forward),
                      reason="tuning variables of the detected stack" if forward else ""),
    )
    alternatives = tuple(candidates[1:])
    return Detection(profile=profile, notes=tuple(probe.notes), alternatives=alternatives)


def render_detection(detection: Detection) -> str:
    """The detected profile as commented TOML (loads back with ``load_profile``)."""
    from hpcrun.profiles.write import dump_profile, notes_dict

    header = [
        f"Site profile for hpcrun, written by `hpcrun site detect` ({detection.profile.name}).",
        "Review every GUESS comment, then check it with `hpcrun site validate FILE`",
        "and publish it as /etc/hpcrun/sites/NAME.toml (see docs/site-profiles.md).",
    ]
    return dump_profile(detection.profile, notes_dict(list(detection.notes)), header)
