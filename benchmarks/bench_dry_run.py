"""Whole-process cost of a launch decision: ``hpcrun --dry-run --site zeus srun -n 2 IMAGE cmd``.

Runs ``hpcrun`` and ``python -c pass`` alternately in the same run and prints both medians
and their ratio (target: hpcrun <= 100 ms).  The image is a real SIF from
``../shared/data/sif`` when present, else a squashfs image made with mksquashfs.  The image
facts cache is warm (the first, unmeasured run fills it), as it is for every launch after
the first.

Two installs are measured, each against its own interpreter: hpcrun installed in a venv
under ``benchmarks/out/`` (``benchutil.venv_hpcrun``, as a site installs a tool; the target
is judged on it), and the ``hpcrun`` beside the interpreter running this script, whose
site-packages on this machine carry a ``.pth`` hook that imports certifi at every
interpreter start (tens of ms a cluster's Python does not pay).  The package is
byte-compiled first, as ``pip install`` does (``benchutil.py``).

    python benchmarks/bench_dry_run.py [--runs N] [--no-venv]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchutil import compile_package, hpcrun_program, venv_hpcrun

REPO = Path(__file__).resolve().parent.parent


def _image(tmp: Path) -> Path:
    """A tiny image: a SIF file by real ``apptainer build`` when Apptainer is installed, a
    squashfs file otherwise."""
    tree = tmp / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("bench\n")
    if shutil.which("apptainer"):
        sif = tmp / "bench.sif"
        subprocess.run(["apptainer", "-q", "build", str(sif), str(tree)], check=True,
                       stdout=subprocess.DEVNULL)
        return sif
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
    parser.add_argument("--no-venv", action="store_true",
                        help="measure the hpcrun beside this interpreter only")
    args = parser.parse_args()
    installs: List[Tuple[str, str, str]] = []  # (label, hpcrun, its python)
    venv = None if args.no_venv else venv_hpcrun()
    if venv:
        installs.append(("venv", venv, str(Path(venv).parent / "python")))
    here = hpcrun_program()
    if here:
        installs.append(("this python", here, sys.executable))
    if not installs:
        print("hpcrun is not installed (pip install -e .)", file=sys.stderr)
        return 1
    compile_package()
    times: List[Tuple[List[Tuple[float, float]], List[Tuple[float, float]]]] = [
        ([], []) for _ in installs]
    with tempfile.TemporaryDirectory() as tmp:
        image = _image(Path(tmp))
        env = dict(os.environ)
        tail = ["--dry-run", "--site", "zeus", "srun", "-n", "2", str(image), "python",
                "hello.py"]
        for _label, hpcrun, _python in installs:
            check = subprocess.run([hpcrun, *tail], env=env, capture_output=True, check=False)
            if check.returncode != 0:
                print(check.stderr.decode(errors="replace"), file=sys.stderr)
                return 1
        for _ in range(args.runs):
            for (_label, hpcrun, python), (ours, base) in zip(installs, times):
                ours.append(_time([hpcrun, *tail], env))
                base.append(_time([python, "-c", "pass"], env))
    print(f"image: {image}   runs: {args.runs}   load average: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for (label, hpcrun, _python), (mine, theirs) in zip(installs, times):
        print(f"{label}: {hpcrun}")
        for i, what in ((0, "wall"), (1, "CPU ")):
            ours_ms = statistics.median(t[i] for t in mine) * 1000
            base_ms = statistics.median(t[i] for t in theirs) * 1000
            verdict = "met" if ours_ms <= 100 else "NOT met"
            print(
                f"  {what}: hpcrun --dry-run --site zeus srun -n 2 IMAGE cmd median"
                f" {ours_ms:6.1f} ms | python -c pass median {base_ms:6.1f} ms"
                f" | ratio {ours_ms / base_ms:.2f}x | hpcrun's own {ours_ms - base_ms:5.1f} ms"
                + (f" | target <= 100 ms {verdict}" if label == installs[0][0] else "")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
