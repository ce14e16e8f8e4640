"""Which host libraries may enter a container, and where the host's loader looks for them.

Policy, decided once here:

* The glibc family never leaves the host: ``libc``, ``libm``, ``libpthread``, ``libdl``,
  ``librt``, ``libutil``, ``libresolv``, ``libanl``, ``libmvec``, ``libnsl``,
  ``libBrokenLocale``, ``libthread_db``, ``libc_malloc_debug``, ``libnss_*``, ``libmemusage``,
  ``libpcprofile``, ``libSegFault`` and the dynamic loader (``ld-linux*``, ``ld64.so*``,
  ``ld.so*``).  The container keeps its own; the host libraries' symbol-version needs
  on them are checked instead (hpcrun never replaces the container's glibc).
* ``libcrypt.so.1`` is NOT in that family: on current distributions it comes from libxcrypt,
  an ordinary library, and is bound like any other dependency.
* The compiler runtimes (``libstdc++``, ``libgcc_s``, ``libgfortran``, ``libquadmath``,
  ``libgomp``, ``libatomic``) are followed in the closure, but the container's own copy is
  used when the container has one and it defines every symbol version the host libraries
  need (else the verdict is an error); the host's copy is bound only when the container has
  none.

Search directories come from the host's ``/etc/ld.so.cache`` and ``/etc/ld.so.conf`` under
a root path, so tests run on fake host trees.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Pattern, Set, Tuple

_GLIBC_PATTERNS = (
    "libc.so.*", "libm.so.*", "libpthread.so.*", "libdl.so.*", "librt.so.*", "libutil.so.*",
    "libresolv.so.*", "libanl.so.*", "libmvec.so.*", "libnsl.so.1", "libBrokenLocale.so.*",
    "libthread_db.so.*", "libc_malloc_debug.so.*", "libnss_*.so.*", "libmemusage.so",
    "libpcprofile.so", "libSegFault.so", "ld-linux*.so*", "ld64.so*", "ld.so*",
    "ld-*.so",  # old glibc named the loader ld-2.17.so
)

_RUNTIME = r"^(libstdc\+\+|libgcc_s|libgfortran|libquadmath|libgomp|libatomic)\.so(\.\d+)*$"


# Compiled at first use, not at import: a launch that never asks pays nothing.
@functools.cache
def _glibc() -> Pattern[str]:
    import fnmatch

    return re.compile("|".join(fnmatch.translate(p) for p in _GLIBC_PATTERNS))


def is_glibc_family(name: str) -> bool:
    """Whether a library name (soname or path) belongs to glibc, which the container keeps."""
    return _glibc().match(name.rsplit("/", 1)[-1]) is not None


def is_compiler_runtime(name: str) -> bool:
    """Whether a library is a compiler runtime (libstdc++, libgcc_s, libgfortran ...)."""
    return re.match(_RUNTIME, name.rsplit("/", 1)[-1]) is not None


# Plugin directories a library finds beside itself: UCX's libucs opens its transport
# modules from ``ucx/`` next to its own file (found with dladdr); libfabric's providers sit
# in ``libfabric/`` next to libfabric.so, but libfabric looks there through a compiled-in
# absolute path, so a moved copy needs ``FI_PROVIDER_PATH``.  name -> (owner's file-name
# stem, variable that points the owner at the directory or "").  Open MPI's and PMIx's
# component directories are compiled-in absolute paths: they keep their host path.
PLUGIN_DIRS: Dict[str, Tuple[str, str]] = {
    "ucx": ("libucs.so", ""),
    "libfabric": ("libfabric.so", "FI_PROVIDER_PATH"),
    # Intel MPI's own libfabric keeps its providers in prov/ beside it (its mpivars points
    # FI_PROVIDER_PATH there); only *-fi.so files count, prov/ being a common name.
    "prov": ("libfabric.so", "FI_PROVIDER_PATH"),
}


def plugin_subdir(path: str) -> str:
    """``ucx`` / ``libfabric`` when ``path`` is a module inside such a plugin directory
    (not the owning library itself, which may live there too: Intel MPI's
    ``libfabric/libfabric.so.1``), else ""."""
    parent, name = path.rstrip("/").rsplit("/", 1) if "/" in path else ("", path)
    sub = parent.rsplit("/", 1)[-1]
    owner = PLUGIN_DIRS.get(sub)
    if owner is None or name.startswith(owner[0]):
        return ""
    if sub == "prov" and not name.endswith("-fi.so"):
        return ""
    return sub


# Multiarch triplets by ``uname -m`` (Debian/Ubuntu directory names).
TRIPLETS: Dict[str, str] = {
    "x86_64": "x86_64-linux-gnu",
    "aarch64": "aarch64-linux-gnu",
    "ppc64le": "powerpc64le-linux-gnu",
    "s390x": "s390x-linux-gnu",
    "i686": "i386-linux-gnu",
    "armv7l": "arm-linux-gnueabihf",
    "riscv64": "riscv64-linux-gnu",
}


def host_path(root: Path, path: str) -> Path:
    """The file system location of host path ``path`` when the host is rooted at ``root``."""
    return root / path.lstrip("/")


def default_dirs(root: Path, elf_class: int, architecture: str,
                 seen: Optional[Set[str]] = None) -> Tuple[str, ...]:
    """The loader's built-in directories for an object of this class and architecture.

    glibc's trusted directories are ``/lib64:/usr/lib64`` for 64-bit objects on x86_64,
    aarch64 and friends, ``/lib:/usr/lib`` for 32-bit; Debian-style builds use the
    multiarch directories instead.  Directories absent under ``root`` are left out.
    ``seen`` collects the host paths consulted (for the closure cache's validity check).
    """
    triplet = TRIPLETS.get(architecture, "")
    candidates: List[str] = []
    if triplet:
        candidates += [f"/lib/{triplet}", f"/usr/lib/{triplet}"]
    if elf_class == 64:
        candidates += ["/lib64", "/usr/lib64"]
    candidates += ["/lib", "/usr/lib"]
    if seen is not None:
        seen.update(candidates)
    return tuple(d for d in candidates if host_path(root, d).is_dir())


def lib_token(root: Path, elf_class: int, architecture: str,
              seen: Optional[Set[str]] = None) -> str:
    """What ``$LIB`` expands to: the multiarch ``lib/<triplet>`` on such hosts, else lib64/lib.

    ``seen`` collects the host paths consulted (for the closure cache's validity check).
    """
    triplet = TRIPLETS.get(architecture, "")
    if triplet and seen is not None:
        seen.add(f"/lib/{triplet}")
    if triplet and host_path(root, f"/lib/{triplet}").is_dir():
        return f"lib/{triplet}"
    return "lib64" if elf_class == 64 else "lib"


def ld_so_conf_dirs(root: Path, seen: Optional[Set[str]] = None) -> Tuple[str, ...]:
    """Directories of the host's ``/etc/ld.so.conf`` (with its ``include`` globs) under root.

    ``seen`` collects the host paths read, listed or tested (for the closure cache).
    """
    from hpcrun.elf.ldconf import read_ld_so_conf, tree_glob

    track: Set[str] = set() if seen is None else seen

    def read_text(path: str) -> Optional[str]:
        track.add(path)
        try:
            return host_path(root, path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def listdir(path: str) -> List[str]:
        track.add(path)
        return os.listdir(host_path(root, path))

    def is_dir(path: str) -> bool:
        track.add(path)
        return host_path(root, path).is_dir()

    return tuple(read_ld_so_conf(read_text, tree_glob(listdir, is_dir)))


def ld_cache(root: Path, architecture: str) -> Dict[str, str]:
    """The host's ``/etc/ld.so.cache`` under root as soname -> path for one architecture.

    An absent or unreadable cache is an empty mapping (a fake host tree may have none; the
    ld.so.conf directories and default directories are searched anyway).
    """
    from hpcrun.host.ldcache import read_ld_cache

    return dict(read_ld_cache(root, architecture))
