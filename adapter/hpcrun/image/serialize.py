"""ImageFacts <-> the JSON of ``hpcrun inspect --json`` (objects keyed by field name).

The facts cache does not use this form (it stores :func:`hpcrun.records.encode`).
Decoding follows the records' type hints, so fields added to the contract later are
serialised without changes here.  ``facts_from_json`` reads that output back, strictly:
any difference from the current shape (the ``version`` number, a missing or unknown key, a
wrong type) gives None rather than facts that are misread.
"""

from __future__ import annotations

from hpcrun import records
from hpcrun.image.facts import FACTS_VERSION, ImageFacts
from hpcrun.jsondata import to_plain

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional


class _Mismatch(Exception):
    """The JSON does not have the shape this version writes."""


def facts_to_json(facts: ImageFacts) -> Dict[str, Any]:
    """A JSON-ready dict of ``facts`` with a ``version`` key (FACTS_VERSION)."""
    out: Dict[str, Any] = {"version": FACTS_VERSION}
    out.update(to_plain(facts))
    return out


def _decode(value: Any, hint: Any) -> Any:
    """``value`` (parsed JSON) as the type ``hint``; _Mismatch when it does not fit."""
    import typing  # only reading JSON back needs it (facts_to_json does not)

    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is str or hint is int or hint is bool:
        if type(value) is not hint:
            raise _Mismatch
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise _Mismatch
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(v, args[0]) for v in value)
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_decode(v, a) for v, a in zip(value, args))
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise _Mismatch
        return _decode(value, inner[0])
    if isinstance(hint, type) and records.is_record(hint):
        if not isinstance(value, dict):
            raise _Mismatch
        hints = records.type_hints(hint)
        fields = records.fields(hint)
        if set(value) != {f.name for f in fields}:
            raise _Mismatch
        return hint(**{f.name: _decode(value[f.name], hints[f.name]) for f in fields})
    raise _Mismatch


def facts_from_json(data: Any) -> Optional[ImageFacts]:
    """The ImageFacts in ``data`` (from :func:`facts_to_json`), or None on any mismatch."""
    if not isinstance(data, dict) or data.get("version") != FACTS_VERSION:
        return None
    body = {k: v for k, v in data.items() if k != "version"}
    try:
        facts = _decode(body, ImageFacts)
    except (_Mismatch, KeyError, TypeError, ValueError):
        return None
    return facts if isinstance(facts, ImageFacts) else None
