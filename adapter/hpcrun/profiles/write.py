"""Write a profile as commented TOML that :func:`hpcrun.profiles.load.load_profile` reads back.

Used by ``hpcrun site detect``.  Single tables ([runtime], [mpi] ...) are written with every
key and its documentation, so the file doubles as a reference; array entries
([[libraries]], [[binds]], [[env]]) with the keys that differ from the defaults.  Notes
attach comment lines to key paths (``mpi.version``, ``binds[2]``, ``mpi``; "" is the top).
"""

from __future__ import annotations

import json
import re
import typing
from typing import Any, Dict, List, Mapping, Optional, Sequence

from hpcrun import records
from hpcrun.profiles.load import field_types, is_mapping_tuple, public_fields, unwrap_optional
from hpcrun.profiles.model import Profile

Notes = Mapping[str, Sequence[str]]


def toml_string(text: str) -> str:
    """A TOML basic string for ``text`` (JSON escapes are TOML escapes; DEL is escaped)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any, indent: str = "") -> str:
    """TOML for a string, bool, int or a sequence of them (long arrays one item a line)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (tuple, list)):
        items = [toml_value(item) for item in value]
        one_line = "[" + ", ".join(items) + "]"
        if len(one_line) <= 80:
            return one_line
        return "[\n" + "".join(f"{indent}  {item},\n" for item in items) + indent + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _comment(lines: Sequence[str]) -> List[str]:
    """Comment lines; control characters (not allowed in TOML comments) shown escaped."""
    out = []
    for line in lines:
        for part in str(line).splitlines() or [""]:
            part = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", part)
            out.append(("# " + part).rstrip())
    return out


def _is_table(tp: Any) -> bool:
    tp = unwrap_optional(tp)
    return records.is_record(tp) or is_mapping_tuple(tp) or (
        typing.get_origin(tp) is tuple and records.is_record(typing.get_args(tp)[0]))


def _default(f: records.Field) -> Any:
    if f.default is not records.MISSING:
        return f.default
    if f.default_factory is not records.MISSING:
        return f.default_factory()
    return records.MISSING


def _keys(obj: Any, path: str, notes: Notes, full: bool, filled: bool = False) -> List[str]:
    """``key = value`` lines: every key (``full``), every key with a value (``filled``: not
    empty, not false), else the keys that differ from the defaults."""
    out: List[str] = []
    hints = field_types(type(obj))
    for f in public_fields(type(obj)):
        if _is_table(hints[f.name]):
            continue
        value = getattr(obj, f.name)
        key = f"{path}.{f.name}" if path else f.name
        if filled and value in ("", (), [], False, None) and key not in notes:
            continue
        if not full and not filled and value == _default(f) and key not in notes:
            continue
        if full and f.metadata.get("doc") and path:
            out += _comment([f.metadata["doc"]])
        out += _comment(notes.get(key, ()))
        out.append(f"{f.name} = {toml_value(value)}")
    return out


def dump_profile(profile: Profile, notes: Optional[Notes] = None,
                 header: Sequence[str] = (), reference: bool = True) -> str:
    """The profile as TOML text with ``header`` comment lines first and ``notes`` attached.

    ``reference`` (``site detect``) writes every key of the single tables with its
    documentation; without it (``site show``) only what differs from the defaults is
    every key with a value (not empty, not false) is written, and a table with nothing to
    say is left out, as a sysadmin would write it.
    """
    notes = notes or {}
    lines: List[str] = _comment(header)
    lines += _comment(notes.get("", ()))
    if lines:
        lines.append("")
    show = not reference
    lines += _keys(profile, "", notes, full=False, filled=show)
    hints = field_types(Profile)
    for f in public_fields(Profile):
        tp = unwrap_optional(hints[f.name])
        value = getattr(profile, f.name)
        if not _is_table(tp) or value is None:
            continue
        if records.is_record(tp):
            keys = _keys(value, f.name, notes, full=reference, filled=show)
            if keys or reference:
                lines += ["", *_comment(notes.get(f.name, ())), f"[{f.name}]", *keys]
        elif is_mapping_tuple(tp):
            for name, item in value:
                key = f"{f.name}.{name}"
                lines += ["", *_comment(notes.get(key, ())), f"[{key}]"]
                lines += _keys(item, key, notes, full=False, filled=show)
        else:
            for index, item in enumerate(value):
                key = f"{f.name}[{index}]"
                lines += ["", *_comment(notes.get(key, ())), f"[[{f.name}]]"]
                lines += _keys(item, key, notes, full=False, filled=show)
    return "\n".join(lines) + "\n"


def notes_dict(pairs: Sequence[typing.Tuple[str, str]]) -> Dict[str, List[str]]:
    """Group ``(key, comment)`` pairs by key, keeping their order."""
    grouped: Dict[str, List[str]] = {}
    for key, text in pairs:
        grouped.setdefault(key, []).append(text)
    return grouped
