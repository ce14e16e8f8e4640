"""A real Debian 11 (bullseye, glibc 2.31) image with a real MPICH application.

The packages come from Debian's archive through a private apt state (its own sources
list, lists and cache under ``$HOME/.cache/hpcrun-bullseye``), so the machine's apt
sources are never touched; downloads are kept there and reruns are offline.  The image
root holds bullseye's ``libc6``, ``libgcc-s1``, ``libstdc++6``, ``libgfortran5``,
``libquadmath0`` and NetPIPE's ``NPmpich2`` (``netpipe-mpich2``, built against
``libmpich.so.12``), optionally bullseye's own ``libmpich12`` (MPICH 3.4.1), static busybox
as the shell, and the skeleton and ``/.singularity.d`` scripts of the other test images.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import List

from helpers import images

CACHE = Path(os.environ.get("HPCRUN_BULLSEYE_CACHE",
                            str(Path.home() / ".cache" / "hpcrun-bullseye")))
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE = ("libc6", "libgcc-s1", "libstdc++6", "libgfortran5", "libquadmath0", "netpipe-mpich2")
MPICH = ("libmpich12",)
APP = "/usr/bin/NPmpich2"


def _apt_options() -> List[str]:
    return ["-o", "Dir::Etc::sourcelist=/dev/null", "-o", f"Dir::Etc::sourceparts={CACHE}/src",
            "-o", f"Dir::State::Lists={CACHE}/lists", "-o", f"Dir::Cache={CACHE}/cache",
            "-o", "Dir::State::status=/dev/null", "-o", "APT::Sandbox::User=root",
            "-o", "APT::Architecture=amd64"]


def debs(packages: List[str]) -> List[Path]:
    """The bullseye ``.deb`` files of ``packages``, downloaded once into the cache.

    Raises images.ImageBuildError when apt or the archive is unreachable.
    """
    debs_dir = CACHE / "debs"
    found = {p: sorted(debs_dir.glob(f"{p}_*_amd64.deb")) for p in packages}
    missing = [p for p, files in found.items() if not files]
    if missing:
        if shutil.which("apt-get") is None:
            raise images.ImageBuildError("apt-get is needed to fetch Debian 11 packages")
        for sub in ("src", "lists/partial", "cache/archives/partial", "debs"):
            (CACHE / sub).mkdir(parents=True, exist_ok=True)
        (CACHE / "src" / "bullseye.sources").write_text(
            f"Types: deb\nURIs: {MIRROR}\nSuites: bullseye\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
        for argv in (["apt-get", *_apt_options(), "update", "-qq"],
                     ["apt-get", *_apt_options(), "download", "-qq", *missing]):
            done = subprocess.run(argv, cwd=debs_dir, capture_output=True, text=True,
                                  timeout=300, check=False)
            if done.returncode != 0:
                raise images.ImageBuildError(f"{' '.join(argv[:1] + argv[-2:])}: "
                                             f"{done.stderr.strip()[-300:]}")
        found = {p: sorted(debs_dir.glob(f"{p}_*_amd64.deb")) for p in packages}
    return [files[-1] for files in found.values() if files]


def build_root(root: Path, with_mpich: bool) -> None:
    """The Debian 11 image root (see the module docstring) at ``root``."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        raise images.ImageBuildError("busybox is not installed (Debian package busybox-static)")
    files = debs(list(BASE + (MPICH if with_mpich else ())))
    unpacked = root.parent / (root.name + ".debs")
    shutil.rmtree(unpacked, ignore_errors=True)
    for deb in files:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
    root.mkdir(parents=True)
    images._skeleton(root)
    # bullseye is not /usr-merged: its /lib and /lib64 go where the skeleton's links point.
    for top, dest in (("lib", "usr/lib"), ("lib64", "usr/lib64"), ("usr", "usr"),
                      ("etc", "etc")):
        if (unpacked / top).is_dir():
            subprocess.run(["cp", "-a", f"{unpacked / top}/.", str(root / dest)], check=True)
    shutil.rmtree(unpacked)
    shutil.copy2(busybox, root / "usr/bin/busybox")
    for applet in images.BUSYBOX_APPLETS:
        if not (root / "usr/bin" / applet).exists():
            os.symlink("busybox", root / "usr/bin" / applet)
    images._environment_scripts(root, "mpich")
    subprocess.run(["ldconfig", "-r", str(root)], check=True)
