"""zstd-compressed images after a plain ``pip install hpcrun`` (issue 12, item 6).

Apptainer writes zstd SIFs with ``apptainer build --mksquashfs-args '-comp zstd'``;
``mksquashfs -comp zstd`` writes zstd squashfs files.  Both must be readable by hpcrun as a
user gets it from ``pip install`` without extras: ``zstandard`` is a runtime dependency
(Python < 3.14; 3.14's standard library has ``compression.zstd``).  All real: real
mksquashfs, real Apptainer, a real ``pip install`` of this checkout into a fresh venv.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

from helpers.images import ImageBuildError, build_busybox_root, copy_with_links
from hpcrun.image.inspect import inspect_image

REPO = Path(__file__).resolve().parents[2]
APPTAINER = shutil.which("apptainer") or "/usr/local/bin/apptainer"
HOST_LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
ZSTD_ID = 6


def _host_glibc() -> str:
    return os.confstr("CS_GNU_LIBC_VERSION").split()[1]


def _compression_id(path: Path) -> int:
    """The squashfs compression id of a squashfs file or of a SIF's squashfs partition."""
    data = path.read_bytes()
    at = data.find(b"hsqs")
    assert at >= 0, f"{path} holds no squashfs superblock"
    return int(struct.unpack_from("<H", data, at + 20)[0])


@pytest.fixture(scope="module")
def zstd_images(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """A tiny glibc root (static busybox + the host's libc) as zstd squashfs and zstd SIF."""
    if shutil.which("mksquashfs") is None:
        pytest.skip("mksquashfs is not installed (squashfs-tools)")
    work = tmp_path_factory.mktemp("zstd")
    root = work / "root"
    try:
        build_busybox_root(root)
    except ImageBuildError as error:
        pytest.skip(str(error))
    copy_with_links(root, HOST_LIBC)
    subprocess.run(["ldconfig", "-r", str(root)], check=True)
    sqfs = work / "zstd.sqfs"
    subprocess.run(["mksquashfs", str(root), str(sqfs), "-noappend", "-quiet", "-no-progress",
                    "-all-root", "-comp", "zstd"], check=True)
    images = {"squashfs": sqfs}
    if os.path.exists(APPTAINER):
        sif = work / "zstd.sif"
        proc = subprocess.run([APPTAINER, "-s", "build", "--mksquashfs-args", "-comp zstd",
                               str(sif), str(root)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env={**os.environ,
                                                             "APPTAINER_CACHEDIR": str(work)})
        assert proc.returncode == 0, proc.stdout.decode(errors="replace")
        images["sif"] = sif
    for image in images.values():
        assert _compression_id(image) == ZSTD_ID
    return images


@pytest.mark.parametrize("form", ["squashfs", "sif"])
def test_zstd_image_is_read(zstd_images: Dict[str, Path], form: str) -> None:
    if form not in zstd_images:
        pytest.skip(f"Apptainer is not installed at {APPTAINER}")
    facts = inspect_image(str(zstd_images[form]), use_cache=False)
    assert facts.libc.kind == "glibc"
    assert facts.libc.version == _host_glibc()
    assert dict(facts.ld_cache)["libc.so.6"].endswith("libc.so.6")
    assert facts.warnings == ()


def test_runtime_dependencies_read_zstd() -> None:
    """pyproject: zstd support is a plain dependency (not an extra) before Python 3.14."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    zstd = [d for d in project["dependencies"] if d.startswith("zstandard")]
    assert zstd == ["zstandard>=0.19; python_version < '3.14'"]


@pytest.mark.slow
def test_plain_pip_install_reads_apptainer_zstd_sif(
        zstd_images: Dict[str, Path], tmp_path: Path) -> None:
    """``pip install hpcrun`` (no extras) into a fresh venv, then ``hpcrun inspect`` a
    zstd SIF Apptainer built: the libc inside is found, no zstd error."""
    image = zstd_images.get("sif", zstd_images["squashfs"])
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check",
                          str(REPO)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if pip.returncode != 0:
        out = pip.stdout.decode(errors="replace")
        if "No matching distribution" in out or "connection" in out.lower():
            pytest.skip(f"pip cannot reach a package index here: {out.splitlines()[-1]}")
        raise AssertionError(out)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([str(venv / "bin/hpcrun"), "inspect", "--json", "--no-cache",
                           str(image)], capture_output=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    facts = json.loads(proc.stdout)
    assert facts["warnings"] == []  # no "no zstd decompressor installed"
    assert facts["libc"]["kind"] == "glibc" and facts["libc"]["version"] == _host_glibc()
    assert facts["libc"]["path"].endswith("/libc.so.6")
