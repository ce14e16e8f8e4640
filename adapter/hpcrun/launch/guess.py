"""Splitting launcher command lines hpcrun does not fully know, and refusing MPMD forms.

:func:`find_image`: with a launcher option the tables in :mod:`hpcrun.launch.launchers` do
not know, the image is the first word that is a real container image (an existing SIF,
squashfs or ext3 file by its magic, a root file system directory, a registry URI); hpcrun
asks for ``--image`` only when that word may be the unknown option's value and the next
word is an image too.  :func:`check_mpmd`: launches whose programs come from a file
(``srun --multi-prog``, Hydra's ``-configfile``, Open MPI's ``--app``) are refused, since
hpcrun wraps one program and srun would read the container runtime as its configuration
file.  Pure but for ``is_image``, which looks at the file system.
"""

from __future__ import annotations

from hpcrun.errors import UsageError
from hpcrun.launch.launchers import (
    GENERIC_MPI,
    HYDRA,
    MPMD_HINT,
    OPENMPI,
    SRUN,
    LauncherOption,
    parse_options,
)

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional, Sequence


# Options with which the launcher reads its programs from a file (MPMD): the words after
# them are no program hpcrun could wrap.
MPMD_OPTIONS = {SRUN: ("multi-prog",), HYDRA: ("configfile",), OPENMPI: ("app",),
                GENERIC_MPI: ("app", "configfile")}


def check_mpmd(family: str, options: Sequence[LauncherOption], launcher: str) -> None:
    for option in options:
        for key in option.keys:
            if key not in MPMD_OPTIONS.get(family, ()):
                continue
            what = ("srun --multi-prog reads one program per task from its configuration file "
                    "(the first argument after the options): hpcrun would hand it the "
                    "container runtime as that file" if key == "multi-prog" else
                    f"{launcher} {option.words[0]} reads the programs from a file: hpcrun "
                    "cannot wrap them in the container")
            raise UsageError(what, MPMD_HINT)


def unknown_option(family: str, word: str) -> bool:
    """Whether ``word`` is an option the launcher tables do not know."""
    if not word.startswith("-") or word in ("-", "--"):
        return False
    try:
        parse_options(family, [word, "x", "x"], strict=True)
    except UsageError as error:
        return error.message.startswith("unknown")
    return False


def find_image(family: str, words: Sequence[str], is_image: Callable[[str], bool],
                launcher: str) -> Optional[int]:
    """Index of the image among launcher ``words`` whose options hpcrun does not all know:
    the first word that is an image; None when there is none.  UsageError when that word
    may be the value of an unknown option and the next word is an image too (then either
    could be the image: ask for --image)."""
    found = [i for i, word in enumerate(words) if not word.startswith("-") and is_image(word)]
    if not found:
        return None
    first = found[0]
    before = words[first - 1] if first else ""
    if first + 1 in found and "=" not in before and unknown_option(family, before):
        raise UsageError(f"cannot tell the image: {words[first]!r} may be the value of the "
                         f"{launcher} option {before!r} hpcrun does not know, and "
                         f"{words[first + 1]!r} is an image too",
                         f"name the image: `hpcrun --image IMAGE {launcher} ...`")
    return first


def default_is_image(word: str) -> bool:
    from hpcrun.image.open import looks_like_image

    return looks_like_image(word)
