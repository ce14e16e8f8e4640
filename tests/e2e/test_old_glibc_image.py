"""A Debian 11 image (glibc 2.31) with a real MPICH application, served by the MPI wheels.

Issue 12, item 2: ``hpcrun site detect`` pointed at the MPICH 5 wheel or Intel MPI used to
list the system's UCX modules (Debian 12, GLIBC_2.34), which those MPIs never load, so the
image was refused.  Here each wheel's detected profile checks the image as compatible and
serves NetPIPE's ``NPmpich2`` (bullseye's ``netpipe-mpich2``, linked to
``libmpich.so.12``) for real under real Apptainer and the wheel's own ``mpiexec.hydra``.
The run image has no MPI of its own, so two ranks that talk prove the host MPI served them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Dict, Tuple

import pytest

from helpers import bullseye, images
from hpcrun.cli.main import EXIT_OK, EXIT_WARNINGS
from hpcrun.profiles.detect import detect_site, render_detection

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

APPTAINER = shutil.which("apptainer") or ""
HPCRUN = shutil.which("hpcrun") or ""
WHEEL_LIB = {"mpich": "mpich-5.0.2.data/data/lib", "impi": "intellibs/lib",
             "impi_rt": "impi_rt-2021.19.0.data/data/lib"}
WHEEL_BIN = {"mpich": "mpich-5.0.2.data/data/bin", "impi": "intellibs/bin",
             "impi_rt": "impi_rt-2021.19.0.data/data/bin"}
SYSTEM_UCX = "/usr/lib/x86_64-linux-gnu/ucx"


@pytest.fixture(scope="module")
def old_images(tmp_path_factory: pytest.TempPathFactory) -> Dict[bool, Path]:
    """Debian 11 roots: with bullseye's own libmpich12 (True) and without it (False)."""
    if os.geteuid() != 0:
        pytest.skip("building and running the image needs root (ldconfig -r, Apptainer)")
    out = {}
    for with_mpich in (True, False):
        root = tmp_path_factory.mktemp("bullseye") / "root"
        try:
            bullseye.build_root(root, with_mpich)
        except (images.ImageBuildError, subprocess.CalledProcessError) as error:
            pytest.skip(f"the Debian 11 image cannot be built here: {error}")
        out[with_mpich] = root
    return out


@pytest.fixture(scope="module")
def wheel_site(mpi_wheel: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
               ) -> Callable[[str], Tuple[Path, Path]]:
    """(profile file detected for the wheel, the wheel's bin directory)."""
    cache: Dict[str, Tuple[Path, Path]] = {}

    def make(name: str) -> Tuple[Path, Path]:
        if name not in cache:
            unpacked = mpi_wheel(name)
            detection = detect_site(Path("/"), {"PATH": "/usr/bin:/bin"},
                                    mpi=str(unpacked / WHEEL_LIB[name]), name=f"w-{name}")
            path = tmp_path_factory.mktemp("sites") / f"w-{name}.toml"
            path.write_text(render_detection(detection))
            cache[name] = (path, unpacked / WHEEL_BIN[name])
        return cache[name]

    return make


def _hpcrun(args: list, path_first: str = "", timeout: float = 240
            ) -> subprocess.CompletedProcess:
    if not HPCRUN:
        pytest.skip("the hpcrun entry point is not installed")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("APPTAINER", "SINGULARITY", "I_MPI_", "FI_", "UCX_", "PMI",
                                "HPCRUN_SITE"))}
    env.pop("LD_LIBRARY_PATH", None)
    if path_first:
        env["PATH"] = f"{path_first}:{env.get('PATH', '/usr/bin:/bin')}"
    env["USER"] = env.get("USER") or "root"
    return subprocess.run([HPCRUN, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.parametrize("wheel", ["mpich", "impi", "impi_rt"])
def test_detected_wheel_profile_serves_the_debian11_image(old_images, wheel_site,
                                                          wheel: str) -> None:
    site, _bindir = wheel_site(wheel)
    assert SYSTEM_UCX not in site.read_text()
    done = _hpcrun(["check", "--site", str(site), str(old_images[True]), "--app",
                    bullseye.APP, "--json"])
    report = json.loads(done.stdout)
    assert (report["verdict"], done.returncode) in (("compatible", EXIT_OK),
                                                    ("warnings", EXIT_WARNINGS))
    codes = {d["code"] for d in report["diagnostics"]}
    assert "mpi-alias" in codes  # libmpich.so.12 served by the wheel's libmpi.so.12
    assert not [d for d in report["diagnostics"] if d["severity"] == "error"]
    # What cannot load in glibc 2.31 is only a run-time module (verbs, efa, psm2), named.
    for diagnostic in report["diagnostics"]:
        if diagnostic["severity"] == "warning":
            assert diagnostic["code"] == "provider-unloadable", diagnostic
            assert "the run-time module lib" in diagnostic["message"]


def test_system_ucx_listed_for_the_mpich_wheel_is_not_bound(old_images, wheel_site,
                                                            tmp_path: Path) -> None:
    """The profile the issue saw (the wheel + /usr/lib/.../ucx modules): those modules are
    named and left out; the image is no longer refused for GLIBC_2.34."""
    if not os.path.isdir(SYSTEM_UCX):
        pytest.skip("Debian's libucx0 is not installed")
    site, _bindir = wheel_site("mpich")
    text = site.read_text()
    ours = [line for line in text.splitlines() if line.startswith("path = ") and "/ucx/" in line]
    assert len(ours) == 1
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(ours[0], f'path = "{SYSTEM_UCX}/libuct_*.so*"'))
    done = _hpcrun(["check", "--site", str(bad), str(old_images[True]), "--app", bullseye.APP,
                    "--json"])
    assert done.returncode == EXIT_WARNINGS, done.stdout + done.stderr  # not refused
    report = json.loads(done.stdout)
    (unrelated,) = [d for d in report["diagnostics"] if d["code"] == "provider-unrelated"]
    assert unrelated["message"].startswith(f"{SYSTEM_UCX}: ")
    assert "mpich/libucs.so.0" in unrelated["message"] or "/mpich)" in unrelated["message"]
    plan = _hpcrun(["--site", str(bad), "--runtime", "apptainer", "--json", "srun", "-n", "2",
                    str(old_images[True]), bullseye.APP])
    assert plan.returncode == 0, plan.stderr
    assert f'"source": "{SYSTEM_UCX}' not in plan.stdout  # no bind of the system modules
    assert '"destination": "/.hpcrun/lib/mpich/ucx"' in plan.stdout or \
        '"destination": "/.hpcrun/lib/mpich"' in plan.stdout  # the wheel's own ones


@pytest.mark.parametrize("wheel", ["mpich", "impi", "impi_rt"])
def test_npmpich2_runs_on_the_wheel_mpi_for_real(old_images, wheel_site, wheel: str,
                                                 tmp_path: Path) -> None:
    if not APPTAINER:
        pytest.skip("Apptainer is not installed (see /work/shared/tools/apptainer-up.sh)")
    site, bindir = wheel_site(wheel)
    out = tmp_path / "np.out"
    done = _hpcrun(["--site", str(site), "--runtime", "apptainer", "mpiexec.hydra", "-n", "2",
                    str(old_images[False]), bullseye.APP, "-u", "8", "-o", str(out)],
                   path_first=str(bindir))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "error while loading shared libraries" not in output
    # Both ranks started and the ping-pong loop ran to the upper bound (8 bytes).
    assert "0: " in output and "1: " in output and "Now starting the main loop" in output
    rows = out.read_text().split("\n")
    assert rows and rows[0].split()[0] == "1" and any(r.split()[:1] == ["8"] for r in rows)
