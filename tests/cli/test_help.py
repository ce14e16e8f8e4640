"""`hpcrun --version`/`-V`, `hpcrun help [COMMAND]`, and help texts that read well at 80
columns in a pipe (whole sentences, nothing cut with "...", no boxes)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import List

import pytest

import hpcrun

HPCRUN = shutil.which("hpcrun") or ""


def run(*args: str) -> subprocess.CompletedProcess:
    if not HPCRUN:
        pytest.skip("the hpcrun entry point is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCRUN_")}
    env["COLUMNS"] = "80"
    return subprocess.run([HPCRUN, *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str) -> None:
    done = run(flag)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"hpcrun {hpcrun.__version__}\n",
                                                           "")


@pytest.mark.parametrize("topic, same_as", [
    ([], ["--help"]),
    (["check"], ["check", "--help"]),
    (["site"], ["site", "--help"]),
    (["site", "validate"], ["site", "validate", "--help"]),
    (["launch"], ["--site", "x", "--help"]),
])
def test_help_command(topic: List[str], same_as: List[str]) -> None:
    """`hpcrun help X` answers like `hpcrun X --help`, with no site profile needed."""
    helped, direct = run("help", *topic), run(*same_as)
    assert helped.returncode == direct.returncode == 0, helped.stderr
    assert helped.stdout == direct.stdout and helped.stdout


def test_help_of_an_unknown_command_is_one_usage_error() -> None:
    done = run("help", "nope")
    assert done.returncode == 64 and done.stdout == ""  # usage
    assert done.stderr.splitlines()[0] == "hpcrun: error: hpcrun help nope: no such command"


TOPICS = [[], ["site"], ["inspect"], ["check"], ["env"], ["module"], ["site", "list"],
          ["site", "show"], ["site", "validate"], ["site", "schema"], ["site", "detect"],
          ["launch"]]


@pytest.mark.parametrize("topic", TOPICS, ids=lambda t: " ".join(t) or "hpcrun")
def test_help_reads_well_at_80_columns_in_a_pipe(topic: List[str]) -> None:
    done = run("help", *topic)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if len(line) > 80] == []
    assert not re.search("[\u2500-\u257f]|\x1b\\[", done.stdout)  # no box drawing, no colour
    # Each listed command is described by one whole sentence (click would cut a long first
    # line with "...").
    if "Commands:" in lines:
        listed = lines[lines.index("Commands:") + 1:]
        entries = [line for line in listed if re.match(r"  \S", line)]
        assert entries
        for entry in entries:
            assert entry.rstrip().endswith("."), entry
