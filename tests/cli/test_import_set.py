"""What the launch path and `hpcrun inspect` import: nothing heavy, no readers on a cache hit.

Each case runs hpcrun's real entry point in a fresh interpreter (so ``sys.modules`` starts
empty of hpcrun) with a private facts cache, and records the modules loaded at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

HEAVY = ("typer", "click", "rich", "spython", "elftools", "hpcrun.cli.app")
# What reading an image takes; a launch served from the facts cache needs none of it
# (nor hpcrun.elf.mpi: debian-mpich gives its MPI version, so no host library is scanned).
IMAGE_READERS = ("hpcrun.image.sif", "hpcrun.image.fs", "hpcrun.image.squashfs",
                 "hpcrun.image.ext3", "hpcrun.image.compress", "hpcrun.image.app",
                 "hpcrun.image.sandbox", "hpcrun.elf.mpi")

# Standard modules the launch path avoids (``shutil`` pulls in ``bz2`` and ``lzma``); the
# interpreter's own start-up may load them (a site .pth), so only what hpcrun adds counts.
STDLIB_AVOIDED = ("shutil", "bz2", "lzma", "tempfile", "hashlib")

SCRIPT = """
import json, sys
before = set(sys.modules)
from hpcrun.cli.main import main
out, args = sys.argv[1], sys.argv[2:]
rc = main(args)
with open(out, "w") as f:
    json.dump(sorted(sys.modules), f)
with open(out + ".new", "w") as f:
    json.dump(sorted(set(sys.modules) - before), f)
sys.exit(rc)
"""


def _env(tmp_path: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    # No launcher, only the real Apptainer and its singularity link (a plan needs an
    # installed runtime): a dry run.
    bindir = tmp_path / "runtime-bin"
    env["PATH"] = str(bindir)
    env.pop("HPCRUN_SITE", None)
    bindir.mkdir(exist_ok=True)
    for name in ("apptainer", "singularity"):  # debian-* profiles say auto, zeus singularity
        real = shutil.which(name)
        if real is None:
            pytest.skip("Apptainer is not installed (scripts/install-test-deps)")
        if not (bindir / name).exists():
            (bindir / name).symlink_to(real)
    return env


def run_hpcrun(args: List[str], tmp_path: Path, name: str, no_site: bool = False
               ) -> Tuple[int, str, Set[str]]:
    """(exit code, stdout, modules loaded) of ``hpcrun ARGS`` in a fresh interpreter.

    ``no_site`` starts the interpreter without ``site`` (whose .pth files may import modules
    of their own) and with hpcrun's source directory as its only addition to the path.
    """
    record = tmp_path / f"{name}.json"
    env = _env(tmp_path)
    flags: List[str] = []
    if no_site:
        import hpcrun

        flags = ["-S"]
        env["PYTHONPATH"] = str(Path(hpcrun.__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, *flags, "-c", SCRIPT, str(record), *args],
                          env=env, capture_output=True, check=False)
    assert record.exists(), done.stderr.decode()
    return done.returncode, done.stdout.decode(), set(json.loads(record.read_text()))


def added_by_hpcrun(tmp_path: Path, name: str) -> Set[str]:
    """The modules the last :func:`run_hpcrun` named ``name`` loaded beyond start-up's."""
    return set(json.loads((tmp_path / f"{name}.json.new").read_text()))


INCOMPATIBLE = 68  # hpcrun.cli.main.EXIT_INCOMPATIBLE (not imported: the test counts imports)


def _loaded(modules: Set[str], names: Tuple[str, ...]) -> List[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.fixture
def image(sif_data: Path) -> Path:
    return sif_data / "images" / "one-group.sif"


def test_launch_imports_nothing_heavy_and_no_reader_on_a_cache_hit(
        image: Path, tmp_path: Path) -> None:
    args = ["--dry-run", "--site", "debian-mpich", "srun", "-n", "2", str(image), "true"]
    code, cold_out, cold = run_hpcrun(args, tmp_path, "cold")
    assert code == INCOMPATIBLE  # an i686 image: printed, then refused as the launch is
    assert _loaded(cold, HEAVY) == []
    assert "hpcrun.image.squashfs" in cold  # the first run did read the image
    code, warm_out, warm = run_hpcrun(args, tmp_path, "warm")
    assert code == INCOMPATIBLE
    assert warm_out == cold_out
    assert _loaded(warm, HEAVY) == []
    assert _loaded(warm, IMAGE_READERS) == []
    assert "hpcrun.image.inspect" in warm  # the facts did come from the inspector's cache
    assert _loaded(added_by_hpcrun(tmp_path, "warm"), STDLIB_AVOIDED) == []


@pytest.mark.parametrize("site", ["zeus", "debian-openmpi"])
def test_warm_launch_loads_no_shutil_and_parses_no_elf(site: str, image: Path, tmp_path: Path
                                                        ) -> None:
    args = ["--dry-run", "--site", site, "srun", "-n", "2", str(image), "true"]
    code, cold_out, _cold = run_hpcrun(args, tmp_path, "cold", no_site=True)
    assert code == INCOMPATIBLE, cold_out  # an i686 image: printed, then refused
    code, warm_out, _warm = run_hpcrun(args, tmp_path, "warm", no_site=True)
    assert code == INCOMPATIBLE and warm_out == cold_out
    added = added_by_hpcrun(tmp_path, "warm")
    assert "hpcrun.cli.run" in added  # the launch path did run in this interpreter
    assert _loaded(added, (*STDLIB_AVOIDED, "typing")) == []
    # the host closure and host MPI come from the facts cache: no ELF file is parsed
    assert _loaded(added, ("hpcrun.elf.reader", "hpcrun.elf.mpi", "hpcrun.elf.ldconf")) == []


def test_inspect_json_needs_no_typer_and_a_hit_reads_nothing(image: Path, tmp_path: Path
                                                             ) -> None:
    code, cold_out, cold = run_hpcrun(["inspect", "--json", str(image)], tmp_path, "cold")
    assert code == 0
    assert _loaded(cold, HEAVY) == []
    code, warm_out, warm = run_hpcrun(["inspect", str(image), "--json"], tmp_path, "warm")
    assert code == 0
    assert json.loads(warm_out) == json.loads(cold_out)
    assert _loaded(warm, HEAVY) == []
    assert _loaded(warm, IMAGE_READERS) == []


def test_inspect_help_and_mistakes_still_go_through_typer(image: Path, tmp_path: Path) -> None:
    code, out, modules = run_hpcrun(["inspect", "--help"], tmp_path, "help")
    assert code == 0
    assert "--no-cache" in out and "typer" in modules
    code, _out, modules = run_hpcrun(["inspect", "--bogus", str(image)], tmp_path, "bogus")
    assert code != 0 and "typer" in modules  # typer reads "--bogus" as the image


# What a clean interpreter need not load for `hpcrun inspect --json` (each costs an
# interpreter several ms): typing (hpcrun imports it for type checkers only), pathlib.
INSPECT_AVOIDED = ("typing", "pathlib", *STDLIB_AVOIDED)


def test_inspect_in_a_clean_interpreter_loads_no_typing_and_a_hit_no_re(
        image: Path, tmp_path: Path) -> None:
    code, cold_out, _cold = run_hpcrun(["inspect", "--json", str(image)], tmp_path, "cold",
                                       no_site=True)
    assert code == 0, cold_out
    cold_added = added_by_hpcrun(tmp_path, "cold")
    assert "hpcrun.image.squashfs" in cold_added  # the image was read in this interpreter
    assert _loaded(cold_added, INSPECT_AVOIDED) == []
    code, warm_out, _warm = run_hpcrun(["inspect", "--json", str(image)], tmp_path, "warm",
                                       no_site=True)
    assert code == 0 and warm_out == cold_out
    warm_added = added_by_hpcrun(tmp_path, "warm")
    assert "hpcrun.image.inspect" in warm_added
    assert _loaded(warm_added, (*INSPECT_AVOIDED, "re", "functools", "contextlib")) == []


def test_the_installed_command_script_imports_no_re_on_a_cache_hit(
        image: Path, tmp_path: Path) -> None:
    """The ``hpcrun`` script itself (adapter/bin/hpcrun, what pip installs), not only
    ``main()``: entry-point launchers import ``re`` first, this one does not."""
    import hpcrun

    source = Path(hpcrun.__file__).resolve().parent.parent
    env = _env(tmp_path)
    env["PYTHONPATH"] = str(source)
    command = [sys.executable, "-S", "-X", "importtime", str(source / "bin" / "hpcrun"),
               "inspect", "--json", str(image)]
    first = subprocess.run(command, env=env, capture_output=True, check=False)
    assert first.returncode == 0, first.stderr.decode()
    again = subprocess.run(command, env=env, capture_output=True, check=False)
    assert again.returncode == 0 and again.stdout == first.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in again.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "hpcrun.image.inspect" in imported
    assert imported.isdisjoint({"re", "typing", "pathlib", "json"}), sorted(imported)
