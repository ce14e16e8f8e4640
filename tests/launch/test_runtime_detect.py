"""Runtime detection: PATH, profile, --runtime, --version output (one subprocess at most)."""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from hpcrun.errors import EnvironmentNotFoundError, UsageError
from hpcrun.launch.runtime import detect_runtime, parse_version, read_version, require_installed


def _program(directory: Path, name: str, version_line: str) -> Path:
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("text, kind, flavour, version", [
    ("apptainer version 1.3.4", "apptainer", "", "1.3.4"),
    ("apptainer version 1.4.0-1.el9", "apptainer", "", "1.4.0-1.el9"),
    ("singularity-ce version 4.1.0-jammy", "singularity", "singularity-ce", "4.1.0-jammy"),
    ("singularity version 3.8.7-1.el7", "singularity", "singularity", "3.8.7-1.el7"),
    ("SingularityCE version 3.11", "singularity", "singularity", "3.11"),
    ("0.31", "charliecloud", "", "0.31"),
    ("something else", "", "", ""),
])
def test_parse_version(text: str, kind: str, flavour: str, version: str) -> None:
    assert parse_version(text) == (kind, flavour, version)


def test_nothing_installed_is_refused_with_the_reason(tmp_path: Path) -> None:
    info = detect_runtime("", "auto", "", {"PATH": str(tmp_path)}, probe=True)
    assert (info.kind, info.binary) == ("apptainer", "")
    assert "not found (apptainer, singularity, ch-run not on PATH)" in info.reason
    with pytest.raises(EnvironmentNotFoundError, match="no container runtime is installed"):
        require_installed(info)


def test_auto_falls_back_to_charliecloud(tmp_path: Path) -> None:
    """``auto`` means Apptainer, then Singularity, then Charliecloud: ch-run alone is used."""
    _program(tmp_path, "ch-run", "0.31")
    info = detect_runtime("", "auto", "", {"PATH": str(tmp_path)})
    assert (info.kind, info.binary) == ("charliecloud", str(tmp_path / "ch-run"))
    assert info.reason == ('runtime.kind = "auto": the first installed of apptainer, '
                           f'singularity, ch-run; found {tmp_path / "ch-run"}')
    require_installed(info)


def test_auto_prefers_singularity_to_charliecloud(tmp_path: Path) -> None:
    _program(tmp_path, "ch-run", "0.31")
    _program(tmp_path, "singularity", "singularity-ce version 4.1.0")
    info = detect_runtime("", "", "", {"PATH": str(tmp_path)}, probe=True)
    assert (info.kind, info.flavour) == ("singularity", "singularity-ce")


def test_profile_kind_missing_names_the_profile_key(tmp_path: Path) -> None:
    _program(tmp_path, "ch-run", "0.31")
    info = detect_runtime("", "singularity", "", {"PATH": str(tmp_path)})
    assert info.binary == "" and "runtime.kind = \"singularity\"" in info.reason
    with pytest.raises(EnvironmentNotFoundError, match="singularity: the container runtime "
                       "is not installed"):
        require_installed(info)


def test_profile_kind_without_binary(tmp_path: Path) -> None:
    info = detect_runtime("", "singularity", "", {"PATH": str(tmp_path)})
    assert (info.kind, info.binary) == ("singularity", "")


def test_apptainer_preferred_over_singularity(tmp_path: Path) -> None:
    _program(tmp_path, "singularity", "singularity-ce version 4.1.0")
    _program(tmp_path, "apptainer", "apptainer version 1.3.4")
    info = detect_runtime("", "auto", "", {"PATH": str(tmp_path)})
    assert info.kind == "apptainer" and info.binary == str(tmp_path / "apptainer")


def test_singularity_link_to_apptainer_is_apptainer_without_subprocess(tmp_path: Path) -> None:
    real = _program(tmp_path, "apptainer", "apptainer version 1.3.4")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "singularity").symlink_to(real)
    calls: List[str] = []
    info = detect_runtime("", "singularity", "", {"PATH": str(tmp_path / "bin")},
                          probe=False, version_reader=lambda b: calls.append(b) or "")
    assert info.kind == "apptainer" and calls == []


def test_probe_runs_version_once_and_tells_flavour(tmp_path: Path) -> None:
    _program(tmp_path, "singularity", "singularity version 3.5.3")
    calls: List[str] = []

    def reader(binary: str) -> str:
        calls.append(binary)
        return read_version(binary)

    info = detect_runtime("", "auto", "", {"PATH": str(tmp_path)}, probe=True,
                          version_reader=reader)
    assert (info.kind, info.flavour, info.version) == ("singularity", "singularity", "3.5.3")
    assert len(calls) == 1


def test_apptainer_answering_as_singularity_binary(tmp_path: Path) -> None:
    _program(tmp_path, "singularity", "apptainer version 1.2.5")
    info = detect_runtime("", "", "", {"PATH": str(tmp_path)}, probe=True)
    assert info.kind == "apptainer"


def test_requested_runtime_wins_over_profile(tmp_path: Path) -> None:
    _program(tmp_path, "apptainer", "apptainer version 1.3.4")
    _program(tmp_path, "ch-run", "0.31")
    info = detect_runtime("charliecloud", "apptainer", "", {"PATH": str(tmp_path)})
    assert info.kind == "charliecloud" and info.binary.endswith("ch-run")


def test_profile_path(tmp_path: Path) -> None:
    program = _program(tmp_path, "apptainer", "apptainer version 1.3.4")
    info = detect_runtime("", "auto", str(program), {"PATH": ""})
    assert (info.kind, info.binary) == ("apptainer", str(program))


def test_real_charliecloud_if_installed() -> None:
    import shutil

    if not shutil.which("ch-run"):
        pytest.skip("ch-run not installed")
    info = detect_runtime("charliecloud", "", "", {"PATH": "/usr/bin:/bin"}, probe=True)
    assert info.kind == "charliecloud" and info.version


def test_unknown_runtime() -> None:
    with pytest.raises(UsageError):
        detect_runtime("docker", "", "", {"PATH": ""})
