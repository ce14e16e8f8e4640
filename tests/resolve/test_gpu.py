"""The GPU decision on fake nodes and a sandbox image holding the real libcudart.so.12."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Dict, Optional

import pytest

from helpers.gpu_trees import amd_host, compile_library, cuda_image, nvidia_host
from hpcrun import records
from hpcrun.errors import UsageError
from hpcrun.host.facts import GpuHost, HostFacts, RuntimeInfo
from hpcrun.host.gpu import probe_gpu
from hpcrun.image.facts import ImageFacts
from hpcrun.image.inspect import inspect_image
from hpcrun.plan.build import build_plan, gpu_active
from hpcrun.plan.model import ERROR, INFO, WARNING, Contribution, Request
from hpcrun.profiles.model import Container, EnvSpec, Gpu, Profile
from hpcrun.resolve.gpu import decide, image_gpu_userspace

REQUEST = Request(launcher=("srun", "-n", "2"), image="img", command=("app",))


def image_facts(root: Path) -> ImageFacts:
    """Facts of the sandbox image, read by the real image inspection."""
    return inspect_image(str(root), use_cache=False)


@pytest.fixture(scope="module")
def cudart(mpi_wheel: Callable[[str], Path]) -> Path:
    return mpi_wheel("nvidia_cuda_runtime_cu12") / "nvidia/cuda_runtime/lib/libcudart.so.12"


@pytest.fixture(scope="module")
def node_535_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nvidia_host(tmp_path_factory.mktemp("node535"), driver="535.104.05")


@pytest.fixture(scope="module")
def node_535(node_535_root: Path) -> HostFacts:
    return HostFacts(cpus=8, gpu=probe_gpu(node_535_root))


@pytest.fixture(scope="module")
def node_470(tmp_path_factory: pytest.TempPathFactory) -> HostFacts:
    root = nvidia_host(tmp_path_factory.mktemp("node470"), driver="470.82.01")
    return HostFacts(cpus=8, gpu=probe_gpu(root))


CPU_NODE = HostFacts(cpus=8, gpu=GpuHost())


def make_image(tmp_path: Path, cudart: Path, env: Optional[Dict[str, str]] = None) -> ImageFacts:
    environment = {"NVIDIA_REQUIRE_CUDA": "cuda>=12.2"} if env is None else env
    root = cuda_image(tmp_path / "image", cudart, environment)
    return image_facts(root)


def codes(contribution: Contribution) -> Dict[str, str]:
    return {d.code: d.severity for d in contribution.diagnostics}


def test_the_real_libcudart_is_seen_in_the_image(tmp_path: Path, cudart: Path) -> None:
    image = make_image(tmp_path, cudart)
    cuda, rocm = image_gpu_userspace(image)
    assert any(e.startswith("libcudart.so.12 (/usr/local/cuda/lib64/") for e in cuda)
    assert rocm == ()


def test_auto_turns_on_nv_for_cuda_image_on_gpu_node(tmp_path: Path, cudart: Path,
                                                      node_535: HostFacts) -> None:
    image = make_image(tmp_path, cudart)
    result = decide(Profile(schema=1, name="site"), REQUEST, node_535, image, "apptainer")
    assert [f.flag for f in result.flags] == ["--nv"]
    reason = result.flags[0].reason
    assert "profile gpu.vendor = auto" in reason and "/dev/nvidia0" in reason
    assert "libcudart.so.12" in reason
    assert [d for d in result.diagnostics if d.severity != INFO] == []
    assert result.binds == () and result.preload == ()


def test_minor_version_compatibility_warning(tmp_path: Path, cudart: Path,
                                             node_535: HostFacts) -> None:
    image = make_image(tmp_path, cudart, {"NVIDIA_REQUIRE_CUDA": "cuda>=12.4"})
    result = decide(Profile(schema=1, name="site"), REQUEST, node_535, image, "apptainer")
    assert [f.flag for f in result.flags] == ["--nv"]
    assert codes(result) == {"cuda-minor-version-compat": WARNING}


def test_driver_too_old_is_an_error(tmp_path: Path, cudart: Path, node_470: HostFacts) -> None:
    image = make_image(tmp_path, cudart)
    result = decide(Profile(schema=1, name="site"), REQUEST, node_470, image, "singularity")
    assert [f.flag for f in result.flags] == ["--nv"]
    (error,) = [d for d in result.diagnostics if d.severity == ERROR]
    assert error.code == "cuda-driver-too-old"
    assert "12.2" in error.message and "470.82.01" in error.message
    assert "525.60.13" in error.message
    assert error.source == "NVIDIA_REQUIRE_CUDA in the image environment"


def test_soname_major_alone_is_checked(tmp_path: Path, cudart: Path,
                                       node_470: HostFacts) -> None:
    image = make_image(tmp_path, cudart, env={})
    result = decide(Profile(schema=1, name="site"), REQUEST, node_470, image, "apptainer")
    assert codes(result) == {"cuda-driver-too-old": ERROR}


def test_cuda_image_on_cpu_node_warns(tmp_path: Path, cudart: Path) -> None:
    image = make_image(tmp_path, cudart)
    result = decide(Profile(schema=1, name="site"), REQUEST, CPU_NODE, image, "apptainer")
    assert result.flags == ()
    assert codes(result) == {"cuda-without-gpu": WARNING}


def test_gpu_node_with_cpu_image_adds_no_flag(node_535: HostFacts) -> None:
    image = ImageFacts(source="plain.sif", kind="sif",
                       ld_cache=(("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"),))
    result = decide(Profile(schema=1, name="site"), REQUEST, node_535, image, "apptainer")
    assert result.flags == ()
    assert codes(result) == {"gpu-not-needed": INFO}


def test_uninspected_image_follows_the_node(node_535: HostFacts) -> None:
    result = decide(Profile(schema=1, name="site"), REQUEST, node_535, None, "apptainer")
    assert [f.flag for f in result.flags] == ["--nv"]
    assert "image not inspected" in result.flags[0].reason
    assert decide(Profile(schema=1, name="site"), REQUEST, CPU_NODE, None, "apptainer") == \
        Contribution()


def test_forced_gpu_without_gpu_warns() -> None:
    request = Request(launcher=(), image="img", command=("app",), gpu="nvidia")
    result = decide(Profile(schema=1, name="site"), request, CPU_NODE, None, "apptainer")
    assert [f.flag for f in result.flags] == ["--nv"]
    assert result.flags[0].reason == "--gpu nvidia"
    assert codes(result) == {"gpu-forced-without-gpu": WARNING}


def test_profile_vendor_forces_rocm_and_no_gpu_overrides(node_535: HostFacts) -> None:
    profile = Profile(schema=1, name="site", gpu=Gpu(vendor="rocm"))
    result = decide(profile, REQUEST, node_535, None, "apptainer")
    assert [f.flag for f in result.flags] == ["--rocm"]
    assert "profile gpu.vendor = rocm" in result.flags[0].reason
    off = Request(launcher=(), image="img", command=("app",), gpu="none")
    assert decide(profile, off, node_535, None, "apptainer").flags == ()


def test_amd_node_with_rocm_image(tmp_path: Path) -> None:
    host = HostFacts(gpu=probe_gpu(amd_host(tmp_path)))
    image = ImageFacts(source="rocm.sif", kind="sif", rocm="6.0.2",
                       ld_cache=(("libamdhip64.so.6", "/opt/rocm/lib/libamdhip64.so.6"),))
    result = decide(Profile(schema=1, name="site"), REQUEST, host, image, "apptainer")
    assert [f.flag for f in result.flags] == ["--rocm"]
    assert "AMD GPU" in result.flags[0].reason


def test_bad_vendor_is_a_usage_error() -> None:
    request = Request(launcher=(), image="img", command=("app",), gpu="intel")
    with pytest.raises(UsageError) as info:
        decide(Profile(schema=1, name="site"), request, CPU_NODE, None, "apptainer")
    assert "--gpu" in info.value.message and "intel" in info.value.message


def test_gtl_left_to_the_plan_builder_for_apptainer(tmp_path: Path,
                                                    node_535: HostFacts) -> None:
    gtl = compile_library(tmp_path / "libmpi_gtl_cuda.so.0", "libmpi_gtl_cuda.so.0")
    profile = Profile(schema=1, name="site", gpu=Gpu(libraries=(str(gtl),)))
    result = decide(profile, REQUEST, node_535, None, "apptainer")
    # build.py binds and preloads gpu.libraries when --nv is among the flags.
    assert [f.flag for f in result.flags] == ["--nv"]
    assert result.binds == () and result.preload == ()


def charliecloud_profile(gtl: Path) -> Profile:
    return Profile(schema=1, name="site", container=Container(prefix="/.hpcrun"),
                   gpu=Gpu(libraries=(str(gtl),)),
                   env=(EnvSpec(name="MPICH_GPU_SUPPORT_ENABLED", value="1", when="gpu",
                                reason="Cray MPICH GPU-aware"),
                        EnvSpec(name="ALWAYS", value="1")))


def test_charliecloud_binds_driver_and_gtl(tmp_path: Path, cudart: Path,
                                           node_535: HostFacts) -> None:
    """The GPU stage binds the driver (kind "gpu"); the plan builder then sees a GPU as on
    and binds, preloads and sets the profile's GTL and when = "gpu" entries exactly once."""
    gtl = compile_library(tmp_path / "gtl" / "libmpi_gtl_cuda.so.0", "libmpi_gtl_cuda.so.0")
    image = make_image(tmp_path, cudart)
    profile = charliecloud_profile(gtl)
    result = decide(profile, REQUEST, node_535, image, "charliecloud")
    assert result.flags == ()
    binds = {b.destination: b for b in result.binds}
    libcuda = binds["/.hpcrun/gpu/libcuda.so.1"]
    assert libcuda.source.endswith("/libcuda.so.1") and libcuda.kind == "gpu"
    assert "/.hpcrun/gpu/libnvidia-ml.so.1" in binds
    assert binds["/.hpcrun/gpu/bin/nvidia-smi"].source == "/usr/bin/nvidia-smi"
    assert {b.kind for b in result.binds} == {"gpu"}  # GTL is left to the plan builder
    assert result.preload == () and result.env == ()
    assert result.library_path == ("/.hpcrun/gpu",)
    found = codes(result)
    # Everything lands under the private prefix, which the renderer stages at a free
    # /mnt/N: nothing for the image to provide, so no missing-destination warning.
    assert "charliecloud-bind-destination" not in found
    assert found["charliecloud-gpu-devices"] == INFO

    host = records.replace(node_535, runtime=RuntimeInfo(kind="charliecloud"))
    slots = tuple(f"/mnt/{i}" for i in range(10))
    plan = build_plan(profile, REQUEST, host, image, [result], None,
                      {"HOME": str(tmp_path / "home")}, mount_slots=slots)
    assert gpu_active([result])
    gtl_binds = [b for b in plan.binds if b.source == str(gtl)]
    assert [b.destination for b in gtl_binds] == ["/.hpcrun/lib/libmpi_gtl_cuda.so.0"]
    env = [(e.name, e.value) for e in plan.env]
    assert env.count(("MPICH_GPU_SUPPORT_ENABLED", "1")) == 1
    assert ("LD_PRELOAD", "/.hpcrun/lib/libmpi_gtl_cuda.so.0") in env
    assert not {"gpu-libraries-skipped", "gpu-variable-skipped"} & {
        d.code for d in plan.diagnostics}
    argv = plan.invocation.argv
    assert argv.count("--set-env=MPICH_GPU_SUPPORT_ENABLED=1") == 1
    # The driver and the GTL library are staged once each, at the stage's lib/ and gpu/.
    stage = plan.invocation.stage
    assert stage is not None
    links = dict(stage.links)
    assert [k for k in links if k.endswith("libmpi_gtl_cuda.so.0")] == [
        "lib/libmpi_gtl_cuda.so.0"]
    assert "gpu/libcuda.so.1" in links
    assert any(a.startswith("--set-env=LD_PRELOAD=/mnt/0/lib/libmpi_gtl_cuda.so.0")
               for a in argv)


def test_charliecloud_without_driver_libraries_is_off(tmp_path: Path, cudart: Path) -> None:
    """Forced --gpu nvidia on a node without driver libraries: no binds, a warning, and
    the builder's GPU-only entries are skipped (with their notes)."""
    gtl = compile_library(tmp_path / "libmpi_gtl_cuda.so.0", "libmpi_gtl_cuda.so.0")
    request = records.replace(REQUEST, gpu="nvidia")
    result = decide(charliecloud_profile(gtl), request, CPU_NODE, None, "charliecloud")
    assert result.binds == () and not gpu_active([result])
    assert codes(result)["charliecloud-gpu-no-driver"] == WARNING
    host = HostFacts(runtime=RuntimeInfo(kind="charliecloud"))
    plan = build_plan(charliecloud_profile(gtl), request, host, None, [result], None, {})
    assert {"gpu-libraries-skipped", "gpu-variable-skipped"} <= {
        d.code for d in plan.diagnostics}


def test_charliecloud_unknown_image_layout_says_nothing_more(node_535: HostFacts) -> None:
    """For a SIF the layout is not known here; the renderer's general ch-run warning
    covers bind destinations, so no second warning comes from this stage."""
    image = ImageFacts(source="x.sif", kind="sif", cuda_runtime="12.2")
    result = decide(Profile(schema=1, name="site"), REQUEST, node_535, image, "charliecloud")
    assert result.binds and "charliecloud-bind-destination" not in codes(result)


def test_charliecloud_no_warning_when_destinations_exist(tmp_path: Path, cudart: Path,
                                                         node_535: HostFacts) -> None:
    gtl = compile_library(tmp_path / "gtl" / "libmpi_gtl_cuda.so.0", "libmpi_gtl_cuda.so.0")
    image = make_image(tmp_path, cudart)
    first = decide(charliecloud_profile(gtl), REQUEST, node_535, image, "charliecloud")
    for bind in first.binds:
        placeholder = Path(image.source) / bind.destination.lstrip("/")
        placeholder.parent.mkdir(parents=True, exist_ok=True)
        placeholder.write_text("")
    again = decide(charliecloud_profile(gtl), REQUEST, node_535, image, "charliecloud")
    assert "charliecloud-bind-destination" not in codes(again)


def test_charliecloud_binds_work_with_real_ch_run(tmp_path: Path, cudart: Path,
                                                  node_535_root: Path,
                                                  node_535: HostFacts) -> None:
    """ch-run really mounts the planned binds: the container sees the node's libcuda and
    the GTL library under /.hpcrun/lib, byte for byte."""
    ch_run = shutil.which("ch-run")
    busybox = shutil.which("busybox")
    if ch_run is None or busybox is None:
        pytest.skip("ch-run (charliecloud-runtime) or busybox (busybox-static) not installed")
    gtl = compile_library(tmp_path / "gtl" / "libmpi_gtl_cuda.so.0", "libmpi_gtl_cuda.so.0")
    image = make_image(tmp_path, cudart)
    root = Path(image.source)
    shutil.copy2(busybox, root / "bin" / "busybox")
    profile = Profile(schema=1, name="site", gpu=Gpu(libraries=(str(gtl),)))
    result = decide(profile, REQUEST, node_535, image, "charliecloud")
    host = records.replace(node_535, runtime=RuntimeInfo(kind="charliecloud"))
    plan = build_plan(profile, REQUEST, host, image, [result], None, {})
    argv = [ch_run]
    for bind in plan.binds:
        # The node was probed under a fake root: its host paths live below that root.
        source = bind.source if bind.source == str(gtl) else \
            str(node_535_root / bind.source.lstrip("/"))
        placeholder = root / bind.destination.lstrip("/")
        placeholder.parent.mkdir(parents=True, exist_ok=True)
        placeholder.write_text("")
        argv += ["-b", f"{source}:{bind.destination}"]
    argv += [str(root), "--", "/bin/busybox", "sha256sum", "/.hpcrun/gpu/libcuda.so.1",
             "/.hpcrun/lib/libmpi_gtl_cuda.so.0"]
    proc = subprocess.run(argv, capture_output=True, text=True,
                          env={**os.environ, "USER": "root"})
    assert proc.returncode == 0, proc.stderr
    inside = [line.split()[0] for line in proc.stdout.splitlines()]
    libcuda = node_535_root / dict(node_535.gpu.libraries)["libcuda.so.1"].lstrip("/")
    outside = subprocess.run(["sha256sum", str(libcuda), str(gtl)], capture_output=True,
                             text=True, check=True).stdout
    assert inside == [line.split()[0] for line in outside.splitlines()]
