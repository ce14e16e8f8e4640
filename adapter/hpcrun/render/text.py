"""Plain text for people: wrapped at the terminal's width, readable when piped.

Pure helpers shared by ``--explain`` and ``hpcrun check``: wrapping that never breaks a
path or a word, findings folded by code (28 "host library X does not exist" rows become one
finding with the 28 paths), and long reasons repeated by several binds printed once as a
numbered note.  No rich, no colour: the same bytes on a terminal, in a pipe and in a log.
"""

from __future__ import annotations

import os
import re

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Sequence, Tuple

    from hpcrun.plan.model import Diagnostic

MIN_WIDTH = 40
MAX_WIDTH = 100


def display(text: str) -> str:
    """Printable text: bytes that were not UTF-8 (surrogate escapes) shown as \\xNN."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def wrap_width(requested: int = 0) -> int:
    """The width to wrap at: ``requested``, else ``$COLUMNS`` / the terminal's, else 80;
    kept between 40 and 100 columns (longer lines are hard to read)."""
    if requested <= 0:
        import shutil

        requested = shutil.get_terminal_size((80, 24)).columns
    return max(MIN_WIDTH, min(MAX_WIDTH, requested))


def wrap(text: str, columns: int, indent: str = "", later: str = "") -> List[str]:
    """``text`` wrapped to ``columns``; words (paths) are never broken, a longer word gets
    a line of its own."""
    import textwrap

    return textwrap.wrap(display(text), columns, initial_indent=indent,
                         subsequent_indent=later or indent, break_long_words=False,
                         break_on_hyphens=False) or [indent.rstrip()]


def _common_words(messages: Sequence[str]) -> Tuple[str, str]:
    """The longest word-aligned prefix and suffix every message shares."""
    split = [m.split(" ") for m in messages]
    shortest = min(len(words) for words in split)
    head = 0
    while head < shortest and all(w[head] == split[0][head] for w in split):
        head += 1
    tail = 0
    while (tail < shortest - head
           and all(w[len(w) - 1 - tail] == split[0][len(split[0]) - 1 - tail] for w in split)):
        tail += 1
    first = split[0]
    return " ".join(first[:head]), " ".join(first[len(first) - tail:]) if tail else ""


def fold(diagnostics: Iterable[Diagnostic]) -> List[Tuple[Diagnostic, Tuple[str, ...]]]:
    """Findings with the same severity, code and hint folded into one.

    Returns (first finding, varying parts) in first-seen order.  When the messages differ
    only in the middle ("host library X does not exist"), the folded finding's message
    reads "host library … does not exist" and the parts are the X's; otherwise the parts
    are the whole messages.  A finding seen once has no parts.
    """
    from hpcrun import records

    groups: Dict[Tuple[str, str, str], List[Diagnostic]] = {}
    for diag in diagnostics:
        groups.setdefault((diag.severity, diag.code, diag.hint), []).append(diag)
    out: List[Tuple[Diagnostic, Tuple[str, ...]]] = []
    for members in groups.values():
        messages = list(dict.fromkeys(d.message for d in members))
        if len(messages) == 1:
            out.append((members[0], ()))
            continue
        head, tail = _common_words(messages)
        if not head and not tail:
            out.append((records.replace(members[0], message=""), tuple(messages)))
            continue
        start = len(head) + (1 if head else 0)
        parts = tuple(m[start:len(m) - len(tail) - (1 if tail else 0)] for m in messages)
        template = " ".join(p for p in (head, "…", tail) if p)
        out.append((records.replace(members[0], message=template), parts))
    return out


def findings(diagnostics: Iterable[Diagnostic], columns: int,
             severities: Sequence[str] = ("error", "warning", "info")) -> List[str]:
    """Lines for the findings, folded (:func:`fold`): ``severity code [xN]: message``,
    the varying parts, then ``what to do: hint``."""
    lines: List[str] = []
    for diag, parts in fold(d for d in diagnostics if d.severity in severities):
        count = f" (x{len(parts)})" if parts else ""
        head = f"{diag.severity} {diag.code}{count}"
        lines.extend(wrap(f"{head}: {diag.message}" if diag.message else f"{head}:",
                          columns, "  ", "      "))
        if parts:
            lines.extend(wrap(", ".join(parts), columns, "      "))
        if diag.hint:
            lines.extend(wrap(f"what to do: {diag.hint}", columns, "      "))
    return lines


_DETAIL = re.compile(r"\A(?P<head>.*?) \((?P<detail>[\w.\[\]-]+: .+)\)\Z", re.S)


def split_reason(reason: str) -> Tuple[str, str]:
    """``"libuct_cma.so.0 (libraries[0]: UCX transport ...)"`` -> (head, detail): the part
    that names this bind and the profile entry's own reason, which several binds share."""
    match = _DETAIL.match(reason)
    if match is None:
        return reason, ""
    return match.group("head"), match.group("detail")


class Notes:
    """Long texts printed once and referred to by number ("note 1")."""

    def __init__(self) -> None:
        self.texts: List[str] = []

    def ref(self, text: str) -> str:
        """The note's label, adding ``text`` the first time it is seen."""
        if text not in self.texts:
            self.texts.append(text)
        return f"note {self.texts.index(text) + 1}"

    def lines(self, columns: int) -> List[str]:
        """The notes, numbered, wrapped."""
        out: List[str] = []
        for number, text in enumerate(self.texts, 1):
            label = f"  {number}. "
            out.extend(wrap(text, columns, label, " " * len(label)))
        return out
