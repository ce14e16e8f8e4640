"""execute: checks before the exec, the final environment, the exec itself."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, List

import pytest

from hpcrun.cli.main import exit_code
from hpcrun.errors import ConfigError, EnvironmentNotFoundError, IncompatibleError
from hpcrun.launch.execute import (
    check_plan,
    execute,
    final_environment,
    find_program,
    print_warnings,
)
from hpcrun.plan.model import (
    ERROR,
    INCOMPATIBLE,
    WARNING,
    Diagnostic,
    Invocation,
    Plan,
)


def _plan(**kw: Any) -> Plan:
    base = dict(site="t", runtime="apptainer", runtime_binary="apptainer", launcher=(),
                runtime_args=("exec",), image="a.sif", command=("x",))
    base.update(kw)
    return Plan(**base)


def test_final_environment_applies_set_and_unset() -> None:
    inv = Invocation(("x",), (("A", "1"), ("B", "")), ("C",))
    assert final_environment(inv, {"A": "0", "C": "3", "D": "4"}) == {"A": "1", "B": "",
                                                                       "D": "4"}


def test_errors_stop_the_launch_unless_forced() -> None:
    plan = _plan(diagnostics=(Diagnostic(ERROR, "bind-conflict", "two binds", "fix it"),))
    with pytest.raises(ConfigError) as caught:
        check_plan(plan)
    assert "two binds" in caught.value.message and "--force" in caught.value.hint
    check_plan(plan, force=True)


def test_incompatible_verdict() -> None:
    plan = _plan(verdict=INCOMPATIBLE,
                 diagnostics=(Diagnostic(ERROR, "abi", "Open MPI app, MPICH host"),))
    with pytest.raises(IncompatibleError) as caught:
        check_plan(plan)
    assert exit_code(caught.value) == 68 and "Open MPI app" in caught.value.message


def test_incompatible_reasons_are_deduplicated_and_capped() -> None:
    reasons = [Diagnostic(ERROR, "arch", "built for i686", "use an x86_64 image")] * 2 + [
        Diagnostic(ERROR, "missing", f"library {i} missing") for i in range(5)]
    with pytest.raises(IncompatibleError) as caught:
        check_plan(_plan(verdict=INCOMPATIBLE, diagnostics=tuple(reasons)))
    message = caught.value.message
    assert message.count("built for i686") == 1
    assert "library 1 missing" in message and "library 2 missing" not in message
    assert message.endswith("(and 3 more)")
    assert caught.value.hint.startswith("use an x86_64 image; ")


def test_warnings_one_line_each() -> None:
    plan = _plan(diagnostics=(Diagnostic(WARNING, "w", "two\nlines"),
                              Diagnostic(WARNING, "v", "second")))
    out = io.StringIO()
    print_warnings(plan, out)
    assert out.getvalue() == "hpcrun: warning: two lines\nhpcrun: warning: second\n"


def test_missing_program(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentNotFoundError) as caught:
        find_program("srun", {"PATH": str(tmp_path)})
    assert exit_code(caught.value) == 69 and "srun" in caught.value.message


def test_execute_uses_the_program_on_the_final_path(tmp_path: Path) -> None:
    program = tmp_path / "srun"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    calls: List[Any] = []
    plan = _plan(invocation=Invocation(("srun", "-n", "2", "apptainer"),
                                       (("PATH", str(tmp_path)),), ("X",)))
    execute(plan, {"PATH": "/nowhere", "X": "1"}, (),
            exec_fn=lambda p, a, e: calls.append((p, a, e)))
    assert calls == [(str(program), ["srun", "-n", "2", "apptainer"], {"PATH": str(tmp_path)})]
