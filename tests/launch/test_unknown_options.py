"""Command lines hpcrun does not fully know (issue 12, item 5).

With a launcher option the tables do not know, the image is the first word that is a real
container image: a SIF, a squashfs or ext3 file (told by their magic, whatever their name),
a root file system directory, or a registry URI.  Only when that word could be the unknown
option's value and another image follows does hpcrun ask for ``--image``.  MPMD forms are
refused with a clear message; ``srun --multi-prog`` never gets the runtime as its file.
Real images: the busybox test root as sandbox, squashfs (mksquashfs) and SIF, and an ext3
file made by ``mke2fs -d``; the srun ``--multi-prog`` case is also run through hpcrun.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

from helpers.images import ImageBuildError, build_busybox_image
from hpcrun.cli.main import EXIT_USAGE
from hpcrun.errors import UsageError
from hpcrun.image.open import looks_like_image
from hpcrun.launch.launchers import split_command_line

MKE2FS = shutil.which("mke2fs") or "/usr/sbin/mke2fs"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    work = tmp_path_factory.mktemp("unknown-opts")
    try:
        built = build_busybox_image(work)
    except ImageBuildError as error:
        pytest.skip(str(error))
    out = {"sandbox": built.sandbox, "squashfs": built.squashfs, "sif": built.sif}
    # the same images under names that say nothing about what they are
    for kind in ("squashfs", "sif"):
        plain = work / f"data-{kind}"
        shutil.copy(out[kind], plain)
        out[f"{kind}-noext"] = plain
    if Path(MKE2FS).exists():
        ext3 = work / "root.img"
        subprocess.run([MKE2FS, "-q", "-F", "-t", "ext3", "-d", str(built.sandbox), str(ext3),
                        "16M"], check=True, env={**os.environ, "E2FSPROGS_FAKE_TIME": "1"})
        out["ext3"] = ext3
    text = work / "notes.txt"
    text.write_text("not an image\n")
    out["text"] = text
    home_like = work / "home"
    (home_like / "bin").mkdir(parents=True)  # a directory with a bin/ is no root fs
    out["home"] = home_like
    return out


@pytest.mark.parametrize("kind", ["sandbox", "squashfs", "sif", "squashfs-noext", "sif-noext",
                                  "ext3"])
def test_real_images_are_recognised(images: Dict[str, Path], kind: str) -> None:
    if kind not in images:
        pytest.skip("mke2fs is not installed")
    assert looks_like_image(str(images[kind]))


def test_other_words_are_not_images(images: Dict[str, Path]) -> None:
    for word in (str(images["text"]), str(images["home"]), "python3", "no/such.sif", "5",
                 "a\0b", "/dev/null"):
        assert not looks_like_image(word), word
    for uri in ("docker://busybox", "oras://r/x:1", "library://u/c/i", "docker-daemon:x:1"):
        assert looks_like_image(uri)


@pytest.mark.parametrize("kind", ["sif-noext", "squashfs", "sandbox", "ext3"])
@pytest.mark.parametrize("launcher", [
    ["srun", "--brand-new-flag"],
    ["srun", "--brand-new-option", "value"],
    ["srun", "-n", "2", "--brand-new-option", "value", "-N", "1"],
    ["mpiexec.hydra", "-brand-new", "3", "-n", "2"],
    ["mpirun.openmpi", "--brand-new", "-np", "2"],
])
def test_split_at_the_first_real_image(images: Dict[str, Path], kind: str,
                                       launcher: list) -> None:
    if kind not in images:
        pytest.skip("mke2fs is not installed")
    image = str(images[kind])
    line = split_command_line([*launcher, image, "python3", str(images["sif"])])
    assert list(line.launcher) == launcher
    assert line.image == image
    assert line.command == ("python3", str(images["sif"]))  # later images are arguments


def test_registry_reference_splits_too(images: Dict[str, Path]) -> None:
    line = split_command_line(["srun", "--brand-new", "x", "docker://busybox", "sh"])
    assert line.launcher == ("srun", "--brand-new", "x")
    assert (line.image, line.command) == ("docker://busybox", ("sh",))


def test_ambiguous_split_asks_for_image(images: Dict[str, Path]) -> None:
    """The first image may be the unknown option's value: hpcrun cannot tell, and says so."""
    first, second = str(images["sif"]), str(images["squashfs"])
    with pytest.raises(UsageError) as caught:
        split_command_line(["srun", "--brand-new", first, second, "sh"])
    assert "cannot tell the image" in caught.value.message
    assert first in caught.value.message and second in caught.value.message
    assert "--image" in caught.value.hint
    # with --image the same line is clear
    line = split_command_line(["srun", "--brand-new", first, second, "sh"], image=second)
    assert line.launcher == ("srun", "--brand-new", first) and line.command == ("sh",)
    # an attached value (--opt=value) cannot take the next word: not ambiguous
    line = split_command_line(["srun", "--brand-new=1", first, second, "sh"])
    assert line.image == first


def test_no_image_found_keeps_the_unknown_option_error(images: Dict[str, Path]) -> None:
    with pytest.raises(UsageError) as caught:
        split_command_line(["srun", "--brand-new", str(images["text"]), "sh"])
    assert "unknown srun option '--brand-new'" in caught.value.message
    assert "--image" in caught.value.hint


# -- MPMD ------------------------------------------------------------------------------------

@pytest.mark.parametrize("words, needle", [
    (["srun", "--multi-prog", "tasks.conf"], "srun --multi-prog"),
    (["srun", "-n", "2", "--multi-prog", "IMG", "sh"], "srun --multi-prog"),
    (["srun", "--brand-new", "--multi-prog", "IMG", "sh"], "srun --multi-prog"),
    (["mpiexec.hydra", "-configfile", "mpmd.txt", "IMG", "sh"], "mpiexec.hydra -configfile"),
    (["mpirun.openmpi", "--app", "appfile", "IMG", "sh"], "mpirun.openmpi --app"),
    (["mpiexec.hydra", "-n", "1", ":", "-n", "1", "IMG", "b"], "MPMD"),
    (["srun", "-n", "1", "IMG", "a", ":", "-n", "1", "IMG", "b"], "heterogeneous"),
    (["mpiexec.hydra", "-n", "1", "IMG", "a", ":", "-n", "1", "OTHER", "b"],
     "MPMD program 2 runs from"),
    (["mpiexec.hydra", "-n", "1", "IMG", "a", ":", "-n", "1"], "MPMD program 2 names no image"),
    (["mpiexec.hydra", "-n", "1", "IMG", "a", ":", "-n", "1", "IMG"], "nothing to run"),
    (["mpiexec.hydra", "-n", "1", "IMG", "a", ":", "-configfile", "f", "IMG", "b"],
     "-configfile"),
])
def test_mpmd_forms_are_refused(images: Dict[str, Path], words: list, needle: str) -> None:
    other = {"IMG": str(images["sif"]), "OTHER": str(images["squashfs"])}
    words = [other.get(w, w) for w in words]
    with pytest.raises(UsageError) as caught:
        split_command_line(words)
    assert needle in caught.value.message
    assert "hpcrun wraps MPMD programs written as" in caught.value.hint


@pytest.mark.parametrize("launcher", ["mpiexec.hydra", "mpirun.openmpi"])
def test_mpmd_programs_of_one_image_are_split(images: Dict[str, Path], launcher: str) -> None:
    image = str(images["sif"])
    local = ("-env", "X", "1") if launcher == "mpiexec.hydra" else ("-x", "X=1")
    line = split_command_line([launcher, "-n", "2", image, "a", "1", ":", "-n", "1", *local,
                               image, "b", ":", "-n", "3", image, "c"])
    assert line.launcher == (launcher, "-n", "2") and line.command == ("a", "1")
    assert line.mpmd == ((("-n", "1", *local), ("b",)), (("-n", "3"), ("c",)))


def test_multi_prog_never_reaches_srun(images: Dict[str, Path], tmp_path: Path) -> None:
    """Through the real CLI: exit 64 (usage), one error line, nothing executed (a recording srun
    first on PATH would have written its argv)."""
    record = tmp_path / "srun-argv"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    srun = fake_bin / "srun"
    srun.write_text(f"#!/bin/sh\necho \"$@\" > {record}\n")
    srun.chmod(0o755)
    conf = tmp_path / "tasks.conf"
    conf.write_text(f"0 {images['sif']} sh\n1 {images['sif']} sh\n")
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}",
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "hpcrun", "--site", "debian-mpich",
                           "--runtime", "apptainer", "srun", "-n", "2", "--multi-prog",
                           str(conf)], capture_output=True, text=True, env=env)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("hpcrun: error:")]
    assert len(errors) == 1 and "--multi-prog" in errors[0], proc.stderr
    assert not record.exists()


def test_mpmd_plan_json_and_argv(images: Dict[str, Path], tmp_path: Path) -> None:
    """The plan of an MPMD launch (through the CLI, --json): every program gets the same
    runtime words; the JSON validates against the plan schema."""
    import json

    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).resolve().parents[2] / "adapter" / "hpcrun" / "data"
                         / "plan-schema.json").read_text())
    image = str(images["sif"])
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "hpcrun", "--json", "--no-check", "--site",
                           "debian-mpich", "--runtime", "apptainer", "mpiexec.hydra", "-n", "1",
                           image, "a", ":", "-n", "2", image, "b", "c"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    jsonschema.validate(plan, schema)
    assert plan["mpmd"] == [[["-n", "2"], ["b", "c"]]]
    argv = plan["invocation"]["argv"]
    at = argv.index(":")
    first, second = argv[:at], argv[at + 1:]
    runtime = first[first.index("apptainer"):-1]
    assert first[-1] == "a" and runtime[-1] == image
    assert second == ["-n", "2", *runtime, "b", "c"]
