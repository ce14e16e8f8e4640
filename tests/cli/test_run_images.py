"""The launch path's image inspection: registry URIs through the runtime cache, encrypted
images, and the resolver's wording when the image was not inspected."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from helpers.sifwriter import partition, wrap_squashfs_as_sif, write_sif
from hpcrun.cli.run import make_plan, parse_args
from hpcrun.errors import EncryptedImageError
from hpcrun.image import sif as S
from hpcrun.plan.model import NOT_CHECKED, WARNING, Plan

DIGEST = "ab" * 32
SITE = """\
schema = 1
name = "imgsite"
[runtime]
kind = "apptainer"
"""


@pytest.fixture(scope="module")
def squashfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real squashfs root file system holding the real /bin/true."""
    mksquashfs = shutil.which("mksquashfs")
    if mksquashfs is None:
        pytest.skip("squashfs-tools (mksquashfs) is not installed")
    base = tmp_path_factory.mktemp("rootfs")
    (base / "root" / "bin").mkdir(parents=True)
    shutil.copy2("/bin/true", base / "root" / "bin" / "true")
    out = base / "root.sqfs"
    subprocess.run([mksquashfs, str(base / "root"), str(out), "-noappend", "-quiet"],
                   check=True, capture_output=True)
    return out


def environ(tmp_path: Path) -> Dict[str, str]:
    site = tmp_path / "imgsite.toml"
    site.write_text(SITE)
    runtime = os.path.dirname(shutil.which("apptainer") or "/usr/local/bin/apptainer")
    return {"PATH": f"{runtime}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
            "APPTAINER_CACHEDIR": str(tmp_path / "cache"), "HPCRUN_SITE": str(site)}


def plan(tmp_path: Path, image: str, *options: str) -> Plan:
    opts, rest = parse_args(["--dry-run", *options, image, "/bin/true"])
    return make_plan(opts, rest, environ(tmp_path))


def codes(p: Plan, severity: str) -> List[str]:
    return [d.code for d in p.diagnostics if d.severity == severity]


def test_registry_uri_without_cache_is_skipped_with_a_reason(tmp_path: Path) -> None:
    result = plan(tmp_path, "docker://ubuntu:22.04")
    assert result.verdict == NOT_CHECKED
    (note,) = [d for d in result.diagnostics if d.code == "image-not-inspected"]
    assert note.severity == WARNING and "docker://ubuntu:22.04" in note.message
    assert "apptainer pull" in note.hint
    (warning,) = [d for d in result.warnings if d.code == "not-checked"]
    assert "--no-check" not in warning.message and "could not be inspected" in warning.message


def test_no_check_says_so(tmp_path: Path) -> None:
    result = plan(tmp_path, "docker://ubuntu:22.04", "--no-check")
    (warning,) = [d for d in result.warnings if d.code == "not-checked"]
    assert "(--no-check)" in warning.message
    assert "image-not-inspected" not in codes(result, WARNING)


@pytest.mark.parametrize("uri", [f"docker://ubuntu@sha256:{DIGEST}",
                                 f"library://user/col/img:sha256.{DIGEST}"])
def test_cached_sif_of_a_pinned_uri_is_inspected(tmp_path: Path, squashfs: Path,
                                                 uri: str) -> None:
    kind = "oci-tmp" if uri.startswith("docker") else "library"
    cache = tmp_path / "cache" / "cache" / kind
    cache.mkdir(parents=True)
    wrap_squashfs_as_sif(squashfs, cache / DIGEST)
    result = plan(tmp_path, uri)
    assert result.verdict != NOT_CHECKED
    assert "not-checked" not in codes(result, WARNING)
    assert "image-not-inspected" not in codes(result, WARNING)
    assert result.image == uri  # the runtime still gets the URI


def test_encrypted_image_stops_the_launch(tmp_path: Path, squashfs: Path) -> None:
    image = write_sif(tmp_path / "enc.sif",
                      [partition(squashfs, fstype=S.FS_ENCRYPTED_SQUASHFS)])
    with pytest.raises(EncryptedImageError) as info:
        plan(tmp_path, str(image))
    assert "--no-check" in info.value.hint and str(image) in info.value.message
    cache = tmp_path / "cache" / "cache" / "oci-tmp"
    cache.mkdir(parents=True)
    shutil.copy(image, cache / DIGEST)
    with pytest.raises(EncryptedImageError):
        plan(tmp_path, f"docker://x@sha256:{DIGEST}")
    assert plan(tmp_path, str(image), "--no-check").verdict == NOT_CHECKED
