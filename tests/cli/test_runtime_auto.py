"""``runtime.kind = "auto"`` through the installed ``hpcrun``, with the REAL runtimes of this
machine (Apptainer 1.4 and its ``singularity`` link, Charliecloud's ``ch-run``) and a PATH
that holds only the ones a case wants: the plan names the runtime it chose and why, and a
missing runtime is refused by every plan output as by the launch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

HPCRUN = shutil.which("hpcrun") or ""
REAL = {name: shutil.which(name) for name in ("apptainer", "singularity", "ch-run")}
PROFILE = 'schema = 1\nname = "autosite"\n[runtime]\nkind = "auto"\n'


def _env(tmp_path: Path, programs: List[str]) -> Dict[str, str]:
    """The caller's environment with PATH = one directory holding links to ``programs``."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name in programs:
        real = REAL[name]
        if real is None:
            pytest.skip(f"{name} is not installed (scripts/install-test-deps)")
        (bindir / name).symlink_to(real)
    env = dict(os.environ, PATH=str(bindir), USER=os.environ.get("USER", "root"))
    env.pop("HPCRUN_SITE", None)
    return env


def _plan(tmp_path: Path, programs: List[str], mode: str = "--json"
          ) -> subprocess.CompletedProcess:
    if not HPCRUN:
        pytest.skip("the hpcrun entry point is not installed")
    site = tmp_path / "autosite.toml"
    site.write_text(PROFILE)
    image = tmp_path / "image"
    (image / "mnt" / "0").mkdir(parents=True, exist_ok=True)
    return subprocess.run([HPCRUN, mode, "--no-check", "--site", str(site), str(image), "true"],
                          env=_env(tmp_path, programs), capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("programs, kind, found", [
    (["apptainer", "singularity", "ch-run"], "apptainer", "apptainer"),
    (["singularity", "ch-run"], "apptainer", "singularity"),  # Apptainer's own link
    (["ch-run"], "charliecloud", "ch-run"),
])
def test_auto_picks_the_first_installed(tmp_path: Path, programs: List[str], kind: str,
                                        found: str) -> None:
    done = _plan(tmp_path, programs)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["runtime"] == kind
    assert plan["runtime_reason"].startswith('runtime.kind = "auto": the first installed of '
                                             "apptainer, singularity, ch-run")
    assert plan["runtime_reason"].endswith(f"found {tmp_path / 'bin' / found}")


@pytest.mark.parametrize("mode", ["--dry-run", "--explain"])
def test_dry_run_and_explain_name_the_runtime_and_why(tmp_path: Path, mode: str) -> None:
    done = _plan(tmp_path, ["ch-run"], mode)
    assert done.returncode == 0, done.stderr
    reason = 'runtime.kind = "auto": the first installed of apptainer, singularity, ch-run'
    if mode == "--dry-run":
        assert done.stdout.splitlines()[0] == (f"# runtime charliecloud: {reason}; found "
                                               f"{tmp_path / 'bin' / 'ch-run'}")
    else:
        lines = done.stdout.splitlines()
        assert "  runtime  charliecloud (ch-run)" in lines
        assert any(line.startswith(f"    why    {reason[:40]}") for line in lines), lines


@pytest.mark.parametrize("mode", ["--dry-run", "--explain", "--json", "--no-check"])
def test_no_runtime_is_refused_in_every_mode(tmp_path: Path, mode: str) -> None:
    """--no-check stands for the real launch here (the mode flag is then a no-op)."""
    done = _plan(tmp_path, [], mode)
    assert (done.returncode, done.stdout) == (69, ""), done.stderr  # program not found
    assert done.stderr.splitlines()[0] == ("hpcrun: error: no container runtime is installed: "
                                           "none of apptainer, singularity, ch-run is on PATH")
    assert done.stderr.splitlines()[1].startswith("hpcrun: hint: install it")
