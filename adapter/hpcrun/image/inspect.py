"""Image facts: everything hpcrun needs to know about an image, read without running it.

``inspect_image`` opens the image (:func:`hpcrun.image.open.open_image`), and
``inspect_tree`` reads the facts from its file tree: architecture, C library, the
image's own ``/etc/ld.so.cache`` (the fast way to find libraries) and ``ld.so.conf``, every
MPI library and its family, the symbol versions the image's base libraries provide (the
resolver checks host libraries' needs against them), CUDA runtime and ROCm presence, and
what the application command is.  Results are cached by image identity.
"""

from __future__ import annotations

import posixpath

from hpcrun import __version__, records
from hpcrun.errors import HpcrunError
from hpcrun.image.facts import (
    FACTS_VERSION,
    RECORDS,
    ImageFacts,
    Libc,
    MpiLibrary,
    VersionDefs,
)

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Pattern, Sequence, Tuple

    # A launch with the facts cached needs none of the readers: they are imported by
    # the functions that read a tree (see inspect_tree), not here.
    from hpcrun.elf.model import ElfInfo
    from hpcrun.image.fs import Tree

# Node kinds of hpcrun.image.fs (DIR, FILE), repeated so that this module need not import it.
_DIR = "dir"
_FILE = "file"

LD_CACHE = "/etc/ld.so.cache"
LD_CONF = "/etc/ld.so.conf"
MAX_CONF_BYTES = 1 << 20
MAX_CACHE_BYTES = 64 << 20

_TRIPLETS = {
    "x86_64": "x86_64-linux-gnu",
    "aarch64": "aarch64-linux-gnu",
    "ppc64le": "powerpc64le-linux-gnu",
    "ppc64": "powerpc64-linux-gnu",
    "i686": "i386-linux-gnu",
    "armv7l": "arm-linux-gnueabihf",
    "s390x": "s390x-linux-gnu",
    "riscv64": "riscv64-linux-gnu",
}

# The libraries whose version definitions the resolver checks host libraries against.
PROVIDERS_PATTERN = (
    r"^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|libmvec\.so\.1"
    r"|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libgfortran\.so\.\d+|libquadmath\.so\.0"
    r"|libgomp\.so\.1|libatomic\.so\.1|ld-linux[-\w.]*\.so\.\d+|ld64\.so\.\d+)$"
)
_LIBRARY_NAME = r"^(lib.*|ld-.*|ld64)\.so(\.[0-9][\w.]*)?$"
_GLIBC_VERSION = r"^GLIBC_(\d+(?:\.\d+)+)$"
_MUSL_VERSION = rb"\0(1\.\d+\.\d+)\0"
# glibc's banner (what running libc.so.6 prints): "GNU C Library (Debian GLIBC 2.31-13)
# stable release version 2.31." ("development release" for snapshots).
_GLIBC_BANNER = "GNU C Library "
_GLIBC_RELEASE = r" release version (\d+\.\d+(?:\.\d+)?)"
_GLIBC_FILE = r"^libc-(\d+\.\d+(?:\.\d+)?)\.so$"  # glibc < 2.34 installs libc-2.31.so


def _rx(pattern: Any) -> Pattern[Any]:
    """``pattern`` compiled at first use (``re`` keeps it): a cache hit imports no ``re``."""
    import re

    return re.compile(pattern)


def __getattr__(name: str) -> Any:
    """``PROVIDERS`` (the compiled pattern) stays importable, compiled when first asked for."""
    if name == "PROVIDERS":
        return _rx(PROVIDERS_PATTERN)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def standard_dirs(architecture: str) -> List[str]:
    """The directories the loader searches without a cache, plus the usual others."""
    triplet = _TRIPLETS.get(architecture)
    dirs = [f"/lib/{triplet}", f"/usr/lib/{triplet}"] if triplet else []
    return [*dirs, "/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib"]


def _is_dir(tree: Tree, path: str) -> bool:
    node = tree.lookup(path)
    return node is not None and node.kind == _DIR


def _is_file(tree: Tree, path: str) -> bool:
    node = tree.lookup(path)
    return node is not None and node.kind == _FILE


def _read_text(tree: Tree, path: str) -> Optional[str]:
    node = tree.lookup(path)
    if node is None or node.kind != _FILE or node.size > MAX_CONF_BYTES:
        return None
    return tree.read(path).decode("utf-8", "replace")


class _Elves:
    """The ELF facts of the image's files, each file read once per inspection (libc.so.6
    serves the architecture, the C library and the version definitions)."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.read: Dict[str, Any] = {}  # path -> ElfInfo or the HpcrunError it gave

    def __call__(self, path: str) -> ElfInfo:
        hit = self.read.get(path)
        if hit is None:
            from hpcrun.elf.reader import read_elf

            try:
                with self.tree.open(path) as stream:
                    hit = read_elf(stream, path)
            except HpcrunError as error:
                hit = error
            self.read[path] = hit
        if isinstance(hit, HpcrunError):
            raise hit
        return hit


def _version_key(text: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in _rx(r"\d+").findall(text))


class _Finder:
    """Library lookup inside the image: the ld.so.cache first, then the library dirs."""

    def __init__(self, tree: Tree, cache: Sequence[Tuple[str, str]], dirs: Sequence[str]):
        self.tree = tree
        self.cache: Dict[str, str] = {}
        for soname, path in cache:
            self.cache.setdefault(soname, path)
        self.dirs = list(dirs)

    def find(self, soname: str) -> str:
        path = self.cache.get(soname)
        if path and _is_file(self.tree, path):
            return path
        for directory in self.dirs:
            candidate = posixpath.join(directory, soname)
            if _is_file(self.tree, candidate):
                return candidate
        return ""


def _scan_dirs(tree: Tree, dirs: Sequence[str]) -> List[Tuple[str, str]]:
    """(file name, path) of every library-named file in ``dirs`` (first directory wins)."""
    seen: Dict[str, str] = {}
    for directory in dirs:
        if not _is_dir(tree, directory):
            continue
        for name in tree.listdir(directory):
            if name not in seen and _rx(_LIBRARY_NAME).match(name):
                path = posixpath.join(directory, name)
                if _is_file(tree, path):
                    seen[name] = path
    return list(seen.items())


def _architecture(tree: Tree, elf: _Elves, finder: _Finder, warnings: List[str]) -> str:
    for path in ("/bin/sh", "/usr/bin/env", finder.find("libc.so.6")):
        if not path or not _is_file(tree, path):
            continue
        try:
            info = elf(path)
        except HpcrunError:
            continue
        if info.architecture:
            return info.architecture
    warnings.append("cannot tell the image's architecture (no ELF /bin/sh or libc)")
    return ""


def _libc(tree: Tree, elf: _Elves, finder: _Finder, warnings: List[str]) -> Libc:
    path = finder.find("libc.so.6")
    if path:
        try:
            info = elf(path)
        except HpcrunError as error:
            warnings.append(f"libc: {error.message}")
            return Libc("glibc", "", path)
        versions = [m.group(1) for m in map(_rx(_GLIBC_VERSION).match, info.version_defs) if m]
        newest = max(versions, key=_version_key) if versions else ""
        release = _glibc_release(tree, path)
        return Libc("glibc", release or newest, path, newest)
    for directory in ("/lib", "/usr/lib"):
        if not _is_dir(tree, directory):
            continue
        for name in tree.listdir(directory):
            if _rx(r"^ld-musl-[\w-]+\.so\.1$").match(name):
                musl = posixpath.join(directory, name)
                return Libc("musl", _musl_version(tree, musl), musl)
    return Libc()


def _glibc_release(tree: Tree, path: str) -> str:
    """glibc's release as the library states it: the ``libc-X.Y.so`` file the link
    ``libc.so.6`` points to (glibc < 2.34; costs no read), else its banner in
    ``.rodata``.  "" when neither is there (then the caller falls back to the newest
    symbol version)."""
    from hpcrun.elf.reader import find_strings

    match = _rx(_GLIBC_FILE).match(posixpath.basename(tree.realpath(path)))
    if match:
        return match.group(1)
    try:
        with tree.open(path) as stream:
            for banner in find_strings(stream, [_GLIBC_BANNER], path):
                found = _rx(_GLIBC_RELEASE).search(banner)
                if found:
                    return found.group(1)
    except HpcrunError:
        pass
    return ""


def _musl_version(tree: Tree, path: str) -> str:
    from hpcrun.elf.reader import iter_rodata

    try:
        with tree.open(path) as stream:
            for _offset, chunk in iter_rodata(stream, path):
                match = _rx(_MUSL_VERSION).search(chunk)
                if match:
                    return match.group(1).decode()
    except HpcrunError:
        pass
    return ""


def _cuda_runtime(
    tree: Tree, libraries: Sequence[Tuple[str, str]], environment: Sequence[Tuple[str, str]]
) -> str:
    paths = [p for s, p in libraries if s.startswith("libcudart.so")]
    for extra in ("/usr/local/cuda/lib64", "/usr/local/cuda/lib"):
        if _is_dir(tree, extra):
            paths += [
                posixpath.join(extra, n)
                for n in tree.listdir(extra)
                if n.startswith("libcudart.so.")
            ]
    best = ""
    for path in paths:
        name = posixpath.basename(tree.realpath(path))
        match = _rx(r"libcudart\.so\.(\d+)(?:\.(\d+))?").search(name)
        if match:
            found = match.group(1) + ("." + match.group(2) if match.group(2) else "")
            if len(found) > len(best):
                best = found
    env = dict(environment).get("CUDA_VERSION", "")
    env_match = _rx(r"^(\d+)\.(\d+)").match(env)
    if env_match and (not best or "." not in best) and (not best or env_match.group(1) == best):
        return f"{env_match.group(1)}.{env_match.group(2)}"
    return best


def _rocm(tree: Tree, libraries: Sequence[Tuple[str, str]]) -> str:
    versions = []
    if _is_dir(tree, "/opt"):
        for name in tree.listdir("/opt"):
            match = _rx(r"^rocm-(\d+(?:\.\d+)*)$").match(name)
            if match:
                versions.append(match.group(1))
    if versions:
        return max(versions, key=_version_key)
    text = _read_text(tree, "/opt/rocm/.info/version")
    if text and _rx(r"^\d+(\.\d+)*").match(text.strip()):
        return _rx(r"^\d+(\.\d+)*").match(text.strip()).group(0)  # type: ignore[union-attr]
    if _is_dir(tree, "/opt/rocm") or any(s.startswith("libamdhip64.so") for s, _ in libraries):
        return "present"
    return ""


def _mpi_libraries(
    tree: Tree, elf: _Elves, candidates: Sequence[Tuple[str, str]], warnings: List[str]
) -> Tuple[MpiLibrary, ...]:
    from hpcrun.elf.mpi import classify_mpi, mpi_name

    found: List[MpiLibrary] = []
    seen = set()
    names = {s for s, _ in candidates}
    for soname, path in candidates:
        if mpi_name(soname) is None or not _is_file(tree, path):
            continue
        real = tree.realpath(path)
        if (soname, real) in seen:
            continue
        seen.add((soname, real))
        try:
            info = elf(path)
            if info.soname and info.soname != soname and info.soname in names:
                continue  # a file name (libmpich.so.12.2.2) of a library listed by soname
            lib = classify_mpi(soname, path, info, lambda p=path: tree.open(p), real)  # type: ignore[misc]
        except HpcrunError as error:
            warnings.append(f"MPI library {path}: {error.message}")
            continue
        if lib is not None:
            found.append(lib)
    return tuple(found)


def _version_defs(
    tree: Tree, elf: _Elves, libraries: Sequence[Tuple[str, str]], warnings: List[str]
) -> Tuple[VersionDefs, ...]:
    out: List[VersionDefs] = []
    seen = set()
    for soname, path in libraries:
        if soname in seen or not _rx(PROVIDERS_PATTERN).match(soname) or not _is_file(tree, path):
            continue
        seen.add(soname)
        try:
            info = elf(path)
        except HpcrunError as error:
            warnings.append(f"{path}: {error.message}")
            continue
        out.append(VersionDefs(soname, path, info.version_defs))
    return tuple(out)


def inspect_tree(
    tree: Tree,
    source: str,
    kind: str,
    architecture: str = "",
    environment: Sequence[Tuple[str, str]] = (),
    labels: Sequence[Tuple[str, str]] = (),
    app: Optional[Sequence[str]] = None,
    warnings: Sequence[str] = (),
) -> ImageFacts:
    """The facts of one image file tree (what :func:`inspect_image` computes once opened).

    Library problems (a corrupt library, an unreadable cache) become warnings: facts are
    gathered as far as they go.
    """
    from hpcrun.elf.ldcache import cache_for_architecture, parse_ld_cache
    from hpcrun.elf.ldconf import read_ld_so_conf, tree_glob
    from hpcrun.image.app import analyse_app

    notes: List[str] = list(warnings)
    entries: List[Tuple[str, int, str]] = []
    has_cache = _is_file(tree, LD_CACHE)
    if has_cache:
        node = tree.lookup(LD_CACHE)
        if node is not None and node.size <= MAX_CACHE_BYTES:
            try:
                entries = parse_ld_cache(tree.read(LD_CACHE), LD_CACHE)
            except HpcrunError as error:
                notes.append(f"{error.message}; falling back to a directory scan")
                has_cache = False
    conf_dirs = read_ld_so_conf(
        lambda p: _read_text(tree, p),
        tree_glob(tree.listdir, lambda p: _is_dir(tree, p)),
        LD_CONF,
    )
    first = _Finder(tree, [(s, p) for s, _f, p in entries], conf_dirs + standard_dirs(""))
    elf = _Elves(tree)
    arch = architecture or _architecture(tree, elf, first, notes)
    ld_cache = cache_for_architecture(entries, arch) if arch else [(s, p) for s, _f, p in entries]
    library_dirs: List[str] = []
    for directory in [
        *conf_dirs,
        *(posixpath.dirname(p) for _s, p in ld_cache),
        *standard_dirs(arch),
    ]:
        if directory not in library_dirs and _is_dir(tree, directory):
            library_dirs.append(directory)
    env_dirs = [
        d
        for d in dict(environment).get("LD_LIBRARY_PATH", "").split(":")
        if d.startswith("/") and _is_dir(tree, d)
    ]
    libraries: List[Tuple[str, str]] = list(ld_cache)
    if not has_cache:
        libraries = _scan_dirs(tree, library_dirs)
    finder = _Finder(tree, libraries, library_dirs)
    libc = _libc(tree, elf, finder, notes)
    if not has_cache and libc.kind == "glibc":
        notes.append(
            f"the image has no usable {LD_CACHE}: libraries were found by scanning "
            "the standard directories (run ldconfig when building the image)"
        )
    mpi_candidates = _scan_dirs(tree, env_dirs) + libraries
    return ImageFacts(
        source=source,
        kind=kind,
        architecture=arch,
        libc=libc,
        library_dirs=tuple(library_dirs),
        ld_cache=tuple(ld_cache),
        mpi=_mpi_libraries(tree, elf, mpi_candidates, notes),
        version_defs=_version_defs(tree, elf, libraries, notes),
        cuda_runtime=_cuda_runtime(tree, libraries, environment),
        rocm=_rocm(tree, libraries),
        environment=tuple(environment),
        labels=tuple(labels),
        app=analyse_app(tree, app, environment) if app else None,
        warnings=tuple(notes),
    )


def cache_key(identity: str, app: Optional[Sequence[str]], given: str = "") -> str:
    """The facts-cache key: image identity (what the facts were computed from) + the image
    as the user named it (facts and messages name it so: another name is another entry) +
    app command + hpcrun and facts versions."""
    from hpcrun.image.cache import sha256_hex

    # NUL cannot occur in any part (argv, paths), so the joined fields stay apart.
    raw = "\0".join([str(FACTS_VERSION), __version__, records.layout(RECORDS), identity,
                      given, *(app or ())])
    return "facts-" + sha256_hex(raw.encode("utf-8", "surrogatepass"))


def _facts_cache() -> Any:
    try:
        from hpcrun.image.cache import FactsCache
    except ImportError:
        return None
    try:
        return FactsCache()
    except (HpcrunError, OSError, TypeError):
        return None


def _fresh_entry(cache: Any, key: str, kind: str, path: str) -> Optional[Dict[str, Any]]:
    """The cache entry under ``key``, or None (absent, unreadable, or a changed sandbox)."""
    from hpcrun.image.open import dependencies_unchanged

    try:
        entry = cache.get(key)
    except (HpcrunError, OSError, ValueError):
        return None
    if not isinstance(entry, dict):
        return None
    deps = entry.get("dependencies") or []
    fresh = kind != "sandbox" or (isinstance(deps, list) and dependencies_unchanged(path, deps))
    return entry if fresh else None


def facts_text(facts: ImageFacts) -> str:
    """``hpcrun inspect --json``'s output for ``facts``: facts_to_json, indented."""
    import json

    from hpcrun.image.serialize import facts_to_json

    return json.dumps(facts_to_json(facts), indent=2) + "\n"


def _inspect(image: str, app: Optional[Sequence[str]], use_cache: bool, want_text: bool
             ) -> Tuple[Optional[ImageFacts], str]:
    """(facts, text) for :func:`inspect_image` and :func:`inspect_image_text`.

    With ``want_text`` a cached text is returned as (None, text): for a file image the key
    (its identity) is all that is checked, so neither JSON nor the facts are read; a
    sandbox's entry is checked first (the files it was read from are unchanged).  The text
    is stored the first time it is asked for.
    """
    from hpcrun.image.open import image_identity, open_image

    cache = _facts_cache() if use_cache else None
    if cache is not None:
        # The key needs only the identity (a stat, and for a SIF its header): a hit never
        # opens the file system, nor imports the image and ELF readers.
        kind, identity = image_identity(image)
        key = cache_key(identity, app, image)
        text = cache.get_text(key) if want_text else None
        # A sandbox's text holds only while the files its facts came from are unchanged.
        if text is not None and (kind != "sandbox" or _fresh_entry(cache, key, kind, image)):
            return None, text
        entry = _fresh_entry(cache, key, kind, image)
        facts = records.decode_as(entry.get("record"), RECORDS, ImageFacts) if entry else None
        if facts is not None:
            if not want_text:
                return facts, ""
            text = facts_text(facts)
            _store(cache.put_text, key, text)
            return facts, text
    opened = open_image(image)
    facts = inspect_tree(
        opened.tree,
        source=opened.source,
        kind=opened.kind,
        architecture=opened.architecture,
        environment=opened.environment,
        labels=opened.labels,
        app=app,
        warnings=opened.warnings,
    )
    text = facts_text(facts) if want_text else ""
    if cache is not None:
        key = cache_key(opened.identity, app, image)
        _store(cache.put, key, {
            "record": records.encode(facts),
            "dependencies": [list(d) for d in opened.dependencies()],
        })
        if text:
            _store(cache.put_text, key, text)
    return facts, text


def _store(put: Callable[[str, Any], None], key: str, value: Any) -> None:
    try:
        put(key, value)
    except (HpcrunError, OSError, ValueError, TypeError):
        pass


def inspect_image(
    image: str, app: Optional[Sequence[str]] = None, use_cache: bool = True
) -> ImageFacts:
    """Open ``image`` and return its :class:`ImageFacts` (cached by image identity).

    ``app`` is the command to analyse (``AppFacts``).  Raises the ImageError family when
    the image cannot be opened; everything found inside becomes facts or warnings.  For
    sandbox directories the cache entry records the mtimes of what was read and is used
    only while they are unchanged.
    """
    facts, _ = _inspect(image, app, use_cache, want_text=False)
    assert facts is not None
    return facts


def inspect_image_text(
    image: str, app: Optional[Sequence[str]] = None, use_cache: bool = True
) -> str:
    """:func:`inspect_image` as ``hpcrun inspect --json`` prints it (:func:`facts_text`).

    The text is kept in the cache entry beside the facts, so a warm call neither decodes
    the facts nor encodes them again.
    """
    return _inspect(image, app, use_cache, want_text=True)[1]
