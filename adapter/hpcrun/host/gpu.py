"""GPUs on the launch node, read from a root path: device nodes, the driver, its libraries.

NVIDIA: ``/dev/nvidia[0-9]*`` device nodes and ``/proc/driver/nvidia/version`` mean a GPU
and a loaded kernel driver; ``libcuda.so.1`` in the host ``/etc/ld.so.cache`` is recorded
as evidence but alone does not count (login nodes often carry the driver libraries without
a GPU).  AMD: ``/dev/kfd`` with ``/dev/dri/renderD*``; ``/opt/rocm*`` is evidence only.

The driver's user-space libraries and tools are listed too (from the host ld.so.cache and
the usual binary directories), because Charliecloud has no ``--nv``: hpcrun binds them
itself.  The lists follow what Apptainer's ``nvliblist.conf`` / ``rocmliblist.conf`` name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hpcrun.host.facts import GpuHost
from hpcrun.host.ldcache import read_ld_cache as _read_ld_cache

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Set, Tuple

# Sonames' stems of the NVIDIA driver's user-space libraries (as in Apptainer's
# nvliblist.conf): matched as "<stem>.so" followed by a version suffix.
NVIDIA_LIBRARIES = (
    "libcuda", "libcudadebugger", "libnvcuvid", "libnvidia-allocator", "libnvidia-cfg",
    "libnvidia-compiler", "libnvidia-eglcore", "libnvidia-encode", "libnvidia-fatbinaryloader",
    "libnvidia-glcore", "libnvidia-glsi", "libnvidia-gpucomp", "libnvidia-ml",
    "libnvidia-nvvm", "libnvidia-opencl", "libnvidia-opticalflow", "libnvidia-ptxjitcompiler",
    "libnvidia-rtcore", "libnvidia-tls", "libnvoptix",
)
NVIDIA_TOOLS = (
    "nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
)
# As in Apptainer's rocmliblist.conf: the kernel-facing libraries a ROCm container needs.
ROCM_LIBRARIES = ("libdrm", "libdrm_amdgpu", "libamdocl64", "libhsa-runtime64", "libhsakmt")
ROCM_TOOLS = ("rocm-smi", "rocminfo")
TOOL_DIRS = ("usr/bin", "usr/local/bin", "bin", "opt/rocm/bin")

_NVRM = r"Kernel Module(?:\s+for\s+\S+)?\s+([0-9]+(?:\.[0-9]+)+)"  # compiled at use


def parse_nvidia_driver_version(text: str) -> str:
    """The driver version from ``/proc/driver/nvidia/version`` text, "" when absent.

    The first line reads like ``NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05
    Sat Aug 19 01:15:15 UTC 2023`` (open kernel modules: ``NVIDIA UNIX Open Kernel Module
    for x86_64  535.104.05 ...``).
    """
    for line in text.splitlines():
        if line.startswith("NVRM"):
            match = re.search(_NVRM, line)
            if match:
                return match.group(1)
    return ""


LD_CACHE_FORMAT = 1


def host_ld_cache(root: Path, architecture: str = "") -> List[Tuple[str, str]]:
    """(soname, path) of the host's ``/etc/ld.so.cache`` under ``root`` for this machine's
    architecture (what ``ldconfig -p`` lists, first entry per soname); [] when unreadable.

    The cache is only a shortcut here, so a damaged one means "no facts", not an error.
    Remembered in the facts cache until the file's inode, size or mtime changes.
    """
    import json

    from hpcrun import __version__
    from hpcrun.image.cache import remembered, sha256_hex

    machine = architecture or os.uname().machine

    def walk(seen: Set[str]) -> Tuple[List[Tuple[str, str]], bool]:
        seen.add("/etc/ld.so.cache")
        return _read_ld_cache(root, machine), True

    raw = json.dumps([LD_CACHE_FORMAT, __version__, str(root), machine])
    key = "host-ld-cache-" + sha256_hex(raw.encode("utf-8", "surrogatepass"))
    return remembered(key, root, walk, _pairs_to_json, _pairs_from_json)


def _pairs_to_json(pairs: List[Tuple[str, str]]) -> Dict[str, object]:
    return {"pairs": [list(pair) for pair in pairs]}


def _pairs_from_json(data: object) -> Optional[List[Tuple[str, str]]]:
    """The stored (soname, path) pairs, or None when ``data`` is not a list of them."""
    pairs = data.get("pairs") if isinstance(data, dict) else None
    if not isinstance(pairs, list):
        return None
    out: List[Tuple[str, str]] = []
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
                and isinstance(pair[1], str)):
            return None
        out.append((pair[0], pair[1]))
    return out


def _matches(soname: str, stems: Tuple[str, ...]) -> bool:
    for stem in stems:
        if soname == stem + ".so" or soname.startswith(stem + ".so."):
            return True
    return False


def driver_libraries(cache: List[Tuple[str, str]], stems: Tuple[str, ...]) -> Tuple[
        Tuple[str, str], ...]:
    """The (soname, host path) entries whose soname belongs to ``stems``, first one wins.

    The first entry per soname is what the dynamic linker would pick (ld.so.cache is
    sorted by preference); 32-bit duplicates come later and are skipped.
    """
    chosen: Dict[str, str] = {}
    for soname, path in cache:
        if soname not in chosen and _matches(soname, stems):
            chosen[soname] = path
    return tuple(sorted(chosen.items()))


def _tools(root: Path, names: Tuple[str, ...]) -> Tuple[str, ...]:
    found: List[str] = []
    for name in names:
        for directory in TOOL_DIRS:
            candidate = root / directory / name
            if candidate.is_file():
                found.append("/" + directory + "/" + name)
                break
    return tuple(found)


def _glob(root: Path, directory: str, pattern: str) -> List[str]:
    base = root / directory
    try:
        return sorted("/" + directory + "/" + p.name for p in base.glob(pattern))
    except OSError:
        return []


def probe_gpu(root: Path = Path("/"), cache: Optional[List[Tuple[str, str]]] = None) -> GpuHost:
    """Probe the node under ``root`` for NVIDIA or AMD GPUs.

    ``cache`` are the host's ld.so.cache entries when already read (``host_ld_cache``).
    Returns ``GpuHost(vendor="none")`` with whatever evidence was seen when no GPU is
    usable; ``vendor`` is ``nvidia`` or ``amd`` otherwise, with device nodes, the driver
    version (NVIDIA), driver libraries and tools.
    """
    if cache is None:
        cache = host_ld_cache(root)
    evidence: List[str] = []

    nvidia_nodes = [p for p in _glob(root, "dev", "nvidia*") if p[len("/dev/nvidia"):].isdigit()]
    version_text = ""
    try:
        version_text = (root / "proc" / "driver" / "nvidia" / "version").read_text(
            encoding="utf-8", errors="replace")
    except OSError:
        pass
    libcuda = [path for soname, path in cache if soname == "libcuda.so.1"]
    if nvidia_nodes:
        evidence.append("device nodes " + " ".join(nvidia_nodes))
    if version_text:
        evidence.append("/proc/driver/nvidia/version")
    if libcuda:
        evidence.append("libcuda.so.1 in ld.so.cache (" + libcuda[0] + ")")
    if nvidia_nodes or version_text:
        devices = tuple(p for p in _glob(root, "dev", "nvidia*"))
        caps = _glob(root, "dev", "nvidia-caps")
        return GpuHost(
            vendor="nvidia",
            driver_version=parse_nvidia_driver_version(version_text),
            devices=devices + tuple(caps),
            evidence=tuple(evidence),
            libraries=driver_libraries(cache, NVIDIA_LIBRARIES),
            tools=_tools(root, NVIDIA_TOOLS),
        )

    kfd = (root / "dev" / "kfd").exists()
    render = _glob(root, "dev/dri", "renderD*")
    rocm_dirs = _glob(root, "opt", "rocm*")
    if kfd:
        evidence.append("/dev/kfd")
    if render:
        evidence.append("render nodes " + " ".join(render))
    if rocm_dirs:
        evidence.append("ROCm installed in " + " ".join(rocm_dirs))
    if kfd and render:
        return GpuHost(
            vendor="amd",
            devices=("/dev/kfd", "/dev/dri"),
            evidence=tuple(evidence),
            libraries=driver_libraries(cache, ROCM_LIBRARIES),
            tools=_tools(root, ROCM_TOOLS),
        )
    return GpuHost(vendor="none", evidence=tuple(evidence))
