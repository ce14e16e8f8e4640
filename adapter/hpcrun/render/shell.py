"""POSIX shell quoting: one word in, one word out that any POSIX shell reads back exactly.

Used by ``--dry-run`` (a copy-pasteable snippet) and by anything else that shows a command
to a person.  Never used to *run* anything: hpcrun execs argv vectors, not shell strings.
"""

from __future__ import annotations

import re

from hpcrun.errors import UsageError

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable

# Characters no POSIX shell (sh, dash, bash, zsh) treats specially anywhere in a word, and
# ``=`` after the first character.  A leading ``~`` is tilde-expanded, zsh expands a leading
# ``=word``, ``#`` starts a comment: those words are quoted.  (A command word such as
# ``A=b`` would be an assignment: :func:`sh_join` quotes the first word when it has ``=``.)
_SAFE = re.compile(r"[A-Za-z0-9_@%+:,./-][A-Za-z0-9_@%+:,./=-]*")


def sh_quote(word: str) -> str:
    """Quote ``word`` so that a POSIX shell reads it back as exactly this one word.

    Plain words stay unquoted for readability; everything else is wrapped in single quotes,
    inside which nothing is special except the single quote itself (written ``'\\''``).
    Arbitrary bytes decoded with ``surrogateescape`` survive as long as the caller encodes
    the result back with ``os.fsencode``.  A NUL cannot be part of a shell word (nor of an
    argv entry): it is a :class:`UsageError`.
    """
    if "\x00" in word:
        raise UsageError(f"a word contains a NUL byte and cannot be shown as shell: {word!r}",
                         "remove the NUL byte from the argument")
    if word and _SAFE.fullmatch(word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"


def sh_join(words: Iterable[str]) -> str:
    """Quote every word and join them with single spaces: one shell command line.

    The first word is the command name: if it contains ``=`` it is always quoted, so the
    shell cannot take it for a variable assignment.
    """
    out = []
    for i, word in enumerate(words):
        quoted = sh_quote(word)
        if i == 0 and "=" in word and quoted == word:
            quoted = "'" + word + "'"
        out.append(quoted)
    return " ".join(out)
