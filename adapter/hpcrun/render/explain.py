"""``--explain``: every bind, variable, flag and diagnostic of a plan, with its reason.

Uses rich (imported here only, so a plain launch never pays for it).
"""

from __future__ import annotations

import os

from hpcrun.plan.model import Plan

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Optional


def _display(text: str) -> str:
    """Printable text: bytes that were not UTF-8 (surrogate escapes) shown as \\xNN."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def render_explain(plan: Plan, file: Optional[IO[str]] = None, width: int = 0) -> None:
    """Print the explanation tables to ``file`` (default stdout)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    def row(table: Table, *cells: str) -> None:
        # Text, not markup: paths and values may contain [brackets].
        table.add_row(*(Text(_display(cell)) for cell in cells))

    console = Console(file=file, width=width or None, highlight=False, soft_wrap=False)
    console.print(f"[bold]site[/bold] {plan.site or '(none)'}   [bold]runtime[/bold] "
                  f"{plan.runtime} ({plan.runtime_binary})   [bold]verdict[/bold] {plan.verdict}",
                  markup=True)
    console.print(Text(_display(f"image {plan.image}")))

    binds = Table(title="Binds", show_lines=False)
    for column in ("source", "destination", "ro", "kind", "reason"):
        binds.add_column(column, overflow="fold")
    for bind in plan.binds:
        row(binds, bind.source, bind.destination, "ro" if bind.read_only else "rw",
                      bind.kind, bind.reason)
    console.print(binds)

    env = Table(title="Environment")
    for column in ("name", "action", "value", "scope", "source", "reason"):
        env.add_column(column, overflow="fold")
    for var in plan.env:
        row(env, var.name, var.action, var.value, var.scope, var.source, var.reason)
    console.print(env)

    if plan.flags:
        flags = Table(title="Runtime flags")
        flags.add_column("flag")
        flags.add_column("reason", overflow="fold")
        for flag in plan.flags:
            row(flags, flag.flag, flag.reason)
        console.print(flags)

    diags = Table(title="Diagnostics")
    for column in ("severity", "code", "message", "hint"):
        diags.add_column(column, overflow="fold")
    for diag in plan.diagnostics:
        row(diags, diag.severity, diag.code, diag.message, diag.hint)
    console.print(diags)

    from hpcrun.render.dryrun import render_dry_run

    console.print("Command:", style="bold")
    console.print(Text(_display(render_dry_run(plan))), end="")
