"""``which``: find a program on a search path, as :func:`shutil.which` does on POSIX.

Our own because ``import shutil`` also loads ``bz2``, ``lzma`` and ``fnmatch`` (a few
milliseconds), and the launch path only needs this one function of it.
"""

from __future__ import annotations

import os

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional


def _executable(path: str) -> bool:
    return os.path.exists(path) and os.access(path, os.F_OK | os.X_OK) and \
        not os.path.isdir(path)


def which(program: str, path: Optional[str] = None) -> Optional[str]:
    """The first executable ``program`` on ``path`` (``$PATH`` when None), or None.

    Same answers as ``shutil.which(program, path=path)`` on POSIX: a name with a directory
    part is checked as it is; an empty search path finds nothing; an empty entry of the
    search path is the current directory; directories are never programs.
    """
    if os.path.dirname(program):
        return program if _executable(program) else None
    if path is None:
        path = os.environ.get("PATH", None)
        if path is None:
            try:
                path = os.confstr("CS_PATH")
            except (AttributeError, ValueError):
                path = os.defpath
    if not path:
        return None
    seen = set()
    for directory in path.split(os.pathsep):
        if directory in seen:
            continue
        seen.add(directory)
        candidate = os.path.join(directory, program)
        if _executable(candidate):
            return candidate
    return None
