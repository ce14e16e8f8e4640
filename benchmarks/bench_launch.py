#!/usr/bin/env python3
"""What hpcrun adds to a job's launch time, for R = 1, 2, 8 ranks on one node.

Compares the wall time of::

    hpcrun --site debian-mpich srun -n R IMAGE /usr/local/bin/hello
    srun --mpi=pmi2 -n R apptainer exec IMAGE /usr/local/bin/hello      (no hpcrun)

on a private loopback-only Slurm started for the run (``tests/helpers/slurm.py``; stopped by
PID at the end) with the test image of ``tests/helpers/images.py``.  hpcrun runs once per
job, before the launcher (never per rank), so the added time should be flat in R.

Usage (as root, from the repository)::

    python3 benchmarks/bench_launch.py [--repeat N] [--ranks 1,2,8] [--runtime apptainer]
        [--out DIR]

Prints per R the median of each, and the added seconds (target <= 0.15 s, flat in R).  R=8
oversubscribes a 2-core machine.  A third column runs the command hpcrun renders
(``--dry-run`` output) directly: ``hpcrun - rendered`` is hpcrun's own time (Python start,
reading the image, planning), ``rendered - plain`` what the bind model costs per job (bind
mounts, environment).  hpcrun is called through the console script beside this interpreter
(not a pyenv shim) with byte-code caching on (``PYTHONDONTWRITEBYTECODE`` removed), as users
run it.  A last column runs ``hpcrun --cleanenv``: the difference is the cost of the
one-line POSIX sh trampoline that forwards the per-rank wire-up variables (plus the
runtime's own --cleanenv handling).  ``--runtime apptainer`` (the default) runs real
Apptainer 1.4 (``scripts/install-apptainer``) on a SIF file made by ``apptainer build``.

Writes ``launch.csv`` (the medians) and, when matplotlib is installed
(``pip install -e .[bench]``), ``launch.png`` (seconds per job against R, and the added
time against the 0.15 s target) to ``--out`` (default ``benchmarks/out``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from helpers import images, slurm  # noqa: E402


def wall(argv: List[str], env: Dict[str, str], cwd: Path) -> float:
    """Seconds one command takes; raises when it fails or prints no hello line."""
    start = time.perf_counter()
    proc = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or "Hello World!" not in proc.stdout:
        raise RuntimeError(f"$ {' '.join(argv)}\nexit {proc.returncode}\n{proc.stdout[-3000:]}")
    return elapsed


def main() -> int:
    """Start Slurm, build the image, time both commands for each R, report medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--ranks", default="1,2,8")
    parser.add_argument("--runtime", choices=("apptainer", "charliecloud"), default="apptainer")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.stderr.write("bench_launch: run as root (Slurm daemons, mount namespaces)\n")
        return 2
    if shutil.which("hpcrun") is None:
        sys.stderr.write("bench_launch: hpcrun is not installed (pip install -e .)\n")
        return 2
    ranks = [int(r) for r in args.ranks.split(",")]
    # Stop the daemons (finally below) also when terminated.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="hpcrun-bench-launch-") as tmp:
        work = Path(tmp)
        print("building the test image and starting Slurm ...", flush=True)
        image = images.build_image(work, "mpich", None)
        cluster = slurm.start_cluster(work / "slurm", cpus=max(ranks))
        try:
            env = {
                k: v
                for k, v in cluster.environ().items()
                if not k.startswith(("APPTAINER", "SINGULARITY", "HPCRUN_", "SLURM_"))
            }
            env["SLURM_CONF"] = str(cluster.conf)
            env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
            env.setdefault("USER", "root")
            env.pop("LD_LIBRARY_PATH", None)
            img = str(image.sif if args.runtime == "apptainer" else image.sandbox)
            runtime = (
                ["apptainer", "exec", img] if args.runtime == "apptainer" else ["ch-run", img, "--"]
            )
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            beside = Path(sys.executable).parent / "hpcrun"
            hpcrun = str(beside) if beside.exists() else "hpcrun"
            rows = []
            for r in ranks:
                args_h = ["--site", "debian-mpich", "--runtime", args.runtime, "srun", "-n",
                          str(r), img, "/usr/local/bin/hello"]
                with_hpcrun = [hpcrun, *args_h]
                with_clean = [hpcrun, "--cleanenv", *args_h]
                plain = ["srun", "--mpi=pmi2", "-n", str(r), *runtime, "/usr/local/bin/hello"]
                plain_env = dict(env, UCX_POSIX_USE_PROC_LINK="n")
                dry = subprocess.run([hpcrun, "--dry-run", *args_h], env=env, cwd=work,
                                     capture_output=True, text=True, check=True)
                rendered = ["sh", "-c", dry.stdout]
                dry_times = []
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    subprocess.run([hpcrun, "--dry-run", *args_h], env=env, cwd=work,
                                   capture_output=True, check=True)
                    dry_times.append(time.perf_counter() - start)
                print(f"R={r}: hpcrun --dry-run alone {statistics.median(dry_times):.3f} s "
                      "(median)", flush=True)
                wall(with_hpcrun, env, work)  # warm caches once
                wall(plain, plain_env, work)
                times_h: List[float] = []
                times_p: List[float] = []
                times_r: List[float] = []
                times_c: List[float] = []
                for _ in range(args.repeat):
                    times_p.append(wall(plain, plain_env, work))
                    times_r.append(wall(rendered, env, work))
                    times_h.append(wall(with_hpcrun, env, work))
                    times_c.append(wall(with_clean, env, work))
                med_h, med_p = statistics.median(times_h), statistics.median(times_p)
                med_r, med_c = statistics.median(times_r), statistics.median(times_c)
                rows.append((r, med_p, med_r, med_h, med_h - med_p, med_c))
                print(f"R={r}: plain {med_p:.3f} s, rendered {med_r:.3f} s, "
                      f"hpcrun {med_h:.3f} s", flush=True)
        finally:
            cluster.stop()
    print(f"\nmedians of {args.repeat} runs (runtime: {args.runtime})")
    print(f"{'R':>3} {'plain (s)':>10} {'rendered (s)':>13} {'hpcrun (s)':>11} "
          f"{'added (s)':>10} {'hpcrun itself':>14} {'binds/env':>10} "
          f"{'--cleanenv (s)':>15} {'trampoline':>11}")
    for r, med_p, med_r, med_h, added, med_c in rows:
        print(f"{r:>3} {med_p:>10.3f} {med_r:>13.3f} {med_h:>11.3f} {added:>10.3f} "
              f"{med_h - med_r:>14.3f} {med_r - med_p:>10.3f} {med_c:>15.3f} "
              f"{med_c - med_h:>11.3f}")
    worst = max(row[4] for row in rows)
    spread = max(row[4] for row in rows) - min(row[4] for row in rows)
    verdict = "meets" if worst <= 0.15 else "MISSES"
    print(
        f"\nlargest added time {worst:.3f} s ({verdict} the target <= 0.15 s); "
        f"spread over R {spread:.3f} s"
    )
    for written in write_outputs(rows, args.runtime, args.out):
        print(f"wrote {written}")
    return 0


def write_outputs(rows: List[Tuple[int, float, float, float, float, float]], runtime: str,
                  out: Path) -> List[Path]:
    """``launch.csv`` and, with matplotlib, ``launch.png`` in ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "launch.csv"
    lines = ["ranks,plain_s,rendered_s,hpcrun_s,added_s,cleanenv_s,runtime"]
    lines += [f"{r},{p:.4f},{d:.4f},{h:.4f},{a:.4f},{c:.4f},{runtime}"
              for r, p, d, h, a, c in rows]
    csv.write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e .[bench]), CSV only")
        return [csv]
    ranks = [row[0] for row in rows]
    fig, (left, right) = pyplot.subplots(1, 2, figsize=(10, 4))
    for index, label in ((1, "srun ... " + runtime + " exec (plain)"),
                         (2, "rendered command"), (3, "hpcrun"), (5, "hpcrun --cleanenv")):
        left.plot(ranks, [row[index] for row in rows], marker="o", label=label)
    left.set_xlabel("ranks (one node)")
    left.set_ylabel("seconds per job (median)")
    left.legend(fontsize="small")
    right.plot(ranks, [row[4] for row in rows], marker="o", label="hpcrun - plain")
    right.axhline(0.15, color="red", linestyle="--", label="target 0.15 s")
    right.set_xlabel("ranks (one node)")
    right.set_ylabel("seconds added per job")
    right.legend(fontsize="small")
    fig.suptitle(f"launch cost, runtime {runtime}")
    fig.tight_layout()
    png = out / "launch.png"
    fig.savefig(png, dpi=100)
    return [csv, png]


if __name__ == "__main__":
    sys.exit(main())
