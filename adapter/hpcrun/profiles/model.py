"""The site profile format, defined once.

These dataclasses ARE the format: the loader derives its type, enum and unknown-key checks
from them, and the JSON Schema shipped as ``site-profiles/schema.json`` is generated from
them (``hpcrun.profiles.schema``).  Each field's metadata carries its documentation
(``doc``), allowed values (``choices``; for the ``launchers`` table: the allowed keys) and an
example.  Profiles are data, never code.  Globs (``*``, ``?``, ``[``) are allowed in
``[[libraries]]`` paths only; they are expanded on the host at launch time.

TOML layout (``schema = 1``)::

    schema = 1
    name = "zeus"
    description = "..."
    [runtime]            kind, path, options, reason
    [mpi]                family, implementation, version, libraries, library_dirs,
                         sonames, fortran, cxx, abi_policy, reason
    [[libraries]]        path, kind, reason        (run-time opened providers)
    [[binds]]            source, destination, read_only, optional, reason
    [[env]]              name, value, action, scope, when, reason
    [gpu]                vendor, libraries, reason
    [launchers.NAME]     options, reason           (NAME: srun, mpirun, mpiexec)
    [container]          library_path, keep_image_library_path, prefix, preload, reason
    [threads]            mode, variables, reason
    [wireup]             forward, reason
"""

from __future__ import annotations

from hpcrun.records import field, record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Tuple

SCHEMA_VERSION = 1


def spec(default: Any = None, *, doc: str, choices: Tuple[str, ...] = (), example: Any = None,
         factory: Any = None) -> Any:
    """A dataclass field carrying the documentation the loader and the JSON Schema use."""
    meta = {"doc": doc, "choices": choices, "example": example}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    if default is None:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


RUNTIME_KINDS = ("auto", "apptainer", "singularity", "charliecloud")
MPI_FAMILIES = ("mpich", "openmpi", "mpi-abi", "none")
ABI_POLICIES = ("major", "full", "strict")
GPU_VENDORS = ("auto", "nvidia", "rocm", "none")
ENV_ACTIONS = ("set", "prepend", "append", "unset")
ENV_SCOPES = ("container", "launcher", "both")
ENV_WHEN = ("always", "gpu")
LIBRARY_KINDS = ("provider", "pmi", "dependency", "other")
THREAD_MODES = ("auto", "off")
LAUNCHER_NAMES = ("srun", "mpirun", "mpiexec")


@record
class Runtime:
    """The container runtime of the site."""

    kind: str = spec("auto", doc="Container runtime; auto takes the first installed of "
                     "apptainer, singularity, ch-run (Charliecloud).",
                     choices=RUNTIME_KINDS, example="apptainer")
    path: str = spec("", doc="Explicit path of the runtime binary (default: found on PATH).",
                     example="/usr/bin/apptainer")
    options: Tuple[str, ...] = spec(factory=tuple, doc="Extra options for `exec`.",
                                    example=["--cleanenv"])
    reason: str = spec("", doc="Why (free text for people).",
                       example="the site provides Apptainer 1.3")


@record
class Mpi:
    """The host MPI that serves containers."""

    family: str = spec("mpich", doc="ABI family of the host MPI.", choices=MPI_FAMILIES,
                       example="mpich")
    implementation: str = spec("", doc="Implementation name, e.g. Intel MPI, Cray MPICH, MPICH, "
                               "Open MPI.", example="Intel MPI")
    version: str = spec("", doc="Version of the host MPI (for the ABI version policy).",
                        example="17.0.5")
    libraries: Tuple[str, ...] = spec(factory=tuple, doc="MPI library files (absolute host paths).",
                                      example=["/opt/mpi/lib/libmpi.so.12"])
    library_dirs: Tuple[str, ...] = spec(factory=tuple, doc="Directories holding the MPI "
                                         "libraries; searched for the sonames.",
                                         example=["/opt/mpi/lib"])
    sonames: Tuple[str, ...] = spec(factory=tuple, doc="C library sonames this MPI provides.",
                                    example=["libmpi.so.12"])
    fortran: Tuple[str, ...] = spec(factory=tuple, doc="Fortran binding sonames.",
                                    example=["libmpifort.so.12"])
    cxx: Tuple[str, ...] = spec(factory=tuple, doc="C++ binding sonames.",
                                example=["libmpicxx.so.12"])
    abi_policy: str = spec("full", doc="Version rule between host and container MPI (as Sarus): "
                           "major, full (host minor >= container minor) or strict.",
                           choices=ABI_POLICIES, example="full")
    reason: str = spec("", doc="Why (free text for people).",
                       example="Intel MPI 5.0 and later keep the MPICH ABI")


@record
class Library:
    """A library the MPI stack opens at run time (dlopen): never found through DT_NEEDED."""

    path: str = spec(doc="Absolute host path of the library file (or a glob).",
                     example="/usr/lib64/libmlx5.so.1")
    kind: str = spec("provider", doc="What it is.", choices=LIBRARY_KINDS, example="provider")
    reason: str = spec("", doc="Why it is needed.", example="mlx5 verbs provider for InfiniBand")


@record
class BindSpec:
    """A host path (file system, config file, socket, directory) to bind into the container."""

    source: str = spec(doc="Absolute host path.", example="/scratch")
    destination: str = spec("", doc="Path in the container (default: same as source).",
                            example="/scratch")
    read_only: bool = spec(False, doc="Bind read-only.", example=False)
    optional: bool = spec(False, doc="Skip silently (info only) when absent on the host.",
                          example=False)
    reason: str = spec("", doc="Why it is bound.", example="Lustre scratch file system")


@record
class EnvSpec:
    """An environment variable to set, prepend to, append to or unset."""

    name: str = spec(doc="Variable name.", example="I_MPI_PMI_LIBRARY")
    value: str = spec("", doc="Value (for prepend/append: the part to add).",
                      example="/usr/lib64/libpmi2.so")
    action: str = spec("set", doc="What to do.", choices=ENV_ACTIONS, example="set")
    scope: str = spec("container", doc="Where: inside the container, for the launcher, or both.",
                      choices=ENV_SCOPES, example="container")
    when: str = spec("always", doc="Only when a GPU flag is active (gpu) or always.",
                     choices=ENV_WHEN, example="always")
    reason: str = spec("", doc="Why it is set.",
                       example="Intel MPI under srun needs Slurm's PMI-2 library")


@record
class Gpu:
    """GPU support of the site."""

    vendor: str = spec("auto", doc="GPU vendor of the nodes; auto probes the node and the image.",
                       choices=GPU_VENDORS, example="nvidia")
    libraries: Tuple[str, ...] = spec(factory=tuple, doc="GPU-aware MPI libraries (GTL) bound "
                                      "and preloaded only when a GPU flag is active.",
                                      example=["/opt/cray/pe/mpich/8.1.32/gtl/lib/libmpi_gtl_hsa.so.0"])
    reason: str = spec("", doc="Why (free text for people).",
                       example="nodes carry NVIDIA A100 GPUs")


@record
class LauncherDefaults:
    """Options added to a launcher's command line when the user did not give them."""

    options: Tuple[str, ...] = spec(factory=tuple, doc="Launcher options.", example=["--mpi=pmi2"])
    reason: str = spec("", doc="Why.", example="Intel MPI 17 talks PMI-2 to Slurm")


@record
class Container:
    """How host libraries appear inside the container."""

    library_path: Tuple[str, ...] = spec(factory=tuple, doc="Container directories put first in "
                                         "LD_LIBRARY_PATH (after the private host-library prefix).",
                                         example=["/pawsey/intel/17.0.5/compilers_and_libraries/"
                                                  "linux/mpi/intel64/lib"])
    keep_image_library_path: bool = spec(True, doc="End LD_LIBRARY_PATH with the image's own "
                                         "value (a literal $LD_LIBRARY_PATH).", example=True)
    prefix: str = spec("/.hpcrun", doc="Private directory where host library files are made "
                       "visible (never over the container's /lib or /usr/lib).",
                       example="/.hpcrun")
    preload: Tuple[str, ...] = spec(factory=tuple, doc="Host libraries to LD_PRELOAD inside.",
                                    example=["/opt/xpmem/lib64/libxpmem.so.0"])
    reason: str = spec("", doc="Why (free text for people).",
                       example="Intel MPI lives in the bound /pawsey tree")


@record
class Threads:
    """Thread-count variables set from the job's allocation."""

    mode: str = spec("auto", doc="auto: set from the allocation when the user did not; off.",
                     choices=THREAD_MODES, example="auto")
    variables: Tuple[str, ...] = spec(("OMP_NUM_THREADS",), doc="Variables to set.",
                                      example=["OMP_NUM_THREADS", "MKL_NUM_THREADS"])
    reason: str = spec("", doc="Why (free text for people).",
                       example="one rank per core: no oversubscription")


@record
class Wireup:
    """Per-rank variables that must reach the application even under --cleanenv."""

    forward: Tuple[str, ...] = spec(factory=tuple, doc="Extra variable name patterns (shell "
                                    "globs) forwarded per rank, beyond PMI_*, PMIX_*, SLURM_*, "
                                    "OMPI_*, PALS_*.", example=["I_MPI_*", "FI_*", "UCX_*"])
    reason: str = spec("", doc="Why (free text for people).",
                       example="Intel MPI settings chosen at launch must reach every rank")


@record
class Profile:
    """A site profile: everything hpcrun needs to know about one cluster."""

    schema: int = spec(doc="Format version; must be 1.", example=1)
    name: str = spec(doc="Short name used with --site.", example="zeus")
    description: str = spec("", doc="One line shown by `hpcrun site list`.",
                            example="Pawsey Zeus: Intel MPI 17.0.5, InfiniBand")
    runtime: Runtime = spec(factory=Runtime, doc="Container runtime.")
    mpi: Optional[Mpi] = spec(factory=lambda: None, doc="Host MPI; absent for no MPI binding.")
    libraries: Tuple[Library, ...] = spec(factory=tuple, doc="Run-time opened libraries.")
    binds: Tuple[BindSpec, ...] = spec(factory=tuple, doc="Paths to bind.")
    env: Tuple[EnvSpec, ...] = spec(factory=tuple, doc="Environment variables.")
    gpu: Gpu = spec(factory=Gpu, doc="GPU support.")
    launchers: Tuple[Tuple[str, LauncherDefaults], ...] = spec(
        factory=tuple, doc="Per-launcher defaults, keyed by launcher name (srun, mpirun, mpiexec).",
        choices=LAUNCHER_NAMES, example={"srun": {"options": ["--mpi=pmi2"]}})
    container: Container = spec(
        factory=Container, doc="Library visibility inside the container.")
    threads: Threads = spec(factory=Threads, doc="Thread-count variables.")
    wireup: Wireup = spec(factory=Wireup, doc="Per-rank variables kept under --cleanenv.")
    source: str = field(default="", compare=False, metadata={"internal": True})

    def launcher_defaults(self, name: str) -> Optional[LauncherDefaults]:
        """Defaults for a launcher by its base name (srun, mpirun, mpiexec)."""
        for key, value in self.launchers:
            if key == name:
                return value
        return None


RECORDS = {cls.__name__: cls for cls in (
    Runtime, Mpi, Library, BindSpec, EnvSpec, Gpu, LauncherDefaults, Container, Threads,
    Wireup, Profile)}
"""Every record class of the format, by name (the parsed-profile cache decodes with it)."""
