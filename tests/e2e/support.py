"""Helpers of the end-to-end tests: run a command, parse what the hello programs print."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

HELLO_RE = re.compile(r"^Hello World! I am process (\d+) of (\d+) on (\S+)$")
RANK_RE = re.compile(r"^rank (\d+) (library|libmpi|libmpi-file|parent): (.*)$")


@dataclass
class RankReport:
    """What one rank of ``hello`` printed."""

    rank: int
    size: int
    host: str
    library: str = ""
    libmpi: str = ""
    #: (st_dev, st_ino, st_size) of the mapped MPI library, stat'ed inside the rank.
    libmpi_file: Optional[Tuple[int, int, int]] = None
    parents: Optional[List[str]] = None


def parse_hello(output: str) -> Dict[int, RankReport]:
    """Rank -> report, from the output of ``examples/hello-mpi4py.py`` or ``hello.c``."""
    reports: Dict[int, RankReport] = {}
    for line in output.splitlines():
        line = line.rstrip()
        match = HELLO_RE.match(line)
        if match:
            rank = int(match.group(1))
            reports[rank] = RankReport(rank, int(match.group(2)), match.group(3), parents=[])
            continue
        match = RANK_RE.match(line)
        if match and int(match.group(1)) in reports:
            report = reports[int(match.group(1))]
            if match.group(2) == "parent":
                assert report.parents is not None
                report.parents.append(match.group(3))
            elif match.group(2) == "libmpi-file":
                dev, ino, size = (int(word) for word in match.group(3).split())
                report.libmpi_file = (dev, ino, size)
            else:
                setattr(report, match.group(2), " ".join(match.group(3).split()))
    return reports


def file_identity(path: str) -> Tuple[int, int, int]:
    """(st_dev, st_ino, st_size) of a host file, links followed: what a rank that maps the
    very same file through a bind mount sees with ``stat``."""
    info = os.stat(path)
    return (info.st_dev, info.st_ino, info.st_size)


def assert_ranks(output: str, size: int, library: str, libmpi: Callable[[str], bool], *,
                 host_file: str, is_host_file: bool = True) -> Dict[int, RankReport]:
    """Every rank 0..size-1 reported, in a world of ``size``, served by the expected library.

    ``library`` is the start of MPI_Get_library_version (white space runs as one space);
    ``libmpi`` checks the path of the MPI library mapped into the rank.  The file the rank
    mapped, stat'ed inside the rank, must be the host file ``host_file`` (same device,
    inode and size), or, with ``is_host_file=False`` (a container running its own MPI),
    must not be.
    """
    reports = parse_hello(output)
    assert sorted(reports) == list(range(size)), output
    want = file_identity(host_file)
    for report in reports.values():
        assert report.size == size, output
        assert report.library.startswith(library), output
        assert libmpi(report.libmpi), f"rank {report.rank} mapped {report.libmpi}:\n{output}"
        assert report.libmpi_file is not None, (
            f"rank {report.rank} printed no libmpi-file:\n{output}")
        same = report.libmpi_file == want
        assert same == is_host_file, (
            f"rank {report.rank} mapped {report.libmpi} (dev, inode, size {report.libmpi_file}); "
            f"the host's {host_file} is {want}:\n{output}")
    return reports


@dataclass
class Run:
    """A finished command."""

    argv: List[str]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        """The command and its output, for assertion messages."""
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode}\n--- stdout\n{self.stdout}"
                f"--- stderr\n{self.stderr}")


def run(argv: List[str], env: Dict[str, str], cwd: Path, timeout: float = 120) -> Run:
    """Run a command to completion (text output)."""
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    return Run(argv, proc.returncode, proc.stdout, proc.stderr)


