#!/usr/bin/env python3
"""MPI hello world with mpi4py: which rank, which host, and which MPI library served it.

    srun -n 2 hpcrun IMAGE python3 hello-mpi4py.py          (or: hpcrun srun -n 2 IMAGE ...)

Each rank prints ``Hello World! I am process R of N on HOST``, then the first line of
``MPI_Get_library_version`` and the path of the MPI library mapped into the process (from
``/proc/self/maps``): inside a container run by hpcrun that path is the HOST library bound
into the container.  ``rank R libmpi-file: DEV INODE SIZE`` follows: that file's identity as
the rank sees it (a bind mount keeps the host file's device and inode), so a test can check
it is the very host file.  ``--parents`` also prints the process's ancestors (pid, name, command
line), to see what runs per rank between the launcher and the application.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import List

from mpi4py import MPI


def mpi_library_path() -> str:
    """The first mapped file named like an MPI C library (libmpi*.so*, libmpich*.so*)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) < 6:
                continue
            path = fields[5].strip()
            name = os.path.basename(path)
            if (name.startswith("libmpi.so") or name.startswith("libmpich.so")
                    or name.startswith("libmpi_abi.so")):
                return path
    return "(no libmpi mapped)"


def ancestors() -> List[str]:
    """``pid comm cmdline`` of each ancestor process, nearest first, up to pid 1."""
    chain = []
    pid = os.getppid()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat") as stat_file:
                stat = stat_file.read()
            with open(f"/proc/{pid}/cmdline", "rb") as cmd_file:
                cmdline = cmd_file.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            break
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        chain.append(f"{pid} {comm} {cmdline[:200]}")
        pid = int(stat[stat.rindex(")") + 2:].split()[1])
    return chain


def main() -> int:
    """Print one hello line per rank plus the library details."""
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    version = MPI.Get_library_version().strip().splitlines()[0].strip()
    libmpi = mpi_library_path()
    lines = [f"Hello World! I am process {rank} of {size} on {socket.gethostname()}",
             f"rank {rank} library: {version}",
             f"rank {rank} libmpi: {libmpi}"]
    try:
        info = os.stat(libmpi)
        lines.append(f"rank {rank} libmpi-file: {info.st_dev} {info.st_ino} {info.st_size}")
    except OSError:
        pass
    if "--parents" in sys.argv[1:]:
        lines += [f"rank {rank} parent: {entry}" for entry in ancestors()]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    comm.Barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main())
