"""Collect :class:`~hpcrun.host.facts.HostFacts` for the launch node.

Reads a handful of small files under ``root`` (the host ld.so.cache, ``/proc``, cgroup
files); costs about a millisecond.  The container runtime is detected elsewhere
(``hpcrun.launch``): ``runtime`` keeps its default here and the caller replaces it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hpcrun.host.cpu import affinity_cpus, cgroup_cpu_quota
from hpcrun.host.facts import HostFacts
from hpcrun.host.gpu import host_ld_cache, probe_gpu

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Mapping, Optional, Tuple

# Variables of os.environ the plan may consult (threads, wire-up, GPU visibility).
RELEVANT_PREFIXES = ("SLURM_", "OMP_", "PMI_", "PMIX_", "OMPI_", "PALS_", "PBS_")
RELEVANT_NAMES = (
    "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
)

_LIBC_FILE = r"^libc-([0-9]+\.[0-9]+)\.so$"  # compiled at first use


def glibc_version(root: Path = Path("/"), cache: Optional[List[Tuple[str, str]]] = None) -> str:
    """The host glibc version ("2.36"), "" when unknown or not glibc.

    For the real root this asks the C library itself (``confstr``); for another root it
    looks for the ``libc-X.Y.so`` file name older glibc releases install.
    """
    if str(root) == "/":
        try:
            value = os.confstr("CS_GNU_LIBC_VERSION") or ""
        except (ValueError, OSError, AttributeError):
            value = ""
        if value.startswith("glibc "):
            return value.split()[1]
        return ""
    for soname, path in cache or ():
        if soname == "libc.so.6":
            directory = root / path.lstrip("/")
            try:
                for entry in directory.parent.iterdir():
                    match = re.match(_LIBC_FILE, entry.name)
                    if match:
                        return match.group(1)
            except OSError:
                return ""
    return ""


def relevant_environ(environ: Mapping[str, str]) -> Tuple[Tuple[str, str], ...]:
    """The part of ``environ`` the plan consults, sorted by name."""
    return tuple(sorted(
        (k, v) for k, v in environ.items()
        if k.startswith(RELEVANT_PREFIXES) or k in RELEVANT_NAMES
    ))


def probe_host(root: Path = Path("/"), environ: Mapping[str, str] = os.environ) -> HostFacts:
    """Facts about the node under ``root``: architecture, glibc, CPUs, cgroup quota, GPUs.

    Only the relevant part of ``environ`` is kept.  The CPU count
    is this process's affinity (the job's CPUs on this node under Slurm); architecture is
    the running kernel's (``uname -m``) whatever the root.
    """
    cache = host_ld_cache(root)
    facts = HostFacts(
        architecture=os.uname().machine,  # what platform.machine() returns, without its import
        glibc=glibc_version(root, cache),
        cpus=affinity_cpus(),
        cgroup_cpu_quota=cgroup_cpu_quota(root),
        gpu=probe_gpu(root, cache),
        environ=relevant_environ(environ),
    )
    return facts
