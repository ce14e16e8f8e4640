"""Entry point: dispatch, and the one place where errors become exit codes.

``hpcrun [OPTIONS] [LAUNCHER [LAUNCHER-OPTIONS]] IMAGE COMMAND...`` is the launch path; it
is parsed by hand (``hpcrun.cli.run``) so that launching never imports typer or rich.
``hpcrun site|inspect|check|env|module ...`` are subcommands served by typer
(``hpcrun.cli.app``), imported only when used.
"""

from __future__ import annotations

import os
import sys

from hpcrun.errors import (
    ConfigError,
    EnvironmentNotFoundError,
    ExecError,
    HpcrunError,
    ImageError,
    IncompatibleError,
    OutputError,
    UsageError,
)

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, List, Optional

SUBCOMMANDS = ("site", "inspect", "check", "env", "module", "recipe", "job")
# Set by the shell completion scripts typer writes (``hpcrun --install-completion SHELL``).
COMPLETE_VAR = "_HPCRUN_COMPLETE"

# The exit codes, the single source (the README's table is tested against it).  hpcrun's own
# outcomes use 64-78, the range of BSD's sysexits.h (same meaning where one fits): a job's
# own status is passed through untouched and is commonly 0, 1, 2, 126, 127, 128+signal or
# 255, so a script can tell "hpcrun refused" from "the job failed".
# (code, name, the error class it stands for or None, what it means)
EXIT_CODES = (
    (0, "ok", None, "success; a launch returns the job's own status instead; "
     "`hpcrun check`: compatible"),
    (64, "usage", UsageError, "the command line is wrong (option, missing image or command)"),
    (65, "image", ImageError, "the image is missing, unreadable, corrupt, encrypted or of "
     "an unsupported kind"),
    (67, "warnings", None, "`hpcrun check` only: compatible, with warnings"),
    (68, "incompatible", IncompatibleError, "the host MPI cannot serve this image or "
     "application, or the launcher cannot start its ranks (the launch is refused; "
     "`hpcrun check`'s verdict)"),
    (69, "not-found", EnvironmentNotFoundError, "a program hpcrun needs (launcher, container "
     "runtime) is not installed or not on PATH"),
    (70, "internal", None, "a bug in hpcrun (an unexpected exception; --debug shows it)"),
    (71, "exec", ExecError, "the system refused to start the launcher or runtime (argument "
     "list too long, not an executable, bad #! line)"),
    (73, "cannot-write", OutputError, "hpcrun cannot create or write what it needs (stage "
     "directory, output file): permissions, read-only or full file system"),
    (74, "io", None, "a file could not be read or written (an I/O error the above do not "
     "cover)"),
    (78, "config", ConfigError, "the site profile is missing or invalid, or the plan it "
     "gives has errors; `hpcrun site validate` found errors"),
)
EXIT_OK = 0
EXIT_USAGE = 64
EXIT_IMAGE = 65
EXIT_WARNINGS = 67
EXIT_INCOMPATIBLE = 68
EXIT_NOT_FOUND = 69
EXIT_INTERNAL = 70
EXIT_EXEC = 71
EXIT_CANNOT_WRITE = 73
EXIT_IO = 74
EXIT_CONFIG = 78


def exit_code(error: BaseException) -> int:
    """The exit code of an error: the most specific class in :data:`EXIT_CODES`."""
    for cls in type(error).__mro__:
        for code, _, family, _ in EXIT_CODES:
            if family is cls:
                return code
    if isinstance(error, OSError):
        return EXIT_IO
    return EXIT_INTERNAL


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


def _help_args(topic: List[str]) -> Optional[List[str]]:
    """``hpcrun help [COMMAND [SUB]]`` as the arguments that print that help; None for the
    launch path's help (``hpcrun help launch``)."""
    if not topic:
        return ["--help"]
    if topic[0] in ("launch", "run"):
        return None
    if topic[0] not in SUBCOMMANDS:
        from hpcrun.errors import UsageError

        raise UsageError(f"hpcrun help {topic[0]}: no such command",
                         f"commands: launch, {', '.join(SUBCOMMANDS)}; e.g. hpcrun help check")
    return [*topic, "--help"]


def main(argv: Optional[List[str]] = None) -> int:
    """Run hpcrun with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    _tolerant_streams()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    try:
        word = _first_word(args)
        if word in ("--version", "-V"):
            from hpcrun import __version__

            sys.stdout.write(f"hpcrun {__version__}\n")
            return 0
        if word == "help":
            plain = [a for a in args if a != "--debug"]
            wanted = _help_args(plain[1:])
            if wanted is None:
                from hpcrun.cli.run import USAGE

                sys.stdout.write(USAGE)
                return 0
            from hpcrun.cli.app import run_app

            return run_app(wanted)
        if (word in SUBCOMMANDS or word in ("--help", "-h", None)
                or word.startswith(("--install-completion", "--show-completion"))
                or os.environ.get(COMPLETE_VAR)):
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
        return exit_code(error)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141
    except OSError as error:  # one the pipeline did not name: still one line, no traceback
        if debug:
            raise
        where = f"{error.filename}: " if error.filename else ""
        report(HpcrunError(f"{where}{error.strerror or error}",
                           "check the file's permissions and the free space on its file "
                           "system"))
        return EXIT_IO
    except Exception as error:  # a bug: one line and the way to report it
        if debug:
            raise
        report(HpcrunError(f"internal error: {type(error).__name__}: {error}",
                           "this is a bug in hpcrun: please report it with the output of "
                           "the same command run with --debug"))
        return EXIT_INTERNAL
