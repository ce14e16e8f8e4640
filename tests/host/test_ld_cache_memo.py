"""host_ld_cache is remembered in the facts cache until /etc/ld.so.cache changes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from hpcrun.host import gpu

HWLOC = "/usr/lib/x86_64-linux-gnu/libhwloc.so.15"


def _ldconfig(root: Path, dirs: List[str]) -> None:
    exe = shutil.which("ldconfig") or "/sbin/ldconfig"
    if not os.path.exists(exe):
        pytest.skip("ldconfig is not installed")
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/gen.conf").write_text("".join(f"{d}\n" for d in dirs))
    subprocess.run([exe, "-X", "-r", str(root), "-f", "/etc/gen.conf"], check=True,
                   capture_output=True)
    when = time.time_ns() - 120 * 10**9  # old enough to be stored
    os.utime(root / "etc/ld.so.cache", ns=(when, when))


def test_remembered_until_the_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    if not os.path.exists(HWLOC):
        pytest.skip("libhwloc15 is not installed")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "host"
    (root / "opt/b").mkdir(parents=True)
    shutil.copyfile(os.path.realpath(HWLOC), root / "opt/b/libhwloc.so.15")  # a private copy
    _ldconfig(root, ["/opt/b"])
    reads: List[Path] = []
    parse = gpu._read_ld_cache

    def counting(where: Path, machine: str) -> List[Tuple[str, str]]:
        reads.append(where)
        return parse(where, machine)

    monkeypatch.setattr(gpu, "_read_ld_cache", counting)
    first = gpu.host_ld_cache(root, "x86_64")
    assert first == [("libhwloc.so.15", "/opt/b/libhwloc.so.15")] == parse(root, "x86_64")
    assert len(reads) == 1
    assert gpu.host_ld_cache(root, "x86_64") == first
    assert len(reads) == 1  # a hit: not parsed again
    _ldconfig(root, [])
    assert gpu.host_ld_cache(root, "x86_64") == [] == parse(root, "x86_64")
    assert len(reads) == 2


def test_a_damaged_entry_is_parsed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    expected = gpu._read_ld_cache(Path("/"), "x86_64")
    assert gpu.host_ld_cache(Path("/"), "x86_64") == expected
    for entry in (tmp_path / "xdg/hpcrun").glob("*.json"):
        entry.write_text(entry.read_text().replace('"pairs":[[', '"pairs":[[7,'))
    assert gpu.host_ld_cache(Path("/"), "x86_64") == expected
