"""sh_quote / sh_join: round trips through real sh, dash, bash and zsh, for any bytes."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcrun.errors import UsageError
from hpcrun.render.shell import sh_join, sh_quote

SHELLS = [s for s in ("sh", "dash", "bash", "zsh") if shutil.which(s)]

# Any bytes but NUL (argv and shell words cannot hold NUL), as Python sees argv: decoded
# with the file system encoding and surrogateescape.
words = st.binary(max_size=40).filter(lambda b: b"\x00" not in b).map(os.fsdecode)
awkward = st.sampled_from(["", " ", "'", '"', "\\", "$HOME", "`id`", "$(id)", "*", "?", "[a]",
                           "~", "~root", "#x", "=x", "a=b", "-n", "--", "\n", "\t", "é ü",
                           "a'b\"c", "!", "!!", "{a,b}", ";", "&", "|", ">x", "<x", "%1"])


def _echo_back(shell: str, quoted: List[str]) -> List[bytes]:
    script = "printf '%s\\0' " + " ".join(quoted)
    done = subprocess.run([shell, "-c", script], stdout=subprocess.PIPE, check=True)
    return done.stdout.split(b"\0")[:-1]


@pytest.mark.parametrize("shell", SHELLS)
@settings(max_examples=60, deadline=None)
@given(items=st.lists(st.one_of(words, awkward), min_size=1, max_size=6))
def test_round_trip_any_bytes(shell: str, items: List[str]) -> None:
    got = _echo_back(shell, [sh_quote(w) for w in items])
    assert got == [os.fsencode(w) for w in items]


@pytest.mark.parametrize("shell", SHELLS)
def test_command_word_with_equals_is_not_an_assignment(shell: str, tmp_path) -> None:
    program = tmp_path / "a=b"
    program.write_text("#!/bin/sh\necho ran \"$@\"\n")
    program.chmod(0o755)
    line = sh_join([str(program), "x=1", "y"])
    done = subprocess.run([shell, "-c", line], stdout=subprocess.PIPE, check=True)
    assert done.stdout == b"ran x=1 y\n"


def test_plain_words_stay_readable() -> None:
    assert sh_join(["srun", "--mpi=pmi2", "-n", "2", "app.sif", "python", "hello.py"]) == \
        "srun --mpi=pmi2 -n 2 app.sif python hello.py"
    assert sh_quote("") == "''"
    assert sh_quote("~") == "'~'"
    assert sh_quote("=x") == "'=x'"
    assert sh_quote("it's") == "'it'\\''s'"


def test_nul_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        sh_quote("a\x00b")
