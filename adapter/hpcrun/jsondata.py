"""Frozen dataclasses to plain JSON data (dicts, lists, scalars), shared by every ``--json``."""

from __future__ import annotations

from hpcrun import records

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def to_plain(value: Any) -> Any:
    """``value`` with dataclasses turned into dicts (field order kept) and tuples into lists."""
    if records.is_record(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in records.fields(value)}
    if isinstance(value, (tuple, list)):
        return [to_plain(v) for v in value]
    return value
