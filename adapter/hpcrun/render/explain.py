"""``--explain``: every bind, variable, flag and diagnostic of a plan, with its reason.

Plain text wrapped at the terminal's width (80 columns when piped): one entry per host
path with all its container names, a reason shared by several binds (a profile entry's
reason, given once per alias) printed once as a numbered note, findings folded by code,
and the command as the ``--dry-run`` snippet, never wrapped, so it can be pasted.
"""

from __future__ import annotations

import sys

from hpcrun.plan.model import Plan
from hpcrun.render.text import Notes, display, findings, split_reason, wrap, wrap_width

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Dict, List, Optional, Tuple

    from hpcrun.plan.model import Bind


def _bind_groups(plan: Plan) -> List[Tuple[Bind, List[str]]]:
    """Binds of the same host path, access, kind and reason, with all their destinations."""
    groups: Dict[Tuple[str, bool, str, str], Tuple[Bind, List[str]]] = {}
    for bind in plan.binds:
        key = (bind.source, bind.read_only, bind.kind, bind.reason)
        if key not in groups:
            groups[key] = (bind, [])
        groups[key][1].append(bind.destination)
    return list(groups.values())


def explain_lines(plan: Plan, columns: int = 80) -> List[str]:
    """The explanation as lines of at most ``columns`` characters, except the command
    block and words (paths) longer than a line."""
    out: List[str] = []
    field = "           "
    out.append("Plan")
    for label, value in (("site", plan.site or "(none)"),
                         ("runtime", plan.runtime if plan.runtime_binary == plan.runtime
                          else f"{plan.runtime} ({plan.runtime_binary})"),
                         ("  why", plan.runtime_reason),
                         ("image", plan.image),
                         ("command", " ".join(plan.command)),
                         ("launcher", " ".join(plan.launcher) or "(none)"),
                         ("verdict", plan.verdict)):
        if value:
            out.extend(wrap(value, columns, f"  {label:<8} ", field))

    if plan.settings:  # with a job file: where each setting came from
        out.append("")
        out.append("Settings (site profile < job file < command line)")
        for item in plan.settings:
            out.extend(wrap(f"{item.name} = {item.value or '(unset)'}: {item.origin}", columns,
                            "  ", "    "))

    groups = _bind_groups(plan)
    shared: Dict[str, int] = {}
    for bind, _ in groups:
        detail = split_reason(bind.reason)[1]
        if detail:
            shared[detail] = shared.get(detail, 0) + 1
    notes = Notes()
    out.append("")
    out.append(f"Binds: {len(plan.binds)} (host path, then where it appears in the container)")
    for bind, destinations in groups:
        out.extend(wrap(bind.source, columns, "  "))
        out.extend(wrap(", ".join(destinations), columns, "    at ", "       "))
        head, detail = split_reason(bind.reason)
        if detail and shared.get(detail, 0) > 1:
            reason = f"{head} ({notes.ref(detail)})"
        else:
            reason = bind.reason
        access = "read-only" if bind.read_only else "read-write"
        out.extend(wrap(f"{bind.kind}, {access}: {reason}", columns, "    why ", "        "))

    out.append("")
    out.append(f"Environment: {len(plan.env)} (in the container unless marked launcher)")
    for var in plan.env:
        scope = "" if var.scope == "container" else f", {var.scope}"
        out.extend(wrap(f"{var.name} {var.action} {var.value}", columns, "  ", "    "))
        out.extend(wrap(f"{var.source}{scope}: {var.reason}", columns, "    why ", "        "))

    if plan.flags:
        out.append("")
        out.append("Runtime flags")
        for flag in plan.flags:
            out.extend(wrap(f"{flag.flag}: {flag.reason}", columns, "  ", "    "))

    out.append("")
    out.append("Diagnostics" if plan.diagnostics else "Diagnostics: none")
    out.extend(findings(plan.diagnostics, columns))

    if notes.texts:
        out.append("")
        out.append("Notes")
        out.extend(notes.lines(columns))
    return out


def render_explain(plan: Plan, file: Optional[IO[str]] = None, width: int = 0) -> None:
    """Print the explanation to ``file`` (default stdout), then the command block."""
    from hpcrun.render.dryrun import render_dry_run

    stream = sys.stdout if file is None else file
    lines = explain_lines(plan, wrap_width(width))
    lines.append("")
    lines.append("Command (the --dry-run snippet; paste it as is, its lines are never wrapped):")
    stream.write("\n".join(lines) + "\n")
    stream.write(display(render_dry_run(plan)))
