"""Launcher and host MPI must be able to wire up: a mismatch is refused before launch.

Real launchers (Debian's Open MPI ``mpirun`` through update-alternatives, MPICH's
``mpiexec.hydra``, the MPICH 5 wheel's ``mpiexec.hydra``, Slurm 22.05's ``srun
--mpi=pmi2|pmix|none`` on the loopback test cluster), real host MPI libraries, the real test
images.  Every refused run: exit 68 (incompatible), ONE error line naming the launcher, a
hint naming what would work, no rank output, and no Slurm job.  The ``--force`` control
shows what the check prevents: the same command starts two singletons ("0 of 1"), exit 0.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from helpers import slurm
from hpcrun.cli.main import EXIT_CONFIG, EXIT_INCOMPATIBLE

from .conftest import ImageSet, wheel_bindir
from .support import Run, assert_ranks, parse_hello, run
from .test_hpcrun import wheel_lib

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SITES = Path(__file__).resolve().parents[2] / "adapter" / "hpcrun" / "data" / "site-profiles"
ORTERUN = "/usr/bin/orterun"


def hpcrun(env: Dict[str, str], cwd: Path, *args: str) -> Run:
    return run(["hpcrun", *args], env, cwd, timeout=180)


def _jobs(cluster: slurm.Cluster) -> int:
    proc = run(["scontrol", "-o", "show", "jobs"], cluster.environ(), cluster.workdir)
    return len([line for line in proc.stdout.splitlines() if line.startswith("JobId=")])


def assert_refused(result: Run, *needles: str, hint: str) -> str:
    """Exit 5, one error line holding ``needles``, a hint holding ``hint``, no rank."""
    assert result.returncode == EXIT_INCOMPATIBLE, result.describe()
    errors = [line for line in result.stderr.splitlines() if line.startswith("hpcrun: error:")]
    assert len(errors) == 1, result.describe()
    for needle in needles:
        assert needle in errors[0], result.describe()
    hints = [line for line in result.stderr.splitlines() if line.startswith("hpcrun: hint:")]
    assert len(hints) == 1 and hint in hints[0], result.describe()
    assert "Traceback" not in result.stderr
    assert parse_hello(result.stdout) == {} and "Hello World" not in result.stdout, \
        result.describe()
    return errors[0]


@pytest.mark.parametrize("runtime", ["apptainer", "charliecloud"])
def test_open_mpi_mpirun_with_mpich_host_is_refused(e2e_images: ImageSet,
                                                    hpcrun_env: Dict[str, str],
                                                    workdir: Path, runtime: str) -> None:
    """The issue's case: on Debian ``mpirun`` is Open MPI's; the host MPI is MPICH."""
    if not Path(ORTERUN).exists():
        pytest.skip("Debian's openmpi-bin is not installed")
    image = e2e_images.mpich.sif if runtime == "apptainer" else e2e_images.mpich.sandbox
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "--runtime", runtime,
                    "mpirun", "--allow-run-as-root", "-np", "2", str(image),
                    "/usr/local/bin/hello")
    error = assert_refused(result, "/etc/alternatives/mpirun", ORTERUN, "MPICH",
                           hint="`mpiexec.hydra`")
    assert "singletons" in error


def test_forcing_the_mismatch_shows_the_singletons(e2e_images: ImageSet,
                                                  hpcrun_env: Dict[str, str],
                                                  workdir: Path) -> None:
    """Control: what the refusal prevents is real (two worlds of size 1, exit 0)."""
    if not Path(ORTERUN).exists():
        pytest.skip("Debian's openmpi-bin is not installed")
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "--force", "mpirun",
                    "--allow-run-as-root", "--oversubscribe", "-np", "2",
                    str(e2e_images.mpich.sif), "/usr/local/bin/hello")
    assert result.returncode == 0, result.describe()
    sizes = re.findall(r"I am process (\d+) of (\d+)", result.stdout)
    assert sizes == [("0", "1"), ("0", "1")], result.describe()


@pytest.mark.parametrize("plugin", ["none", "pmix"])
def test_srun_plugin_that_cannot_serve_mpich_is_refused(
        e2e_images: ImageSet, hpcrun_env: Dict[str, str], workdir: Path,
        slurm_cluster: slurm.Cluster, plugin: str) -> None:
    before = _jobs(slurm_cluster)
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "srun", f"--mpi={plugin}",
                    "-n", "2", str(e2e_images.mpich.sif), "/usr/local/bin/hello")
    assert_refused(result, f"srun --mpi={plugin}", "given on the command line", "MPICH",
                   hint="`srun --mpi=pmi2`")
    assert _jobs(slurm_cluster) == before, "a job was started: " + result.describe()


def test_srun_pmi2_cannot_serve_debian_open_mpi(e2e_images: ImageSet,
                                                hpcrun_env: Dict[str, str], workdir: Path,
                                                slurm_cluster: slurm.Cluster) -> None:
    before = _jobs(slurm_cluster)
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-openmpi", "srun", "--mpi=pmi2",
                    "-n", "2", str(e2e_images.openmpi.sif), "/usr/local/bin/hello")
    assert_refused(result, "srun --mpi=pmi2", "Open MPI", "mca_pmix_ext3x.so",
                   hint="`srun --mpi=pmix`")
    assert _jobs(slurm_cluster) == before, "a job was started: " + result.describe()


@pytest.fixture()
def mpich_site_without_srun_default(tmp_path: Path) -> Path:
    """debian-mpich without its ``[launchers.srun] --mpi=pmi2``: srun decides the plugin."""
    text = (SITES / "debian-mpich.toml").read_text()
    head, _, tail = text.partition("[launchers.srun]")
    tail = tail.split("\n[", 1)
    site = tmp_path / "mpich-no-default.toml"
    site.write_text(head.replace('name = "debian-mpich"', 'name = "mpich-no-default"')
                    + ("[" + tail[1] if len(tail) > 1 else ""))
    return site


@pytest.mark.parametrize("source", ["MpiDefault", "SLURM_MPI_TYPE"])
def test_srun_plugin_from_slurm_itself(e2e_images: ImageSet, hpcrun_env: Dict[str, str],
                                       workdir: Path, slurm_cluster: slurm.Cluster,
                                       mpich_site_without_srun_default: Path,
                                       source: str) -> None:
    """No --mpi anywhere on the command line: srun's own default decides (the test
    cluster's slurm.conf says ``MpiDefault=none``), or ``SLURM_MPI_TYPE``."""
    env = dict(hpcrun_env)
    if source == "SLURM_MPI_TYPE":
        env["SLURM_MPI_TYPE"] = "pmix"
    before = _jobs(slurm_cluster)
    result = hpcrun(env, workdir, "--site", str(mpich_site_without_srun_default), "srun",
                    "-n", "2", str(e2e_images.mpich.sif), "/usr/local/bin/hello")
    where = f"MpiDefault in {slurm_cluster.conf}" if source == "MpiDefault" else source
    assert_refused(result, where, hint="`srun --mpi=pmi2`")
    assert _jobs(slurm_cluster) == before, "a job was started: " + result.describe()
    # the plugin that works, given: the ranks wire up
    ok = hpcrun(env, workdir, "--site", str(mpich_site_without_srun_default), "srun",
                "--mpi=pmi2", "-n", "2", str(e2e_images.mpich.sif), "/usr/local/bin/hello")
    assert ok.returncode == 0, ok.describe()
    assert sorted(parse_hello(ok.stdout)) == [0, 1]
    assert {r.size for r in parse_hello(ok.stdout).values()} == {2}, ok.describe()


def test_mpich_wheel_hydra_serves_the_wheel_mpich(e2e_images: ImageSet,
                                                 hpcrun_env: Dict[str, str], workdir: Path,
                                                 site_dir: Callable[[str], Path],
                                                 mpi_wheel: Callable[[str], Path]) -> None:
    """The MPICH 5 wheel's own mpiexec.hydra (a copied file, no link) passes the check and
    its ranks wire up."""
    hydra = wheel_bindir(mpi_wheel("mpich")) / "mpiexec.hydra"
    result = hpcrun(hpcrun_env, workdir, "--site", str(site_dir("wheel-mpich")), str(hydra),
                    "-n", "2", str(e2e_images.mpich.sif), "/usr/local/bin/hello")
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, "MPICH Version: 5.0.2", lambda p: p.startswith("/.hpcrun/"),
                 host_file=str(wheel_lib(site_dir("wheel-mpich"), "libmpi.so.12")))


@pytest.mark.parametrize("launcher", ["mpich-wheel", "debian"])
def test_hydra_with_open_mpi_host_is_refused(e2e_images: ImageSet,
                                             hpcrun_env: Dict[str, str], workdir: Path,
                                             mpi_wheel: Callable[[str], Path],
                                             launcher: str) -> None:
    hydra = (str(wheel_bindir(mpi_wheel("mpich")) / "mpiexec") if launcher == "mpich-wheel"
             else "mpiexec.hydra")
    argv: List[str] = [hydra, "-n", "2", str(e2e_images.openmpi.sif), "/usr/local/bin/hello"]
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-openmpi", *argv)
    assert_refused(result, "Hydra", "Open MPI", hint="`mpirun.openmpi`")


def test_srun_pmix_cannot_serve_the_mpich_wheel(e2e_images: ImageSet,
                                                hpcrun_env: Dict[str, str], workdir: Path,
                                                site_dir: Callable[[str], Path],
                                                slurm_cluster: slurm.Cluster) -> None:
    """MPICH 5.0.2 from PyPI has no PMIx client (under --mpi=pmix it aborts)."""
    before = _jobs(slurm_cluster)
    result = hpcrun(hpcrun_env, workdir, "--site", str(site_dir("wheel-mpich")), "srun",
                    "--mpi=pmix", "-n", "2", str(e2e_images.mpich.sif), "/usr/local/bin/hello")
    assert_refused(result, "srun --mpi=pmix", "libmpi.so.12 reads PMI_FD and PMI_PORT",
                   hint="`srun --mpi=pmi2`")
    assert _jobs(slurm_cluster) == before, "a job was started: " + result.describe()


def test_srun_plugin_this_slurm_does_not_offer(e2e_images: ImageSet,
                                               hpcrun_env: Dict[str, str], workdir: Path,
                                               slurm_cluster: slurm.Cluster) -> None:
    """Checked against ``srun --mpi=list`` of the real Slurm (22.05 offers pmix_v4)."""
    offered = run(["srun", "--mpi=list"], hpcrun_env, workdir)
    if "pmix_v3" in offered.stdout + offered.stderr:
        pytest.skip("this Slurm offers pmix_v3")
    before = _jobs(slurm_cluster)
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-openmpi", "srun", "--mpi=pmix_v3",
                    "-n", "2", str(e2e_images.openmpi.sif), "/usr/local/bin/hello")
    error = assert_refused(result, "srun --mpi=pmix_v3", "srun --mpi=list",
                           hint="`srun --mpi=pmix`")
    assert "pmix_v4" in error and "pmi2" in error
    assert _jobs(slurm_cluster) == before, "a job was started: " + result.describe()


@pytest.mark.parametrize("launcher", ["hydra", "openmpi"])
def test_mpmd_programs_each_run_in_the_container(e2e_images: ImageSet,
                                                 hpcrun_env: Dict[str, str], workdir: Path,
                                                 launcher: str) -> None:
    """``mpiexec -n 1 IMAGE A : -n 1 IMAGE B``: every program is wrapped in the runtime and
    all ranks share one world (size 2, both served by the host MPI)."""
    if launcher == "hydra":
        site, image, argv, version = "debian-mpich", e2e_images.mpich.sif, ["mpiexec.hydra"], \
            "MPICH Version: 4.0.2"
        host_file = "/usr/lib/x86_64-linux-gnu/libmpich.so.12"
    else:
        if not Path(ORTERUN).exists():
            pytest.skip("Debian's openmpi-bin is not installed")
        site, image, argv, version = "debian-openmpi", e2e_images.openmpi.sif, [
            "mpirun.openmpi", "--allow-run-as-root", "--oversubscribe"], "Open MPI v4.1.4"
        host_file = "/usr/lib/x86_64-linux-gnu/libmpi.so.40"
    result = hpcrun(hpcrun_env, workdir, "--site", site, *argv, "-n", "1", str(image),
                    "/usr/local/bin/hello", ":", "-n", "1", str(image), "/usr/local/bin/hello",
                    "second")
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, version, lambda p: p.startswith("/.hpcrun/"),
                 host_file=host_file)


def test_mpmd_programs_needing_different_setups_are_refused(e2e_images: ImageSet,
                                                            hpcrun_env: Dict[str, str],
                                                            workdir: Path) -> None:
    """The C hello and mpi4py's need different host-library names in the container: one set
    of runtime words cannot serve both (run for real, the mpi4py rank loaded the image's own
    MPICH), so hpcrun refuses before launch."""
    image = str(e2e_images.mpich.sif)
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "mpiexec.hydra", "-n", "1",
                    image, "/usr/local/bin/hello", ":", "-n", "1", image, "python3",
                    "/opt/hello/hello.py")
    assert result.returncode == EXIT_CONFIG, result.describe()
    errors = [line for line in result.stderr.splitlines() if line.startswith("hpcrun: error:")]
    assert len(errors) == 1 and "MPMD program 2 (python3)" in errors[0], result.describe()
    assert parse_hello(result.stdout) == {}, result.describe()
