"""Charliecloud: hpcrun's container layout expressed through the image's empty ``/mnt/N``.

ch-run (0.31) cannot create bind destinations and mounts the image read-only, and hpcrun
never modifies the user's image.  Images made by Charliecloud's tools carry empty
directories ``/mnt/0`` .. ``/mnt/9`` for binds.  So the binds under hpcrun's private prefix
(``/.hpcrun/lib/libmpich.so.12``, ``/.hpcrun/lib/ucx/...``, alias names, ``/.hpcrun/gpu``)
become:

* a *stage*: a host directory that reproduces the layout under the prefix as symlinks
  (``lib/libmpich.so.12 -> /mnt/1/libmpich.so.12.2.2``), bound at the first free slot
  (``/mnt/0``);
* each host source directory of those files bound read-only-by-intent at the next free
  slots (``/usr/lib/x86_64-linux-gnu -> /mnt/1``; a directory inside an already bound one,
  like ``.../ucx``, reuses its slot).

Only the stage's entries are on ``LD_LIBRARY_PATH`` (the prefix maps to the stage's mount
point, :meth:`StageLayout.container_path`); the host directories bound whole are reached
only through the symlinks, so nothing else of the host shadows the image's libraries.  The
loader's ``$ORIGIN`` is the directory of the path it opened -- the symlink's directory in
the stage -- so RUNPATH layouts (``$ORIGIN/mpich``) reproduced under the prefix keep
working.

The stage lives in the user's cache: ``$HPCRUN_STAGE_DIR`` (override; on a multi-node
cluster it must be a directory every compute node sees, e.g. on a shared file system),
else ``$XDG_CACHE_HOME/hpcrun/stage``, else ``$HOME/.cache/hpcrun/stage``; one
subdirectory per mapping, named by its hash.  Everything here is pure: the caller
(``hpcrun.launch.stage``) creates the directory before the exec.
"""

from __future__ import annotations

import hashlib
import posixpath

from hpcrun.plan.model import ERROR, INFO, Bind, Diagnostic, Stage
from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Mapping, Optional, Sequence, Tuple

# Charliecloud's convention: ch-image / ch-convert create these, empty, in every image.
DEFAULT_SLOTS: Tuple[str, ...] = tuple(f"/mnt/{n}" for n in range(10))
STAGE_VARIABLE = "HPCRUN_STAGE_DIR"


def stage_root(environ: Mapping[str, str]) -> str:
    """Where stages live: ``$HPCRUN_STAGE_DIR``, ``$XDG_CACHE_HOME/hpcrun/stage`` or
    ``$HOME/.cache/hpcrun/stage`` ("" when none is set).  Relative values are ignored, as
    the XDG specification says."""
    for name, suffix in ((STAGE_VARIABLE, ""), ("XDG_CACHE_HOME", "/hpcrun/stage"),
                         ("HOME", "/.cache/hpcrun/stage")):
        value = environ.get(name, "")
        if value.startswith("/"):
            return posixpath.normpath(value) + suffix
    return ""


def stage_name(links: Sequence[Tuple[str, str]]) -> str:
    """The stage directory's name: a hash of the mapping, so identical jobs share it."""
    digest = hashlib.sha256()
    for relative, target in links:
        digest.update(relative.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(target.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()[:20]


@record
class StageLayout:
    """How a plan's binds become ch-run binds.

    ``mounts`` are the ``-b SRC:DST`` pairs of the stage (first) and the host directories;
    ``other`` the binds that keep their destinations (file systems, config files ...).
    ``stage`` is None when nothing goes under the prefix (or the layout failed: see the
    diagnostics).
    """

    prefix: str
    mount_point: str = ""
    stage: Optional[Stage] = None
    mounts: Tuple[Tuple[str, str], ...] = ()
    other: Tuple[Bind, ...] = ()
    diagnostics: Tuple[Diagnostic, ...] = ()

    def container_path(self, path: str) -> str:
        """``path`` as the container sees it: the prefix replaced by the stage's mount
        point (``/.hpcrun/lib`` -> ``/mnt/0/lib``); other paths unchanged."""
        if self.stage is None or not self.mount_point:
            return path
        if path == self.prefix:
            return self.mount_point
        if path.startswith(self.prefix + "/"):
            return self.mount_point + path[len(self.prefix):]
        return path

    def map_value(self, value: str) -> str:
        """A ``:``-separated variable value (LD_LIBRARY_PATH, LD_PRELOAD, FI_PROVIDER_PATH)
        with each entry passed through :meth:`container_path`."""
        if self.stage is None:
            return value
        return ":".join(self.container_path(entry) for entry in value.split(":"))


def _under(path: str, directory: str) -> bool:
    return directory == "/" or path == directory or path.startswith(directory + "/")


def _covering_dirs(directories: Sequence[str]) -> List[str]:
    """The directories not inside another one of the list, in order of first appearance."""
    unique = list(dict.fromkeys(directories))
    return [d for d in unique if not any(o != d and _under(d, o) for o in unique)]


def _drop_nested(staged: Sequence[Bind]) -> Tuple[List[Bind], List[Tuple[Bind, Bind]]]:
    """Binds whose destination lies inside another staged bind's destination: dropped when
    they name the same host file through that directory (redundant), else reported as
    (inner, outer) pairs -- a symlinked directory of the stage cannot hold other files."""
    kept: List[Bind] = []
    conflicts: List[Tuple[Bind, Bind]] = []
    for bind in staged:
        outer = next((o for o in staged if o is not bind
                      and bind.destination.startswith(o.destination + "/")), None)
        if outer is None:
            kept.append(bind)
        elif bind.source != outer.source.rstrip("/") + bind.destination[len(outer.destination):]:
            conflicts.append((bind, outer))
    return kept, conflicts


def layout(binds: Sequence[Bind], prefix: str, slots: Optional[Sequence[str]],
           environ: Mapping[str, str], image: str = "") -> StageLayout:
    """Split the binds into the stage mapping and the binds that stay as they are.

    ``prefix`` is hpcrun's private container prefix; ``slots`` the image's empty ``/mnt/N``
    directories (None: unknown, Charliecloud's ``/mnt/0`` .. ``/mnt/9`` are assumed);
    ``environ`` locates the stage (:func:`stage_root`); ``image`` names the image in
    messages.  Pure.
    """
    prefix = posixpath.normpath(prefix or "/.hpcrun")
    staged = [b for b in binds if b.destination.startswith(prefix + "/")]
    other = tuple(b for b in binds if not b.destination.startswith(prefix + "/"))
    if not staged:
        return StageLayout(prefix, other=tuple(binds))
    staged, nested = _drop_nested(staged)
    if nested:
        inner, outer = nested[0]
        return StageLayout(prefix, other=tuple(binds), diagnostics=(Diagnostic(
            ERROR, "ch-run-nested-binds", f"{inner.source} is bound to {inner.destination}, "
            f"inside the directory {outer.source} bound to {outer.destination}: hpcrun's "
            "ch-run stage cannot nest a different file inside a bound directory",
            "bind the file elsewhere under the prefix (another destination name)",
            inner.reason.split(":")[0]),))
    image_name = image or "the image"
    known = slots is not None
    free = [s for s in (DEFAULT_SLOTS if slots is None else slots)
            if not any(_under(b.destination, s) or _under(s, b.destination) for b in other)]
    sources = [posixpath.normpath(b.source) for b in staged]
    roots = _covering_dirs([posixpath.dirname(s) for s in sources])
    destinations = ", ".join(b.destination for b in staged[:3]) + (
        f" and {len(staged) - 3} more" if len(staged) > 3 else "")
    if not free:
        return StageLayout(prefix, other=tuple(binds), diagnostics=(Diagnostic(
            ERROR, "ch-run-no-mount-points",
            f"{image_name} has no empty /mnt/0 ... /mnt/9 directories: ch-run cannot create "
            f"bind destinations, so the host libraries ({destinations}) cannot be made "
            "visible", "build the image with Charliecloud's tools (ch-image, ch-convert "
            "create empty /mnt/0 ... /mnt/9) or add empty directories mnt/0 ... mnt/9 to "
            "it; or use Apptainer/Singularity", "runtime"),))
    if len(roots) + 1 > len(free):
        where = "the image's" if known else "Charliecloud's usual"
        return StageLayout(prefix, other=tuple(binds), diagnostics=(Diagnostic(
            ERROR, "ch-run-too-many-host-dirs",
            f"the host libraries come from {len(roots)} directories ({', '.join(roots)}); "
            f"ch-run needs one empty mount point for each plus one for hpcrun's stage, and "
            f"{where} free ones are only {', '.join(free)}",
            "gather the host libraries in fewer directories (a site directory of symlinks "
            "named in the profile), or build the image with more empty /mnt/N directories",
            "runtime"),))
    root = stage_root(environ)
    if not root:
        return StageLayout(prefix, other=tuple(binds), diagnostics=(Diagnostic(
            ERROR, "ch-run-no-stage-dir", "nowhere to put hpcrun's ch-run stage directory: "
            f"none of {STAGE_VARIABLE}, XDG_CACHE_HOME, HOME is set to an absolute path",
            f"set {STAGE_VARIABLE} to a directory all compute nodes see", "runtime"),))
    mount_point = free[0]
    slot_of: Dict[str, str] = dict(zip(roots, free[1:]))
    links: List[Tuple[str, str]] = []
    for bind, source in zip(staged, sources):
        host_dir = next(r for r in roots if _under(posixpath.dirname(source), r))
        inside = source[len(host_dir):].lstrip("/") if host_dir != "/" else source.lstrip("/")
        links.append((bind.destination[len(prefix) + 1:], slot_of[host_dir] + "/" + inside))
    links_t = tuple(links)
    directory = f"{root}/{stage_name(links_t)}"
    mounts = ((directory, mount_point), *((r, slot_of[r]) for r in roots))
    note = Diagnostic(INFO, "ch-run-stage", f"ch-run: the {len(staged)} binds under {prefix} "
                      f"are symlinks in {directory} (created before the launch) bound at "
                      f"{mount_point}; {prefix} is {mount_point} in the container; the host "
                      "directories they point into: " + ", ".join(
                          f"{r} at {slot_of[r]}" for r in roots), source="runtime")
    return StageLayout(prefix, mount_point, Stage(directory, links_t), tuple(mounts), other,
                       (note,))
