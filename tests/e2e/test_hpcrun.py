"""hpcrun end to end: ``hpcrun --site S [LAUNCHER ...] IMAGE CMD`` on a real Slurm, with real
launchers, real Apptainer 1.4 (``scripts/install-apptainer``) and Charliecloud's ch-run, and
real MPI libraries.

Every run asserts the communicator size and WHICH library served each rank: the version
string, the path of the MPI library mapped into the rank, and that this file, stat'ed inside
the rank, is the host's file (same device, inode and size: a bind mount keeps them; the
image's own copy of the same library differs).  hpcrun makes host libraries
visible under its private container prefix (``/.hpcrun``, profiles' ``container.prefix``),
never over the image's own ``/usr/lib``: a path there means the image's MPI ran instead.
The "host" is this machine; the container's MPI is the image's (Debian MPICH 4.0.2 or
Open MPI 4.1.4 copied into the test image).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from helpers import slurm

from .conftest import ImageSet, wheel_bindir
from .support import Run, assert_ranks, parse_hello, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PREFIX = "/.hpcrun"
HOST_MPICH = "/usr/lib/x86_64-linux-gnu/libmpich.so.12"
HOST_OPENMPI = "/usr/lib/x86_64-linux-gnu/libmpi.so.40"
MPICH4 = "MPICH Version: 4.0.2"
OPENMPI4 = "Open MPI v4.1.4"
OPENMPI_LAUNCH = ["mpirun.openmpi", "--allow-run-as-root", "--oversubscribe"]
# Processes that may directly start a rank.
LAUNCHER_PROCESSES = ("slurmstepd", "hydra_pmi_proxy", "orted", "prted", "mpiexec.hydra",
                      "mpirun.openmpi", "mpirun", "mpiexec")
# Apptainer's own per-container process: the `starter` binary that set up the container
# stays as the parent of the contained command (it names itself so in its command line).
APPTAINER_STARTER = re.compile(r"^\d+ starter Apptainer runtime parent: ")


def from_host(path: str) -> bool:
    """The mapped MPI library is a host file made visible under hpcrun's prefix."""
    return path.startswith(PREFIX + "/")


# Under ch-run the host's library directory is bound at an empty /mnt/N (N >= 1; /mnt/0
# holds hpcrun's stage of symlinks): /proc/self/maps names the real file there.  The test
# image's /mnt/N are empty and its own MPICH lives in /usr/lib/x86_64-linux-gnu.
CH_HOST_MPICH = re.compile(r"/mnt/[1-9][0-9]*/libmpich\.so\.12\.2\.2")


def from_host_via_mnt(path: str) -> bool:
    """The mapped MPI library is the host's Debian MPICH file, bound under /mnt/N."""
    return CH_HOST_MPICH.fullmatch(path) is not None


def served_from_host(runtime: str) -> Callable[[str], bool]:
    """The check of the mapped MPI library path for a runtime."""
    return from_host_via_mnt if runtime == "charliecloud" else from_host


def wheel_lib(profile: Path, name: str) -> Path:
    """The library ``name`` in the library directory a rendered wheel site profile names."""
    match = re.search(r'^library_dirs = \["([^"]+)"\]', profile.read_text(), re.MULTILINE)
    assert match, profile
    return Path(match.group(1)) / name


def hpcrun(env: Dict[str, str], cwd: Path, *args: str) -> Run:
    """Run ``hpcrun ARGS``."""
    return run(["hpcrun", *args], env, cwd, timeout=180)


@pytest.mark.parametrize("form", ["sif", "squashfs", "sandbox"])
def test_srun_apptainer_host_mpich(e2e_images: ImageSet, hpcrun_env: Dict[str, str],
                                   workdir: Path, form: str) -> None:
    image = str(getattr(e2e_images.mpich, form))
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "srun", "-n", "2", image,
                    "python3", "hello.py")
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, MPICH4, from_host, host_file=HOST_MPICH)


def test_srun_apptainer_host_mpich_c_app(e2e_images: ImageSet, hpcrun_env: Dict[str, str],
                                         workdir: Path) -> None:
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "srun", "-n", "2",
                    str(e2e_images.mpich.sif), "/usr/local/bin/hello")
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, MPICH4, from_host, host_file=HOST_MPICH)


def test_srun_charliecloud_host_mpich(e2e_images: ImageSet, hpcrun_env: Dict[str, str],
                                      workdir: Path) -> None:
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "--runtime", "charliecloud",
                    "srun", "-n", "2", str(e2e_images.mpich.sandbox),
                    "python3", "/opt/hello/hello.py")
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, MPICH4, from_host_via_mnt, host_file=HOST_MPICH)
    # The stage hpcrun made in the user's cache: the layout under /.hpcrun as symlinks.
    stages = list((Path(hpcrun_env["XDG_CACHE_HOME"]) / "hpcrun" / "stage").iterdir())
    assert stages, result.describe()
    links = {os.readlink(stage / "lib" / "libmpich.so.12") for stage in stages}
    assert all(CH_HOST_MPICH.fullmatch(link) for link in links), links


def test_charliecloud_wheel_mpich_keeps_its_origin_layout(
        e2e_images: ImageSet, hpcrun_env: Dict[str, str], workdir: Path,
        site_dir: Callable[[str], Path]) -> None:
    """Host MPICH 5.0.2 (PyPI wheel, RUNPATH ``$ORIGIN:$ORIGIN/mpich`` with libfabric and UCX
    in ``lib/mpich/``) under ch-run: the stage reproduces that layout, so the loader finds
    the bundled libraries beside the symlink it opened."""
    result = hpcrun(hpcrun_env, workdir, "--site", str(site_dir("wheel-mpich")), "--runtime",
                    "charliecloud", "srun", "-n", "2", str(e2e_images.mpich.sandbox),
                    "/usr/local/bin/hello")
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, "MPICH Version: 5.0.2",
                 lambda path: re.fullmatch(r"/mnt/[1-9][0-9]*/libmpi\.so\.12", path) is not None,
                 host_file=str(wheel_lib(site_dir("wheel-mpich"), "libmpi.so.12")))


@pytest.mark.parametrize("runtime", ["apptainer", "charliecloud"])
def test_mpiexec_hydra_host_mpich(e2e_images: ImageSet, hpcrun_env: Dict[str, str],
                                  workdir: Path, runtime: str) -> None:
    image = e2e_images.mpich.sif if runtime == "apptainer" else e2e_images.mpich.sandbox
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "--runtime", runtime,
                    "mpiexec.hydra", "-n", "2", str(image), "python3", "/opt/hello/hello.py")
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, MPICH4, served_from_host(runtime), host_file=HOST_MPICH)


@pytest.mark.parametrize("launcher", [["srun", "-n", "2"], ["mpiexec.hydra", "-n", "2"]])
def test_charliecloud_large_messages_between_ranks(e2e_images: ImageSet,
                                                   hpcrun_env: Dict[str, str], workdir: Path,
                                                   launcher: List[str]) -> None:
    """Messages of 16 KiB and more go through UCX's shared memory with cross-memory attach,
    which the kernel refuses between separate ch-run containers: hpcrun joins a node's
    ranks in one (``ch-run --join``; ``--join-ct=$MPI_LOCALNRANKS`` under Hydra)."""
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "--runtime", "charliecloud",
                    *launcher, str(e2e_images.mpich.sandbox), "python3", "/opt/hello/osu_bw.py",
                    "--min-size", "1024", "--max-size", str(1 << 20), "--csv")
    assert result.returncode == 0, result.describe()
    rows = [line.split(",") for line in result.stdout.splitlines()[1:] if line]
    sizes = [int(size) for size, _, _ in rows]
    assert sizes == [1 << n for n in range(10, 21)], result.describe()
    assert all(float(bandwidth) > 0 for _, bandwidth, _ in rows), result.describe()


@pytest.mark.parametrize("launcher", ["mpirun", "srun"])
def test_host_openmpi(e2e_images: ImageSet, hpcrun_env: Dict[str, str], workdir: Path,
                      launcher: str) -> None:
    argv = [*OPENMPI_LAUNCH, "-n", "2"] if launcher == "mpirun" else ["srun", "-n", "2"]
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-openmpi", *argv,
                    str(e2e_images.openmpi.sif), "python3", "hello.py")
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, OPENMPI4, from_host, host_file=HOST_OPENMPI)


@pytest.mark.parametrize("app", [["python3", "hello.py"], ["/usr/local/bin/hello"]],
                         ids=["mpi4py", "c"])
def test_newer_host_mpich_serves_older_container(e2e_images: ImageSet,
                                                 hpcrun_env: Dict[str, str], workdir: Path,
                                                 site_dir: Callable[[str], Path],
                                                 app: List[str]) -> None:
    """Host MPICH 5.0.2 (PyPI wheel) serves an app built with the image's MPICH 4.0.2."""
    result = hpcrun(hpcrun_env, workdir, "--site", str(site_dir("wheel-mpich")), "srun", "-n",
                    "2", str(e2e_images.mpich.sif), *app)
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, "MPICH Version: 5.0.2", from_host,
                 host_file=str(wheel_lib(site_dir("wheel-mpich"), "libmpi.so.12")))


@pytest.mark.parametrize("app", [["python3", "hello.py"], ["/usr/local/bin/hello"]],
                         ids=["mpi4py", "c"])
def test_intel_mpi_host_serves_mpich_container(e2e_images: ImageSet,
                                               hpcrun_env: Dict[str, str], workdir: Path,
                                               site_dir: Callable[[str], Path],
                                               app: List[str]) -> None:
    """Intel MPI 2021.19 (PyPI impi-rt, shm only) serves an app built with MPICH 4.0.2."""
    result = hpcrun(hpcrun_env, workdir, "--site", str(site_dir("wheel-impi")), "srun", "-n",
                    "2", str(e2e_images.mpich.sif), *app)
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, "Intel(R) MPI Library 2021.19", from_host,
                 host_file=str(wheel_lib(site_dir("wheel-impi"), "libmpi.so.12")))


def test_wheel_hydra_launcher_with_intel_mpi(e2e_images: ImageSet,
                                             hpcrun_env: Dict[str, str], workdir: Path,
                                             site_dir: Callable[[str], Path],
                                             mpi_wheel: Callable[[str], Path]) -> None:
    """A launcher given by its full path (the MPICH wheel's mpiexec.hydra)."""
    hydra = wheel_bindir(mpi_wheel("mpich")) / "mpiexec.hydra"
    result = hpcrun(hpcrun_env, workdir, "--site", str(site_dir("wheel-impi")), str(hydra),
                    "-n", "2", str(e2e_images.mpich.sif), "/usr/local/bin/hello")
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, "Intel(R) MPI Library 2021.19", from_host,
                 host_file=str(wheel_lib(site_dir("wheel-impi"), "libmpi.so.12")))


def _job_count(cluster: slurm.Cluster) -> int:
    proc = run(["scontrol", "-o", "show", "jobs"], cluster.environ(), cluster.workdir)
    return len([line for line in proc.stdout.splitlines() if line.startswith("JobId=")])


def test_openmpi_container_refused_on_mpich_host(e2e_images: ImageSet,
                                                 hpcrun_env: Dict[str, str], workdir: Path,
                                                 slurm_cluster: slurm.Cluster) -> None:
    """An Open MPI application with an MPICH-family host: refused before launch (exit 5).

    The application is the image's C hello built with Open MPI's mpicc.  (``python3`` with
    mpi4py >= 4.1 is not such a case: mpi4py carries both ABIs and picks one at run time.)
    """
    jobs_before = _job_count(slurm_cluster)
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "srun", "-n", "2",
                    str(e2e_images.openmpi.sif), "/usr/local/bin/hello")
    assert result.returncode == 68, result.describe()
    assert "Hello World" not in result.stdout
    reason = result.stderr.lower()
    assert "open mpi" in reason or "openmpi" in reason, result.describe()
    assert "mpich" in reason, result.describe()
    assert _job_count(slurm_cluster) == jobs_before, "a job was started: " + result.describe()


def test_dual_abi_mpi4py_in_openmpi_image_runs_on_mpich_host(
        e2e_images: ImageSet, hpcrun_env: Dict[str, str], workdir: Path) -> None:
    """mpi4py 4.1 carries both ABIs: in the Open MPI image it runs on the host's MPICH."""
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "srun", "-n", "2",
                    str(e2e_images.openmpi.sif), "python3", "hello.py")
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, MPICH4, from_host, host_file=HOST_MPICH)


@pytest.mark.parametrize("launcher", ["srun", "mpiexec.hydra"])
def test_cleanenv_ranks_still_wire_up(e2e_images: ImageSet, hpcrun_env: Dict[str, str],
                                      workdir: Path, launcher: str) -> None:
    """Under --cleanenv the PMI/Slurm variables set per rank still reach each rank."""
    env = dict(hpcrun_env, HPCRUN_E2E_SECRET="must-not-pass")
    result = hpcrun(env, workdir, "--site", "debian-mpich", "--cleanenv", launcher, "-n", "2",
                    str(e2e_images.mpich.sif), "python3", "/opt/hello/hello.py")
    assert result.returncode == 0, result.describe()
    assert_ranks(result.stdout, 2, MPICH4, from_host, host_file=HOST_MPICH)


def test_cleanenv_drops_other_variables(e2e_images: ImageSet, hpcrun_env: Dict[str, str],
                                        workdir: Path) -> None:
    env = dict(hpcrun_env, HPCRUN_E2E_SECRET="must-not-pass")
    result = hpcrun(env, workdir, "--site", "debian-mpich", "--cleanenv", "srun", "-n", "1",
                    str(e2e_images.mpich.sif), "python3", "-c",
                    "import os; print('secret=' + os.environ.get('HPCRUN_E2E_SECRET', ''))")
    assert result.returncode == 0, result.describe()
    assert result.stdout.strip() == "secret=", result.describe()


@pytest.mark.parametrize("launcher", [["srun", "-n", "2"], ["mpiexec.hydra", "-n", "2"]],
                         ids=["srun", "mpiexec"])
@pytest.mark.parametrize("runtime", ["apptainer", "charliecloud"])
def test_no_hpcrun_process_per_rank(e2e_images: ImageSet, hpcrun_env: Dict[str, str],
                                    workdir: Path, launcher: List[str], runtime: str) -> None:
    """Between the launcher and the application there is nothing: no hpcrun, no Python of
    hpcrun's, no shell left behind (the runtime execs the application)."""
    image = e2e_images.mpich.sif if runtime == "apptainer" else e2e_images.mpich.sandbox
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "--runtime", runtime,
                    *launcher, str(image), "python3", "/opt/hello/hello.py", "--parents")
    assert result.returncode == 0, result.describe()
    reports = parse_hello(result.stdout)
    assert sorted(reports) == [0, 1], result.describe()
    for report in reports.values():
        assert report.parents, result.describe()
        chain = list(report.parents)
        if runtime == "apptainer":
            # The runtime's own process, not hpcrun's: Apptainer's starter (a Go/C binary
            # of the Apptainer install) stays as the parent of the contained command.
            assert APPTAINER_STARTER.match(chain[0]), "\n".join(chain)
            chain = chain[1:]
        nearest = chain[0].split(" ", 2)
        assert nearest[1] in LAUNCHER_PROCESSES, (
            f"rank {report.rank}'s parent is {chain[0]!r}, not the launcher:\n"
            + "\n".join(report.parents))
        for entry in report.parents[:len(report.parents) - len(chain) + 1]:
            assert "hpcrun" not in entry and "python" not in entry


def test_no_process_left_by_the_cleanenv_trampoline(e2e_images: ImageSet,
                                                    hpcrun_env: Dict[str, str],
                                                    workdir: Path) -> None:
    """Under --cleanenv a per-rank sh trampoline forwards the wire-up variables; it must
    exec the runtime, leaving the launcher as the parent of each rank's runtime process
    (Apptainer's starter, the rank's own parent)."""
    result = hpcrun(hpcrun_env, workdir, "--site", "debian-mpich", "--cleanenv", "srun", "-n",
                    "2", str(e2e_images.mpich.sif), "python3", "/opt/hello/hello.py",
                    "--parents")
    assert result.returncode == 0, result.describe()
    reports = assert_ranks(result.stdout, 2, MPICH4, from_host, host_file=HOST_MPICH)
    for report in reports.values():
        assert report.parents and APPTAINER_STARTER.match(report.parents[0]), result.describe()
        assert report.parents[1].split(" ", 2)[1] == "slurmstepd", "\n".join(report.parents)
