"""A snapshot of the host paths a profile names: which exist, which are directories, what
globs expand to, where the MPI sonames are.

The one place the plan stage reads the host file system, so that :func:`build_plan` stays
pure.  Every probe goes through ``root`` (``/`` on a real node, a fake tree in tests).
"""

from __future__ import annotations

import glob
import os

from hpcrun.profiles.model import Profile
from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

GLOB_CHARS = "*?["


@record
class HostPaths:
    """What the host has of the paths a profile names (host paths, not prefixed by root)."""

    root: str = "/"
    existing: Tuple[str, ...] = ()
    directories: Tuple[str, ...] = ()
    globs: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()  # pattern -> sorted matches
    sonames: Tuple[Tuple[str, str], ...] = ()  # soname -> host path in mpi.library_dirs

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists on the host."""
        return path in self.existing

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` is a directory on the host."""
        return path in self.directories

    def expand(self, pattern: str) -> Optional[Tuple[str, ...]]:
        """The matches of a glob pattern, or None if it was not surveyed."""
        for key, matches in self.globs:
            if key == pattern:
                return matches
        return None

    def soname(self, name: str) -> str:
        """Host path of an MPI soname found in ``mpi.library_dirs`` ("" if not found)."""
        for key, path in self.sonames:
            if key == name:
                return path
        return ""


def _under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root not in ("", "/") else path


def profile_paths(profile: Profile) -> List[str]:
    """Every host path a profile names (binds, MPI files and dirs, libraries, preloads)."""
    paths: List[str] = [b.source for b in profile.binds]
    if profile.mpi is not None:
        paths += list(profile.mpi.libraries) + list(profile.mpi.library_dirs)
    paths += [lib.path for lib in profile.libraries]
    paths += list(profile.container.preload) + list(profile.gpu.libraries)
    return paths


def survey_host_paths(profile: Profile, root: str = "/") -> HostPaths:
    """Look up every host path of ``profile`` under ``root`` (existence, kind, globs)."""
    existing: List[str] = []
    directories: List[str] = []
    globs: Dict[str, Tuple[str, ...]] = {}
    for path in profile_paths(profile):
        if any(c in path for c in GLOB_CHARS):
            found = sorted(glob.glob(_under(root, path)))
            prefix = len(root.rstrip("/")) if root not in ("", "/") else 0
            globs[path] = tuple(p[prefix:] or "/" for p in found)
            existing.extend(globs[path])
            directories.extend(m for m, real in zip(globs[path], found) if os.path.isdir(real))
            continue
        real = _under(root, path)
        if os.path.exists(real):
            existing.append(path)
            if os.path.isdir(real):
                directories.append(path)
    sonames: Dict[str, str] = {}
    if profile.mpi is not None:
        wanted = list(profile.mpi.sonames) + list(profile.mpi.fortran) + list(profile.mpi.cxx)
        for name in wanted:
            for directory in profile.mpi.library_dirs:
                candidate = directory.rstrip("/") + "/" + name
                if os.path.exists(_under(root, candidate)):
                    sonames.setdefault(name, candidate)
                    break
    return HostPaths(root=root, existing=tuple(dict.fromkeys(existing)),
                     directories=tuple(dict.fromkeys(directories)),
                     globs=tuple(sorted(globs.items())), sonames=tuple(sorted(sonames.items())))
