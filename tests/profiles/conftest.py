"""Fake host roots built from real files of this Debian host, for validation and detection."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

import pytest

REPO = Path(__file__).resolve().parents[2]
SITE_PROFILES = REPO / "site-profiles"
LIBDIR = "/usr/lib/x86_64-linux-gnu"
MPICH_LIB = f"{LIBDIR}/libmpich.so.12"
OPENMPI_LIB = f"{LIBDIR}/libmpi.so.40"


def need(*paths: str) -> None:
    """Skip the test unless every host path exists (the Debian packages of .ci/apt-packages)."""
    for path in paths:
        if not os.path.exists(path):
            pytest.skip(f"{path} is not installed on this host")


def copy_into(root: Path, paths: Iterable[str]) -> None:
    """Copy host files into ``root`` at the same absolute paths, keeping symbolic links."""
    for path in paths:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(path):
            if not os.path.lexists(target):
                os.symlink(os.readlink(path), target)
        elif os.path.isdir(path):
            target.mkdir(parents=True, exist_ok=True)
        else:
            shutil.copy2(path, target)


def touch(root: Path, path: str, text: str = "") -> Path:
    """Create a file (with ``text``) at the absolute ``path`` under ``root``."""
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """An empty directory standing for a host's ``/``."""
    root = tmp_path / "root"
    root.mkdir()
    return root
