"""Whole-process cost of a launch decision: ``hpcrun --dry-run --site zeus srun -n 2 IMAGE cmd``.

Runs the installed ``hpcrun`` program and ``python -c pass`` alternately in the same run and
prints both medians and their ratio (target: hpcrun <= 100 ms).  The image is a real SIF
from ``../shared/data/sif`` when present, else a squashfs image made with mksquashfs.

The ``hpcrun`` measured is the console script beside the running interpreter (not a pyenv
shim), and the package is byte-compiled first, as ``pip install`` does (see
``benchutil.py``).  The image facts cache is warm (the first, unmeasured run fills it), as
it is for every launch after the first.

A second pair of rows runs both with ``python -S`` (no site hooks; the package on
PYTHONPATH; the launch path needs nothing but the standard library): this machine's
site-packages carry a ``.pth`` hook that imports certifi at every interpreter start (tens
of ms that a cluster's Python does not pay), and the clean rows show hpcrun without it.

    python benchmarks/bench_dry_run.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchutil import compile_package, hpcrun_program

REPO = Path(__file__).resolve().parent.parent
SHARED_SIF = REPO.parent / "shared" / "data" / "sif" / "images" / "one-group.sif"


def _image(tmp: Path) -> Path:
    if SHARED_SIF.exists():
        return SHARED_SIF
    tree = tmp / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("bench\n")
    image = tmp / "bench.sqfs"
    subprocess.run(["mksquashfs", str(tree), str(image), "-quiet", "-noappend"], check=True)
    return image


def _time(argv: List[str], env: dict) -> Tuple[float, float]:
    """(wall, CPU user+system) seconds of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    hpcrun = hpcrun_program()
    if not hpcrun:
        print("hpcrun is not installed (pip install -e .)", file=sys.stderr)
        return 1
    package = compile_package()
    with tempfile.TemporaryDirectory() as tmp:
        image = _image(Path(tmp))
        env = dict(os.environ)
        command = [
            hpcrun,
            "--dry-run",
            "--site",
            "zeus",
            "srun",
            "-n",
            "2",
            str(image),
            "python",
            "hello.py",
        ]
        check = subprocess.run(command, env=env, capture_output=True, check=False)
        if check.returncode != 0:
            print(check.stderr.decode(errors="replace"), file=sys.stderr)
            return 1
        baseline = [sys.executable, "-c", "pass"]
        clean_env = {**env, "PYTHONPATH": str(package.parent)}
        clean = [sys.executable, "-S", "-m", "hpcrun", *command[1:]]
        clean_base = [sys.executable, "-S", "-c", "pass"]
        ours: List[Tuple[float, float]] = []
        base: List[Tuple[float, float]] = []
        ours_clean: List[Tuple[float, float]] = []
        base_clean: List[Tuple[float, float]] = []
        for _ in range(args.runs):
            ours.append(_time(command, env))
            base.append(_time(baseline, env))
            ours_clean.append(_time(clean, clean_env))
            base_clean.append(_time(clean_base, clean_env))
    print(f"program: {hpcrun}")
    print(
        f"image: {image}   runs: {args.runs}   load average: "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    rows = (("installed", "", ours, base), ("python -S", " -S", ours_clean, base_clean))
    for label, flag, mine, theirs in rows:
        for i, what in ((0, "wall"), (1, "CPU ")):
            ours_ms = statistics.median(t[i] for t in mine) * 1000
            base_ms = statistics.median(t[i] for t in theirs) * 1000
            print(
                f"{label:9} {what}: hpcrun --dry-run --site zeus srun -n 2 IMAGE cmd median"
                f" {ours_ms:6.1f} ms | python{flag} -c pass median {base_ms:6.1f} ms"
                f" | ratio {ours_ms / base_ms:.2f}x | hpcrun's own {ours_ms - base_ms:5.1f} ms"
                f" | target <= 100 ms {'met' if ours_ms <= 100 else 'NOT met'}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
