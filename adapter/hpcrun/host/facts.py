"""Facts about the host node, as the plan consumes them."""

from __future__ import annotations

from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Tuple


@record
class RuntimeInfo:
    """The container runtime found on this host.

    ``kind`` is apptainer, singularity or charliecloud; ``flavour`` tells SingularityCE from
    Singularity 3.x legacy where it matters; ``binary`` is the absolute path or "" when the
    runtime is not installed.  ``reason`` says why this runtime was chosen and where it was
    found (printed by ``--dry-run``, ``--explain`` and ``--json``).
    """

    kind: str
    binary: str = ""
    version: str = ""
    flavour: str = ""
    reason: str = ""


@record
class GpuHost:
    """GPUs on this node: ``vendor`` nvidia, amd or none; the NVIDIA driver version."""

    vendor: str = "none"
    driver_version: str = ""
    devices: Tuple[str, ...] = ()
    evidence: Tuple[str, ...] = ()
    # Driver user-space libraries as (soname, host path) from the host ld.so.cache, and
    # driver tools (nvidia-smi ...): what --nv/--rocm would bind; Charliecloud needs them.
    libraries: Tuple[Tuple[str, str], ...] = ()
    tools: Tuple[str, ...] = ()


@record
class HostFacts:
    """Everything hpcrun knows about the launch node."""

    architecture: str = ""  # uname -m
    glibc: str = ""
    cpus: int = 0  # CPUs usable by this process (affinity / cgroup)
    cgroup_cpu_quota: float = 0.0  # CPUs from cgroup quota, 0 when unlimited
    runtime: RuntimeInfo = RuntimeInfo(kind="apptainer")
    gpu: GpuHost = GpuHost()
    environ: Tuple[Tuple[str, str], ...] = ()  # the relevant part of os.environ
