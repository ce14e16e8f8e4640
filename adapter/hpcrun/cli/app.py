"""The typer application for the subcommands (site, inspect, check, env, module)."""

from __future__ import annotations

from typing import List

import typer

from hpcrun import __version__


def build() -> typer.Typer:
    """Create the typer app and let each subcommand module register itself."""
    app = typer.Typer(
        name="hpcrun",
        help="Run MPI/GPU containers with the host MPI (the bind model).\n\n"
        "Launch: hpcrun [--site S] [OPTIONS] [srun|mpirun|mpiexec ...] IMAGE COMMAND...",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback(invoke_without_command=True)
    def _root(version: bool = typer.Option(False, "--version", help="Print the version.")) -> None:
        if version:
            typer.echo(f"hpcrun {__version__}")
            raise typer.Exit(0)

    from hpcrun.cli import check, env, inspect, module, site

    for module_ in (site, inspect, check, env, module):
        module_.register(app)
    return app


def run_app(args: List[str]) -> int:
    """Run the typer app; HpcrunError propagates to ``hpcrun.cli.main``."""
    import click

    app = build()
    try:
        result = app(args=args, prog_name="hpcrun", standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.ClickException as error:
        error.show()
        return 2
    except click.exceptions.Abort:
        return 130
    return int(result) if isinstance(result, int) else 0
