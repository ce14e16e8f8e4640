"""ld.so.cache files written by the real ldconfig in all its formats, parsed back."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from hpcrun.elf.ldcache import (
    cache_for_architecture,
    flags_architecture,
    flags_description,
    flags_match,
    parse_ld_cache,
)
from hpcrun.errors import ElfError

HOST_LIBDIR = "/usr/lib/x86_64-linux-gnu"
LDCONFIG = shutil.which("ldconfig") or "/sbin/ldconfig"


def ldconfig_print(root: Path, cache: str) -> List[Tuple[str, str, str]]:
    """What ``ldconfig -p`` prints for a cache: (soname, flags text, path)."""
    out = subprocess.run(
        [LDCONFIG, "-r", str(root), "-C", cache, "-p"], check=True, capture_output=True, text=True
    ).stdout
    rows = []
    for line in out.splitlines():
        match = re.match(r"^\t(\S+) \(([^)]*)\) => (.*)$", line)
        if match:
            rows.append((match.group(1), match.group(2), match.group(3)))
    return rows


@pytest.fixture(scope="session")
def ld_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with real libraries, ld.so.conf with includes, and caches in 3 formats."""
    if not os.path.exists(LDCONFIG):
        pytest.skip("ldconfig not found")
    root = tmp_path_factory.mktemp("ldroot")
    libdir = root / HOST_LIBDIR.lstrip("/")
    libdir.mkdir(parents=True)
    (root / "opt/mpi/lib").mkdir(parents=True)
    for name in os.listdir(HOST_LIBDIR):
        if re.match(r"lib(mpich|c|m|stdc\+\+|gcc_s|z)\.so", name):
            src = os.path.join(HOST_LIBDIR, name)
            shutil.copy2(src, libdir / name, follow_symlinks=False)
    for name in os.listdir(HOST_LIBDIR):
        if name.startswith("libmpi.so.40"):
            shutil.copy2(
                os.path.join(HOST_LIBDIR, name), root / "opt/mpi/lib" / name, follow_symlinks=False
            )
    (root / "etc/ld.so.conf.d").mkdir(parents=True)
    (root / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    (root / "etc/ld.so.conf.d/a.conf").write_text(f"# multiarch\n{HOST_LIBDIR}\n")
    (root / "etc/ld.so.conf.d/b.conf").write_text("/opt/mpi/lib\n")
    for fmt in ("old", "compat", "new"):
        subprocess.run(
            [LDCONFIG, "-X", "-c", fmt, "-r", str(root), "-C", f"/etc/cache.{fmt}"],
            check=True,
            capture_output=True,
        )
    return root


@pytest.mark.parametrize("fmt", ["old", "compat", "new"])
def test_matches_ldconfig_print(ld_root: Path, fmt: str) -> None:
    cache = ld_root / "etc" / f"cache.{fmt}"
    entries = parse_ld_cache(cache.read_bytes(), str(cache))
    expected = ldconfig_print(ld_root, f"/etc/cache.{fmt}")
    assert len(expected) > 5
    assert [(s, flags_description(f), p) for s, f, p in entries] == expected
    sonames = {s for s, _, _ in entries}
    assert {"libmpich.so.12", "libc.so.6", "libmpi.so.40"} <= sonames


def test_formats_agree(ld_root: Path) -> None:
    parsed: Dict[str, list] = {
        fmt: parse_ld_cache((ld_root / "etc" / f"cache.{fmt}").read_bytes())
        for fmt in ("old", "compat", "new")
    }
    assert parsed["old"] == parsed["compat"] == parsed["new"]


def test_host_cache() -> None:
    data = Path("/etc/ld.so.cache").read_bytes()
    entries = parse_ld_cache(data)
    assert entries == [(s, f, p) for s, f, p in entries if flags_architecture(f) == "x86_64"]
    pairs = dict(cache_for_architecture(entries, "x86_64"))
    assert os.path.realpath(pairs["libc.so.6"]) == os.path.realpath(f"{HOST_LIBDIR}/libc.so.6")
    assert cache_for_architecture(entries, "aarch64") == []


def test_flags() -> None:
    assert flags_description(0x0303) == "libc6,x86-64"
    assert flags_description(0x0003) == "libc6"
    assert flags_description(0x0A03) == "libc6,AArch64"
    assert flags_match(0x0303, "x86_64") and not flags_match(0x0303, "i686")
    assert flags_match(0x0003, "i686") and not flags_match(0x0003, "x86_64")
    assert flags_match(0x0A03, "aarch64")
    assert flags_match(0x0503, "ppc64le")


@pytest.mark.parametrize("fmt", ["old", "compat", "new"])
def test_truncated_caches_are_elf_errors(ld_root: Path, fmt: str) -> None:
    data = (ld_root / "etc" / f"cache.{fmt}").read_bytes()
    for keep in (12, 20, 40, 60, len(data) // 2):
        with pytest.raises(ElfError, match=r"/img/etc/ld\.so\.cache"):
            parse_ld_cache(data[:keep], "/img/etc/ld.so.cache")


def test_not_a_cache() -> None:
    with pytest.raises(ElfError, match=r"x/ld\.so\.cache: not an ld\.so cache"):
        parse_ld_cache(Path("/etc/passwd").read_bytes(), "x/ld.so.cache")
