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
        "Launch: hpcrun \\[--site S] \\[OPTIONS] \\[srun|mpirun|mpiexec ...] IMAGE COMMAND...\n\n"
        "Run `hpcrun --site S --help` for the launch options.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback(invoke_without_command=True)
    def _root(version: bool = typer.Option(False, "--version", help="Print the version.")) -> None:
        if version:
            typer.echo(f"hpcrun {__version__}")
            raise typer.Exit(0)

    import importlib

    from hpcrun.cli.main import SUBCOMMANDS

    for name in (only,) if only in SUBCOMMANDS else SUBCOMMANDS:
        importlib.import_module(f"hpcrun.cli.{name}").register(app)
    return app


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
