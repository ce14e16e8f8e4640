"""GNU ld scripts that stand in for shared libraries (``libc.so``, the wheels' ``libmpi.so``).

A file named like a library may be a linker script such as ``INPUT(libmpi.so.12)`` or
``GROUP ( /lib/x86_64-linux-gnu/libc.so.6 AS_NEEDED ( /lib64/ld-linux-x86-64.so.2 ) )``.
The dynamic loader never reads them, but the linker (and so the resolver, when it maps
development names) follows them.
"""

from __future__ import annotations

import re

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Tuple

# How much of a file is considered when deciding whether it is a script.
MAX_SCRIPT_BYTES = 65536

# Patterns are compiled at first use (re's cache): most launches never need them.
_COMMENT = r"/\*.*?\*/"  # with re.S
_COMMAND = r"\b(INPUT|GROUP)\s*\("
_KNOWN = r"\b(INPUT|GROUP|OUTPUT_FORMAT|OUTPUT_ARCH|SEARCH_DIR|SECTIONS)\s*\("
_TOKEN = r"[()]|[^\s(),]+"


def looks_like_ld_script(data: bytes) -> bool:
    """Whether ``data`` (the start of a file) is a GNU ld script rather than binary junk.

    A script is text (no NUL bytes, decodable) containing one of the linker's commands
    outside comments.
    """
    if not data or b"\0" in data[:MAX_SCRIPT_BYTES]:
        return False
    try:
        text = data[:MAX_SCRIPT_BYTES].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return re.search(_KNOWN, re.sub(_COMMENT, " ", text, flags=re.S)) is not None


def parse_ld_script(text: str) -> Tuple[str, ...]:
    """The file names an ld script pulls in through ``INPUT(...)`` and ``GROUP(...)``.

    Names inside ``AS_NEEDED(...)`` count too.  ``-lNAME`` becomes ``libNAME.so`` (what the
    linker tries first).  Order is kept, duplicates dropped.
    """
    tokens = re.findall(_TOKEN, re.sub(_COMMENT, " ", text, flags=re.S))
    names: List[str] = []
    depth = 0
    inside = False  # within an INPUT/GROUP command
    pending = ""  # a command word waiting for its "("
    for token in tokens:
        if token == "(":
            depth += 1
            if pending in ("INPUT", "GROUP") and depth == 1:
                inside = True
            pending = ""
            continue
        if token == ")":
            depth = max(0, depth - 1)
            if depth == 0:
                inside = False
            continue
        if depth == 0:
            pending = token
            continue
        if not inside or token == "AS_NEEDED":
            continue
        name = "lib" + token[2:] + ".so" if token.startswith("-l") and len(token) > 2 else token
        if name not in names:
            names.append(name)
    return tuple(names)
