"""What the application command is inside the image, read statically.

``analyse_app`` resolves ``command[0]`` with the image's ``PATH``, follows links and looks
at what it finds: an ELF executable (its needed libraries, the MPI family its symbols
reveal, statically linked MPI, symbol-version needs), a Python interpreter (and the mpi4py
extension modules it would import), or a script.  Anything that cannot be analysed becomes
a warning in :class:`~hpcrun.image.facts.AppFacts`, never a failure: the launch goes on.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping

from hpcrun.elf.mpi import MPI_ABI, MPICH, OMPI_SYMBOLS, OPENMPI, mpi_name, symbols_family
from hpcrun.elf.reader import dynamic_symbols_split, find_strings, read_elf, static_symbols
from hpcrun.errors import HpcrunError
from hpcrun.image.facts import AppFacts
from hpcrun.image.fs import FILE, Tree

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import FrozenSet, List, Optional, Sequence, Tuple, Union

    Environment = Union[Mapping[str, str], Sequence[Tuple[str, str]]]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
_MPI4PY_EXT = re.compile(r"^MPI(\.(?P<abi>mpich|openmpi|mpiabi|abi))?\.[^/]*\.so$|^MPI\.so$")
_BANNERS = (
    ("MPICH Version:", MPICH),
    ("Intel(R) MPI Library", MPICH),
    ("CRAY MPICH version", MPICH),
    ("MVAPICH2 Version", MPICH),
    ("Open MPI v", OPENMPI),
)
MAX_SHEBANG = 256
# Symbols an application expects from its MPI library (the resolver filters the same way).
_MPI_SYMBOL = re.compile(r"^(P?MPIX?_|MPI[IRDU]_|MPL_|ompi_|mpi_|pmpi_|mpix_|MPIR|MPII|MPID)")


def _env(environment: Optional[Environment], name: str) -> Optional[str]:
    if environment is None:
        return None
    if isinstance(environment, Mapping):
        return environment.get(name)
    value = None
    for key, val in environment:
        if key == name:
            value = val  # the last definition wins
    return value


def find_program(tree: Tree, name: str, environment: Optional[Environment] = None) -> str:
    """The image path ``name`` resolves to through the image's PATH ('' when not found).

    Names with a slash are taken as they are (relative ones from ``/``, the usual working
    directory of a container is unknown here).  Only regular files count.
    """
    if "/" in name:
        path = name if name.startswith("/") else "/" + name
        node = tree.lookup(path)
        return path if node is not None and node.kind == FILE else ""
    search = _env(environment, "PATH") or DEFAULT_PATH
    for directory in search.split(":"):
        if not directory.startswith("/"):
            continue
        candidate = posixpath.join(directory, name)
        node = tree.lookup(candidate)
        if node is not None and node.kind == FILE:
            return candidate
    return ""


def analyse_app(
    tree: Tree, command: Sequence[str], environment: Optional[Environment] = None
) -> AppFacts:
    """Describe what ``command`` runs in the image: ELF, python (+ mpi4py), script, missing.

    Never raises for a bad or missing program: problems become ``warnings``.
    """
    cmd = tuple(command)
    if not cmd:
        return AppFacts(command=cmd, kind="missing", warnings=("no command given",))
    try:
        return _analyse(tree, cmd, environment)
    except HpcrunError as error:
        return AppFacts(
            command=cmd,
            kind="unknown",
            warnings=(f"{cmd[0]}: cannot be analysed: {error.message}",),
        )


def _analyse(tree: Tree, cmd: Tuple[str, ...], environment: Optional[Environment]) -> AppFacts:
    path = find_program(tree, cmd[0], environment)
    if not path:
        where = "in the image" if "/" in cmd[0] else "on the image's PATH"
        return AppFacts(
            command=cmd,
            kind="missing",
            warnings=(
                f"{cmd[0]}: not found {where} (it may live in a directory bound at run "
                "time; the application checks are skipped)",
            ),
        )
    if _PYTHON.match(posixpath.basename(path)) or _PYTHON.match(
        posixpath.basename(tree.realpath(path))
    ):
        return _python(tree, cmd, path, environment)
    head = tree.read(path, 0, MAX_SHEBANG)
    if head.startswith(b"\x7fELF"):
        return _elf_app(tree, cmd, path)
    if head.startswith(b"#!"):
        line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
        words = line[1:] if line and posixpath.basename(line[0]) == "env" else line
        words = [w for w in words if not w.startswith("-")] if words else []
        if words and _PYTHON.match(posixpath.basename(words[0])):
            interpreter = find_program(tree, words[0], environment)
            if interpreter:
                return _python(
                    tree, (words[0], path, *cmd[1:]), interpreter, environment, command=cmd
                )
        return AppFacts(
            command=cmd,
            path=path,
            kind="script",
            interpreter=" ".join(line),
            warnings=(
                f"{path}: a script ({' '.join(line) or 'no interpreter'}); the programs "
                "it starts are not analysed",
            ),
        )
    return AppFacts(
        command=cmd,
        path=path,
        kind="unknown",
        warnings=(f"{path}: neither ELF nor a script; not analysed",),
    )


def _family_from_names(mpi_needed: Sequence[str]) -> str:
    for name in mpi_needed:
        guess = mpi_name(name)
        if guess is not None and guess[0] in (MPICH, OPENMPI, MPI_ABI):
            return guess[0]
    return ""


def _elf_app(tree: Tree, cmd: Tuple[str, ...], path: str) -> AppFacts:
    """ELF executable (or extension module): needs, MPI family, static MPI."""
    warnings: List[str] = []
    with tree.open(path) as stream:
        info = read_elf(stream, path)
        defined, strong, weak = dynamic_symbols_split(stream, path)
        undefined = strong | weak
        mpi_needed = tuple(n for n in info.needed if mpi_name(n) is not None)
        family = ""
        static_mpi = False
        if mpi_needed:
            by_symbols = symbols_family(defined, undefined)
            by_name = _family_from_names(mpi_needed)
            # Open MPI 1.10's libmpi.so.12 looks like MPICH by name: symbols decide.
            family = OPENMPI if by_symbols == OPENMPI else (by_name or by_symbols)
        else:
            all_defined, _ = static_symbols(stream, path)
            linked_in = (
                "MPI_Init" in defined or "MPI_Init" in all_defined or "PMPI_Init" in all_defined
            )
            banners = find_strings(stream, [b for b, _ in _BANNERS], path)
            if linked_in or banners:
                static_mpi = True
                if (defined | all_defined) & OMPI_SYMBOLS:
                    family = OPENMPI
                else:
                    for banner, fam in _BANNERS:
                        if any(text.startswith(banner) for text in banners):
                            family = fam
                            break
                warnings.append(
                    f"{path}: MPI is linked in statically; the host MPI cannot replace it"
                )
            elif undefined & OMPI_SYMBOLS or any(s.startswith("MPI_") for s in undefined):
                family = symbols_family(defined, undefined)
                warnings.append(f"{path}: uses MPI symbols but needs no MPI library directly")
    needs = tuple((n.file, v) for n in info.version_needs for v in n.versions)
    if info.elf_type not in ("ET_EXEC", "ET_DYN"):
        warnings.append(f"{path}: not an executable ELF file ({info.elf_type})")
    return AppFacts(
        command=cmd,
        path=path,
        kind="elf",
        needed=info.needed,
        mpi_needed=mpi_needed,
        mpi_symbols=_expected_mpi_symbols(strong, defined, bool(mpi_needed)),
        mpi_family=family,
        static_mpi=static_mpi,
        interpreter=info.interpreter,
        version_needs=needs,
        warnings=tuple(warnings),
    )


def _expected_mpi_symbols(
    strong: FrozenSet[str], defined: FrozenSet[str], dynamic_mpi: bool
) -> Tuple[str, ...]:
    """MPI symbols the program needs from its MPI library.

    The strong undefined ones, plus Open MPI's handle objects (``ompi_*``) that a
    position-dependent or PIE executable defines through copy relocations: the loader
    still copies them from the library, which must define them.
    """
    names = {s for s in strong if _MPI_SYMBOL.match(s)}
    if dynamic_mpi:
        names.update(s for s in defined if s.startswith("ompi_"))
    return tuple(sorted(names))


def _python_version(tree: Tree, interpreter: str) -> str:
    for candidate in (tree.realpath(interpreter), interpreter):
        match = re.match(r"^python(\d+\.\d+)$", posixpath.basename(candidate))
        if match:
            return match.group(1)
    return ""


def python_site_dirs(
    tree: Tree, interpreter: str, environment: Optional[Environment] = None
) -> List[str]:
    """The image directories ``interpreter`` would import packages from, in sys.path order.

    PYTHONPATH, a virtual environment around the interpreter (``pyvenv.cfg``), then the
    prefix's ``site-packages`` and Debian's ``dist-packages`` for the interpreter's
    version (all ``python3.*`` when the version is not in its file name).
    """
    dirs: List[str] = []
    for entry in (_env(environment, "PYTHONPATH") or "").split(":"):
        if entry.startswith("/"):
            dirs.append(entry)
    version = _python_version(tree, interpreter)
    prefixes = []
    venv = posixpath.dirname(posixpath.dirname(interpreter))
    if tree.exists(posixpath.join(venv, "pyvenv.cfg")):
        prefixes.append(venv)
    real = tree.realpath(interpreter)
    prefix = posixpath.dirname(posixpath.dirname(real))
    for p in (prefix, "/usr/local", "/usr"):
        if p not in prefixes:
            prefixes.append(p)
    versions = [version] if version else []
    if not versions:
        for p in prefixes:
            for libdir in ("lib", "lib64"):
                base = posixpath.join(p, libdir)
                node = tree.lookup(base)
                if node is not None and node.kind == "dir":
                    for name in tree.listdir(base):
                        match = re.match(r"^python(\d+\.\d+)$", name)
                        if match and match.group(1) not in versions:
                            versions.append(match.group(1))
    for p in prefixes:
        for v in versions:
            for libdir in ("lib", "lib64"):
                for sub in ("site-packages", "dist-packages"):
                    dirs.append(f"{p}/{libdir}/python{v}/{sub}")
        dirs.append(f"{p}/lib/python3/dist-packages")
    seen: List[str] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def _python(
    tree: Tree,
    cmd: Tuple[str, ...],
    interpreter: str,
    environment: Optional[Environment],
    command: Optional[Tuple[str, ...]] = None,
) -> AppFacts:
    """A Python command: the interpreter and the mpi4py extension modules it would load."""
    shown = command or cmd
    warnings: List[str] = []
    for directory in python_site_dirs(tree, interpreter, environment):
        package = posixpath.join(directory, "mpi4py")
        node = tree.lookup(package)
        if node is None or node.kind != "dir":
            continue
        names = [n for n in tree.listdir(package) if _MPI4PY_EXT.match(n)]
        extensions = []
        for name in names:
            ext_path = posixpath.join(package, name)
            try:
                ext = _elf_app(tree, (), ext_path)
            except HpcrunError as error:
                warnings.append(f"{ext_path}: cannot be analysed: {error.message}")
                continue
            abi = _MPI4PY_EXT.match(name).group("abi")  # type: ignore[union-attr]
            family = {"mpich": MPICH, "openmpi": OPENMPI, "mpiabi": MPI_ABI, "abi": MPI_ABI}.get(
                abi or "", ext.mpi_family
            )
            extensions.append(
                AppFacts(
                    command=(),
                    path=ext.path,
                    kind="elf",
                    needed=ext.needed,
                    mpi_needed=ext.mpi_needed,
                    mpi_family=family,
                    static_mpi=ext.static_mpi,
                    version_needs=ext.version_needs,
                    warnings=ext.warnings,
                    mpi_symbols=ext.mpi_symbols,
                )
            )
        families = {e.mpi_family for e in extensions}
        family = families.pop() if len(families) == 1 else ""
        if not extensions:
            warnings.append(f"{package}: no MPI extension module found")
        return AppFacts(
            command=shown,
            path=interpreter,
            kind="python",
            interpreter=interpreter,
            mpi_family=family,
            extensions=tuple(extensions),
            warnings=tuple(warnings),
        )
    warnings.append(
        f"{interpreter}: mpi4py not found in the image's site directories; the "
        "script's MPI use is not analysed"
    )
    return AppFacts(
        command=shown,
        path=interpreter,
        kind="python",
        interpreter=interpreter,
        warnings=tuple(warnings),
    )
