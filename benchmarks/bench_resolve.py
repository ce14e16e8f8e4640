"""Benchmark the resolver: host closure, plan+verdict, whole process (one command).

    python benchmarks/bench_resolve.py [--runs N] [--no-venv]

The host is this machine (Debian packages): a zeus-like profile whose host MPI is Debian's
Open MPI 4.1 with its 121 MCA components as run-time opened [[libraries]], so the closure
holds well over 40 host libraries.  The image is a sandbox directory built here with an app
compiled by ``mpicc.openmpi`` (plus glibc and Open MPI of its own) and an ld.so.cache from
``ldconfig -r``.  The image facts cache is warmed first.  Prints a table (wall and CPU
medians); the whole-process rows are compared with the 150 ms target.

Whole processes run hpcrun installed in a venv under ``benchmarks/out/`` (as a site installs
a tool; ``--no-venv``: the ``hpcrun`` beside this interpreter), with the package
byte-compiled first, as an installed hpcrun is (``benchutil.py``).  The launch path
(``hpcrun --dry-run --site PROFILE IMAGE APP``: profile, cached facts, host probe, closure,
verdict, plan, rendering) is what a job runs; ``hpcrun check --json`` adds typer's start-up.
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
from typing import Callable, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchutil import compile_package, hpcrun_program, venv_hpcrun

LIBDIR = "/usr/lib/x86_64-linux-gnu"
HELLO = "#include <mpi.h>\nint main(int c, char **v) { MPI_Init(&c, &v); MPI_Finalize(); }\n"


def _copy(path: str, root: Path) -> None:
    current = path
    while True:
        target = root / current.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(current):
            link = os.readlink(current)
            if not target.is_symlink():
                os.symlink(link, target)
            current = link if link.startswith("/") else os.path.join(os.path.dirname(current), link)
            continue
        if not target.exists():
            shutil.copy2(current, target)
        return


def build(work: Path) -> tuple:
    """The sandbox image and the site profile file."""
    image = work / "image"
    src = work / "app.c"
    src.write_text(HELLO)
    (image / "usr/local/bin").mkdir(parents=True)
    subprocess.run(["mpicc.openmpi", str(src), "-o", str(image / "usr/local/bin/app")], check=True)
    for name in ("libc.so.6", "libm.so.6", "libmpi.so.40"):
        _copy(f"{LIBDIR}/{name}", image)
    _copy("/lib64/ld-linux-x86-64.so.2", image)
    (image / "etc").mkdir(exist_ok=True)
    (image / "etc/ld.so.conf").write_text(f"{LIBDIR}\n")
    subprocess.run(["ldconfig", "-X", "-r", str(image)], check=True)
    profile = work / "zeus-like.toml"
    profile.write_text(
        'schema = 1\nname = "zeus-like"\n'
        '[mpi]\nfamily = "openmpi"\nimplementation = "Open MPI"\nversion = "4.1.4"\n'
        f'libraries = ["{LIBDIR}/libmpi.so.40", "{LIBDIR}/libmpi_mpifh.so.40"]\n'
        "[[libraries]]\n"
        f'path = "{LIBDIR}/openmpi/lib/openmpi3/*.so"\n'
        'reason = "Open MPI MCA components (dlopened)"\n'
    )
    return image, profile


def timed(fn: Callable[[], object], runs: int) -> List[Tuple[float, float]]:
    """(wall, CPU) seconds of ``runs`` calls; CPU is this process's plus its children's."""
    out = []
    for _ in range(runs):
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = time.process_time()
        start = time.perf_counter()
        fn()
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = time.process_time() - own + (after.ru_utime - children.ru_utime) + (
            after.ru_stime - children.ru_stime
        )
        out.append((wall, cpu))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-venv", action="store_true",
                        help="measure the hpcrun beside this interpreter only")
    args = parser.parse_args()
    for tool in ("mpicc.openmpi", "ldconfig"):
        if shutil.which(tool) is None:
            print(f"bench_resolve: {tool} is not installed", file=sys.stderr)
            return 1
    # hpcrun installed in a venv (as a site installs it; benchutil.venv_hpcrun), else the
    # one beside this interpreter; whole processes use that install's own interpreter.
    venv = None if args.no_venv else venv_hpcrun()
    hpcrun = venv or hpcrun_program()
    python = str(Path(venv).parent / "python") if venv else sys.executable
    if not hpcrun:
        print("bench_resolve: hpcrun is not installed (pip install -e .)", file=sys.stderr)
        return 1
    compile_package()
    from hpcrun.host.probe import probe_host
    from hpcrun.image.inspect import inspect_image
    from hpcrun.plan.model import Request
    from hpcrun.profiles.lookup import load_site
    from hpcrun.resolve.closure import host_closure
    from hpcrun.resolve.resolver import resolve

    with tempfile.TemporaryDirectory(prefix="bench-resolve-") as tmp:
        work = Path(tmp)
        env = dict(
            os.environ, XDG_CACHE_HOME=str(work / "cache"), HPCRUN_CACHE_DIR=str(work / "cache")
        )
        os.environ.update(env)
        image, profile_path = build(work)
        app = ["/usr/local/bin/app"]
        profile = load_site(str(profile_path))
        host = probe_host()
        facts = inspect_image(str(image), app=app)  # warms the facts cache
        request = Request(launcher=("srun",), image=str(image), command=tuple(app))
        roots = [*profile.mpi.libraries, *(lib.path for lib in profile.libraries)]  # type: ignore[union-attr]
        closure = host_closure(roots)
        result = resolve(profile, request, host, facts)
        t_closure = timed(lambda: host_closure(roots), args.runs)
        t_resolve = timed(lambda: resolve(profile, request, host, facts), args.runs)
        snippet = (
            "from hpcrun.profiles.lookup import load_site;"
            "from hpcrun.host.probe import probe_host;"
            "from hpcrun.image.inspect import inspect_image;"
            "from hpcrun.plan.model import Request;"
            "from hpcrun.resolve.resolver import resolve;"
            f"p=load_site({str(profile_path)!r});"
            f"f=inspect_image({str(image)!r}, app={app!r});"
            f"r=resolve(p, Request(launcher=(), image={str(image)!r}, command={tuple(app)!r}),"
            " probe_host(), f)"
        )
        t_start = timed(
            lambda: subprocess.run([python, "-c", "pass"], check=True), args.runs
        )
        t_python = timed(
            lambda: subprocess.run([python, "-c", snippet], check=True, env=env), args.runs
        )
        launch = [hpcrun, "--dry-run", "--site", str(profile_path), str(image), *app]
        t_launch = timed(
            lambda: subprocess.run(launch, env=env, stdout=subprocess.DEVNULL, check=True),
            args.runs,
        )
        cli = [
            hpcrun,
            "check",
            "--site",
            str(profile_path),
            str(image),
            "--json",
            "--app",
            app[0],
        ]
        t_cli = timed(lambda: subprocess.run(cli, env=env, stdout=subprocess.DEVNULL), args.runs)

    bound = len({b.source for b in result.binds})
    print(
        f"host closure: {len(closure.libraries)} host libraries "
        f"({len([x for x in closure.libraries if x.found_via != 'root'])} found as "
        f"dependencies), {bound} files bound, verdict {result.verdict}"
    )
    print(f"runs: {args.runs}   load average: {os.getloadavg()[0]:.1f}   program: {hpcrun}")
    print(f"{'what':58} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'CPU ms':>8}")
    rows = [
        ("host closure (in process)", t_closure),
        ("resolve: closure + layout + verdict (in process)", t_resolve),
        ("python -c pass (interpreter start, for scale)", t_start),
        ("python -c: import + load profile + cached facts + resolve", t_python),
        ("hpcrun --dry-run (launch path, whole process, warm cache)", t_launch),
        ("hpcrun check --json (whole process, warm facts cache)", t_cli),
    ]
    for name, values in rows:
        walls = [w for w, _ in values]
        print(
            f"{name:58} {statistics.median(walls) * 1000:10.1f} {min(walls) * 1000:8.1f} "
            f"{max(walls) * 1000:8.1f} {statistics.median(c for _, c in values) * 1000:8.1f}"
        )
    for name, values in rows[-2:]:
        median = statistics.median(w for w, _ in values) * 1000
        print(f"target <= 150 ms, {name.split(' (')[0]}: {median:.1f} ms "
              f"{'met' if median <= 150 else 'NOT met'}")
    print(
        "e4s-cl: not installed here, not measured (peers.md reports 0.13 s for its dry run, "
        "with no ABI check)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
