"""Entry point: dispatch, and the one place where errors become exit codes.

``hpcrun [OPTIONS] [LAUNCHER [LAUNCHER-OPTIONS]] IMAGE COMMAND...`` is the launch path; it
is parsed by hand (``hpcrun.cli.run``) so that launching never imports typer or rich.
``hpcrun site|inspect|check|env|module ...`` are subcommands served by typer
(``hpcrun.cli.app``), imported only when used.
"""

from __future__ import annotations

import os
import sys

from hpcrun.errors import HpcrunError

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, List, Optional

SUBCOMMANDS = ("site", "inspect", "check", "env", "module")


def _debug_requested(argv: List[str]) -> bool:
    return "--debug" in argv or os.environ.get("HPCRUN_DEBUG", "") not in ("", "0")


def report(error: HpcrunError) -> None:
    """Print an error as one line plus an optional hint line, to stderr."""
    sys.stderr.write(f"hpcrun: error: {error.message}\n")
    if error.hint:
        sys.stderr.write(f"hpcrun: hint: {error.hint}\n")


def _first_word(argv: List[str]) -> Optional[str]:
    """The first argument that is not a global option (``--debug``)."""
    for arg in argv:
        if arg == "--debug":
            continue
        return arg
    return None


def _direct(word: str) -> Callable[[List[str]], Optional[int]]:
    """The typer-free runner of a subcommand's usual forms (typer's import costs more than
    a warm ``inspect`` or ``check``)."""
    if word == "inspect":
        from hpcrun.cli.inspect import run_direct
    else:
        from hpcrun.cli.check import run_direct
    return run_direct


def _tolerant_streams() -> None:
    """Paths may hold any bytes (Python decodes them with surrogateescape): write them back
    as the same bytes on stdout, and escaped on stderr, whatever the locale's error mode."""
    for stream, errors in ((sys.stdout, "surrogateescape"), (sys.stderr, "backslashreplace")):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors=errors)
            except (ValueError, OSError):
                pass


def main(argv: Optional[List[str]] = None) -> int:
    """Run hpcrun with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    _tolerant_streams()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    try:
        word = _first_word(args)
        if word in SUBCOMMANDS or word in ("--help", "-h", "--version", None):
            plain = [a for a in args if a != "--debug"]
            if word in ("inspect", "check"):  # usual forms need no typer (see run_direct)
                direct = _direct(word)
                done = direct(plain[1:])
                if done is not None:
                    return done
            from hpcrun.cli.app import run_app

            return run_app(plain)
        from hpcrun.cli.run import run

        return run(args)
    except HpcrunError as error:
        if debug:
            import traceback

            traceback.print_exc()
        report(error)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141
