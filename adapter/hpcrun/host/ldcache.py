"""The host's ``/etc/ld.so.cache``, read once for every stage that needs it."""

from __future__ import annotations

from pathlib import Path

from hpcrun.errors import ElfError

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Tuple


def read_ld_cache(root: Path, machine: str) -> List[Tuple[str, str]]:
    """(soname, path) of ``root``'s ld.so.cache for one architecture, first entry per soname
    (what ``ldconfig -p`` lists); [] when absent, unreadable or damaged: the cache is only a
    shortcut, so callers fall back to searching directories."""
    from hpcrun.elf.ldcache import cache_for_architecture, parse_ld_cache

    path = root / "etc" / "ld.so.cache"
    try:
        data = path.read_bytes()
        entries = parse_ld_cache(data, str(path))
    except (OSError, ElfError):
        return []
    return cache_for_architecture(entries, machine)
