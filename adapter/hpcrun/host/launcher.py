"""What the launcher really is, and what the host MPI library can be started by.

Probes for the wire-up check (:mod:`hpcrun.resolve.wireup`), following the rules in
``data/wireup-rules.json``:

* :func:`identify_launcher` follows the launcher word on ``PATH`` through its symbolic
  links (Debian's ``mpirun -> /etc/alternatives/mpirun -> mpirun.openmpi -> orterun``) and
  recognises the final file by its name, its ``DT_NEEDED`` entries, strings in its
  ``.rodata`` (a copied ``mpiexec`` of the MPICH wheel says ``hydra_pmi_proxy``) or, for a
  shell script, its text (Intel MPI's ``mpirun``).
* :func:`pmi_clients` reads the host MPI libraries (hpcrun's ELF reader: ``DT_NEEDED``,
  dynamic symbols, ``.rodata`` strings) and Open MPI's component directory beside them:
  the process-management interfaces the library can wire up through.
* :func:`slurm_mpi` finds srun's effective ``--mpi`` plugin and where it came from, and
  what Slurm offers (``srun --mpi=list``, cached per srun binary and ``slurm.conf``).

Reads files and runs ``srun --mpi=list`` at most once per Slurm installation; starts
nothing else.
"""

from __future__ import annotations

import fnmatch
import os

from hpcrun.launch.which import which
from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

RULES_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                          "wireup-rules.json")
_SCRIPT_HEAD = 64 * 1024  # enough of a launcher script to recognise it


@record
class LauncherInfo:
    """The launcher program: ``kind`` from the rules (srun, openmpi-orte, hydra ...) or ""
    when unknown; ``path`` the file found on PATH, ``chain`` every link followed to the real
    file, ``evidence`` what told its kind."""

    word: str
    kind: str = ""
    path: str = ""
    chain: Tuple[str, ...] = ()
    evidence: str = ""


@record
class PmiClients:
    """The process-management interfaces a host MPI library can wire up through, each with
    its evidence (``("pmix", "libmpi.so.40: needs libpmix.so.2")``)."""

    interfaces: Tuple[Tuple[str, str], ...] = ()

    def names(self) -> Tuple[str, ...]:
        return tuple(dict.fromkeys(name for name, _ in self.interfaces))


@record
class SlurmMpi:
    """srun's effective ``--mpi`` plugin, where it came from, and the plugins Slurm offers
    (empty when ``srun --mpi=list`` could not be asked)."""

    plugin: str
    source: str
    offered: Tuple[str, ...] = ()


_RULES: Optional[Dict[str, Any]] = None


def rules() -> Dict[str, Any]:
    """The wire-up rules (``data/wireup-rules.json``), read once."""
    global _RULES
    if _RULES is None:
        import json

        with open(RULES_FILE, encoding="utf-8") as stream:
            _RULES = json.load(stream)
    return _RULES


# --------------------------------------------------------------------------- launcher

def _chain(found: str) -> List[str]:
    """``found`` and every symbolic link target after it, up to the real file."""
    chain = [found]
    seen = {found}
    path = found
    while os.path.islink(path):
        target = os.readlink(path)
        path = os.path.normpath(os.path.join(os.path.dirname(path), target))
        if path in seen:
            break
        seen.add(path)
        chain.append(path)
    return chain


def _elf_evidence(path: str, strings: Sequence[str]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(DT_NEEDED, those of ``strings`` that are whole strings in .rodata) of an ELF file;
    ((), ()) if it is none."""
    from hpcrun.elf.reader import read_elf_file
    from hpcrun.errors import HpcrunError

    try:
        info = read_elf_file(path)
    except (HpcrunError, OSError):
        return (), ()
    return tuple(info.needed), _rodata_strings(path, strings)


def _rodata_strings(path: str, strings: Sequence[str]) -> Tuple[str, ...]:
    """Those of ``strings`` that occur as whole NUL-terminated strings in ``.rodata``."""
    from hpcrun.elf.reader import find_strings
    from hpcrun.errors import HpcrunError

    if not strings:
        return ()
    try:
        with open(path, "rb") as stream:
            found = set(find_strings(stream, strings, path))
    except (HpcrunError, OSError):
        return ()
    return tuple(s for s in strings if s in found)


def _script_text(path: str) -> str:
    try:
        with open(path, "rb") as stream:
            head = stream.read(_SCRIPT_HEAD)
    except OSError:
        return ""
    return head.decode("latin-1") if head.startswith(b"#!") else ""


FORMAT = 1  # of the cached values below


def identify_launcher(word: str, environ: Mapping[str, str]) -> LauncherInfo:
    """Recognise the launcher ``word`` (a name on PATH or a path) by the rules.

    Remembered in the facts cache while the PATH directories searched and every file of
    the link chain stat the same (a warm launch parses no ELF)."""
    from hpcrun.image.cache import remembered

    search = environ.get("PATH", os.defpath)

    def walk(seen: Set[str]) -> Tuple[LauncherInfo, bool]:
        return _identify(word, search, seen), True

    def load(data: Any) -> Optional[LauncherInfo]:
        if not (isinstance(data, list) and len(data) == 5 and isinstance(data[3], list)):
            return None
        return LauncherInfo(data[0], data[1], data[2], tuple(data[3]), data[4])

    def save(info: LauncherInfo) -> Any:
        return [info.word, info.kind, info.path, list(info.chain), info.evidence]

    return remembered(_key("launcher", word, search), "/", walk, save, load)


def _key(kind: str, *parts: str) -> str:
    import json

    from hpcrun import __version__
    from hpcrun.image.cache import sha256_hex

    raw = json.dumps([FORMAT, __version__, kind, *parts])
    return f"wireup-{kind}-" + sha256_hex(raw.encode("utf-8", "surrogatepass"))


def _identify(word: str, search: str, seen: Set[str]) -> LauncherInfo:
    if os.sep in word:
        found: Optional[str] = word
    else:
        found = which(word, path=search)
        for directory in search.split(":"):  # a program added earlier on PATH wins later
            seen.add(os.path.abspath(directory or "."))
            if found and os.path.dirname(found) == directory:
                break
    if not found or not os.path.exists(found):
        return LauncherInfo(word)
    chain = tuple(_chain(os.path.abspath(found)))
    real = os.path.realpath(found)
    seen.update(chain)
    seen.add(real)
    launchers = rules()["launchers"]
    for step in (*chain, real):
        for rule in launchers:
            if os.path.basename(step) in rule.get("names", ()):
                return LauncherInfo(word, rule["kind"], found, chain,
                                    f"{step} is {rule['label']}")
    needed, strings = _elf_evidence(
        real, [s for rule in launchers for s in rule.get("strings", ())])
    text = "" if needed or strings else _script_text(real)
    wanted = set(strings)
    for rule in launchers:
        for pattern in rule.get("needed", ()):
            hit = next((n for n in needed if fnmatch.fnmatchcase(n, pattern)), "")
            if hit:
                return LauncherInfo(word, rule["kind"], found, chain, f"{real} needs {hit}")
        for string in rule.get("strings", ()):
            if string in wanted:
                return LauncherInfo(word, rule["kind"], found, chain,
                                    f"{real} contains {string!r}")
        for snippet in rule.get("script", ()):
            if snippet in text:
                return LauncherInfo(word, rule["kind"], found, chain,
                                    f"{real} is a script that mentions {snippet}")
    return LauncherInfo(word, "", found, chain, "")


def find_alternatives(names: Sequence[str], environ: Mapping[str, str]) -> Tuple[str, ...]:
    """Those of ``names`` that are on PATH (for hints), in order, one name per real file
    (``mpirun.mpich -> mpiexec.hydra`` is one launcher)."""
    path = environ.get("PATH", os.defpath)
    found: Dict[str, str] = {}
    for name in names:
        program = which(name, path=path)
        if program:
            found.setdefault(os.path.realpath(program), name)
    return tuple(found.values())


# --------------------------------------------------------------------------- MPI library

def _runpath_dirs(path: str, runpath: Sequence[str]) -> List[str]:
    origin = os.path.dirname(path)
    out: List[str] = []
    for entry in runpath:
        for part in entry.split(":"):
            if part:
                out.append(part.replace("$ORIGIN", origin).replace("${ORIGIN}", origin))
    return out


def _resolve_in(name: str, dirs: Sequence[str], seen: Set[str]) -> str:
    """The real path of library ``name`` in the first of ``dirs`` that holds it, or ""."""
    for directory in dirs:
        candidate = os.path.join(directory, name)
        seen.add(candidate)
        if os.path.exists(candidate):
            return os.path.realpath(candidate)
    return ""


def _where_allowed(rule: Mapping[str, Any], where: str) -> bool:
    """A rule's ``resolved`` / ``unless_resolved`` path globs against where the needed
    library resolves ("" when it does not: only ``unless_resolved`` rules apply)."""
    wanted = rule.get("resolved", ())
    if wanted and not any(fnmatch.fnmatchcase(where, g) for g in wanted):
        return False
    return not any(where and fnmatch.fnmatchcase(where, g)
                   for g in rule.get("unless_resolved", ()))


def pmi_clients(libraries: Sequence[str], library_dirs: Sequence[str] = ()) -> PmiClients:
    """The interfaces the MPI libraries ``libraries`` (host paths) can wire up through.

    Looks at each library and at the libraries it needs directly that live beside it (or on
    its RUNPATH / ``library_dirs``): Open MPI 4's ``libmpi.so.40`` has its PMIx client in
    ``libopen-pal`` components, Open MPI 5's needs ``libpmix.so.2``.  Remembered in the
    facts cache while every file and directory consulted stats the same.
    """
    from hpcrun.image.cache import remembered

    def walk(seen: Set[str]) -> Tuple[PmiClients, bool]:
        return _pmi_clients(libraries, library_dirs, seen), True

    def load(data: Any) -> Optional[PmiClients]:
        if not isinstance(data, list) or not all(
                isinstance(p, list) and len(p) == 2 for p in data):
            return None
        return PmiClients(tuple((str(a), str(b)) for a, b in data))

    def save(value: PmiClients) -> Any:
        return [list(pair) for pair in value.interfaces]

    return remembered(_key("pmi", *libraries, "\0", *library_dirs), "/", walk, save, load)


def _pmi_clients(libraries: Sequence[str], library_dirs: Sequence[str], seen: Set[str]
                 ) -> PmiClients:
    from hpcrun.elf.reader import defined_symbols, read_elf_file
    from hpcrun.errors import HpcrunError

    clients = rules()["clients"]
    found: List[Tuple[str, str]] = []

    def add(interface: str, why: str) -> None:
        if all(name != interface for name, _ in found):
            found.append((interface, why))

    seen.update(libraries)
    todo = [lib for lib in libraries if os.path.exists(lib)]
    done = set()
    first = set(todo)
    while todo:
        path = todo.pop(0)
        real = os.path.realpath(path)
        if real in done:
            continue
        done.add(real)
        seen.update((path, real))
        name = os.path.basename(path)
        try:
            info = read_elf_file(real)
        except (HpcrunError, OSError):
            continue
        symbols = tuple(s for rule in clients for s in rule.get("defines", ()))
        try:
            with open(real, "rb") as stream:
                defined = defined_symbols(stream, symbols, real) if symbols else frozenset()
        except (HpcrunError, OSError):
            defined = frozenset()
        wanted_strings = [s for rule in clients for s in rule.get("strings", ())]
        strings = set(_rodata_strings(real, wanted_strings)) if path in first else set()
        dirs = [os.path.dirname(real), os.path.dirname(path),
                *_runpath_dirs(real, info.runpath or info.rpath), *library_dirs]
        for rule in clients:
            for pattern in rule.get("needed", ()):
                hit = next((n for n in info.needed if fnmatch.fnmatchcase(n, pattern)), "")
                if hit and _where_allowed(rule, _resolve_in(hit, dirs, seen)):
                    add(rule["interface"], f"{name} needs {hit}")
            for symbol in rule.get("defines", ()):
                if symbol in defined:
                    add(rule["interface"], f"{name} defines {symbol}")
            wanted = rule.get("strings", ())
            if wanted and all(s in strings for s in wanted):
                add(rule["interface"], f"{name} reads {' and '.join(wanted)}")
        owners = rules()["component_owners"]
        is_owner = any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(
            os.path.basename(real), p) for p in owners)
        for component_dir in rules()["component_dirs"] if is_owner else ():
            directory = os.path.join(os.path.dirname(real), component_dir)
            seen.add(directory)
            try:
                entries = sorted(os.listdir(directory))
            except OSError:
                continue
            for rule in clients:
                for pattern in rule.get("component", ()):
                    hit = next((e for e in entries if fnmatch.fnmatchcase(e, pattern)), "")
                    if hit:
                        add(rule["interface"], f"Open MPI component {directory}/{hit}")
        if path in first:  # one level of the library's own dependencies (libopen-pal ...)
            for needed in info.needed:
                if needed.startswith(("libc.", "libm.", "libdl.", "libpthread.", "librt.",
                                      "ld-linux")):
                    continue
                for directory in dirs:
                    candidate = os.path.join(directory, needed)
                    seen.add(candidate)
                    if os.path.exists(candidate):
                        todo.append(candidate)
                        break
    return PmiClients(tuple(found))


# --------------------------------------------------------------------------- Slurm

def _slurm_conf(environ: Mapping[str, str]) -> str:
    for candidate in (environ.get("SLURM_CONF", ""), "/etc/slurm/slurm.conf",
                      "/etc/slurm-llnl/slurm.conf", "/usr/local/etc/slurm.conf"):
        if candidate and os.path.isfile(candidate):
            return candidate
    return ""


def mpi_default(conf: str) -> str:
    """``MpiDefault`` of a slurm.conf ("" when unset or unreadable); keys are
    case-insensitive, ``#`` starts a comment."""
    try:
        with open(conf, encoding="utf-8", errors="replace") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return ""
    value = ""
    for line in lines:
        line = line.split("#", 1)[0].strip()
        key, sep, rest = line.partition("=")
        if sep and key.strip().lower() == "mpidefault":
            value = rest.strip().split()[0] if rest.strip() else ""
    return value


def effective_mpi(option: str, option_source: str, environ: Mapping[str, str]
                  ) -> Tuple[str, str]:
    """srun's ``--mpi`` as srun decides it: the option (the user's or the profile's), else
    ``SLURM_MPI_TYPE``, else slurm.conf ``MpiDefault``, else none."""
    if option:
        return option, option_source
    if environ.get("SLURM_MPI_TYPE"):
        return environ["SLURM_MPI_TYPE"], "SLURM_MPI_TYPE"
    conf = _slurm_conf(environ)
    value = mpi_default(conf) if conf else ""
    if value:
        return value, f"MpiDefault in {conf}"
    return "none", "Slurm's default (no --mpi, SLURM_MPI_TYPE or MpiDefault)"


def parse_mpi_list(text: str) -> Tuple[str, ...]:
    """Plugin names from ``srun --mpi=list`` (22.05: "MPI plugin types are..." then one
    per line, then "specific pmix plugin versions available: pmix_v4")."""
    found: List[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.endswith("...") or line.startswith("MPI plugin"):
            continue
        if ":" in line:
            head, _, tail = line.partition(":")
            if "versions available" in head:
                found.extend(v.strip() for v in tail.replace(",", " ").split() if v.strip())
            continue
        if line.startswith("srun: "):
            line = line[len("srun: "):]
        if line and " " not in line:
            found.append(line)
    return tuple(dict.fromkeys(found))


def _cache_file(environ: Mapping[str, str]) -> str:
    base = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME", "/tmp"), ".cache")
    return os.path.join(base, "hpcrun", "srun-mpi-list.json")


def offered_plugins(srun: str, environ: Mapping[str, str]) -> Tuple[str, ...]:
    """What ``srun --mpi=list`` offers, cached by srun's and slurm.conf's identity."""
    import json
    import subprocess

    conf = _slurm_conf(environ)
    key_parts = []
    for path in (srun, conf):
        try:
            st = os.stat(path) if path else None
        except OSError:
            st = None
        key_parts.append(f"{path}:{st.st_ino}:{st.st_mtime_ns}" if st else path)
    key = "|".join(key_parts)
    cache = _cache_file(environ)
    try:
        with open(cache, encoding="utf-8") as stream:
            stored = json.load(stream)
        if stored.get("key") == key:
            return tuple(stored["plugins"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    try:
        proc = subprocess.run([srun, "--mpi=list"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=dict(environ), timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ()
    # A failure (no slurm.conf) is cached too: the key changes when Slurm does.
    plugins = parse_mpi_list(proc.stdout.decode(errors="replace")) if proc.returncode == 0 \
        else ()
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as stream:
            json.dump({"key": key, "plugins": list(plugins)}, stream)
        os.replace(tmp, cache)
    except OSError:
        pass
    return plugins


def slurm_mpi(srun: str, option: str, option_source: str, environ: Mapping[str, str]
              ) -> SlurmMpi:
    """srun's effective plugin with its source, and the plugins Slurm offers."""
    plugin, source = effective_mpi(option, option_source, environ)
    offered = offered_plugins(srun, environ) if srun else ()
    return SlurmMpi(plugin, source, offered)
