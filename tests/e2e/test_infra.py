"""The test infrastructure itself: the Slurm cluster stays on loopback and leaves nothing
behind; the test images are what the scenarios assume."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from helpers import slurm

from .conftest import ImageSet

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def listening(port: int) -> List[Tuple[str, int]]:
    """(local address hex, port) of the TCP sockets in LISTEN state on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                address, hex_port = fields[1].split(":")
                if fields[3] == "0A" and int(hex_port, 16) == port:
                    found.append((address, port))
    return found


def conf_value(conf: Path, key: str) -> str:
    """The value of ``key=`` in a slurm.conf."""
    match = re.search(rf"^{key}=(\S+)", conf.read_text(), re.MULTILINE)
    assert match, f"{key} missing from {conf}"
    return match.group(1)


def test_slurm_listens_on_loopback_only(slurm_cluster: slurm.Cluster) -> None:
    for key in ("SlurmctldPort", "SlurmdPort"):
        port = int(conf_value(slurm_cluster.conf, key))
        sockets = listening(port)
        assert sockets, f"nothing listens on {key} {port}"
        assert all(address == "0100007F" for address, _ in sockets), sockets


def test_slurm_node_is_usable(slurm_cluster: slurm.Cluster) -> None:
    proc = subprocess.run(["srun", "-n", "2", "hostname"], env=slurm_cluster.environ(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split()) == 2


def test_cluster_stop_leaves_no_daemon(tmp_path: Path) -> None:
    if os.geteuid() != 0 or slurm.missing_programs():
        pytest.skip("needs root and Slurm")
    cluster = slurm.start_cluster(tmp_path / "second")
    pids: Dict[str, int] = {}
    for daemon in slurm.DAEMONS:
        pid = cluster.pid(daemon)
        assert pid is not None and slurm.is_daemon(pid, daemon)
        pids[daemon] = pid
    cluster.stop()
    for daemon, pid in pids.items():
        assert not slurm.is_daemon(pid, daemon), f"{daemon} {pid} still runs"


def test_images_hold_what_the_scenarios_assume(e2e_images: ImageSet) -> None:
    for image, soname in ((e2e_images.mpich, "libmpich.so.12"),
                          (e2e_images.openmpi, "libmpi.so.40")):
        root = image.sandbox
        for path in ("etc/passwd", "etc/group", "etc/hosts", "etc/resolv.conf",
                     "etc/ld.so.cache", "mnt/0", "mnt/9", "bin/sh", "usr/bin/python3",
                     "usr/local/bin/hello", "opt/hello/hello.py",
                     ".singularity.d/env/90-environment.sh"):
            assert (root / path).exists() or (root / path).is_symlink(), f"{root}/{path}"
        cache = subprocess.run(["ldconfig", "-r", str(root), "-p"], capture_output=True,
                               text=True).stdout
        assert soname in cache
        with open(image.sif, "rb") as sif, open(image.squashfs, "rb") as squashfs:
            assert sif.read(64)[32:41] == b"SIF_MAGIC"
            assert squashfs.read(4) == b"hsqs"
