"""Launcher grammars: where the image starts, checked against the real launchers."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import List, Sequence

import pytest

from hpcrun.errors import UsageError
from hpcrun.launch.launchers import (
    GENERIC_MPI,
    HYDRA,
    OPENMPI,
    OPENMPI_TABLE,
    SRUN,
    SRUN_LONG,
    SRUN_SHORT,
    base_name,
    launcher_family,
    merge_defaults,
    parse_options,
    resolve_family,
    split_command_line,
)

AWKWARD = ["a b", "it's", '"q"', "$HOME", "*.py", "--", "", "é-ü", "-n", "2", "\\", "x=y", ":x"]


# --------------------------------------------------------------------------- srun

@pytest.mark.parametrize("words, launcher, image, command", [
    (["srun", "-n", "2", "app.sif", "python", "hello.py"],
     ["srun", "-n", "2"], "app.sif", ["python", "hello.py"]),
    (["srun", "-n2", "app.sif", "x"], ["srun", "-n2"], "app.sif", ["x"]),
    (["srun", "-N2", "-n", "4", "a.sif", "x"], ["srun", "-N2", "-n", "4"], "a.sif", ["x"]),
    (["srun", "-lN", "2", "a.sif", "x"], ["srun", "-lN", "2"], "a.sif", ["x"]),
    (["srun", "-lN2", "a.sif", "x"], ["srun", "-lN2"], "a.sif", ["x"]),
    (["srun", "--ntasks=2", "a.sif", "x"], ["srun", "--ntasks=2"], "a.sif", ["x"]),
    (["srun", "--ntasks", "2", "a.sif", "x"], ["srun", "--ntasks", "2"], "a.sif", ["x"]),
    (["srun", "--ntasks-per-n", "2", "a.sif", "x"], ["srun", "--ntasks-per-n", "2"], "a.sif",
     ["x"]),  # getopt_long accepts a unique prefix
    # optional values are attached only: the next word is the image
    (["srun", "--immediate", "a.sif", "x"], ["srun", "--immediate"], "a.sif", ["x"]),
    (["srun", "--immediate=5", "a.sif", "x"], ["srun", "--immediate=5"], "a.sif", ["x"]),
    (["srun", "-I", "a.sif", "x"], ["srun", "-I"], "a.sif", ["x"]),
    (["srun", "-I5", "a.sif", "x"], ["srun", "-I5"], "a.sif", ["x"]),
    (["srun", "-K", "a.sif", "x"], ["srun", "-K"], "a.sif", ["x"]),
    (["srun", "--exclusive", "a.sif", "x"], ["srun", "--exclusive"], "a.sif", ["x"]),
    (["srun", "--mpi", "pmi2", "--export=ALL", "-J", "my job", "a.sif", "x"],
     ["srun", "--mpi", "pmi2", "--export=ALL", "-J", "my job"], "a.sif", ["x"]),
    (["srun", "-n", "2", "--", "a.sif", "x", "--", "-n"], ["srun", "-n", "2", "--"], "a.sif",
     ["x", "--", "-n"]),
    (["/usr/bin/srun", "-o", "out %j.txt", "a b.sif", "x"],
     ["/usr/bin/srun", "-o", "out %j.txt"], "a b.sif", ["x"]),
    (["srun", "-n", "2", "a.sif", *AWKWARD], ["srun", "-n", "2"], "a.sif", AWKWARD),
])
def test_srun_split(words: List[str], launcher: List[str], image: str,
                    command: List[str]) -> None:
    line = split_command_line(words)
    assert line.launcher == tuple(launcher)
    assert line.image == image
    assert line.command == tuple(command)
    assert line.family == SRUN


def test_srun_bundled_flags_carry_every_identity() -> None:
    options, at = parse_options(SRUN, ["-lN2", "-vv", "a.sif"])
    assert [o.keys for o in options] == [("label", "nodes"), ("verbose", "verbose")]
    assert at == 2


@pytest.mark.parametrize("words, message", [
    (["srun", "--frobnicate", "a.sif", "x"], "--frobnicate"),
    (["srun", "-y", "a.sif", "x"], "-y"),
    (["srun", "--nta", "2", "a.sif", "x"], "ambiguous"),
    (["srun", "--label=yes", "a.sif", "x"], "takes no value"),
    (["srun", "-n"], "needs a value"),
    (["srun", "-n", "2"], "no image"),
    (["srun", "-n", "2", "a.sif"], "nothing to run"),
    (["srun", "-n", "1", "a.sif", "x", ":", "-n", "1", "b.sif", "y"], "MPMD"),
    (["mpiexec.hydra", "-n", "1", "--", "a.sif", "x"], "does not accept '--'"),
    (["srun", "-n", "1", "", "x"], "image argument is empty"),
    (["", "x"], "image argument is empty"),
])
def test_launcher_usage_errors(words: List[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        split_command_line(words)
    assert message in caught.value.message
    assert caught.value.hint


def test_unknown_option_hint_names_image_option() -> None:
    with pytest.raises(UsageError) as caught:
        split_command_line(["srun", "--brand-new-option", "a.sif", "x"])
    assert "--image" in caught.value.hint


def _srun_man_options() -> List[tuple]:
    """(short, long, kind) for every option of the installed srun man page."""
    page = Path("/usr/share/man/man1/srun.1.gz")
    if not page.exists():
        pytest.skip("srun man page not installed")
    text = gzip.decompress(page.read_bytes()).decode("utf-8", "replace")
    lines = text.splitlines()
    found = []
    for prev, line in zip(lines, lines[1:]):
        if not prev.startswith(".TP") or not line.startswith("\\fB\\-"):
            continue
        plain = re.sub(r"\\f[BRI]", "", line).replace("\\-", "-")
        match = re.match(r"(?:-(\w), )?--([\w-]+)(\[?=)?", plain)
        if not match:
            continue
        kind = "flag" if not match.group(3) else ("optional" if match.group(3) == "[=" else
                                                  "value")
        found.append((match.group(1), match.group(2), kind))
    return found


def test_srun_table_matches_the_man_page() -> None:
    options = _srun_man_options()
    assert len(options) > 100
    for short, long, kind in options:
        spec = SRUN_LONG.get(long)
        assert spec is not None, f"--{long} missing"
        if kind == "flag":
            assert spec.arity == 0, long
        elif kind == "optional":
            assert spec.arity == 1 and spec.optional, long
        elif long not in ("kill-on-bad-exit", "no-kill"):
            assert spec.arity == 1 and not spec.optional, long
        if short:
            assert SRUN_SHORT[short] == spec, short


# --------------------------------------------------------------------------- Hydra

@pytest.mark.parametrize("words, launcher, image", [
    (["mpiexec.hydra", "-n", "2", "a.sif", "x"], ["mpiexec.hydra", "-n", "2"], "a.sif"),
    (["mpiexec.hydra", "-np", "2", "-genv", "A", "b c", "a.sif", "x"],
     ["mpiexec.hydra", "-np", "2", "-genv", "A", "b c"], "a.sif"),
    (["mpiexec.hydra", "--n=2", "-PPN", "1", "a.sif", "x"],
     ["mpiexec.hydra", "--n=2", "-PPN", "1"], "a.sif"),
    (["mpirun.mpich", "-env", "X", "1", "-l", "-bind-to", "core", "a.sif", "x"],
     ["mpirun.mpich", "-env", "X", "1", "-l", "-bind-to", "core"], "a.sif"),
])
def test_hydra_split(words: List[str], launcher: List[str], image: str) -> None:
    line = split_command_line(words)
    assert (line.launcher, line.image, line.family) == (tuple(launcher), image, HYDRA)


def _real_run(words: Sequence[str], tmp_path: Path) -> List[bytes]:
    """Run a real launcher whose 'image' is printf: what the application really received."""
    done = subprocess.run(list(words), capture_output=True, cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.split(b"\0")[:-1]


HYDRA_CASES = [
    ["-n", "1"],
    ["-np", "1", "-genv", "A", "1", "-ppn", "1"],
    ["--n=1", "-genvall", "-env", "B", "two words", "-wdir", "."],
    ["-n", "1", "-bind-to", "none", "-envnone", "-genvlist", "PATH"],
]


@pytest.mark.parametrize("options", HYDRA_CASES)
def test_hydra_split_agrees_with_real_mpiexec(options: List[str], tmp_path: Path) -> None:
    if not shutil.which("mpiexec.hydra"):
        pytest.skip("mpiexec.hydra not installed")
    printf = shutil.which("printf") or "/usr/bin/printf"
    words = ["mpiexec.hydra", *options, printf, "%s\\0", *AWKWARD]
    line = split_command_line(words)
    assert line.image == printf
    ran = _real_run(words, tmp_path)
    assert ran == [os.fsencode(w) for w in line.command[1:]]


# --------------------------------------------------------------------------- Open MPI

OMPI_CASES = [
    ["-np", "1"],
    ["-n", "1", "-x", "FOO=1", "--mca", "btl", "self", "--bind-to", "none"],
    ["-c", "1", "-mca", "pml", "ob1", "--map-by", "slot", "-q", "-H", "localhost"],
    ["--np", "1", "--report-bindings", "--output-filename", "o", "-wdir", "."],
]


@pytest.mark.parametrize("options", OMPI_CASES)
def test_openmpi_split_agrees_with_real_mpirun(options: List[str], tmp_path: Path) -> None:
    if not shutil.which("mpirun.openmpi"):
        pytest.skip("mpirun.openmpi not installed")
    printf = shutil.which("printf") or "/usr/bin/printf"
    words = ["mpirun.openmpi", "--allow-run-as-root", "--oversubscribe", *options, printf,
             "%s\\0", *AWKWARD]
    line = split_command_line(words)
    assert line.family == OPENMPI and line.image == printf
    ran = _real_run(words, tmp_path)
    assert ran == [os.fsencode(w) for w in line.command[1:]]


def test_openmpi_table_matches_help_all() -> None:
    if not shutil.which("mpirun.openmpi"):
        pytest.skip("mpirun.openmpi not installed")
    done = subprocess.run(["mpirun.openmpi", "--allow-run-as-root", "--help", "all"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    seen = 0
    for line in done.stdout.decode(errors="replace").splitlines():
        match = re.match(r"^\s{0,4}((?:--?[\w-]+\|?)+)((?:\s+<arg\d>)*)", line)
        if not match:
            continue
        names = [n.lstrip("-") for n in match.group(1).split("|") if n]
        arity = match.group(2).count("<arg")
        for name in names:
            if name in ("h", "help"):
                continue  # --help takes an optional topic
            spec = OPENMPI_TABLE.get(name)
            assert spec is not None, name
            assert spec.arity == arity, name
            seen += 1
    assert seen > 80


def test_openmpi5_options_are_known() -> None:
    line = split_command_line(["mpirun.openmpi", "--map-by", "ppr:2:node", "--pmixmca", "a",
                               "b", "--display", "map", "--runtime-options", "x", "a.sif", "c"])
    assert line.image == "a.sif"


# --------------------------------------------------------------------------- families

def test_families_and_base_names() -> None:
    assert launcher_family("/opt/slurm/bin/srun") == SRUN
    assert launcher_family("mpiexec.hydra") == HYDRA
    assert launcher_family("mpirun.openmpi") == OPENMPI
    assert launcher_family("mpiexec.openmpi") == OPENMPI
    assert launcher_family("mpirun") == GENERIC_MPI
    assert launcher_family("app.sif") == ""
    assert base_name("mpiexec.hydra") == "mpiexec"
    assert base_name("/usr/bin/mpirun.openmpi") == "mpirun"


def test_resolve_family_follows_path_links(tmp_path: Path) -> None:
    real = tmp_path / "mpirun.openmpi"
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    (tmp_path / "mpirun").symlink_to(real)
    assert resolve_family("mpirun", {"PATH": str(tmp_path)}) == OPENMPI
    assert resolve_family("mpiexec", {"PATH": str(tmp_path)}, "mpich") == HYDRA
    assert resolve_family("mpiexec", {"PATH": str(tmp_path)}) == GENERIC_MPI


def test_generic_mpirun_uses_union_grammar() -> None:
    line = split_command_line(["mpirun", "-np", "2", "-x", "A", "-genv", "B", "1", "a.sif", "c"],
                              environ={"PATH": ""})
    assert line.image == "a.sif" and line.command == ("c",)


# --------------------------------------------------------------------------- no launcher, --image

def test_no_launcher_first_word_is_image() -> None:
    line = split_command_line(["app.sif", "python", "-c", "print(1)"])
    assert (line.launcher, line.image, line.command) == ((), "app.sif",
                                                         ("python", "-c", "print(1)"))


def test_image_option_splits_at_the_image() -> None:
    line = split_command_line(["srun", "--brand-new", "x", "app.sif", "python"],
                              image="app.sif")
    assert line.launcher == ("srun", "--brand-new", "x")
    assert line.command == ("python",)


def test_image_option_absent_from_words() -> None:
    line = split_command_line(["srun", "-n", "2", "python", "hello.py"], image="app.sif")
    assert (line.image, line.command) == ("app.sif", ("python", "hello.py"))
    line = split_command_line(["python", "hello.py"], image="app.sif")
    assert (line.launcher, line.command) == ((), ("python", "hello.py"))


# --------------------------------------------------------------------------- profile defaults

@pytest.mark.parametrize("family, user, defaults, expected", [
    (SRUN, ["srun", "-n", "2"], ["--mpi=pmi2"], ["srun", "--mpi=pmi2", "-n", "2"]),
    (SRUN, ["srun", "--mpi", "pmix", "-n", "2"], ["--mpi=pmi2"],
     ["srun", "--mpi", "pmix", "-n", "2"]),
    (SRUN, ["srun", "--mpi=pmix"], ["--mpi", "pmi2", "-l"], ["srun", "-l", "--mpi=pmix"]),
    (SRUN, ["srun", "-n4"], ["--ntasks=2"], ["srun", "-n4"]),
    (SRUN, ["srun", "-lN2"], ["--nodes=1", "--label"], ["srun", "-lN2"]),
    (HYDRA, ["mpiexec.hydra", "-np", "2"], ["-n", "4", "-genv", "A", "1"],
     ["mpiexec.hydra", "-genv", "A", "1", "-np", "2"]),
    (HYDRA, ["mpiexec.hydra", "-genv", "A", "2"], ["-genv", "A", "1", "-genv", "B", "1"],
     ["mpiexec.hydra", "-genv", "B", "1", "-genv", "A", "2"]),
    (OPENMPI, ["mpirun", "-x", "FOO=2"], ["-x", "FOO=1", "-x", "BAR"],
     ["mpirun", "-x", "BAR", "-x", "FOO=2"]),
    (OPENMPI, ["mpirun", "--mca", "btl", "tcp"], ["--mca", "btl", "self", "--mca", "pml", "ob1"],
     ["mpirun", "--mca", "pml", "ob1", "--mca", "btl", "tcp"]),
])
def test_merge_defaults_user_wins(family: str, user: List[str], defaults: List[str],
                                  expected: List[str]) -> None:
    merged, _ = merge_defaults(family, user, defaults)
    assert list(merged) == expected
