"""Splitting launcher command lines hpcrun does not fully know, and refusing MPMD forms.

:func:`find_image`: with a launcher option the tables in :mod:`hpcrun.launch.launchers` do
not know, the image is the first word that is a real container image (an existing SIF,
squashfs or ext3 file by its magic, a root file system directory, a registry URI); hpcrun
asks for ``--image`` only when that word may be the unknown option's value and the next
word is an image too.  :func:`check_mpmd`: launches whose programs come from a file
(``srun --multi-prog``, Hydra's ``-configfile``, Open MPI's ``--app``) are refused, since
srun would read the container runtime as its configuration file.  :func:`split_mpmd`:
Hydra's and Open MPI's ``A : OPTIONS IMAGE B`` form, one image; each program is wrapped
in the runtime (``hpcrun.render.runtimes``) once the CLI has checked that each needs the
same container settings.  Pure but for ``is_image``, which looks at the file system.
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
    from typing import Callable, List, Optional, Sequence, Tuple


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


def split_mpmd(family: str, command: Sequence[str], image: str, launcher: str
               ) -> Tuple[Tuple[str, ...], Tuple[Tuple[Tuple[str, ...], Tuple[str, ...]], ...]]:
    """Split ``A... : OPTIONS IMAGE B... : ...`` (Hydra's and Open MPI's MPMD form, the
    words after the first image) into the first command and the further programs, each as
    (its launcher-local options, its command).  Every program must run from ``image``:
    hpcrun checks and binds for one image per launch."""
    parts: List[List[str]] = [[]]
    for word in command:
        if word == ":":
            parts.append([])
        else:
            parts[-1].append(word)
    further: List[Tuple[Tuple[str, ...], Tuple[str, ...]]] = []
    for number, words in enumerate(parts[1:], 2):
        options, at = parse_options(family, words, strict=True)
        check_mpmd(family, options, launcher)
        if at >= len(words):
            raise UsageError(f"MPMD program {number} names no image after its {launcher} "
                             "options", MPMD_HINT)
        if words[at] != image:
            raise UsageError(f"MPMD program {number} runs from {words[at]!r}, the first from "
                             f"{image!r}: hpcrun checks and binds one image per launch",
                             MPMD_HINT)
        if at + 1 >= len(words):
            raise UsageError(f"MPMD program {number}: nothing to run after the image "
                             f"{image!r}", MPMD_HINT)
        further.append((tuple(words[:at]), tuple(words[at + 1:])))
    return tuple(parts[0]), tuple(further)
