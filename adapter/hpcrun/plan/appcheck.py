"""Is a program that is missing from the image certainly missing at run time?

The inspector says "not found in the image" when the command's path does not exist in the
image file.  That is only a warning when something may still provide it at run time: a
bind of the plan or of the user (``APPTAINER_BIND`` ...), or a directory the runtime mounts
by itself (home, the working directory, ``/tmp``, ``/proc`` ...).  When none can, the
launch would certainly fail inside the container ("no such file"), so the warning becomes
an error before anything starts (``--force`` still launches).  Pure.
"""

from __future__ import annotations

import posixpath

from hpcrun.plan.model import ERROR, Diagnostic

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, List, Mapping, Optional, Sequence

    from hpcrun.image.facts import ImageFacts
    from hpcrun.plan.model import Bind

# Directories Apptainer, SingularityCE or Charliecloud may mount from the host by default
# or by a site's configuration ("bind path" in apptainer.conf commonly names these).
RUNTIME_MOUNTS = ("/home", "/tmp", "/var/tmp", "/proc", "/sys", "/dev", "/run", "/mnt",
                  "/media", "/scratch", "/srv", "/data", "/work", "/group", "/project",
                  "/apps", "/software", "/sw", "/cvmfs", "/gpfs", "/lustre")
# Variables through which a user adds binds of their own.
USER_BIND_VARIABLES = ("APPTAINER_BIND", "APPTAINER_BINDPATH", "SINGULARITY_BIND",
                       "SINGULARITY_BINDPATH")


def _under(path: str, directory: str) -> bool:
    directory = posixpath.normpath(directory) if directory else ""
    return bool(directory) and (path == directory or path.startswith(directory.rstrip("/")
                                                                     + "/"))


def user_bind_destinations(environ: Mapping[str, str]) -> List[str]:
    """Container paths the user's own bind variables name (``src[:dst[:opts]]``, commas)."""
    out: List[str] = []
    for name in USER_BIND_VARIABLES:
        for entry in environ.get(name, "").split(","):
            parts = entry.strip().split(":")
            if parts and parts[0]:
                out.append(parts[1] if len(parts) > 1 and parts[1] else parts[0])
    return out


def may_be_provided(path: str, binds: Iterable[Bind], environ: Mapping[str, str]) -> bool:
    """Whether something other than the image may put ``path`` in the container."""
    path = posixpath.normpath(path)
    places: List[str] = [*RUNTIME_MOUNTS, *user_bind_destinations(environ)]
    places += [b.destination for b in binds]
    for name in ("HOME", "PWD"):
        if environ.get(name, "").startswith("/"):
            places.append(environ[name])
    return any(_under(path, place) or _under(place, path) for place in places)


def certain_missing_app(command: Sequence[str], image: Optional[ImageFacts],
                        binds: Iterable[Bind], environ: Mapping[str, str]
                        ) -> Optional[Diagnostic]:
    """The error for a command whose program the image lacks and nothing can provide."""
    if not command or image is None or image.app is None or image.app.kind != "missing":
        return None
    program = command[0]
    if not program.startswith("/") or may_be_provided(program, binds, environ):
        return None  # on the image's PATH, or possibly bound at run time: a warning only
    return Diagnostic(
        ERROR, "app-missing",
        f"{program} is not in the image {image.source}, and no bind or runtime mount can "
        "provide it: the job would fail to start",
        "check the path (hpcrun inspect IMAGE --app CMD shows what the image has), or bind "
        "its directory (APPTAINER_BINDPATH)", source="app")
