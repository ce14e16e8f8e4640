"""MPI ABI families and the names their libraries go by, evaluated from data.

The rules live in ``hpcrun/data/mpi-families.json`` with their reasons (schema beside it;
the MPI-5 standard ABI's details in ``mpi-abi.json``, :mod:`hpcrun.resolve.abi`):

* MPICH ABI: ``libmpi.so.12`` (Fortran ``libmpifort.so.12``, C++ ``libmpicxx.so.12``); Debian
  and Ubuntu spell the same ABI ``libmpich.so.12`` / ``libmpichfort.so.12`` /
  ``libmpichcxx.so.12``; Cray adds ``libmpi_cray.so.12``.
* Open MPI: ``libmpi.so.40`` (3.x to 5.x), ``.20`` (2.x), ``.12`` (1.10: the MPICH *name*
  but not the MPICH ABI), ``.1``/``.0`` (older), with ``libmpi_mpifh``, ``libmpi_usempif08``
  and ``libmpi_cxx``.
* The MPI-5 standard ABI: ``libmpi_abi.so.1``, which any implementation shipping it serves.

Everything here is a pure function of names and that data: which family and role a soname
belongs to, and which host library can stand in for a soname the application needs.
"""

from __future__ import annotations

import functools
import os
import re

from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

MPICH = "mpich"
OPENMPI = "openmpi"
MPI_ABI = "mpi-abi"
UNKNOWN = "unknown"

C = "c"
FORTRAN = "fortran"
CXX = "cxx"
ABI = "abi"

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                    "mpi-families.json")

_SONAME = re.compile(r"^(?P<stem>.+?)\.so(?:\.(?P<version>\d+(?:\.\d+)*))?$")


@functools.cache
def rules() -> Dict[str, Any]:
    """The parsed ``mpi-families.json`` (read once, at the first question about a name)."""
    import json

    with open(DATA, encoding="utf-8") as stream:
        data: Dict[str, Any] = json.load(stream)
    return data


@functools.cache
def _stems() -> Dict[str, Tuple[str, str]]:
    """Library stem -> (family, role), for the names that say their family by themselves."""
    out: Dict[str, Tuple[str, str]] = {}
    for entry in rules()["families"]:
        for stem, role in entry["stems"].items():
            out[stem] = (entry["family"], role)
    return out


def _family(name: str) -> Dict[str, Any]:
    for entry in rules()["families"]:
        if entry["family"] == name:
            return entry
    return {}


def canonical(family: str, role: str) -> str:
    """The soname upstream builds of ``family`` link against for ``role`` ("" if none)."""
    found: str = _family(family).get("canonical", {}).get(role, "")
    return found


@record
class SonameInfo:
    """What a library name says: its stem (``libmpich``), major and full numeric version."""

    name: str
    stem: str
    major: str = ""
    version: Tuple[int, ...] = ()


def parse_soname(name: str) -> SonameInfo:
    """Split ``libmpich.so.12.2.2`` into stem ``libmpich``, major ``12``, version (12, 2, 2).

    Works on sonames and on real file names (``.so.MAJOR.MINOR.PATCH``, the Sarus signal).
    A name that is not ``*.so[.N...]`` keeps its whole text as the stem.
    """
    base = name.rsplit("/", 1)[-1]
    match = _SONAME.match(base)
    if not match:
        return SonameInfo(base, base)
    version = match.group("version") or ""
    numbers = tuple(int(v) for v in version.split(".")) if version else ()
    return SonameInfo(base, match.group("stem"), version.split(".")[0] if version else "", numbers)


def soname_role(name: str) -> str:
    """The role of an MPI library name: c, fortran, cxx, abi, or "" when it is not MPI."""
    info = parse_soname(name)
    found = _stems().get(info.stem)
    if found is not None:
        return found[1]
    if info.stem == "libmpi":
        return C
    return ""


def is_mpi_name(name: str) -> bool:
    """Whether a library name is one of the MPI libraries an application links against."""
    return soname_role(name) != ""


def soname_family(name: str, hint: str = "") -> str:
    """The ABI family a library name belongs to (mpich, openmpi, mpi-abi, unknown).

    ``libmpi.so.12`` is ambiguous (MPICH ABI, or Open MPI 1.10; the data's ``ambiguous``
    table): the ``hint`` (a family known from symbols or from the site profile) decides,
    and without one it is the default, MPICH.  Unknown names give ``unknown``.
    """
    info = parse_soname(name)
    found = _stems().get(info.stem)
    if found is not None:
        return found[0]
    if info.stem == "libmpi" and info.major:
        ambiguous = rules()["ambiguous"].get(f"libmpi.so.{info.major}")
        if ambiguous is not None:
            return hint if hint in ambiguous["others"] else str(ambiguous["default"])
        for entry in rules()["families"]:
            if info.major in entry["libmpi_majors"]:
                return str(entry["family"])
    return UNKNOWN


def family_label(family: str) -> str:
    """A family as people say it: "MPICH ABI", "Open MPI", "MPI-5 standard ABI"."""
    label: str = _family(family).get("label", "unknown MPI family")
    return label


@record
class Provision:
    """How a needed MPI soname is served by a host library.

    ``needed`` is what the application asks for; ``host_soname`` the host library's own
    soname; ``alias`` is true when the names differ and a link under ``needed`` is required.
    """

    needed: str
    host_soname: str
    host_path: str
    alias: bool
    reason: str


def find_provider(needed: str, family: str, host: Sequence[Tuple[str, str, str]]
                  ) -> Optional[Provision]:
    """Which host MPI library serves the soname ``needed`` of an application of ``family``.

    ``host`` lists (soname, path, family) of the host MPI libraries.  An exact soname match
    of the same family wins; otherwise a host library of the same family, role and soname
    major serves under an alias (Debian's ``libmpich.so.12`` for ``libmpi.so.12``, Intel
    MPI's ``libmpifort.so.12`` for ``libmpichfort.so.12``), as the family's ``serves`` rule
    says; ``libmpi_abi.so.1`` (rule ``same-soname``) is served only by a host library with
    that soname.  None when nothing fits.
    """
    role = soname_role(needed)
    major = parse_soname(needed).major
    if not role:
        return None
    for soname, path, host_family in host:
        if soname == needed and host_family == family:
            return Provision(needed, soname, path, False, f"host MPI provides {needed}")
    if _family(family).get("serves", {}).get("rule") != "same-role-and-major":
        return None  # same-soname (the standard ABI), or a family the data does not know
    for soname, path, host_family in host:
        if host_family != family or soname_role(soname) != role:
            continue
        if parse_soname(soname).major != major:
            continue
        return Provision(
            needed, soname, path, True,
            f"app needs {needed}; host {family_label(family)} library provides it as {soname}")
    return None


def family_of_names(names: Iterable[str], hint: str = "") -> str:
    """The family a set of MPI sonames points to, or unknown when they disagree or are none."""
    families = {soname_family(n, hint) for n in names if is_mpi_name(n)}
    families.discard(UNKNOWN)
    if len(families) == 1:
        return families.pop()
    if families == {MPICH, MPI_ABI} or families == {OPENMPI, MPI_ABI}:
        return (families - {MPI_ABI}).pop()
    return UNKNOWN
