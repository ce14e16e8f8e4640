"""The MPI-5 standard ABI's rules, kept as data (``hpcrun/data/mpi-abi.json``) with reasons.

The data says which sonames make up the family, that only a host library of the same
soname (ABI version) serves one, which implementations ship it, and where implementations'
``mpi_abi.h`` headers disagree.  The small functions here evaluate it: the sonames and
roles of the family, and the caveat for an application that may run on another
implementation than the one whose header it was built with.  Pure; the file is read once.
"""

from __future__ import annotations

import functools
import os

from hpcrun.plan.model import INFO, WARNING, Diagnostic

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                    "mpi-abi.json")
HEADER = "mpi-abi-header"


@functools.cache
def rules() -> Dict[str, Any]:
    """The parsed ``mpi-abi.json`` (shipped as package data; checked by its schema in tests)."""
    import json

    with open(DATA, encoding="utf-8") as stream:
        data: Dict[str, Any] = json.load(stream)
    return data


def sonames() -> Dict[str, str]:
    """soname -> role (``abi``, ``fortran``) of the family's libraries."""
    return {entry["soname"]: entry["role"] for entry in rules()["sonames"]}


def implementations_text() -> str:
    """``MPICH >= 4.3, Intel MPI >= 2021.14, ...``: who ships the standard ABI."""
    return ", ".join(f"{i['name']} >= {i['since']}" for i in rules()["implementations"])


def differing_constants() -> Tuple[str, ...]:
    """The constants on which the implementations' ``mpi_abi.h`` headers disagree."""
    return tuple(c["name"] for c in rules()["header_differences"]["constants"])


def _side(implementation: str) -> str:
    """Which header values an implementation uses: the outlier's name, or "" for the rest."""
    for name in rules()["header_differences"]["implementations"]:
        if name.lower() in implementation.lower():
            return name
    return ""


def functions_taking_constants(app_symbols: Sequence[str]) -> List[str]:
    """The app's calls (MPI_ or PMPI_ names) through which those constants reach the library."""
    names = set(rules()["header_differences"]["functions"]["names"])
    used = {s[1:] if s.startswith("PMPI_") else s for s in app_symbols}
    return sorted(used & names)


def header_caveat(host_implementation: str, container_implementation: str,
                  app_symbols: Sequence[str], source: str = "mpi") -> Optional[Diagnostic]:
    """What the verdict must say about the header an MPI-5 ABI application was built with.

    ``container_implementation``: the implementation of the image's own ``libmpi_abi``
    ("" when the image has none: then the header is not knowable from the app's ELF).
    ``app_symbols``: the app's undefined MPI symbols (empty when unknown).  None when the
    image's library is of the host's side; an info when the app calls none of the
    functions that take the differing constants; a warning naming them otherwise.
    """
    constants = ", ".join(differing_constants())
    host_side = _side(host_implementation)
    sides = rules()["header_differences"]["implementations"]
    if container_implementation:
        if _side(container_implementation) == host_side:
            return None
        built = (f"the image's own libmpi_abi is {container_implementation}'s, so the app was "
                 f"probably built with its mpi_abi.h; the host's is "
                 f"{host_implementation or 'another implementation'}'s")
    else:
        built = ("which implementation's mpi_abi.h the app was built with is not knowable from "
                 "its ELF (the constants are compiled in as numbers)")
    between = f"{' / '.join(sides)} and the others (MPICH, the MPI Forum's reference header)"
    used = functions_taking_constants(app_symbols)
    if app_symbols and not used:
        return Diagnostic(
            INFO, HEADER,
            f"{built}; the headers of {between} disagree on {constants}, but the app calls "
            "none of the functions that take them: any implementation serves it", source=source)
    calls = (f"the app calls {', '.join(used)}, which take them" if used
             else "the app's MPI calls are unknown")
    return Diagnostic(
        WARNING, HEADER,
        f"{built}; a swap across implementations ({between}) is only safe for programs that "
        f"avoid {constants}, on which their headers disagree; {calls}",
        hint="run it with the implementation whose mpi_abi.h it was built with, or make sure "
        "it does not use those constants", source=source)
