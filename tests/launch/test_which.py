"""hpcrun's which() answers as shutil.which does on POSIX (it replaces it on the launch path)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import List, Optional

import pytest

from hpcrun.launch.which import which


@pytest.fixture
def bins(tmp_path: Path) -> List[Path]:
    """a/ holds tool (not executable) and dir-tool (a directory); b/ holds tool, executable."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "tool").write_text("#!/bin/sh\n")
    (a / "dir-tool").mkdir()
    (b / "tool").write_text("#!/bin/sh\n")
    (b / "tool").chmod(0o755)
    (b / "dir-tool").write_text("#!/bin/sh\n")
    (b / "dir-tool").chmod(0o755)
    return [a, b]


@pytest.mark.parametrize("name", ["tool", "dir-tool", "absent", "sh"])
@pytest.mark.parametrize("path", ["{a}:{b}", "{b}:{a}", "{a}", "", ":", "{a}::{b}:{a}", None])
def test_same_answer_as_shutil(bins: List[Path], name: str, path: Optional[str]) -> None:
    search = None if path is None else path.format(a=bins[0], b=bins[1])
    assert which(name, search) == shutil.which(name, path=search)


def test_a_name_with_a_directory_is_checked_as_it_is(bins: List[Path]) -> None:
    for program in (str(bins[1] / "tool"), str(bins[0] / "tool"), str(bins[0] / "dir-tool")):
        assert which(program, "") == shutil.which(program, path="")
    assert which(str(bins[1] / "tool"), "") == str(bins[1] / "tool")


def test_empty_entry_is_the_current_directory(bins: List[Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(bins[1])
    assert which("tool", ":") == shutil.which("tool", path=":") == os.path.join("", "tool")
