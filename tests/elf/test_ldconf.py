"""ld.so.conf with includes, over a real directory tree and over the host."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import List, Optional

from hpcrun.elf.ldconf import read_ld_so_conf, tree_glob


def _rooted(root: Path):  # type: ignore[no-untyped-def]
    """read_text and glob callbacks that treat ``root`` as /."""

    def host(path: str) -> str:
        return os.path.join(str(root), path.lstrip("/"))

    def read_text(path: str) -> Optional[str]:
        try:
            return Path(host(path)).read_text()
        except OSError:
            return None

    def listdir(path: str) -> List[str]:
        return os.listdir(host(path))

    def is_dir(path: str) -> bool:
        return os.path.isdir(host(path))

    return read_text, tree_glob(listdir, is_dir)


def test_includes_comments_hwcap_relative(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "ld.so.conf.d").mkdir(parents=True)
    (etc / "more").mkdir()
    (etc / "ld.so.conf").write_text(
        "# top\n/usr/local/lib\ninclude /etc/ld.so.conf.d/*.conf\n"
        "include more/*.conf\nhwcap 1 nosegneg\n/opt/a:/opt/b, /opt/c\t/usr/local/lib\n"
    )
    (etc / "ld.so.conf.d" / "b.conf").write_text("/opt/mpi/lib  # trailing comment\n")
    (etc / "ld.so.conf.d" / "a.conf").write_text("/usr/lib/x86_64-linux-gnu\n\n")
    (etc / "ld.so.conf.d" / "skip.txt").write_text("/not/included\n")
    (etc / "more" / "x.conf").write_text("/opt/rel//lib/\ninclude /etc/ld.so.conf\n")
    read_text, glob_ = _rooted(tmp_path)
    assert read_ld_so_conf(read_text, glob_) == [
        "/usr/local/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/opt/mpi/lib",
        "/opt/rel/lib",
        "/opt/a",
        "/opt/b",
        "/opt/c",
    ]


def test_missing_conf_gives_nothing(tmp_path: Path) -> None:
    read_text, glob_ = _rooted(tmp_path)
    assert read_ld_so_conf(read_text, glob_) == []


def test_host_configuration() -> None:
    def read_text(path: str) -> Optional[str]:
        try:
            return Path(path).read_text()
        except OSError:
            return None

    dirs = read_ld_so_conf(read_text, glob.glob)
    expected = []
    for conf in sorted(glob.glob("/etc/ld.so.conf.d/*.conf")):
        for line in Path(conf).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("/") and line not in expected:
                expected.append(line)
    assert dirs == expected
