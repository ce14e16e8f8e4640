"""The plan: every decision hpcrun makes for one launch, as a plain frozen value.

A plan is built by pure functions from (profile, parsed command line, host facts, image
facts) and never starts a container or touches the network.  It can be printed, diffed,
serialised to JSON (``PLAN_VERSION``) and tested.  Every bind, variable and flag carries
the reason it is there.  Tuples keep it hashable and the order deterministic.
"""

from __future__ import annotations

from hpcrun.records import field, record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Tuple

PLAN_VERSION = 1

# Severities of diagnostics.
INFO = "info"
WARNING = "warning"
ERROR = "error"

# Verdicts of the resolver.
COMPATIBLE = "compatible"
COMPATIBLE_WITH_WARNINGS = "warnings"
INCOMPATIBLE = "incompatible"
NOT_CHECKED = "not-checked"


@record
class Diagnostic:
    """A finding: ``severity`` is info, warning or error; ``code`` is a stable identifier."""

    severity: str
    code: str
    message: str
    hint: str = ""
    source: str = ""  # what it is about: a profile key, a library path, the image


@record
class Bind:
    """A host path made visible in the container.

    ``reason`` says why: the profile key (``binds[2]``, ``mpi.libraries``) or the chain of
    libraries that needed it (``libmpi.so.12 -> libfabric.so.1``).
    """

    source: str
    destination: str
    read_only: bool = False
    reason: str = ""
    kind: str = "path"  # path | library | alias | config | filesystem | gpu | device


@record
class EnvVar:
    """One environment decision.

    ``scope`` is ``container`` (the application's environment) or ``launcher`` (the
    environment hpcrun execs the launcher with).  ``action`` is set, prepend, append or
    unset; ``source`` is user, profile, default, gpu, threads, wireup, resolver.
    """

    name: str
    value: str
    scope: str = "container"
    action: str = "set"
    source: str = "profile"
    reason: str = ""


@record
class Flag:
    """A runtime flag (``--nv``, ``--rocm``, ``--cleanenv``) with the reason it is used."""

    flag: str
    reason: str = ""


@record
class Setting:
    """Where one launch setting (site, image, runtime, gpu, threads, abi_policy, cleanenv)
    came from: the command line, a job file, ``$HPCRUN_SITE`` or the site profile."""

    name: str
    value: str
    origin: str


@record
class Stage:
    """A host directory of symlinks that must exist before the exec (Charliecloud).

    ch-run cannot create bind destinations, so hpcrun's container layout (``lib/``,
    ``lib/ucx/``, alias names ...) is built on the host as symlinks and bound at an empty
    ``/mnt/N`` of the image.  ``links`` are (path relative to ``directory``, symlink
    target inside the container); ``directory`` is named by a hash of ``links``.
    """

    directory: str
    links: Tuple[Tuple[str, str], ...] = ()


@record
class Invocation:
    """What is finally exec'd: argv and the changes to the launcher's environment.

    ``env_set`` pairs are applied on top of the caller's environment, ``env_unset`` names
    removed from it.  Rendering for Apptainer, Singularity or Charliecloud produces this.
    ``stage`` (Charliecloud only) is a directory the caller creates before the exec.
    """

    argv: Tuple[str, ...]
    env_set: Tuple[Tuple[str, str], ...] = ()
    env_unset: Tuple[str, ...] = ()
    stage: Optional[Stage] = None


@record
class Contribution:
    """What one decision stage (resolver, GPU, threads, wire-up) adds to a plan.

    ``library_path`` are container directories for ``LD_LIBRARY_PATH`` (in order),
    ``preload`` container paths for ``LD_PRELOAD``; ``wrapper`` is an argv inserted between
    the launcher and the runtime (a per-rank POSIX sh trampoline, never Python); ``verdict``
    is set by the resolver only.
    """

    binds: Tuple[Bind, ...] = ()
    env: Tuple[EnvVar, ...] = ()
    flags: Tuple[Flag, ...] = ()
    diagnostics: Tuple[Diagnostic, ...] = ()
    library_path: Tuple[str, ...] = ()
    preload: Tuple[str, ...] = ()
    wrapper: Tuple[str, ...] = ()
    verdict: str = ""


@record
class Request:
    """The parsed launch command line: what the user asked for.

    ``launcher`` is the launcher argv (name and its options) or () for none; ``image`` the
    image argument; ``command`` the application argv.  Overrides are "" / None when not
    given on the command line.
    """

    launcher: Tuple[str, ...]
    image: str
    command: Tuple[str, ...]
    site: str = ""
    runtime: str = ""  # --runtime apptainer|singularity|charliecloud
    gpu: str = ""  # --gpu nvidia|rocm, or "none" for --no-gpu
    threads: str = ""  # --threads N|auto|off
    abi_policy: str = ""  # --abi-policy major|full|strict
    cleanenv: bool = False  # --cleanenv / --containall requested for the runtime
    force: bool = False
    no_check: bool = False
    runtime_options: Tuple[str, ...] = ()  # extra options for the runtime's exec
    user_env: Tuple[Tuple[str, str], ...] = ()  # --env NAME=VALUE
    # MPMD (`mpiexec -n 1 IMAGE A : -n 1 IMAGE B`): the programs after the first, each as
    # (its launcher-local options, its command); all run from ``image``.
    mpmd: Tuple[Tuple[Tuple[str, ...], Tuple[str, ...]], ...] = ()


@record
class Plan:
    """Everything one launch will do, and why."""

    site: str
    runtime: str  # apptainer | singularity | charliecloud
    runtime_binary: str
    launcher: Tuple[str, ...]  # launcher argv including its options; () for no launcher
    runtime_args: Tuple[str, ...]  # runtime argv up to (not including) the image
    image: str
    command: Tuple[str, ...]  # the application's argv, byte for byte
    binds: Tuple[Bind, ...] = ()
    env: Tuple[EnvVar, ...] = ()
    flags: Tuple[Flag, ...] = ()
    diagnostics: Tuple[Diagnostic, ...] = ()
    verdict: str = NOT_CHECKED
    wrapper: Tuple[str, ...] = ()  # per-rank trampoline between launcher and runtime
    invocation: Invocation = field(default_factory=lambda: Invocation(argv=()))
    runtime_reason: str = ""  # why this runtime, and where its program was found
    # the further programs of an MPMD launch (see Request.mpmd), each wrapped like the first
    mpmd: Tuple[Tuple[Tuple[str, ...], Tuple[str, ...]], ...] = ()
    settings: Tuple[Setting, ...] = ()  # where each setting came from (with a job file)

    @property
    def errors(self) -> Tuple[Diagnostic, ...]:
        """Diagnostics of severity error."""
        return tuple(d for d in self.diagnostics if d.severity == ERROR)

    @property
    def warnings(self) -> Tuple[Diagnostic, ...]:
        """Diagnostics of severity warning."""
        return tuple(d for d in self.diagnostics if d.severity == WARNING)
