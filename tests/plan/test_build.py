"""build_plan: binds under the private prefix, environment precedence, diagnostics, purity."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Sequence

import pytest

from hpcrun.host.facts import HostFacts, RuntimeInfo
from hpcrun.image.facts import ImageFacts
from hpcrun.plan.build import build_plan, is_library_dir
from hpcrun.plan.hostpaths import HostPaths, survey_host_paths
from hpcrun.plan.model import (
    COMPATIBLE,
    ERROR,
    INFO,
    NOT_CHECKED,
    WARNING,
    Bind,
    Contribution,
    EnvVar,
    Flag,
    Plan,
    Request,
)
from hpcrun.profiles.model import (
    BindSpec,
    Container,
    EnvSpec,
    Gpu,
    LauncherDefaults,
    Library,
    Mpi,
    Profile,
)

HOST = HostFacts(runtime=RuntimeInfo(kind="apptainer"), environ=(("PATH", "/usr/bin"),))
REQUEST = Request(launcher=("srun", "-n", "2"), image="app.sif", command=("python", "hello.py"))


def plan_of(profile: Profile, request: Request = REQUEST, host: HostFacts = HOST,
            contributions: Sequence[Contribution] = (), host_paths=None,
            image=None) -> Plan:
    return build_plan(profile, request, host, image, contributions, host_paths)


def fake_root(tmp_path: Path, files: Sequence[str], dirs: Sequence[str] = ()) -> Path:
    for d in dirs:
        (tmp_path / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for f in files:
        path = tmp_path / f.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return tmp_path


def codes(plan: Plan, severity: str) -> list:
    return [d.code for d in plan.diagnostics if d.severity == severity]


def test_libraries_go_under_the_private_prefix(tmp_path: Path) -> None:
    profile = Profile(schema=1, name="t", libraries=(
        Library("/usr/lib64/libmlx5.so.1", reason="mlx5 provider"),))
    root = fake_root(tmp_path, ["/usr/lib64/libmlx5.so.1"])
    plan = plan_of(profile, host_paths=survey_host_paths(profile, str(root)))
    assert plan.binds == (Bind("/usr/lib64/libmlx5.so.1", "/.hpcrun/lib/libmlx5.so.1", True,
                               "libraries[0]: mlx5 provider", "library"),)
    ld = [e for e in plan.env if e.name == "LD_LIBRARY_PATH"]
    assert ld == [EnvVar("LD_LIBRARY_PATH", "/.hpcrun/lib", "container", "prepend", "profile",
                         ld[0].reason)]
    assert not plan.errors and not plan.warnings


def test_real_host_mpi_library_and_custom_prefix() -> None:
    lib = "/usr/lib/x86_64-linux-gnu/libmpich.so.12"
    if not os.path.exists(lib):
        pytest.skip("Debian mpich not installed")
    profile = Profile(schema=1, name="t", mpi=Mpi(libraries=(lib,), reason="host MPICH"),
                      container=Container(prefix="/opt/host"))
    plan = plan_of(profile, host_paths=survey_host_paths(profile))
    assert plan.binds[0].destination == "/opt/host/lib/libmpich.so.12"
    assert plan.binds[0].reason == "mpi.libraries[0]: host MPICH"
    assert plan.env[0].value == "/opt/host/lib"


def test_sonames_found_in_library_dirs(tmp_path: Path) -> None:
    profile = Profile(schema=1, name="t", mpi=Mpi(library_dirs=("/opt/mpi/lib",),
                                                  sonames=("libmpi.so.12",),
                                                  fortran=("libmpifort.so.12",)))
    root = fake_root(tmp_path, ["/opt/mpi/lib/libmpi.so.12"])
    plan = plan_of(profile, host_paths=survey_host_paths(profile, str(root)))
    assert [b.destination for b in plan.binds] == ["/.hpcrun/lib/libmpi.so.12"]
    assert "soname-not-found" in codes(plan, WARNING)


def test_globs_expand_on_the_host(tmp_path: Path) -> None:
    profile = Profile(schema=1, name="t", libraries=(Library("/usr/lib64/libnl-*.so.200"),))
    root = fake_root(tmp_path, ["/usr/lib64/libnl-3.so.200", "/usr/lib64/libnl-route-3.so.200"])
    plan = plan_of(profile, host_paths=survey_host_paths(profile, str(root)))
    assert [b.destination for b in plan.binds] == ["/.hpcrun/lib/libnl-3.so.200",
                                                   "/.hpcrun/lib/libnl-route-3.so.200"]
    assert not plan.warnings
    unsurveyed = plan_of(profile)
    assert unsurveyed.binds == () and "glob-not-expanded" in codes(unsurveyed, WARNING)


@pytest.mark.parametrize("destination", ["/usr/lib64", "/lib", "/usr/lib/x86_64-linux-gnu",
                                         "/usr/lib64/", "/lib64"])
def test_bind_over_image_library_directory_is_an_error(destination: str) -> None:
    profile = Profile(schema=1, name="t", binds=(BindSpec("/usr/lib64", destination),))
    plan = plan_of(profile)
    assert "bind-shadows-image-libraries" in codes(plan, ERROR)
    assert plan.binds == ()
    assert is_library_dir(destination.rstrip("/"))


def test_bind_inside_image_library_directory_is_a_warning() -> None:
    profile = Profile(schema=1, name="t", binds=(BindSpec("/usr/lib64/libibverbs"),
                                                 BindSpec("/usr/lib64/libfoo.so.1")))
    plan = plan_of(profile)
    assert codes(plan, WARNING).count("bind-inside-image-libraries") == 2
    assert len(plan.binds) == 2 and not plan.errors
    assert not is_library_dir("/usr/lib64/libibverbs")


def test_profile_binds_missing_and_optional(tmp_path: Path) -> None:
    profile = Profile(schema=1, name="t", binds=(
        BindSpec("/scratch", reason="scratch"), BindSpec("/gone", optional=True),
        BindSpec("/etc/dat.conf", read_only=True), BindSpec("/data", "/mnt/data")))
    root = fake_root(tmp_path, ["/etc/dat.conf"], dirs=["/scratch", "/data"])
    plan = plan_of(profile, host_paths=survey_host_paths(profile, str(root)))
    assert [(b.source, b.destination, b.read_only, b.kind) for b in plan.binds] == [
        ("/scratch", "/scratch", False, "filesystem"),
        ("/etc/dat.conf", "/etc/dat.conf", True, "config"),
        ("/data", "/mnt/data", False, "filesystem")]
    assert plan.binds[0].reason == "binds[0]: scratch"
    assert "optional-path-missing" in codes(plan, INFO)
    missing = plan_of(profile, host_paths=HostPaths(root=str(tmp_path)))
    assert codes(missing, WARNING).count("host-path-missing") == 3


def test_bind_conflict_is_an_error() -> None:
    profile = Profile(schema=1, name="t", binds=(BindSpec("/a", "/x"), BindSpec("/b", "/x"),
                                                 BindSpec("/a", "/x")))
    plan = plan_of(profile)
    assert codes(plan, ERROR) == ["bind-conflict"]
    assert len(plan.binds) == 1


def test_resolver_binds_replace_profile_library_binds() -> None:
    profile = Profile(schema=1, name="t", libraries=(Library("/usr/lib64/libmlx5.so.1"),),
                      binds=(BindSpec("/scratch"),))
    resolver = Contribution(binds=(Bind("/opt/mpi/lib/libmpi.so.12.1", "/.hpcrun/lib/libmpi.so.12",
                                        True, "libmpi.so.12", "library"),),
                            library_path=("/.hpcrun/lib",), verdict=COMPATIBLE,
                            preload=("/.hpcrun/lib/libxpmem.so.0",))
    plan = plan_of(profile, contributions=[resolver])
    assert [b.source for b in plan.binds] == ["/scratch", "/opt/mpi/lib/libmpi.so.12.1"]
    assert plan.verdict == COMPATIBLE
    env = {e.name: e for e in plan.env}
    assert env["LD_LIBRARY_PATH"].value == "/.hpcrun/lib"
    assert env["LD_PRELOAD"].value == "/.hpcrun/lib/libxpmem.so.0"
    assert plan_of(profile).verdict == NOT_CHECKED


def test_library_path_order_and_keep_image_value() -> None:
    profile = Profile(schema=1, name="t", libraries=(Library("/usr/lib64/libmlx5.so.1"),),
                      container=Container(library_path=("/opt/intel/lib", "/host_lib64")))
    extra = Contribution(library_path=("/.hpcrun/gpu", "/opt/intel/lib"))
    plan = plan_of(profile, contributions=[extra])
    ld = next(e for e in plan.env if e.name == "LD_LIBRARY_PATH")
    assert (ld.value, ld.action) == ("/.hpcrun/lib:/opt/intel/lib:/host_lib64:/.hpcrun/gpu",
                                     "prepend")
    drop = plan_of(Profile(schema=1, name="t", container=Container(
        library_path=("/a",), keep_image_library_path=False)))
    ld = next(e for e in drop.env if e.name == "LD_LIBRARY_PATH")
    assert (ld.value, ld.action) == ("/a", "set")


def test_preload_reached_through_a_bind_or_under_the_prefix() -> None:
    profile = Profile(schema=1, name="t", binds=(BindSpec("/opt/xpmem"),),
                      container=Container(preload=("/opt/xpmem/lib64/libxpmem.so.0",
                                                   "/usr/lib64/libfoo.so.1")))
    plan = plan_of(profile)
    preload = next(e for e in plan.env if e.name == "LD_PRELOAD")
    assert preload.value == "/opt/xpmem/lib64/libxpmem.so.0:/.hpcrun/lib/libfoo.so.1"


def test_environment_precedence_user_over_profile() -> None:
    profile = Profile(schema=1, name="t", env=(
        EnvSpec("UCX_TLS", "rc", reason="site"), EnvSpec("FI_PROVIDER", "cxi", scope="both"),
        EnvSpec("MPICH_GPU_SUPPORT_ENABLED", "1", when="gpu"),
        EnvSpec("PATH", "/opt/site/bin", action="prepend", scope="launcher")))
    request = Request(launcher=(), image="a.sif", command=("x",),
                      user_env=(("UCX_TLS", "tcp"), ("NEW", "v")))
    plan = plan_of(profile, request=request)
    got = [(e.name, e.value, e.scope, e.action, e.source) for e in plan.env]
    assert got == [
        ("FI_PROVIDER", "cxi", "container", "set", "profile"),
        ("FI_PROVIDER", "cxi", "launcher", "set", "profile"),
        ("PATH", "/opt/site/bin", "launcher", "prepend", "profile"),
        ("UCX_TLS", "tcp", "container", "set", "user"),
        ("NEW", "v", "container", "set", "user"),
    ]
    assert "variable-overridden" in codes(plan, INFO)
    assert "gpu-variable-skipped" in codes(plan, INFO)


def test_gpu_variables_and_libraries_only_with_a_gpu_flag() -> None:
    profile = Profile(schema=1, name="t", env=(EnvSpec("MPICH_GPU_SUPPORT_ENABLED", "1",
                                                       when="gpu", scope="both"),),
                      gpu=Gpu(libraries=("/opt/cray/gtl/libmpi_gtl_hsa.so.0",)))
    gpu = Contribution(flags=(Flag("--rocm", "AMD GPUs on the node"),))
    plan = plan_of(profile, contributions=[gpu])
    assert [e.scope for e in plan.env if e.name == "MPICH_GPU_SUPPORT_ENABLED"] == [
        "container", "launcher"]
    assert "/.hpcrun/lib/libmpi_gtl_hsa.so.0" in next(
        e.value for e in plan.env if e.name == "LD_PRELOAD")
    assert plan.runtime_args == ("exec", "--rocm")
    plain = plan_of(profile)
    assert not [e for e in plain.env if e.name == "MPICH_GPU_SUPPORT_ENABLED"]
    assert plain.binds == ()


def test_bad_variable_name_is_an_error() -> None:
    request = Request(launcher=(), image="a.sif", command=("x",), user_env=(("A-B", "1"),))
    assert "bad-variable-name" in codes(plan_of(Profile(schema=1, name="t"), request), ERROR)


def test_launcher_defaults_only_when_user_did_not_give_them() -> None:
    profile = Profile(schema=1, name="t", launchers=(
        ("srun", LauncherDefaults(("--mpi=pmi2",), "Intel MPI 17 talks PMI-2")),))
    assert plan_of(profile).launcher == ("srun", "--mpi=pmi2", "-n", "2")
    user = Request(launcher=("srun", "--mpi", "pmix", "-n", "2"), image="a.sif", command=("x",))
    assert plan_of(profile, user).launcher == ("srun", "--mpi", "pmix", "-n", "2")
    assert "launcher-default" in codes(plan_of(profile), INFO)


def test_cleanenv_flag_wrapper_and_invocation() -> None:
    request = Request(launcher=("srun", "-n", "2"), image="app.sif", command=("python", "x.py"),
                      cleanenv=True)
    wireup = Contribution(wrapper=("/bin/sh", "-c", "exec \"$@\"", "hpcrun-wireup"))
    plan = plan_of(Profile(schema=1, name="t"), request, contributions=[wireup])
    assert plan.invocation.argv == ("srun", "-n", "2", "/bin/sh", "-c", "exec \"$@\"",
                                    "hpcrun-wireup", "apptainer", "exec", "--cleanenv",
                                    "app.sif", "python", "x.py")


def test_charliecloud_ignores_runtime_flags() -> None:
    host = HostFacts(runtime=RuntimeInfo(kind="charliecloud"))
    plan = plan_of(Profile(schema=1, name="t"), host=host,
                   contributions=[Contribution(flags=(Flag("--nv"),))])
    assert plan.runtime_binary == "ch-run" and plan.runtime_args == ()
    assert "flags-ignored" in codes(plan, WARNING)


def test_cleanenv_under_charliecloud_is_a_clear_warning_not_a_flag() -> None:
    """ch-run keeps the environment: no --cleanenv flag, no flags-ignored, one warning."""
    host = HostFacts(runtime=RuntimeInfo(kind="charliecloud"))
    request = Request(launcher=("srun", "-n", "2"), image="/img", command=("x",),
                      cleanenv=True)
    plan = plan_of(Profile(schema=1, name="t"), request, host=host)
    assert plan.flags == () and "--cleanenv" not in plan.invocation.argv
    assert "--unset-env" not in " ".join(plan.invocation.argv)
    assert codes(plan, WARNING) == ["cleanenv-not-supported"]
    (warning,) = plan.warnings
    assert "keeps the caller's variables" in warning.message and "--unset-env" in warning.hint
    apptainer = plan_of(Profile(schema=1, name="t"), request)
    assert [f.flag for f in apptainer.flags] == ["--cleanenv"]
    assert "cleanenv-not-supported" not in codes(apptainer, WARNING)


def test_building_is_pure_and_deterministic(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    profile = Profile(schema=1, name="t", libraries=(Library("/usr/lib64/libmlx5.so.1"),),
                      binds=(BindSpec("/scratch"),), env=(EnvSpec("A", "1"),))
    survey = survey_host_paths(profile, str(tmp_path))

    def forbidden(*args, **kwargs):
        raise AssertionError("building a plan must not start processes")

    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(os, "execve", forbidden)
    monkeypatch.setattr(os, "fork", forbidden)
    image = ImageFacts(source="app.sif", kind="sif")
    first = plan_of(profile, host_paths=survey, image=image)
    second = plan_of(profile, host_paths=survey, image=image)
    assert first == second
    assert hash(first) == hash(second)
