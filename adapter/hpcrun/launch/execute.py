"""Exec the plan: replace the hpcrun process by the launcher (or the runtime).

``os.execve`` and no child in between, so the job's exit status and signals are the
launcher's own.  Everything that can fail is checked before the exec: the program must be
on PATH (else :class:`EnvironmentNotFoundError`), error diagnostics stop the launch unless
forced (:class:`IncompatibleError` for an incompatible verdict, :class:`ConfigError` for
profile problems).
"""

from __future__ import annotations

import os
import sys

from hpcrun.errors import ConfigError, EnvironmentNotFoundError, IncompatibleError
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


SHOWN_REASONS = 3  # the rest is in --explain; a job log wants the first few, not thirty


def check_plan(plan: Plan, force: bool = False) -> None:
    """Refuse to launch a plan with errors unless ``force``.

    An incompatible verdict raises :class:`IncompatibleError`; other error diagnostics
    :class:`ConfigError` naming the first one.
    """
    if force:
        return
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
    (exec_fn or os.execve)(program, list(invocation.argv), env)
