"""An image's glibc version comes from the library itself (issue 12, item 4).

Real C libraries: this machine's glibc 2.36 (Debian 12: no ``libc-X.Y.so`` file, the
release only in its banner) and Debian 11's glibc 2.31 from the real ``libc6`` package
(``libc.so.6 -> libc-2.31.so``; its newest symbol version is GLIBC_2.30, so the old rule
reported "2.30").  The roots are minimal: the skeleton, the C library, ``ldconfig -r``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict

import pytest

from helpers.debian_archive import DebUnavailable, fetch_deb, unpack_deb
from helpers.images import ImageBuildError, build_busybox_root, copy_with_links, make_squashfs
from hpcrun.elf.reader import read_elf_file
from hpcrun.image.facts import ImageFacts
from hpcrun.image.fs import Tree
from hpcrun.image.inspect import inspect_image, inspect_tree
from hpcrun.image.sandbox import SandboxBackend
from hpcrun.resolve import verdict

HOST_LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
HOST_MPICH = "/usr/lib/x86_64-linux-gnu/libmpich.so.12"
MULTIARCH = "usr/lib/x86_64-linux-gnu"


def _root(base: Path, name: str) -> Path:
    root = base / name
    try:
        build_busybox_root(root)
    except ImageBuildError as error:
        pytest.skip(str(error))
    return root


def _facts(root: Path) -> ImageFacts:
    return inspect_tree(Tree(SandboxBackend(str(root))), source=str(root), kind="sandbox")


@pytest.fixture(scope="module")
def bullseye_libc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian 11's real ``libc-2.31.so`` (from the cached ``libc6`` package)."""
    try:
        deb = fetch_deb("bullseye", "libc6")
    except DebUnavailable as error:
        pytest.skip(str(error))
    unpacked = unpack_deb(deb, tmp_path_factory.mktemp("libc6-bullseye"))
    found = sorted(unpacked.glob("lib/x86_64-linux-gnu/libc-2.*.so"))
    assert found, f"no libc-2.*.so in {deb}"
    return found[0]


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory, bullseye_libc: Path) -> Dict[str, Path]:
    base = tmp_path_factory.mktemp("glibc-roots")
    out: Dict[str, Path] = {}
    host = out["bookworm"] = _root(base, "bookworm")
    copy_with_links(host, HOST_LIBC)
    # Debian 11 as installed: libc.so.6 -> libc-2.31.so
    named = out["bullseye"] = _root(base, "bullseye")
    shutil.copy2(bullseye_libc, named / MULTIARCH / bullseye_libc.name)
    os.symlink(bullseye_libc.name, named / MULTIARCH / "libc.so.6")
    # The same library under its soname only: the release must come from its banner.
    plain = out["bullseye-plain"] = _root(base, "bullseye-plain")
    shutil.copy2(bullseye_libc, plain / MULTIARCH / "libc.so.6")
    for root in out.values():
        subprocess.run(["ldconfig", "-r", str(root)], check=True)
    return out


def test_glibc_2_36_from_its_banner(roots: Dict[str, Path]) -> None:
    libc = _facts(roots["bookworm"]).libc
    assert libc.kind == "glibc"
    assert libc.version == os.confstr("CS_GNU_LIBC_VERSION").split()[1] == "2.36"
    assert libc.symbol_version == "2.36"


def test_debian_11_glibc_is_2_31_not_its_newest_symbol_version(
        roots: Dict[str, Path]) -> None:
    libc = _facts(roots["bullseye"]).libc
    assert (libc.kind, libc.version, libc.symbol_version) == ("glibc", "2.31", "2.30")
    assert libc.path.endswith("/libc.so.6")


def test_release_from_the_banner_when_the_file_name_says_nothing(
        roots: Dict[str, Path]) -> None:
    libc = _facts(roots["bullseye-plain"]).libc
    assert (libc.version, libc.symbol_version) == ("2.31", "2.30")


def test_debian_11_glibc_in_a_squashfs_image(roots: Dict[str, Path], tmp_path: Path) -> None:
    try:
        image = make_squashfs(roots["bullseye"], tmp_path / "bullseye.sqfs")
    except ImageBuildError as error:
        pytest.skip(str(error))
    libc = inspect_image(str(image), use_cache=False).libc
    assert (libc.version, libc.symbol_version) == ("2.31", "2.30")


def test_verdict_names_the_release_and_the_symbol_versions(roots: Dict[str, Path]) -> None:
    """Where it matters (a host library needs a newer GLIBC_x), the verdict shows both: the
    real release of the image's glibc and the newest symbol version it defines."""
    if not os.path.exists(HOST_MPICH):
        pytest.skip(f"{HOST_MPICH} is not installed (Debian package libmpich12)")
    facts = _facts(roots["bullseye"])
    info = read_elf_file(os.path.realpath(HOST_MPICH))
    loading = [verdict.Loading("libmpich.so.12", "libmpich.so.12", info)]
    found = verdict.check_symbol_versions(loading, {}, facts.version_defs, facts.libc)
    assert len(found) == 1
    message = found[0].message
    assert "needs GLIBC_2.34" in message
    assert "the container's glibc 2.31 (libc.so.6) defines up to GLIBC_2.30" in message
