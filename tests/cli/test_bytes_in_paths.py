"""Paths with bytes that are not UTF-8 print as those bytes, in any locale error mode."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

HPCRUN = "hpcrun"


def test_inspect_and_dry_run_of_a_non_utf8_path(tmp_path: Path) -> None:
    image = os.path.join(os.fsencode(tmp_path), b"bad\xffimg")
    os.makedirs(os.path.join(image, b"etc"))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict",
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    shown = subprocess.run([HPCRUN.encode(), b"inspect", image], capture_output=True, env=env)
    assert shown.returncode == 0, shown.stderr
    assert b"bad\xffimg" in shown.stdout and b"Traceback" not in shown.stderr
    dry = subprocess.run([HPCRUN.encode(), b"--site", b"debian-mpich", b"--dry-run", image,
                          b"true"], capture_output=True, env=env)
    assert dry.returncode == 0, dry.stderr
    assert b"bad\xffimg" in dry.stdout
    missing = subprocess.run([HPCRUN.encode(), b"site", b"show", b"x\xff"], capture_output=True,
                             env=env)
    assert missing.returncode == 78 and b"Traceback" not in missing.stderr
