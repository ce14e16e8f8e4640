"""Find site profiles by name.

A site name ``NAME`` is the file ``NAME.toml`` in the first directory of the search path
that has one: ``$HPCRUN_SITE_PATH`` (colon-separated), the user's
``$XDG_CONFIG_HOME/hpcrun/sites`` (``~/.config/hpcrun/sites``), ``/etc/hpcrun/sites``, then
the profiles bundled with hpcrun.  An argument ending in ``.toml`` or containing ``/`` is a
file path instead.  ``$HPCRUN_SITE`` names the default site.  Launch path: stdlib only.
"""

from __future__ import annotations

import os
from pathlib import Path

from hpcrun.errors import ConfigError, UsageError
from hpcrun.profiles.load import load_profile
from hpcrun.profiles.model import Profile
from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Mapping, Optional, Tuple

SITE_VAR = "HPCRUN_SITE"
SITE_PATH_VAR = "HPCRUN_SITE_PATH"
SYSTEM_DIR = Path("/etc/hpcrun/sites")
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "site-profiles"


@record
class SiteEntry:
    """One profile found on the search path; ``shadowed`` when an earlier one has its name."""

    name: str
    description: str
    path: Path
    shadowed: bool


def bundled_dir() -> Path:
    """The directory of the profiles shipped with hpcrun (inside the package)."""
    return BUNDLED_DIR


def search_dirs(environ: Mapping[str, str]) -> List[Tuple[Path, str]]:
    """The directories searched for ``NAME.toml``, in order, each with a label saying why.

    Directories that do not exist are included (error messages list where hpcrun looked).
    """
    dirs: List[Tuple[Path, str]] = []
    for entry in environ.get(SITE_PATH_VAR, "").split(":"):
        if entry:
            dirs.append((Path(entry).expanduser(), f"${SITE_PATH_VAR}"))
    config_home = environ.get("XDG_CONFIG_HOME", "")
    if config_home:
        dirs.append((Path(config_home) / "hpcrun" / "sites", "user ($XDG_CONFIG_HOME)"))
    elif environ.get("HOME"):
        dirs.append((Path(environ["HOME"]) / ".config" / "hpcrun" / "sites", "user"))
    dirs.append((SYSTEM_DIR, "system"))
    dirs.append((bundled_dir(), "bundled"))
    return dirs


def is_path_argument(name_or_path: str) -> bool:
    """True when ``--site`` names a file rather than a site (``.toml`` suffix or a ``/``)."""
    return name_or_path.endswith(".toml") or "/" in name_or_path


def _candidates(environ: Mapping[str, str]) -> List[Tuple[str, Path]]:
    found: List[Tuple[str, Path]] = []
    for directory, _label in search_dirs(environ):
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for entry in names:
            if entry.endswith(".toml") and not entry.startswith("."):
                path = directory / entry
                if path.is_file():
                    found.append((entry[: -len(".toml")], path))
    return found


def find_profile(name_or_path: str, environ: Mapping[str, str]) -> Path:
    """The profile file for a site name or path; the first directory that has it wins.

    Raises ConfigError for an unknown name (with close names and the directories searched)
    or a path that does not exist.
    """
    if not name_or_path:
        raise UsageError("no site given", "use --site NAME or set $HPCRUN_SITE")
    if is_path_argument(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"site profile file {name_or_path} does not exist",
                              "give an existing .toml file, or a site name "
                              "(see `hpcrun site list`)")
        return path
    for directory, _label in search_dirs(environ):
        path = directory / f"{name_or_path}.toml"
        if path.is_file():
            return path
    import difflib

    known = sorted({name for name, _ in _candidates(environ)})
    close = difflib.get_close_matches(name_or_path, known, n=3, cutoff=0.5)
    looked = ", ".join(str(d) for d, _ in search_dirs(environ))
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    hint += f"looked in: {looked}; known sites: {', '.join(known) or 'none'}"
    raise ConfigError(f"unknown site '{name_or_path}'", hint)


def load_site(name_or_path: str, environ: Optional[Mapping[str, str]] = None) -> Profile:
    """Find and load a site profile (``Profile.source`` is the file it came from)."""
    env = os.environ if environ is None else environ
    return load_profile(find_profile(name_or_path, env))


def default_site(environ: Mapping[str, str]) -> str:
    """The site to use when ``--site`` is not given: ``$HPCRUN_SITE``.

    Raises UsageError when it is unset or empty.
    """
    site = environ.get(SITE_VAR, "").strip()
    if not site:
        raise UsageError("no site profile selected",
                         f"give --site NAME (see `hpcrun site list`) or set {SITE_VAR}=NAME; "
                         "`hpcrun site detect` writes a profile for this machine")
    return site


def list_sites(environ: Mapping[str, str]) -> List[SiteEntry]:
    """Every profile on the search path in search order; later ones with a seen name are
    marked shadowed.  A profile that fails to load shows its error as the description.
    """
    seen = set()
    entries: List[SiteEntry] = []
    for name, path in _candidates(environ):
        try:
            description = load_profile(path).description
        except ConfigError as error:
            description = f"(invalid: {error.message})"
        entries.append(SiteEntry(name, description, path, name in seen))
        seen.add(name)
    return entries
