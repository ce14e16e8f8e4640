"""Environment snippets for shells and Lmod: set variables exactly, for any bytes.

``hpcrun env`` prints one of these for a shell to evaluate, and ``hpcrun module`` writes
the Lua form into an Lmod modulefile.  Every value is quoted so that the shell (or Lua)
reads back exactly the same bytes: values decoded with ``surrogateescape`` keep invalid
UTF-8 intact when the caller writes the text with ``os.fsencode``.  A NUL byte cannot be
part of an environment variable and is rejected, as are names that are not identifiers.
"""

from __future__ import annotations

import re

from hpcrun.errors import UsageError
from hpcrun.render.shell import sh_quote

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, List, Sequence, Tuple

SHELLS = ("bash", "zsh", "sh", "csh", "tcsh", "fish", "lua")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_assignment(name: str, value: str) -> None:
    """Reject what no environment can hold: a non-identifier name or a NUL in the value."""
    if not _NAME.match(name):
        raise UsageError(f"invalid environment variable name {name!r}",
                         "names are letters, digits and underscores, not starting with a digit")
    if "\x00" in value:
        raise UsageError(f"the value of {name} contains a NUL byte",
                         "environment values cannot contain NUL bytes")


def csh_quote(value: str) -> str:
    """Quote for csh/tcsh: single quotes, with ``'``, ``!`` and newlines escaped.

    csh performs history substitution (``!``) even inside single quotes and ends a quoted
    word at a bare newline, so both are written with a backslash outside/inside the quotes.
    """
    out = value.replace("'", "'\\''").replace("!", "'\\!'").replace("\n", "\\\n")
    return "'" + out + "'"


def fish_quote(value: str) -> str:
    """Quote for fish: inside single quotes only ``\\`` and ``'`` need a backslash."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def lua_quote(value: str) -> str:
    """A Lua string literal holding exactly these bytes (decimal escapes for the unusual)."""
    raw = value.encode("utf-8", "surrogateescape")
    parts: List[str] = []
    for byte in raw:
        char = chr(byte)
        if char in ('"', "\\"):
            parts.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            parts.append(char)
        else:
            parts.append(f"\\{byte:03d}")
    return '"' + "".join(parts) + '"'


def render(shell: str, assignments: Sequence[Tuple[str, str]],
           unsets: Iterable[str] = ()) -> str:
    """The text that sets ``assignments`` (and unsets ``unsets``) in ``shell``.

    For ``lua`` the statements are Lmod's ``pushenv`` (restored exactly on unload).  Lmod
    8.6 cuts a value at its first newline when it writes the shell code, so a newline in a
    value is an error there rather than a silently different value.
    """
    if shell not in SHELLS:
        raise UsageError(f"unknown shell {shell!r}", f"choose one of: {', '.join(SHELLS)}")
    lines: List[str] = []
    for name in unsets:
        check_assignment(name, "")
        lines.append({"csh": f"unsetenv {name};", "tcsh": f"unsetenv {name};",
                      "fish": f"set -e {name};", "lua": f'unsetenv("{name}")'}
                     .get(shell, f"unset {name};"))
    for name, value in assignments:
        check_assignment(name, value)
        if shell in ("csh", "tcsh"):
            lines.append(f"setenv {name} {csh_quote(value)};")
        elif shell == "fish":
            lines.append(f"set -gx {name} {fish_quote(value)};")
        elif shell == "lua":
            if "\n" in value:
                raise UsageError(f"the value of {name} contains a newline, which Lmod cannot "
                                 "set (it keeps only the first line)",
                                 "remove the newline from the profile's value")
            lines.append(f'pushenv("{name}", {lua_quote(value)})')
        else:
            lines.append(f"export {name}={sh_quote(value)};")
    return "\n".join(lines) + ("\n" if lines else "")
