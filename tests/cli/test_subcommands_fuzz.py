"""Any subcommand line gives an exit code, never a traceback (property-based).

Subcommands run in-process through ``hpcrun.cli.main.main``; every path they could write
to is inside the test's temporary directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.terminal import run_main
from hpcrun.cli.main import EXIT_CODES, EXIT_INTERNAL

DOCUMENTED = {code for code, _, _, _ in EXIT_CODES}

COMMANDS = [["site", "list"], ["site", "show"], ["site", "validate"], ["site", "validate",
            "--deep"], ["site", "schema"], ["inspect"], ["inspect", "--json"], ["check"],
            ["check", "--json"], ["env"], ["env", "--shell"], ["module"]]
WORDS = ["zeus", "debian-mpich", "nosuch", "--site", "--json", "--shell", "fish", "lua",
         "pwsh", "--app", "--", "python3", "--abi-policy", "strict", "--runtime",
         "charliecloud", "--name", "x/y", "../x", "--deep", "--plain", "IMAGE", "/etc/passwd",
         "/dev/null", "PROFILE", "--no-cache", "--force", "--wrappers", ""]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("fuzz")
    image = root / "img"
    (image / "etc").mkdir(parents=True)
    profile = root / "bad.toml"
    profile.write_text("schema = 1\nname = 'bad'\n[mpi]\nfamily = 'mpich'\nlibraries = 3\n")
    return {"IMAGE": str(image), "PROFILE": str(profile)}


# What a real argv can hold: bytes without NUL, decoded as Python decodes argv.
ARGS = st.binary(max_size=8).filter(lambda b: b"\x00" not in b).map(
    lambda b: b.decode("utf-8", "surrogateescape"))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(COMMANDS),
       words=st.lists(st.one_of(st.sampled_from(WORDS),
                                ARGS), max_size=6))
def test_any_subcommand_line_gives_an_exit_code(command: list, words: list, files: dict,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HPCRUN_SITE", "debian-mpich")
    monkeypatch.chdir(tmp_path)
    argv = [*command, *(files.get(w, w) for w in words)]
    if command[0] == "module":
        argv += ["-o", str(tmp_path / "modules")]
    code, _out, errors = run_main(argv)
    assert code in DOCUMENTED and code != EXIT_INTERNAL, (code, errors)
    assert "Traceback" not in errors
