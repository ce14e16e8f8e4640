"""Facts read from one ELF file (or a GNU ld script), as plain values."""

from __future__ import annotations

from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Tuple


@record
class VersionNeed:
    """Symbol versions required from one library (``.gnu.version_r``): file + version names."""

    file: str
    versions: Tuple[str, ...] = ()


@record
class ElfInfo:
    """The dynamic-linking facts of one ELF file.

    ``machine`` is the e_machine name (``EM_X86_64``); ``architecture`` its ``uname -m``
    spelling (``x86_64``).  ``version_defs`` are the version names the file defines
    (``.gnu.version_d``, without the base entry naming the file itself).
    """

    path: str
    elf_class: int  # 32 or 64
    machine: str
    architecture: str
    elf_type: str = ""  # ET_DYN, ET_EXEC ...
    soname: str = ""
    needed: Tuple[str, ...] = ()
    rpath: Tuple[str, ...] = ()
    runpath: Tuple[str, ...] = ()
    interpreter: str = ""
    version_defs: Tuple[str, ...] = ()
    version_needs: Tuple[VersionNeed, ...] = ()
    is_ld_script: bool = False  # a GNU ld script named like a library (``INPUT(libmpi.so.12)``)
    ld_script_inputs: Tuple[str, ...] = ()
