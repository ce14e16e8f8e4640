"""``--dry-run``: the plan as a copy-pasteable POSIX shell snippet.

The runtime and why it was chosen, then diagnostics, come first as ``#`` comment lines;
then ``env`` with the variable changes (one per line) and the exact argv, every word quoted
by :func:`hpcrun.render.shell.sh_quote`.  Pasting the snippet into sh, dash, bash or zsh
runs what hpcrun would exec.
"""

from __future__ import annotations

from hpcrun.plan.model import Plan
from hpcrun.render.shell import sh_join, sh_quote

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List


def _comment(text: str) -> str:
    return " ".join(text.split())  # one line: no newline can end the comment early


def render_dry_run(plan: Plan) -> str:
    """The shell snippet for ``plan.invocation`` (ends with a newline)."""
    lines: List[str] = []
    if plan.runtime_reason:
        lines.append(f"# runtime {plan.runtime}: {_comment(plan.runtime_reason)}")
    for diag in plan.diagnostics:
        if diag.severity in ("warning", "error"):
            lines.append(f"# {diag.severity}: {_comment(diag.message)}")
    invocation = plan.invocation
    prefix: List[str] = []
    for name in invocation.env_unset:
        prefix.append("-u " + sh_quote(name))
    for name, value in invocation.env_set:
        prefix.append(sh_quote(f"{name}={value}"))
    command = sh_join(invocation.argv)
    if prefix:
        lines.append("env \\")
        lines.extend(f"  {item} \\" for item in prefix)
        lines.append(f"  {command}")
    else:
        lines.append(command)
    return "\n".join(lines) + "\n"
