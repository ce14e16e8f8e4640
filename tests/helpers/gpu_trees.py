"""Fake GPU nodes and CUDA images built from real files, for the host and GPU tests.

- ``compile_library(path, soname)``: a real ELF shared library made here with gcc (no
  Debian or PyPI package ships an NVIDIA *driver* ``libcuda.so.1``: Debian's ``libcuda1``
  is non-free and not reachable, and the CUDA wheels carry only the runtime).
- ``nvidia_host(root, driver)``: device nodes (regular files are enough for probing),
  ``/proc/driver/nvidia/version`` text, compiled ``libcuda.so.1`` / ``libnvidia-ml.so.1``
  and an ``/etc/ld.so.cache`` written by the real ``ldconfig -r``.
- ``cuda_image(root, cudart)``: a sandbox image holding the real ``libcudart.so.12`` of the
  ``nvidia-cuda-runtime-cu12`` wheel, its own ``ld.so.cache`` from ``ldconfig -r`` and an
  ``NVIDIA_REQUIRE_CUDA`` environment like NVIDIA's base images.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Dict, Optional

import pytest

LIBDIR = "usr/lib/x86_64-linux-gnu"
CUDA_LIBDIR = "usr/local/cuda/lib64"
NVRM = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  {driver}  Sat Aug 19 01:15:15 UTC "
        "2023\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")


def compile_library(path: Path, soname: str, symbol: str = "hpcrun_test_symbol") -> Path:
    """Compile a real shared library at ``path`` with DT_SONAME ``soname``."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (Debian package gcc)")
    path.parent.mkdir(parents=True, exist_ok=True)
    source = path.parent / (path.name + ".c")
    source.write_text(f"int {symbol}(void) {{ return 42; }}\n")
    subprocess.run([gcc, "-shared", "-fPIC", "-Wl,-soname," + soname, "-o", str(path),
                    str(source)], check=True, capture_output=True)
    source.unlink()
    return path


def run_ldconfig(root: Path, dirs: tuple) -> None:
    """Write ``root/etc/ld.so.conf`` listing ``dirs`` and build the cache with ``ldconfig -r``."""
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "ld.so.conf").write_text("".join(f"/{d}\n" for d in dirs))
    proc = subprocess.run([ldconfig, "-r", str(root)], capture_output=True, text=True)
    if proc.returncode != 0 or not (root / "etc" / "ld.so.cache").exists():
        pytest.skip(f"ldconfig -r {root} failed (needs root): {proc.stderr.strip()}")


def nvidia_host(root: Path, driver: str = "535.104.05", gpus: int = 2,
                loaded: bool = True) -> Path:
    """A fake NVIDIA node under ``root`` with a real compiled driver library and ld.so.cache."""
    (root / "dev").mkdir(parents=True, exist_ok=True)
    for name in ["nvidiactl", "nvidia-uvm"] + [f"nvidia{i}" for i in range(gpus)]:
        (root / "dev" / name).write_text("")
    if loaded:
        version = root / "proc" / "driver" / "nvidia" / "version"
        version.parent.mkdir(parents=True, exist_ok=True)
        version.write_text(NVRM.format(driver=driver))
    lib = root / LIBDIR
    compile_library(lib / ("libcuda.so." + driver), "libcuda.so.1", "cuDriverGetVersion")
    compile_library(lib / ("libnvidia-ml.so." + driver), "libnvidia-ml.so.1", "nvmlInit_v2")
    compile_library(lib / "libz-test.so.1", "libz-test.so.1")
    smi = root / "usr" / "bin" / "nvidia-smi"
    smi.parent.mkdir(parents=True, exist_ok=True)
    smi.write_text(f"#!/bin/sh\necho 'NVIDIA-SMI {driver}'\n")
    smi.chmod(0o755)
    run_ldconfig(root, (LIBDIR,))
    return root


def amd_host(root: Path) -> Path:
    """A fake AMD node: /dev/kfd, a render node, /opt/rocm-6.0.2 and a real libdrm_amdgpu."""
    (root / "dev" / "dri").mkdir(parents=True, exist_ok=True)
    (root / "dev" / "kfd").write_text("")
    (root / "dev" / "dri" / "renderD128").write_text("")
    (root / "opt" / "rocm-6.0.2" / "bin").mkdir(parents=True, exist_ok=True)
    compile_library(root / LIBDIR / "libdrm_amdgpu.so.1.0.0", "libdrm_amdgpu.so.1")
    run_ldconfig(root, (LIBDIR,))
    return root


def cuda_image(root: Path, cudart: Path, env: Optional[Dict[str, str]] = None) -> Path:
    """A sandbox image with the real ``libcudart.so.12`` and its own ld.so.cache."""
    dest = root / CUDA_LIBDIR / "libcudart.so.12"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(cudart, dest)
    for sub in ("dev", "proc", "sys", "tmp", "mnt/0", "bin"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in ("passwd", "group", "hosts", "resolv.conf"):
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc" / name).write_text("")
    run_ldconfig(root, (CUDA_LIBDIR,))
    environment = env if env is not None else {"NVIDIA_REQUIRE_CUDA": "cuda>=12.2"}
    script = root / ".singularity.d" / "env" / "90-environment.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("".join("export {}={!r}\n".format(*kv) for kv in environment.items()))
    return root
