"""The typer application for the subcommands (site, inspect, check, env, module)."""

from __future__ import annotations

from typing import List, Type, cast

import typer

from hpcrun import __version__


def build(only: str = "") -> typer.Typer:
    """Create the typer app and let each subcommand module register itself.

    With ``only`` (the subcommand being run) just that module is imported and registered:
    each subcommand costs its own imports, not everyone's.
    """
    app = typer.Typer(
        name="hpcrun",
        help="Run MPI/GPU containers with the host MPI (the bind model).\n\n"
        "Launch: hpcrun [--site S] [OPTIONS] [srun|mpirun|mpiexec ...] IMAGE COMMAND...\n\n"
        "Run `hpcrun help launch` for the launch options and `hpcrun help COMMAND` for a "
        "command's. Shell completion: `hpcrun --install-completion bash` (or zsh, fish).",
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # click's plain help: paragraphs rewrapped, the same in a pipe
    )

    @app.callback(invoke_without_command=True)
    def _root(version: bool = typer.Option(False, "--version", "-V",
                                           help="Print the version and exit.")) -> None:
        if version:
            typer.echo(f"hpcrun {__version__}")
            raise typer.Exit(0)

    import importlib

    from hpcrun.cli.main import SUBCOMMANDS

    for name in (only,) if only in SUBCOMMANDS else SUBCOMMANDS:
        importlib.import_module(f"hpcrun.cli.{name}").register(app)
    _short_help(app, "")
    return app


# One whole sentence per command for the command lists of `hpcrun help` (click would cut
# the first lines of the docstring after ~45 characters, mid-sentence).
SHORT_HELP = {
    "inspect": "Show what hpcrun reads from an image.",
    "check": "Tell whether the site's host MPI can serve an image.",
    "env": "Print the shell statements that set up a plain apptainer exec.",
    "module": "Write an Lmod modulefile for a site.",
    "site": "List, show, validate and detect site profiles.",
    "site list": "List the site profiles on the search path.",
    "site show": "Print a site profile as TOML.",
    "site validate": "Check a site profile (--offline: the file alone).",
    "site schema": "Print the JSON Schema of site profiles.",
    "site detect": "Write a site profile for this host.",
    "recipe": "Write an Apptainer recipe the site's host MPI can serve.",
    "job": "Check and describe per-project job files (hpcrun.toml).",
    "job validate": "Check a job file offline.",
    "job schema": "Print the JSON Schema of job files.",
}


def _short_help(app: typer.Typer, prefix: str) -> None:
    """Set :data:`SHORT_HELP` on the commands and groups of ``app`` that have none."""
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else "")
        text = SHORT_HELP.get(f"{prefix}{name}")
        if text and not command.short_help:
            command.short_help = text
    for group in app.registered_groups:
        name = group.name or ""
        text = SHORT_HELP.get(f"{prefix}{name}")
        if text and not isinstance(group.short_help, str):
            group.short_help = text
        if group.typer_instance is not None:
            _short_help(group.typer_instance, f"{prefix}{name} ")


def _click_exception() -> Type[Exception]:
    """Click's ``ClickException``, wherever this typer keeps click (typer >= 0.26 vendors
    it as ``typer._click``, older releases use the ``click`` package)."""
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == "ClickException":
            return cast(Type[Exception], cls)
    return Exception  # pragma: no cover - every typer release derives from ClickException


def run_app(args: List[str]) -> int:
    """Run the typer app; HpcrunError propagates to ``hpcrun.cli.main``."""
    app = build(args[0] if args and not args[0].startswith("-") else "")
    try:
        result = app(args=args, prog_name="hpcrun", standalone_mode=False)
    except typer.Exit as done:
        return int(done.exit_code)
    except _click_exception() as error:
        from hpcrun.cli.main import EXIT_USAGE

        error.show()  # type: ignore[attr-defined]  # click API, not on Exception
        return EXIT_USAGE
    except typer.Abort:
        return 130
    return int(result) if isinstance(result, int) else 0
