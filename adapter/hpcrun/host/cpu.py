"""CPUs of the launch node: the affinity mask and the cgroup CPU quota.

Every probe takes a root path so tests can point it at a fake tree holding real cgroup
files (v1 and v2 layouts).  Nothing here raises on odd input: an unreadable or malformed
file means "no information" (0), because thread counts are a convenience, never a reason
to refuse a launch.
"""

from __future__ import annotations

import os
from pathlib import Path

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, List, Optional, Tuple


def affinity_cpus() -> int:
    """The number of CPUs this process may run on (``sched_getaffinity``), at least 1.

    Under Slurm the launch step is usually bound to the job's CPUs on this node, so this
    is the allocation, not the machine.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def parse_cpu_max(text: str) -> float:
    """CPUs granted by a cgroup v2 ``cpu.max`` line ("quota period" or "max period"); 0 = none."""
    fields = text.split()
    if len(fields) < 1 or fields[0] == "max":
        return 0.0
    try:
        quota = int(fields[0])
        period = int(fields[1]) if len(fields) > 1 else 100000
    except ValueError:
        return 0.0
    if quota <= 0 or period <= 0:
        return 0.0
    return quota / period


def parse_cfs(quota_text: str, period_text: str) -> float:
    """CPUs granted by cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; 0 = none (-1)."""
    try:
        quota = int(quota_text.strip())
        period = int(period_text.strip())
    except ValueError:
        return 0.0
    if quota <= 0 or period <= 0:
        return 0.0
    return quota / period


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def _membership(root: Path, pid: str) -> List[Tuple[str, Tuple[str, ...], str]]:
    """Lines of ``/proc/PID/cgroup`` as (hierarchy id, controllers, path)."""
    text = _read(root / "proc" / pid / "cgroup")
    if text is None:
        return []
    entries = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers = tuple(c for c in parts[1].split(",") if c)
        entries.append((parts[0], controllers, parts[2]))
    return entries


def _ancestors(cgroup_path: str) -> Iterable[str]:
    """The cgroup and every parent up to the root, as relative paths ("" for the root)."""
    parts = [p for p in cgroup_path.split("/") if p and p not in (".", "..")]
    for end in range(len(parts), -1, -1):
        yield "/".join(parts[:end])


def _smallest(values: Iterable[float]) -> float:
    limits = [v for v in values if v > 0]
    return min(limits) if limits else 0.0


def cgroup_cpu_quota(root: Path = Path("/"), pid: str = "self") -> float:
    """CPUs the process's cgroup may use by its CFS quota, 0.0 when unlimited or unknown.

    Finds the process's cgroup through ``/proc/PID/cgroup`` under ``root`` and reads the
    quota there and in every ancestor (a Slurm job limits its own cgroup while the step
    sits in a child), taking the smallest.  cgroup v2 (``0::/path``, ``cpu.max``) is tried
    first, then v1 (the ``cpu`` controller's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``,
    mounted at ``cpu``, ``cpu,cpuacct`` or ``cpuacct,cpu``).
    """
    base = root / "sys" / "fs" / "cgroup"
    membership = _membership(root, pid)
    found: List[float] = []
    for hid, controllers, path in membership:
        if hid == "0" and not controllers:
            for rel in _ancestors(path):
                text = _read(base / rel / "cpu.max") if rel else _read(base / "cpu.max")
                if text is not None:
                    found.append(parse_cpu_max(text))
        elif "cpu" in controllers:
            mounts = [base / ",".join(controllers), base / "cpu", base / "cpu,cpuacct",
                      base / "cpuacct,cpu"]
            for mount in mounts:
                if not mount.is_dir():
                    continue
                for rel in _ancestors(path):
                    directory = mount / rel if rel else mount
                    quota = _read(directory / "cpu.cfs_quota_us")
                    period = _read(directory / "cpu.cfs_period_us")
                    if quota is not None and period is not None:
                        found.append(parse_cfs(quota, period))
                break
    return _smallest(found)
