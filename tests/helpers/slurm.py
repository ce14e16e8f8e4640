"""A real single-node Slurm cluster for the end-to-end tests, on loopback only.

``start_cluster(workdir)`` writes a ``slurm.conf`` whose state, spool, logs and pid files all
live under ``workdir``, binds slurmctld and slurmd to 127.0.0.1 on free ports
(``CommunicationParameters=NoCtldInAddrAny,NoInAddrAny``), uses ``auth/none`` and
``cred/none`` (no munged needed), starts both daemons and waits until the node is idle.
``Cluster.stop()`` ends the daemons by the PIDs in their pid files, never by name; it is
also registered with ``atexit`` so nothing outlives the test run.

The ``slurm_cluster`` fixture (session scope) wraps this and skips with the reason when
Slurm is not installed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

DAEMONS = ("slurmctld", "slurmd")
CLIENTS = ("srun", "sinfo")


class SlurmUnavailable(RuntimeError):
    """Slurm is not installed, or the daemons did not come up (the message says why)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _find(program: str) -> Optional[str]:
    return shutil.which(program) or next(
        (p for p in (f"/usr/sbin/{program}", f"/usr/bin/{program}") if os.path.exists(p)), None)


def missing_programs() -> List[str]:
    """The Slurm programs (daemons and clients) that are not installed."""
    return [p for p in DAEMONS + CLIENTS if _find(p) is None]


def slurm_conf(workdir: Path, node: str, cpus: int, ctld_port: int, slurmd_port: int) -> str:
    """The text of a one-node, loopback-only ``slurm.conf`` keeping all state in ``workdir``."""
    return "\n".join([
        "# hpcrun test cluster: loopback only, all state under this directory",
        "ClusterName=hpcruntest",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/none",
        "CredType=cred/none",
        "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",
        f"StateSaveLocation={workdir}/state",
        f"SlurmdSpoolDir={workdir}/spool",
        f"SlurmctldPidFile={workdir}/slurmctld.pid",
        f"SlurmdPidFile={workdir}/slurmd.pid",
        f"SlurmctldLogFile={workdir}/slurmctld.log",
        f"SlurmdLogFile={workdir}/slurmd.log",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "MpiDefault=none",
        "SlurmdParameters=config_overrides",
        "ReturnToService=2",
        "SlurmdTimeout=30",
        "InactiveLimit=0",
        "KillWait=5",
        # Several ranks per core: the e2e and launch benchmarks oversubscribe 2 cores.
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN",
        f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP "
        "OverSubscribe=FORCE:8",
        "",
    ])


@dataclass
class Cluster:
    """A running test cluster: ``env`` holds ``SLURM_CONF`` for clients started by tests."""

    workdir: Path
    conf: Path
    node: str
    cpus: int
    env: Dict[str, str] = field(default_factory=dict)
    stopped: bool = False

    def log(self, daemon: str) -> str:
        """The daemon's log text (for failure messages)."""
        path = self.workdir / f"{daemon}.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def pid(self, daemon: str) -> Optional[int]:
        """The daemon's PID from its pid file, or None."""
        path = self.workdir / f"{daemon}.pid"
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return None

    def environ(self) -> Dict[str, str]:
        """``os.environ`` plus ``SLURM_CONF`` pointing at this cluster."""
        env = dict(os.environ)
        env.update(self.env)
        return env

    def stop(self) -> None:
        """Stop the daemons by the PIDs in their pid files; wait until they are gone."""
        if self.stopped:
            return
        self.stopped = True
        for daemon in reversed(DAEMONS):
            pid = self.pid(daemon)
            if pid is None or not is_daemon(pid, daemon):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and is_daemon(pid, daemon):
                time.sleep(0.05)
            if is_daemon(pid, daemon):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def is_daemon(pid: int, name: str) -> bool:
    """True when ``pid`` is alive and is the named daemon (guards against reused PIDs)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return False
    comm = text[text.index("(") + 1:text.rindex(")")]
    state = text[text.rindex(")") + 2:].split()[0]
    return comm == name and state != "Z"


def _wait_idle(cluster: Cluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    sinfo = _find("sinfo") or "sinfo"
    last = ""
    while time.monotonic() < deadline:
        proc = subprocess.run([sinfo, "-h", "-N", "-o", "%T"], env=cluster.environ(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        last = proc.stdout.decode(errors="replace").strip()
        if proc.returncode == 0 and last in ("idle", "mixed", "allocated"):
            return
        time.sleep(0.1)
    raise SlurmUnavailable(f"the test node did not become idle within {timeout:.0f} s "
                           f"(sinfo said {last!r});\nslurmctld.log:\n{cluster.log('slurmctld')}"
                           f"\nslurmd.log:\n{cluster.log('slurmd')}")


def start_cluster(workdir: Path, cpus: Optional[int] = None, timeout: float = 30.0) -> Cluster:
    """Configure and start slurmctld and slurmd under ``workdir``; return when idle."""
    missing = missing_programs()
    if missing:
        raise SlurmUnavailable("Slurm is not installed (missing: " + ", ".join(missing)
                               + "; Debian packages slurmctld slurmd slurm-client)")
    workdir.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (workdir / sub).mkdir(exist_ok=True)
    node = socket.gethostname().split(".")[0]
    count = cpus or max(os.cpu_count() or 1, 8)
    conf = workdir / "slurm.conf"
    conf.write_text(slurm_conf(workdir, node, count, _free_port(), _free_port()))
    # slurmd wants a cgroup.conf beside slurm.conf only for cgroup plugins; none are used.
    cluster = Cluster(workdir=workdir, conf=conf, node=node, cpus=count,
                      env={"SLURM_CONF": str(conf)})
    atexit.register(cluster.stop)
    env = cluster.environ()
    try:
        for daemon, args in (("slurmctld", ["-i"]), ("slurmd", ["-N", node])):
            binary = _find(daemon) or daemon
            proc = subprocess.run([binary, *args], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=60)
            if proc.returncode != 0:
                raise SlurmUnavailable(f"{daemon} failed to start: "
                                       f"{proc.stdout.decode(errors='replace')}\n"
                                       f"{cluster.log(daemon)}")
        _wait_idle(cluster, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster
