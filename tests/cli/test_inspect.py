"""`hpcrun inspect` through the real entry point, on a real sandbox image."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict

import pytest

from helpers.inspect_trees import MissingTool, mini_roots
from hpcrun.cli.inspect import split_arguments
from hpcrun.cli.main import EXIT_IMAGE, EXIT_USAGE, main
from hpcrun.errors import UsageError
from hpcrun.image.serialize import facts_from_json


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, mpi_wheel) -> Path:  # type: ignore[no-untyped-def]
    if shutil.which("ldconfig") is None and not Path("/sbin/ldconfig").exists():
        pytest.skip("ldconfig not installed")
    try:
        roots: Dict[str, Path] = mini_roots(
            str(tmp_path_factory.getbasetemp()), str(mpi_wheel("impi_rt"))
        )
    except MissingTool as error:
        pytest.skip(str(error))
    return roots["cached"]


def test_json_output(sandbox: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["inspect", "--json", "--no-cache", str(sandbox), "--app", "hello_mpich", "-v"])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(out)
    facts = facts_from_json(data)
    assert facts is not None and facts.kind == "sandbox"
    assert facts.app is not None and facts.app.command == ("hello_mpich", "-v")
    assert facts.app.mpi_family == "mpich"
    assert {m.soname for m in facts.mpi} >= {"libmpich.so.12", "libmpi.so.40"}


def test_summary_for_people(
    sandbox: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # no folding of long names in the tables
    code = main(["inspect", str(sandbox), "--no-cache", "--", "hello_openmpi"])
    out = capsys.readouterr().out
    assert code == 0
    assert "x86_64" in out and "glibc 2.36" in out
    assert "libmpich.so.12" in out and "4.0.2" in out and "Open MPI" in out
    assert "hello_openmpi" in out and "openmpi" in out


def test_missing_image_is_an_image_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["inspect", str(tmp_path / "nothing.sif")])
    assert code == EXIT_IMAGE
    assert "nothing.sif" in capsys.readouterr().err


def test_bad_option_after_image(sandbox: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["inspect", str(sandbox), "--bogus"]) == EXIT_USAGE
    assert "--bogus" in capsys.readouterr().err


def test_split_arguments() -> None:
    assert split_arguments(["--json", "--app", "python3", "-m", "x"]) == (
        ["python3", "-m", "x"],
        True,
        False,
    )
    assert split_arguments(["--no-cache", "--", "a.out", "--json"]) == (
        ["a.out", "--json"],
        False,
        True,
    )
    assert split_arguments([]) == ([], False, False)
    with pytest.raises(UsageError):
        split_arguments(["--app"])
