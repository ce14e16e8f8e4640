"""Base images hpcrun can judge for ``hpcrun recipe``: what each distribution release ships.

A recipe must know, before anything is built, the glibc of its base (it must define every
``GLIBC_x`` symbol version the host MPI closure needs) and the version of the MPI packages
it installs (the site's ABI policy orders them against the host's).  hpcrun reads no
registry, so it knows these facts for the releases listed here only; any other base is
refused with the list.  Values are those of the releases' own packages (``libc6``,
``libstdc++6``, ``mpich``, ``openmpi-bin``, ``python3``).
"""

from __future__ import annotations

import re

from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Tuple


@record
class Base:
    """One distribution release usable as a recipe's base.

    ``pip_flags``: what pip needs to install into the system Python (PEP 668 releases mark
    it externally managed).  ``components``: the archive components holding the MPI
    packages (Ubuntu keeps MPICH and Open MPI in universe).
    """

    name: str  # canonical docker reference, e.g. debian:bookworm
    distro: str  # debian | ubuntu
    codename: str
    label: str  # for people: Debian 12 (bookworm)
    glibc: str
    glibcxx: str  # newest GLIBCXX_ version of its libstdc++6
    mpich: str
    openmpi: str
    python: str
    mirror: str
    components: Tuple[str, ...] = ("main",)
    pip_flags: Tuple[str, ...] = ()
    aliases: Tuple[str, ...] = ()


DEBIAN = "http://deb.debian.org/debian"
UBUNTU = "http://archive.ubuntu.com/ubuntu"

BASES: Tuple[Base, ...] = (
    Base("debian:bookworm", "debian", "bookworm", "Debian 12 (bookworm)", "2.36",
         "GLIBCXX_3.4.30", "4.0.2", "4.1.4", "3.11", DEBIAN,
         pip_flags=("--break-system-packages",), aliases=("12",)),
    Base("debian:bullseye", "debian", "bullseye", "Debian 11 (bullseye)", "2.31",
         "GLIBCXX_3.4.28", "3.4.1", "4.1.0", "3.9", DEBIAN, aliases=("11",)),
    Base("ubuntu:24.04", "ubuntu", "noble", "Ubuntu 24.04 (noble)", "2.39",
         "GLIBCXX_3.4.33", "4.2.0", "4.1.6", "3.12", UBUNTU, ("main", "universe"),
         pip_flags=("--break-system-packages",), aliases=("noble",)),
    Base("ubuntu:22.04", "ubuntu", "jammy", "Ubuntu 22.04 (jammy)", "2.35",
         "GLIBCXX_3.4.30", "4.0", "4.1.2", "3.10", UBUNTU, ("main", "universe"),
         aliases=("jammy",)),
    Base("ubuntu:20.04", "ubuntu", "focal", "Ubuntu 20.04 (focal)", "2.31",
         "GLIBCXX_3.4.28", "3.3.2", "4.0.3", "3.8", UBUNTU, ("main", "universe"),
         aliases=("focal",)),
)
"""Known bases, in the order ``hpcrun recipe`` prefers them when no base is given."""


def known_names() -> str:
    """The known bases as a list for a hint."""
    return ", ".join(b.name for b in BASES)


def find_base(reference: str) -> Optional[Base]:
    """The known base a reference names, or None.

    Accepted spellings: ``debian:bookworm``, ``debian:12``, ``debian:bookworm-slim``,
    ``debian:12.5``, ``docker://debian:bookworm``, ``docker.io/library/debian:bookworm``,
    ``ubuntu:jammy``; a reference pinned by digest must still name its tag
    (``debian:bookworm@sha256:...``).  The tag decides, never a guess from the digest.
    """
    ref = reference.strip()
    for scheme in ("docker://", "docker-daemon://"):
        if ref.startswith(scheme):
            ref = ref[len(scheme):]
    ref = ref.split("@", 1)[0]
    for registry in ("docker.io/library/", "index.docker.io/library/", "library/"):
        if ref.startswith(registry):
            ref = ref[len(registry):]
    name, sep, tag = ref.partition(":")
    if not sep or "/" in name:
        return None
    tag = re.sub(r"-(slim|[0-9]{8}(-slim)?)$", "", tag)
    for base in BASES:
        if base.distro != name:
            continue
        version = tag.split(".")[0] if base.distro == "debian" else tag
        if tag == base.codename or tag == base.name.split(":")[1] or version in base.aliases:
            return base
    return None
