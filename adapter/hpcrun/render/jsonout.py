"""``--json``: the plan as JSON, with ``"version"`` (PLAN_VERSION).

The format is described by ``hpcrun/data/plan-schema.json`` (JSON Schema draft 2020-12);
the tests validate every rendered plan against it.
"""

from __future__ import annotations

import json

from hpcrun.jsondata import to_plain
from hpcrun.plan.model import PLAN_VERSION, Plan

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict


def plan_to_dict(plan: Plan) -> Dict[str, Any]:
    """The plan as plain JSON-compatible data, ``version`` first; ``mpmd`` only for an MPMD
    launch (an optional key: plans of one program read as before)."""
    data: Dict[str, Any] = {"version": PLAN_VERSION}
    data.update(to_plain(plan))
    if not data.get("mpmd"):
        data.pop("mpmd", None)
    if not data.get("settings"):  # only with a job file: plans without one are unchanged
        data.pop("settings", None)
    return data


def render_json(plan: Plan) -> str:
    """The plan as indented JSON text (ends with a newline); key order is stable."""
    return json.dumps(plan_to_dict(plan), indent=2) + "\n"
