"""``/etc/ld.so.conf``: the directories ldconfig indexes, with ``include`` globs.

Written over two callbacks (read a file, expand a glob) so that the same code reads the
host's configuration and the one inside an image tree without touching the host.
"""

from __future__ import annotations

import fnmatch
import posixpath

from hpcrun.errors import HpcrunError

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, List, Optional

MAX_INCLUDE_DEPTH = 16


def read_ld_so_conf(
    read_text: Callable[[str], Optional[str]],
    glob: Callable[[str], List[str]],
    path: str = "/etc/ld.so.conf",
) -> List[str]:
    """Library directories named by ``path`` and the files it includes, in order.

    ``read_text(path)`` returns a file's text or None when it is absent; ``glob(pattern)``
    returns the paths matching an absolute pattern.  Comments (``#``), ``hwcap`` lines and
    blank lines are ignored; ``include`` patterns relative to nothing are taken relative to
    the including file's directory (as ldconfig does); directories may be separated by
    spaces, commas, colons or tabs.  Duplicates are dropped and include loops stop.
    """
    dirs: List[str] = []
    _read(read_text, glob, path, dirs, set(), 0)
    return dirs


def _read(
    read_text: Callable[[str], Optional[str]],
    glob: Callable[[str], List[str]],
    path: str,
    dirs: List[str],
    seen: set,
    depth: int,
) -> None:
    if path in seen or depth > MAX_INCLUDE_DEPTH:
        return
    seen.add(path)
    text = read_text(path)
    if text is None:
        return
    here = posixpath.dirname(path) or "/"
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] == "include" and len(words) > 1:
            for pattern in words[1:]:
                if not pattern.startswith("/"):
                    pattern = posixpath.join(here, pattern)
                for included in sorted(glob(pattern)):
                    _read(read_text, glob, included, dirs, seen, depth + 1)
            continue
        if words[0] == "hwcap":
            continue
        for word in line.replace(",", " ").replace(":", " ").split():
            directory = posixpath.normpath(word)
            if directory.startswith("/") and directory not in dirs:
                dirs.append(directory)


def tree_glob(
    listdir: Callable[[str], List[str]], is_dir: Callable[[str], bool]
) -> Callable[[str], List[str]]:
    """A glob over any tree given ``listdir`` and ``is_dir``: wildcards in any component.

    Used to expand ``include /etc/ld.so.conf.d/*.conf`` inside an image.  Missing
    directories give no matches.
    """

    def expand(pattern: str) -> List[str]:
        parts = [p for p in pattern.split("/") if p]
        current = ["/"]
        for i, part in enumerate(parts):
            nxt: List[str] = []
            for base in current:
                if any(c in part for c in "*?["):
                    try:
                        names = listdir(base)
                    except (HpcrunError, OSError):  # a missing or unreadable dir matches nothing
                        names = []
                    for name in names:
                        if fnmatch.fnmatchcase(name, part) and not name.startswith("."):
                            nxt.append(posixpath.join(base, name))
                else:
                    candidate = posixpath.join(base, part)
                    if i < len(parts) - 1 and not is_dir(candidate):
                        continue
                    nxt.append(candidate)
            current = nxt
        return sorted(current)

    return expand
