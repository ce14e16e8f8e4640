"""Create the Charliecloud stage directory (:class:`~hpcrun.plan.model.Stage`) on the host.

The imperative half of :mod:`hpcrun.render.chstage`: the plan says which symlinks the
stage holds and where it lives (``$HPCRUN_STAGE_DIR``, else ``$XDG_CACHE_HOME/hpcrun/stage``
or ``~/.cache/hpcrun/stage``, one subdirectory per mapping named by its hash); this module
makes it exist before the exec, also for ``--dry-run`` so the printed command works.

Creation is atomic: the links are made in a temporary sibling directory that is then
renamed into place.  The jobs of an array race safely: the first rename wins, the others
find the finished directory (same name, same content by construction) and use it.  An
existing stage is reused after checking its links.  On a multi-node cluster the stage must
be visible on the compute nodes: point ``HPCRUN_STAGE_DIR`` at a shared file system.
"""

from __future__ import annotations

import errno
import os
import tempfile

from hpcrun.errors import OutputError
from hpcrun.plan.model import Stage

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Tuple

_HINT = ("set HPCRUN_STAGE_DIR to a writable directory that every compute node sees "
         "(e.g. on a shared file system)")


class StageError(OutputError):
    """The stage directory cannot be created or holds something else."""


def _matches(directory: str, stage: Stage) -> bool:
    """Whether ``directory`` holds exactly the stage's links (checked link by link)."""
    for relative, target in stage.links:
        try:
            if os.readlink(os.path.join(directory, relative)) != target:
                return False
        except OSError:
            return False
    return True


def _populate(directory: str, stage: Stage) -> None:
    for relative, target in stage.links:
        path = os.path.join(directory, relative)
        parent = os.path.dirname(path)
        if parent != directory:
            os.makedirs(parent, mode=0o755, exist_ok=True)
        os.symlink(target, path)
    for root, dirs, _ in os.walk(directory):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    os.chmod(directory, 0o755)  # mkdtemp makes 0700; ch-run's user needs to read it


def materialise(stage: Stage) -> str:
    """Make ``stage.directory`` exist with exactly ``stage.links``; return its path.

    Reuses a complete existing stage; otherwise builds it in a temporary directory beside
    it and renames it into place (losing a race to another process is fine).  Raises
    :class:`StageError` naming the path when the cache directory is unusable or an existing
    stage differs from the plan.
    """
    final = stage.directory
    if os.path.isdir(final) and not os.path.islink(final):
        if _matches(final, stage):
            return final
        raise StageError(f"{final}: an existing hpcrun stage directory does not hold the "
                         "expected links (changed by hand?)",
                         f"remove it (rm -r {final}) and run again")
    parent = os.path.dirname(final)
    try:
        os.makedirs(parent, mode=0o755, exist_ok=True)
        temporary = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    except OSError as error:
        raise StageError(f"cannot create hpcrun's stage directory in {parent}: "
                         f"{error.strerror or error}", _HINT) from None
    try:
        try:
            _populate(temporary, stage)
        except OSError as error:
            raise StageError(f"cannot create the stage {final}: "
                             f"{error.strerror or error} ({error.filename})", _HINT) from None
        try:
            os.rename(temporary, final)
            temporary = ""
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
                raise StageError(f"cannot create the stage {final}: "
                                 f"{error.strerror or error}", _HINT) from None
    finally:
        if temporary:
            import shutil  # only to clean up a lost race or a failure (shutil loads bz2, lzma)

            shutil.rmtree(temporary, ignore_errors=True)
    if not _matches(final, stage):  # another process won the race: same name, same links
        raise StageError(f"{final}: an existing hpcrun stage directory does not hold the "
                         "expected links", f"remove it (rm -r {final}) and run again")
    return final


def free_mount_points(image: str) -> Optional[Tuple[str, ...]]:
    """The empty ``/mnt/N`` directories of a directory image (``/mnt/0`` first, by number);
    None when ``image`` is not a directory (nothing known: the renderer assumes
    Charliecloud's ``/mnt/0`` .. ``/mnt/9``).  A non-empty ``/mnt/N`` holds something of
    the image and is not used."""
    mnt = os.path.join(image, "mnt")
    if not os.path.isdir(image):
        return None
    try:
        names = os.listdir(mnt) if os.path.isdir(mnt) and not os.path.islink(mnt) else []
    except OSError:
        return ()
    found = []
    for name in names:
        path = os.path.join(mnt, name)
        if not name.isdigit() or os.path.islink(path) or not os.path.isdir(path):
            continue
        try:
            if not os.listdir(path):
                found.append((int(name), name))
        except OSError:
            continue
    return tuple(f"/mnt/{name}" for _, name in sorted(found))
