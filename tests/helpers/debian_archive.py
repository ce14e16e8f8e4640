"""Real Debian packages of other releases, fetched once and cached under ``$HOME/.cache``.

``apt-get download`` with a private apt state (its own sources, lists and cache; the host's
sources and dpkg status are not touched), as ``shared/tools/apptainer-up.sh`` does for sid.
Used where a test needs a file exactly as another Debian release ships it (Debian 11's
glibc 2.31, whose newest symbol version is GLIBC_2.30).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import List

CACHE = Path(os.environ.get("HPCRUN_TEST_DEBS", str(Path.home() / ".cache/hpcrun-test-debs")))
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class DebUnavailable(Exception):
    """The package cannot be fetched here (no network, no apt); tests skip with the reason."""


def _apt_options(state: Path) -> List[str]:
    return ["-o", "Dir::Etc::sourcelist=/dev/null", "-o", f"Dir::Etc::sourceparts={state}/src",
            "-o", f"Dir::State::Lists={state}/lists", "-o", f"Dir::Cache={state}/cache",
            "-o", "Dir::State::status=/dev/null", "-o", "APT::Sandbox::User=root"]


def fetch_deb(suite: str, package: str) -> Path:
    """The ``.deb`` of ``package`` (amd64) from Debian ``suite``, downloaded on first use."""
    target = CACHE / suite
    found = sorted(target.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hpcrun-apt-") as tmp:
        state = Path(tmp)
        for sub in ("src", "lists/partial", "cache/archives/partial"):
            (state / sub).mkdir(parents=True)
        (state / "src" / f"{suite}.sources").write_text(
            f"Types: deb\nURIs: {MIRROR}\nSuites: {suite}\nComponents: main\n"
            f"Signed-By: {KEYRING}\n")
        options = _apt_options(state)
        for argv, cwd in ((["apt-get", *options, "update", "-qq"], tmp),
                          (["apt-get", *options, "download", "-qq", package], str(target))):
            try:
                proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, timeout=300)
            except (OSError, subprocess.TimeoutExpired) as error:
                raise DebUnavailable(f"{' '.join(argv[:1])}: {error}") from None
            if proc.returncode != 0:
                raise DebUnavailable(f"apt-get {argv[-2]} {suite}/{package} failed: "
                                     + proc.stdout.decode(errors="replace").strip()[-300:])
    found = sorted(target.glob(f"{package}_*.deb"))
    if not found:
        raise DebUnavailable(f"apt-get download {package} from {suite} left no .deb")
    return found[-1]


def unpack_deb(deb: Path, dest: Path) -> Path:
    """``dpkg-deb -x`` the package into ``dest`` (a root file system tree)."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    return dest
