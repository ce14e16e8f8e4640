"""Reading ``RUNTIME --version`` through spython's command runner, behind one adapter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, List

import pytest

from hpcrun.launch import runtime as rt
from hpcrun.launch.runtime import detect_runtime

spython_utils = pytest.importorskip("spython.utils")


def stand_in(directory: Path, name: str, text: str, status: int = 0) -> Path:
    """A recording stand-in: appends its arguments to ``calls`` and prints ``text``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f'#!/bin/sh\necho "$*" >> "{directory}/calls"\nprintf "%s\\n" "{text}"\n'
                    f"exit {status}\n")
    path.chmod(0o755)
    return path


def calls(directory: Path) -> List[str]:
    record = directory / "calls"
    return record.read_text().splitlines() if record.exists() else []


@pytest.fixture()
def through_spython(monkeypatch: pytest.MonkeyPatch) -> List[List[str]]:
    """Count what goes through spython's real run_command."""
    seen: List[List[str]] = []
    real = spython_utils.run_command

    def counting(cmd: List[str], **kw: Any) -> Any:
        seen.append(list(cmd))
        return real(cmd, **kw)

    monkeypatch.setattr(spython_utils, "run_command", counting)
    return seen


@pytest.mark.parametrize("name, text, expected", [
    ("apptainer", "apptainer version 1.3.4", ("apptainer", "", "1.3.4")),
    ("singularity", "singularity-ce version 4.1.0", ("singularity", "singularity-ce", "4.1.0")),
    ("singularity", "singularity version 3.8.7", ("singularity", "singularity", "3.8.7")),
    # Apptainer's compatibility program answers as apptainer: spython alone could not tell.
    ("singularity", "apptainer version 1.2.5", ("apptainer", "", "1.2.5")),
])
def test_version_read_through_spython(tmp_path: Path, through_spython: List[List[str]],
                                      name: str, text: str, expected: tuple) -> None:
    binary = stand_in(tmp_path / "bin", name, text)
    info = detect_runtime("", "auto", "", {"PATH": str(tmp_path / "bin")}, probe=True)
    assert (info.kind, info.flavour, info.version) == expected
    assert info.binary == str(binary)
    assert through_spython == [[str(binary), "--version"]]
    assert calls(tmp_path / "bin") == ["--version"]  # exactly one run


def test_failing_runtime_gives_no_version(tmp_path: Path,
                                          through_spython: List[List[str]]) -> None:
    stand_in(tmp_path / "bin", "singularity", "FATAL: broken install", status=1)
    info = detect_runtime("", "auto", "", {"PATH": str(tmp_path / "bin")}, probe=True)
    assert (info.kind, info.flavour, info.version) == ("singularity", "", "")
    assert calls(tmp_path / "bin") == ["--version"]  # no second try


@pytest.mark.parametrize("failure", [SystemExit(1), RuntimeError("spython bug"),
                                     KeyError("return_code")])
def test_spython_can_never_end_the_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           failure: BaseException) -> None:
    def broken(cmd: List[str], **kw: Any) -> Any:
        raise failure

    monkeypatch.setattr(spython_utils, "run_command", broken)
    stand_in(tmp_path / "bin", "apptainer", "apptainer version 1.3.4")
    info = detect_runtime("", "auto", "", {"PATH": str(tmp_path / "bin")}, probe=True)
    assert (info.kind, info.version) == ("apptainer", "1.3.4")  # the plain fallback
    assert calls(tmp_path / "bin") == ["--version"]


def test_spython_missing_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spython.utils", None)  # import fails
    binary = stand_in(tmp_path / "bin", "singularity", "singularity-ce version 4.1.0")
    assert rt.read_version(str(binary)) == "singularity-ce version 4.1.0"


def test_dry_run_never_imports_spython(tmp_path: Path) -> None:
    """--dry-run / --explain / --json read no version and do not import spython."""
    stand_in(tmp_path / "bin", "apptainer", "apptainer version 1.3.4")
    site = tmp_path / "s.toml"
    site.write_text('schema = 1\nname = "s"\n')
    code = ("import sys\nfrom hpcrun.cli.main import main\n"
            "for mode in ('--dry-run', '--json', '--explain'):\n"
            f"    assert main([mode, '--no-check', '--site', {str(site)!r}, 'srun', 'x.sif', "
            "'true']) == 0\n"
            "sys.stderr.write('SPYTHON=%s' % any(m.startswith('spython') for m in sys.modules))\n")
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "SPYTHON=False" in done.stderr
    assert calls(tmp_path / "bin") == []
