"""The exit-code table (``hpcrun.cli.main.EXIT_CODES``) is the single source: the README
lists exactly it, every error class maps to its row, and no code is one a job commonly
returns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hpcrun import errors
from hpcrun.cli.main import EXIT_CODES, EXIT_INTERNAL, EXIT_IO, exit_code, main

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_rows() -> list:
    text = README.read_text()
    section = text[text.index("### Exit codes"):]
    section = section[:section.index("\n\n", section.index("| code |"))]
    rows = []
    for line in section.splitlines():
        found = re.match(r"\| (\d+) \| `([a-z-]+)` \| (.*) \|$", line)
        if found:
            rows.append((int(found.group(1)), found.group(2), found.group(3)))
    return rows


def test_readme_lists_exactly_the_table() -> None:
    assert _readme_rows() == [(code, name, meaning) for code, name, _, meaning in EXIT_CODES]


def test_codes_are_distinct_and_stay_out_of_a_jobs_way() -> None:
    codes = [code for code, _, _, _ in EXIT_CODES]
    assert len(set(codes)) == len(codes)
    assert all(code == 0 or 64 <= code <= 78 for code in codes)
    # what jobs, shells and MPI launchers commonly return is never hpcrun's own
    assert not {1, 2, 126, 127, 255} & set(codes)


@pytest.mark.parametrize("cls, code", [
    (errors.UsageError, 64), (errors.ImageError, 65), (errors.ElfError, 65),
    (errors.EncryptedImageError, 65), (errors.IncompatibleError, 68),
    (errors.EnvironmentNotFoundError, 69), (errors.ExecError, 71), (errors.OutputError, 73),
    (errors.ConfigError, 78)])
def test_every_error_class_has_its_code(cls: type, code: int) -> None:
    assert exit_code(cls("x")) == code


def test_every_error_class_of_the_package_is_covered() -> None:
    import importlib
    import pkgutil

    import hpcrun

    found = set()
    for info in pkgutil.walk_packages(hpcrun.__path__, "hpcrun."):
        if info.name.startswith("hpcrun.cli.app") or ".cli." in info.name:
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, errors.HpcrunError):
                found.add(value)
    for cls in found - {errors.HpcrunError}:
        assert exit_code(cls.__new__(cls)) not in (EXIT_INTERNAL, EXIT_IO), cls


def test_usage_and_incompatible_differ_for_check(capsys: pytest.CaptureFixture) -> None:
    assert main(["check"]) == 64  # no image: typer's usage error
    capsys.readouterr()
    assert main(["check", "--site", "debian-mpich", "--bogus-option", "x.sif"]) == 64


def test_an_unexpected_exception_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    import hpcrun.cli.run as run

    def broken(args: list) -> int:
        raise KeyError("surprise")

    monkeypatch.setattr(run, "run", broken)
    assert main(["x.sif", "true"]) == EXIT_INTERNAL
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "hpcrun: error: internal error: KeyError: 'surprise'"
    assert err[1].startswith("hpcrun: hint: this is a bug in hpcrun")
    assert len(err) == 2
