#!/usr/bin/env python3
"""Point-to-point bandwidth and latency between ranks 0 and 1, in the style of OSU's osu_bw
and osu_latency, with mpi4py and plain ``bytearray`` buffers (no numpy needed).

    hpcrun srun -n 2 IMAGE python3 osu_bw-mpi4py.py [--min-size BYTES] [--max-size BYTES]
                                                    [--trials N] [--csv]

Bandwidth: rank 0 posts a window of non-blocking sends of one size, rank 1 the matching
receives, then rank 1 acknowledges; MB/s = bytes moved / time (1 MB = 10**6 bytes, as OSU).
Latency: half the round-trip time of a blocking ping-pong.  Sizes are powers of two from
1 byte (``--min-size``) to 4 MiB (``--max-size``).  Rank 0 prints one line per size.

``--trials N`` (default 1, plain OSU behaviour) times each size N times in a row in the same
process and reports the best bandwidth and the lowest latency: on a shared machine another
process that takes a core from a rank for part of one trial then spoils that trial only.
"""

from __future__ import annotations

import argparse
import sys
from typing import List

from mpi4py import MPI

WINDOW = 64


def iterations(size: int) -> int:
    """Fewer repetitions for large messages, as OSU does (its defaults: 100 and 20)."""
    if size <= 8192:
        return 200
    if size <= 262144:
        return 50
    return 20


def bandwidth(comm: MPI.Comm, size: int, trials: int = 1) -> float:
    """MB/s for messages of ``size`` bytes between ranks 0 and 1 (best of ``trials``)."""
    rank = comm.Get_rank()
    buffers = [bytearray(size) for _ in range(WINDOW)]
    ack = bytearray(1)
    loops, warmup = iterations(size), 5
    best = 0.0
    for trial in range(trials):
        elapsed = _bandwidth_loop(comm, rank, buffers, ack, loops, 0 if trial else warmup)
        best = max(best, size * WINDOW * loops / elapsed / 1e6)
    return best


def _bandwidth_loop(comm: MPI.Comm, rank: int, buffers: List[bytearray], ack: bytearray,
                    loops: int, warmup: int) -> float:
    """Seconds for ``loops`` windows after ``warmup`` untimed ones."""
    start = 0.0
    for i in range(loops + warmup):
        if i == warmup:
            comm.Barrier()
            start = MPI.Wtime()
        if rank == 0:
            MPI.Request.Waitall([comm.Isend([buf, MPI.BYTE], dest=1, tag=100) for buf in buffers])
            comm.Recv([ack, MPI.BYTE], source=1, tag=101)
        elif rank == 1:
            MPI.Request.Waitall([comm.Irecv([buf, MPI.BYTE], source=0, tag=100)
                                 for buf in buffers])
            comm.Send([ack, MPI.BYTE], dest=0, tag=101)
    return MPI.Wtime() - start


def latency(comm: MPI.Comm, size: int, trials: int = 1) -> float:
    """One-way latency in microseconds (half a ping-pong) for ``size`` bytes (best of
    ``trials``)."""
    rank = comm.Get_rank()
    buf = bytearray(size)
    loops, warmup = iterations(size) * 5, 10
    return min(_latency_loop(comm, rank, buf, loops, 0 if trial else warmup)
               for trial in range(trials)) / loops / 2 * 1e6


def _latency_loop(comm: MPI.Comm, rank: int, buf: bytearray, loops: int, warmup: int) -> float:
    """Seconds for ``loops`` ping-pongs after ``warmup`` untimed ones."""
    start = 0.0
    for i in range(loops + warmup):
        if i == warmup:
            comm.Barrier()
            start = MPI.Wtime()
        if rank == 0:
            comm.Send([buf, MPI.BYTE], dest=1, tag=1)
            comm.Recv([buf, MPI.BYTE], source=1, tag=1)
        elif rank == 1:
            comm.Recv([buf, MPI.BYTE], source=0, tag=1)
            comm.Send([buf, MPI.BYTE], dest=0, tag=1)
    return MPI.Wtime() - start


def sizes(maximum: int, minimum: int = 1) -> List[int]:
    """Powers of two from the first one >= ``minimum`` up to ``maximum`` bytes."""
    result, size = [], 1
    while size <= maximum:
        if size >= minimum:
            result.append(size)
        size *= 2
    return result


def main() -> int:
    """Measure and print (rank 0) one line per message size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-size", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--min-size", type=int, default=1)
    parser.add_argument("--trials", type=int, default=1,
                        help="time each size N times, report the best (default 1)")
    parser.add_argument("--csv", action="store_true", help="print size,MB/s,latency_us")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    if comm.Get_size() < 2:
        if comm.Get_rank() == 0:
            sys.stderr.write("osu_bw-mpi4py: needs at least 2 ranks\n")
        return 1
    rank = comm.Get_rank()
    trials = max(1, args.trials)
    if rank == 0:
        version = MPI.Get_library_version().strip().splitlines()[0]
        print(f"# {version}" if not args.csv else "size,mb_per_s,latency_us")
        if not args.csv:
            print(f"# {'Size':>10} {'Bandwidth (MB/s)':>18} {'Latency (us)':>14}")
    for size in sizes(args.max_size, args.min_size):
        bw = bandwidth(comm, size, trials)
        lat = latency(comm, size, trials)
        if rank == 0:
            if args.csv:
                print(f"{size},{bw:.2f},{lat:.3f}")
            else:
                print(f"  {size:>10} {bw:>18.2f} {lat:>14.2f}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
