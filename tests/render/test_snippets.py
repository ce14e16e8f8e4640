"""Environment snippets round-trip any bytes through the REAL shells (and Lua via Lmod)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcrun.errors import UsageError
from hpcrun.render.snippets import render

PRINT_ENV = ("import os,sys; "
             "sys.stdout.buffer.write(os.environb.get(sys.argv[1].encode(), b'<unset>'))")

# How each real shell sources a file and then runs a child that prints the variable.
SOURCE = {
    "bash": ["bash", "--norc", "--noprofile", "-c", '. "$0"; exec "$1" -c "$2" HPCRUN_T'],
    "sh": ["dash", "-c", '. "$0"; exec "$1" -c "$2" HPCRUN_T'],
    "zsh": ["zsh", "-f", "-c", 'source "$0"; exec "$1" -c "$2" HPCRUN_T'],
    "tcsh": ["tcsh", "-f", "-c", 'source $argv[1]:q; exec $argv[2]:q -c $argv[3]:q HPCRUN_T'],
    "csh": ["tcsh", "-f", "-c", 'source $argv[1]:q; exec $argv[2]:q -c $argv[3]:q HPCRUN_T'],
    "fish": ["fish", "--no-config", "-c", 'source $argv[1]; exec $argv[2] -c $argv[3] HPCRUN_T'],
}

values = st.binary(max_size=60).filter(lambda b: b"\x00" not in b).map(
    lambda b: b.decode("utf-8", "surrogateescape"))
nasty = st.sampled_from(["", "'", '"', "$HOME", "`id`", "!!", "a\nb", "\\", "\\\n", "*", "~",
                         "a b", "$(id)", "%s", "é", "\t", "\r\n", "'\\''", "!\n!", "\xff"])


def _round_trip(shell: str, value: str, tmp: Path) -> bytes:
    exe = shutil.which(SOURCE[shell][0])
    if exe is None:
        pytest.skip(f"{SOURCE[shell][0]} is not installed")
    snippet = tmp / f"snippet.{shell}"
    snippet.write_bytes(os.fsencode(render(shell, [("HPCRUN_T", value)])))
    argv = SOURCE[shell] + [str(snippet), sys.executable, PRINT_ENV]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp)}
    done = subprocess.run(argv, capture_output=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


@pytest.mark.parametrize("shell", sorted(SOURCE))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(values, nasty))
def test_round_trip_through_real_shell(shell: str, value: str, tmp_path: Path) -> None:
    assert _round_trip(shell, value, tmp_path) == value.encode("utf-8", "surrogateescape")


@pytest.mark.parametrize("shell", sorted(SOURCE))
def test_several_assignments_and_unset(shell: str, tmp_path: Path) -> None:
    text = render(shell, [("A_ONE", "1"), ("HPCRUN_T", "two words")], unsets=["NOT_THERE"])
    assert text.count("\n") == 3
    snippet = tmp_path / "s"
    snippet.write_text(text)
    argv = SOURCE[shell] + [str(snippet), sys.executable, PRINT_ENV]
    out = subprocess.run(argv, capture_output=True, env={"PATH": os.environ["PATH"]}, timeout=30)
    assert out.stdout == b"two words", out.stderr


def test_nul_and_bad_names_are_rejected() -> None:
    with pytest.raises(UsageError, match="NUL"):
        render("bash", [("X", "a\x00b")])
    with pytest.raises(UsageError, match="invalid environment variable name"):
        render("bash", [("1X", "a")])
    with pytest.raises(UsageError, match="unknown shell"):
        render("powershell", [("X", "a")])


def test_lua_escapes_every_unusual_byte() -> None:
    text = render("lua", [("X", 'a"\\\t\udcff')])
    assert text == 'pushenv("X", "a\\"\\\\\\009\\255")\n'


def test_lua_rejects_a_newline_lmod_would_cut() -> None:
    with pytest.raises(UsageError, match="newline"):
        render("lua", [("X", "a\nb")])


LMOD_INIT = Path("/usr/share/lmod/lmod/init/bash")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(values, nasty).filter(lambda v: "\n" not in v))
def test_round_trip_through_real_lmod(value: str, tmp_path: Path) -> None:
    if not LMOD_INIT.exists():
        pytest.skip("Lmod is not installed (Debian package lmod)")
    (tmp_path / "t").mkdir(exist_ok=True)
    (tmp_path / "t" / "1.lua").write_bytes(os.fsencode(render("lua", [("HPCRUN_T", value)])))
    script = (f"source {LMOD_INIT}; module use {tmp_path}; module load t/1 || exit 9; "
              f'exec "$0" -c "$1" HPCRUN_T')
    done = subprocess.run(["bash", "--norc", "-c", script, sys.executable, PRINT_ENV],
                          capture_output=True, env={"PATH": os.environ["PATH"],
                                                    "HOME": str(tmp_path)}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == value.encode("utf-8", "surrogateescape")
