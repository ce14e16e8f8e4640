"""Facts about a container image, as the resolver and the plan consume them.

Frozen, JSON-serialisable (``FACTS_VERSION``), produced by ``hpcrun.image.inspect`` from
the image file alone.  Paths are paths inside the image.
"""

from __future__ import annotations

from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Tuple

# 2: the image environment evaluates `[ -n "${X:-}" ]` tests (Apptainer's own env scripts);
# facts cached by version 1 may hold a wrong PATH.
FACTS_VERSION = 2


@record
class Libc:
    """The image's C library: ``kind`` is glibc, musl or unknown; ``version`` like ``2.36``.

    For glibc ``version`` is the release, read from the library itself (its banner "GNU C
    Library ... release version 2.31" or its file name ``libc-2.31.so``);
    ``symbol_version`` is the newest ``GLIBC_x`` symbol version it defines, which lags the
    release when a release added no symbols (Debian 11's glibc 2.31 defines up to
    GLIBC_2.30).  Verdicts about symbol versions quote both.
    """

    kind: str = "unknown"
    version: str = ""
    path: str = ""
    symbol_version: str = ""


@record
class MpiLibrary:
    """One MPI library found in the image (or the host).

    ``family`` is mpich, openmpi, mpi-abi or unknown; ``role`` is c, fortran, cxx or abi;
    ``implementation`` is MPICH, Intel MPI, Cray MPICH, MVAPICH2, Open MPI ...;
    ``version`` is numeric (``4.0.2``); ``version_string`` what MPI_Get_library_version
    would print, when it could be read statically.
    """

    soname: str
    path: str
    real_path: str = ""
    family: str = "unknown"
    role: str = "c"
    implementation: str = ""
    version: str = ""
    version_string: str = ""


@record
class VersionDefs:
    """The symbol versions a library defines (``.gnu.version_d``), e.g. libc's GLIBC_2.34."""

    soname: str
    path: str
    versions: Tuple[str, ...] = ()


@record
class AppFacts:
    """What the application command resolves to in the image.

    ``kind``: elf, python, script, missing or unknown.  For ``python`` the interpreter is in
    ``interpreter`` and the MPI extension modules it would load in ``extensions``.
    ``mpi_family`` is what the binary's symbols say (openmpi, mpich, mpi-abi or empty);
    ``static_mpi`` is true when MPI is linked in statically.
    """

    command: Tuple[str, ...]
    path: str = ""
    kind: str = "unknown"
    needed: Tuple[str, ...] = ()
    mpi_needed: Tuple[str, ...] = ()  # the subset of needed sonames that are MPI libraries
    mpi_family: str = ""
    static_mpi: bool = False
    interpreter: str = ""
    extensions: Tuple[AppFacts, ...] = ()
    version_needs: Tuple[Tuple[str, str], ...] = ()  # (soname, version) pairs it requires
    warnings: Tuple[str, ...] = ()
    # Undefined, non-weak dynamic symbols the app expects from its MPI library (MPI_*, PMPI_*,
    # MPII_*, ompi_* ...; see hpcrun.resolve.verdict.mpi_symbols): the resolver checks the host MPI
    # defines each.  Empty when unknown.
    mpi_symbols: Tuple[str, ...] = ()


@record
class ImageFacts:
    """Everything hpcrun knows about an image before launch."""

    source: str
    kind: str  # sif | squashfs | ext3 | sandbox
    architecture: str = ""  # uname -m spelling: x86_64, aarch64, ppc64le, i686 ...
    libc: Libc = Libc()
    library_dirs: Tuple[str, ...] = ()  # from the image's ld.so.cache / ld.so.conf
    ld_cache: Tuple[Tuple[str, str], ...] = ()  # (soname, path) from /etc/ld.so.cache
    mpi: Tuple[MpiLibrary, ...] = ()
    version_defs: Tuple[VersionDefs, ...] = ()  # libc, libm, libstdc++, libgfortran, libgcc_s ...
    cuda_runtime: str = ""  # libcudart version, e.g. "12.2"
    rocm: str = ""  # ROCm/HIP version or "present"
    environment: Tuple[Tuple[str, str], ...] = ()
    labels: Tuple[Tuple[str, str], ...] = ()
    app: Optional[AppFacts] = None
    warnings: Tuple[str, ...] = ()

    def env(self, name: str, default: str = "") -> str:
        """The image's value of an environment variable."""
        for key, value in self.environment:
            if key == name:
                return value
        return default


RECORDS = {cls.__name__: cls for cls in (Libc, MpiLibrary, VersionDefs, AppFacts, ImageFacts)}
"""Every record class an ImageFacts can hold, by name (the facts cache decodes with it)."""
