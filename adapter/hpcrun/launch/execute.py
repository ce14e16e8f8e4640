"""Exec the plan: replace the hpcrun process by the launcher (or the runtime).

``os.execve`` and no child in between, so the job's exit status and signals are the
launcher's own.  Everything that can fail is checked before the exec: the program must be
on PATH (else :class:`EnvironmentNotFoundError`), error diagnostics stop the launch unless
forced (:class:`IncompatibleError` for an incompatible verdict, :class:`ConfigError` for
profile problems).
"""

from __future__ import annotations

import errno
import os
import sys

from hpcrun.errors import ConfigError, EnvironmentNotFoundError, ExecError, IncompatibleError
from hpcrun.launch.which import which
from hpcrun.plan.model import INCOMPATIBLE, Invocation, Plan

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Callable, Dict, Mapping, Optional, Sequence


def final_environment(invocation: Invocation, environ: Mapping[str, str]) -> Dict[str, str]:
    """The caller's environment with the invocation's changes applied."""
    env = dict(environ)
    for name in invocation.env_unset:
        env.pop(name, None)
    env.update(dict(invocation.env_set))
    return env


# Launcher/host MPI mismatches (hpcrun.resolve.wireup): refused with their own message.
WIREUP_ERRORS = ("launcher-cannot-wire-up", "srun-mpi-plugin-not-offered")
SHOWN_REASONS = 3  # the rest is in --explain; a job log wants the first few, not thirty


def check_plan(plan: Plan, force: bool = False) -> None:
    """Refuse to launch a plan with errors unless ``force``.

    An incompatible verdict raises :class:`IncompatibleError`; other error diagnostics
    :class:`ConfigError` naming the first one.
    """
    if force:
        return
    wireup = next((d for d in plan.errors if d.code in WIREUP_ERRORS), None)
    if wireup is not None:  # the launch itself cannot work, whatever the image holds
        raise IncompatibleError(wireup.message, (wireup.hint + "; " if wireup.hint else "")
                                + "--force launches anyway")
    if plan.verdict == INCOMPATIBLE:
        reasons = list(dict.fromkeys(d.message for d in plan.errors))
        shown = "; ".join(reasons[:SHOWN_REASONS]) or "the resolver said incompatible"
        if len(reasons) > SHOWN_REASONS:
            shown += f" (and {len(reasons) - SHOWN_REASONS} more)"
        first_hint = next((d.hint for d in plan.errors if d.hint), "")
        raise IncompatibleError(f"the host MPI cannot serve this application: {shown}",
                                (first_hint + "; " if first_hint else "")
                                + "see `hpcrun --explain ...`; --force launches anyway")
    if plan.errors:
        first = plan.errors[0]
        more = f" (and {len(plan.errors) - 1} more)" if len(plan.errors) > 1 else ""
        raise ConfigError(f"{first.message}{more}",
                          (first.hint + "; " if first.hint else "")
                          + "see `hpcrun --explain ...`; --force launches anyway")


def print_warnings(plan: Plan, stream: Optional[IO[str]] = None) -> None:
    """One line per warning on stderr, so the job log says what was odd."""
    out = stream or sys.stderr
    for diag in plan.warnings:
        out.write(f"hpcrun: warning: {' '.join(diag.message.split())}\n")


def find_program(name: str, environ: Mapping[str, str]) -> str:
    """Absolute path of ``name`` on the final PATH, or raise EnvironmentNotFoundError."""
    found = which(name, path=environ.get("PATH", os.defpath))
    if not found:
        raise EnvironmentNotFoundError(f"{name}: not found on PATH",
                                       f"install {os.path.basename(name)} or load its module, "
                                       "or fix PATH")
    return found


def execute(plan: Plan, environ: Mapping[str, str], runtime_needed: Sequence[str] = (),
            exec_fn: Optional[Callable[[str, Sequence[str], Mapping[str, str]], None]] = None
            ) -> None:
    """Replace this process by ``plan.invocation`` (never returns on success).

    ``runtime_needed`` names programs that must also exist (the container runtime when a
    launcher starts it on this node).  ``exec_fn`` replaces ``os.execve`` in tests.
    """
    invocation = plan.invocation
    env = final_environment(invocation, environ)
    program = find_program(invocation.argv[0], env)
    for name in runtime_needed:
        find_program(name, env)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        (exec_fn or os.execve)(program, list(invocation.argv), env)
    except OSError as error:
        raise exec_error(program, list(invocation.argv), env, error) from None


def _first_line(program: str) -> bytes:
    try:
        with open(program, "rb") as stream:
            return stream.read(256).split(b"\n", 1)[0]
    except OSError:
        return b""


def exec_error(program: str, argv: Sequence[str], env: Mapping[str, str],
               error: OSError) -> ExecError:
    """The one-line reason why ``execve(program, argv, env)`` failed, with what to do."""
    if error.errno == errno.E2BIG:
        size = sum(len(os.fsencode(a)) + 1 for a in argv) + sum(
            len(os.fsencode(k)) + len(os.fsencode(v)) + 2 for k, v in env.items())
        longest = max(argv, key=len) if argv else ""
        return ExecError(
            f"{program}: argument list too long for the kernel ({len(argv)} arguments and "
            f"{len(env)} variables, {size} bytes; the longest argument is {len(longest)} "
            "bytes)",
            "bind whole directories instead of many single files in the site profile, or "
            "pass fewer or shorter arguments (a file of inputs instead of a list)")
    head = _first_line(program)
    if error.errno == errno.ENOENT and head.startswith(b"#!") and head.endswith(b"\r"):
        return ExecError(
            f"{program}: its #! line ends with a carriage return (the script has DOS/Windows "
            "line endings), so the system looks for an interpreter that does not exist",
            f"convert it to Unix line endings (dos2unix {program}, or sed -i 's/\\r$//')")
    if error.errno == errno.ENOENT and head.startswith(b"#!"):
        interpreter = head[2:].strip().split(b" ")[0].decode("utf-8", "replace")
        return ExecError(f"{program}: its #! interpreter {interpreter} does not exist",
                         "install that interpreter or fix the script's first line")
    if error.errno == errno.ENOEXEC:
        return ExecError(f"{program}: not an executable the system can start (neither an "
                         f"ELF program for this machine nor a script with a #! line)",
                         "reinstall the launcher, or point PATH at a working one")
    if error.errno in (errno.EACCES, errno.EPERM):
        return ExecError(f"{program}: permission denied (not executable, or on a file "
                         "system mounted noexec)",
                         f"chmod +x {program}, or use a copy on an executable file system")
    return ExecError(f"{program}: cannot be started: {error.strerror or error}",
                     "check that the launcher is installed correctly")
