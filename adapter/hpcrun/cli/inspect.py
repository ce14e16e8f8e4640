"""`hpcrun inspect IMAGE [--app CMD...]`: what hpcrun reads from an image, without running it.

Usage::

    hpcrun inspect [--json] [--no-cache] IMAGE [--app CMD ARGS...]
    hpcrun inspect IMAGE -- CMD ARGS...          (same as --app)

Everything after ``--app`` (or ``--``) is the application command, taken verbatim, so its
own options are never read as hpcrun's; ``--json`` and ``--no-cache`` may also follow IMAGE
as long as they come before the command.  People get a summary; ``--json`` prints
:func:`hpcrun.image.serialize.facts_to_json` for scripts.

The usual forms (``hpcrun inspect [--json] [--no-cache] IMAGE ...``) are served by
:func:`run_direct` without typer, whose import costs more than a cached inspection; typer
handles everything else (``--help``, mistakes), and rich is imported for the summary only.
"""

from __future__ import annotations

import sys

from hpcrun.errors import UsageError

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional, Tuple

    import typer

OWN_FLAGS = ("--json", "--no-cache")


def register(app: typer.Typer) -> None:
    """Add the `inspect` command to the app."""
    import typer

    def inspect(
        image: str = typer.Argument(..., help="SIF/squashfs/ext3 image file or sandbox directory."),
        command: list[str] = typer.Argument(  # builtins only: typer evaluates these
            None, help="--app CMD ARGS... (or -- CMD ...): the application to analyse."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON."),
        no_cache: bool = typer.Option(
            False, "--no-cache", help="Ignore and bypass the facts cache."
        ),
    ) -> None:
        """Show the facts hpcrun reads from an image: architecture, libc, MPI, GPU runtimes, app."""
        inspect_command(image, command, as_json, no_cache)

    app.command(
        "inspect",
        context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
    )(inspect)


def run_direct(args: List[str]) -> Optional[int]:
    """Run ``hpcrun inspect ARGS`` without typer when ARGS take the usual form; else None.

    The usual form is ``[--json] [--no-cache] IMAGE [anything split_arguments accepts]``,
    parsed as typer would; anything else (``--help``, a missing image, an unknown option
    before the image) returns None so that typer answers it.
    """
    if any(arg in ("--help", "-h") for arg in args):
        return None
    rest = list(args)
    as_json = no_cache = False
    while rest and rest[0] in OWN_FLAGS:
        flag = rest.pop(0)
        as_json = as_json or flag == "--json"
        no_cache = no_cache or flag == "--no-cache"
    if not rest or rest[0].startswith("-"):
        return None
    inspect_command(rest[0], rest[1:], as_json, no_cache)
    return 0


def split_arguments(args: List[str]) -> Tuple[List[str], bool, bool]:
    """(command, json, no_cache) from what follows IMAGE on the command line."""
    as_json = no_cache = False
    rest = list(args)
    while rest and rest[0] in OWN_FLAGS:
        flag = rest.pop(0)
        as_json = as_json or flag == "--json"
        no_cache = no_cache or flag == "--no-cache"
    if rest and rest[0] in ("--app", "--"):
        rest.pop(0)
        if not rest:
            raise UsageError("--app needs a command", hint="hpcrun inspect IMAGE --app CMD ARGS...")
    elif rest and rest[0].startswith("-"):
        raise UsageError(
            f"unknown option {rest[0]} for hpcrun inspect",
            hint="options go before the command: hpcrun inspect [--json] [--no-cache] IMAGE "
            "[--app CMD ...]",
        )
    return rest, as_json, no_cache


def inspect_command(
    image: str,
    command: Optional[List[str]] = None,
    as_json: bool = False,
    no_cache: bool = False,
) -> None:
    """Show the facts hpcrun reads from an image: architecture, libc, MPI, GPU runtimes, app."""
    from hpcrun.image.inspect import inspect_image, inspect_image_text

    if image.startswith("-") and image != "-":  # typer took an option as the image
        raise UsageError(f"no image before {image}",
                         hint="hpcrun inspect [--json] [--no-cache] IMAGE [--app CMD ...] "
                              "(an image whose name starts with - is given as ./NAME)")
    app, late_json, late_no_cache = split_arguments(list(command or []))
    use_cache = not (no_cache or late_no_cache)
    if as_json or late_json:
        sys.stdout.write(inspect_image_text(image, app=app or None, use_cache=use_cache))
        return
    show(inspect_image(image, app=app or None, use_cache=use_cache))


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def show(facts: Any) -> None:
    """Print a summary of ImageFacts for people (rich)."""
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    libc = f"{facts.libc.kind} {facts.libc.version}".strip()
    console.print(f"[bold]{escape(facts.source)}[/bold] ({facts.kind})")
    rows = [
        ("architecture", facts.architecture or "unknown"),
        ("libc", f"{libc} ({facts.libc.path})" if facts.libc.path else libc),
        ("ld.so.cache", f"{len(facts.ld_cache)} libraries"),
        ("library dirs", " ".join(facts.library_dirs)),
        ("CUDA runtime", facts.cuda_runtime or "-"),
        ("ROCm", facts.rocm or "-"),
    ]
    require = facts.env("NVIDIA_REQUIRE_CUDA")
    if require:
        rows.append(("NVIDIA_REQUIRE_CUDA", require))
    summary = Table(show_header=False, box=None)
    summary.add_column(style="bold")
    summary.add_column(overflow="fold")
    for key, value in rows:
        summary.add_row(key, escape(value))
    console.print(summary)
    if facts.mpi:
        table = Table(title="MPI libraries", title_justify="left")
        for column in ("soname", "family", "role", "implementation", "version", "path"):
            table.add_column(column, overflow="fold")
        for lib in facts.mpi:
            table.add_row(
                lib.soname,
                lib.family,
                lib.role,
                lib.implementation or "?",
                lib.version or "?",
                escape(lib.real_path or lib.path),
            )
        console.print(table)
    else:
        console.print("MPI libraries: none found")
    if facts.version_defs:
        table = Table(title="symbol versions provided", title_justify="left")
        table.add_column("library")
        table.add_column("versions (last defined)", overflow="fold")
        for defs in facts.version_defs:
            table.add_row(defs.soname, escape(" ".join(defs.versions[-4:])))
        console.print(table)
    if facts.app is not None:
        _show_app(console, facts.app)
    for warning in facts.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")


def _show_app(console: Any, app: Any, indent: str = "") -> None:
    from rich.markup import escape

    title = " ".join(app.command) or app.path
    console.print(
        f"{indent}[bold]application[/bold] {escape(title)}: {app.kind}"
        + (f" at {escape(app.path)}" if app.path and app.command else "")
    )
    details = []
    if app.mpi_needed:
        details.append(f"needs {', '.join(app.mpi_needed)}")
    if app.mpi_family:
        details.append(f"MPI family {app.mpi_family}")
    if app.static_mpi:
        details.append("MPI linked statically")
    if app.interpreter and app.kind == "python":
        details.append(f"interpreter {app.interpreter}")
    if details:
        console.print(f"{indent}  " + escape("; ".join(details)))
    for ext in app.extensions:
        console.print(
            f"{indent}  extension {escape(ext.path)}: "
            f"{escape(', '.join(ext.mpi_needed) or '-')} ({ext.mpi_family or '?'})"
        )
    for warning in app.warnings:
        console.print(f"{indent}  [yellow]warning:[/yellow] {escape(warning)}")
