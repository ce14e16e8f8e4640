"""Plan -> what is exec'd (:class:`~hpcrun.plan.model.Invocation`), per container runtime.

One small table says how Apptainer and Singularity differ (binary, variable prefixes, bind
variable); Charliecloud's ``ch-run`` takes everything as argv instead.

Apptainer / Singularity
    Binds go into ``APPTAINER_BINDPATH`` / ``SINGULARITY_BINDPATH`` as comma-separated
    ``src[:dst[:ro]]``; a backslash escapes ``,`` and ``:`` in a path.  A path with a
    control character (newline, tab, ...) or a backslash cannot be written there: error.
    A bind path the caller already set (a site module) is kept, ours are appended, except
    the destinations it already binds (entries compared parsed, escapes honoured; a note
    when its source for one differs).

    Container variables go into ``APPTAINERENV_NAME`` / ``SINGULARITYENV_NAME``.  Apptainer
    (>= 1.0) and SingularityCE (>= 3.10) write them into a script the container's shell
    sources as ``export NAME="VALUE"`` with only ``"`` escaped, so ``$``, backticks and
    backslashes in VALUE are evaluated inside the container.  hpcrun's values are literal:
    we escape ``\\``, ``$`` and backtick with a backslash.  The one intended evaluation is
    ``prepend``/``append``: they refer to the container's own value with a literal
    ``$NAME`` (``/.hpcrun/lib:/opt/x/lib:$LD_LIBRARY_PATH``), which is how Pawsey's modules
    keep the image's library path.  Legacy Singularity 3.x (Go ``%q`` quoting) cannot carry
    such characters faithfully: a warning.  A container ``unset`` cannot be expressed: the
    variable is set empty, with a warning.

Charliecloud (``ch-run``)
    ``-b SRC:DST`` per bind, ``--env-no-expand`` then ``--set-env=NAME=VALUE`` (literal
    values), the image, ``--``, the command.  ch-run does not evaluate ``$NAME``: prepend and
    append are computed from the image's value (``ImageFacts.environment``).  ch-run cannot
    create bind destinations and the image is read-only: the binds under hpcrun's prefix
    become a host stage directory of symlinks bound at an empty ``/mnt/N``
    (:mod:`hpcrun.render.chstage`, created by the caller before the exec); for the other
    binds a warning lists the destinations the image must already have.  Under a launcher
    the ranks of a node are joined in one container (``--join``, see :func:`join_peers`).
"""

from __future__ import annotations

from hpcrun.plan.model import (
    ERROR,
    INFO,
    WARNING,
    Bind,
    Diagnostic,
    EnvVar,
    Invocation,
    Plan,
    Stage,
)
from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple


@record
class RuntimeSyntax:
    """How one runtime spells things."""

    kind: str
    binary: str
    var_prefix: str  # the runtime's own settings: APPTAINER_
    env_prefix: str  # variables for the container: APPTAINERENV_
    bind_var: str


RUNTIMES: Dict[str, RuntimeSyntax] = {
    "apptainer": RuntimeSyntax("apptainer", "apptainer", "APPTAINER_", "APPTAINERENV_",
                               "APPTAINER_BINDPATH"),
    "singularity": RuntimeSyntax("singularity", "singularity", "SINGULARITY_",
                                 "SINGULARITYENV_", "SINGULARITY_BINDPATH"),
    "charliecloud": RuntimeSyntax("charliecloud", "ch-run", "CH_RUN_", "", ""),
}


class Inexpressible(ValueError):
    """A path or value the runtime's syntax cannot carry."""


_CONTROL = frozenset(chr(c) for c in (*range(32), 127))


def _has_control(text: str) -> bool:
    return not _CONTROL.isdisjoint(text)  # a set test: this runs for every bind path


def bind_spec(bind: Bind) -> str:
    """One ``src[:dst[:ro]]`` item of a bind-path variable, ``,`` and ``:`` escaped."""
    for path in (bind.source, bind.destination):
        if _has_control(path) or "\\" in path or not path:
            raise Inexpressible(f"bind path {path!r} contains a control character or a "
                                "backslash: the bind-path syntax cannot express it")
    source = bind.source.replace(",", "\\,").replace(":", "\\:")
    destination = bind.destination.replace(",", "\\,").replace(":", "\\:")
    if bind.read_only:
        return f"{source}:{destination}:ro"
    if bind.destination == bind.source:
        return source
    return f"{source}:{destination}"


def _split_unescaped(text: str, separator: str) -> List[str]:
    """Split at each ``separator`` not escaped by a backslash; the pieces keep their escapes."""
    pieces: List[str] = []
    current: List[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == separator:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    pieces.append("".join(current))
    return pieces


def _unescape(text: str) -> str:
    out: List[str] = []
    chars = iter(text)
    for char in chars:
        out.append(next(chars, char) if char == "\\" else char)
    return "".join(out)


def parse_bind_path(value: str) -> List[Tuple[str, ...]]:
    """Split a bind-path value into entries of fields: unescaped ``,`` separates entries,
    unescaped ``:`` fields; a backslash makes the next character literal.  Empty entries
    are dropped."""
    return [tuple(_unescape(f) for f in _split_unescaped(entry, ":"))
            for entry in _split_unescaped(value, ",") if entry]


def _bind_key(fields: Tuple[str, ...]) -> Tuple[str, str]:
    """(source, destination) of a parsed bind-path entry; the destination defaults to the
    source.  Options (``ro``) do not make a second bind of the same pair useful."""
    source = fields[0]
    destination = fields[1] if len(fields) > 1 and fields[1] else source
    return source.rstrip("/") or "/", destination.rstrip("/") or "/"


def _merge_bind_path(existing: str, specs: List[str], variable: str,
                     diags: List[Diagnostic]) -> List[str]:
    """Our specs minus the destinations the caller's bind path already binds.

    ``hpcrun module`` / ``hpcrun env`` set the site's bind path; a launch of the same site
    would repeat it.  The caller's entries win and stay byte for byte.  Sources are compared
    as text (rendering reads no file): the module names a library by its link
    (``libmpich.so.12``), a launch by its file (``libmpich.so.12.2.2``), so a destination
    bound from another source is skipped too, with one note.
    """
    present: Dict[str, str] = {}
    for entry in parse_bind_path(existing):
        source, destination = _bind_key(entry)
        present.setdefault(destination, source)
    kept: List[str] = []
    differing: List[Tuple[str, str, str]] = []
    for spec in specs:
        source, destination = _bind_key(parse_bind_path(spec)[0])
        if destination not in present:
            kept.append(spec)
        elif present[destination] != source:
            differing.append((destination, present[destination], source))
    if differing:
        destination, theirs, ours = differing[0]
        more = f" and {len(differing) - 1} more" if len(differing) > 1 else ""
        diags.append(Diagnostic(INFO, "bindpath-already-bound", f"{variable} (set before "
                                f"hpcrun ran, e.g. by a site module) already binds "
                                f"{destination}{more}: kept ({theirs} rather than {ours})",
                                f"unset {variable} to bind exactly what this plan lists",
                                source=variable))
    return kept


# Characters the container's shell evaluates in an APPTAINERENV_ value (Apptainer escapes
# ``"`` itself).  Backslash comes first: the escapes added for the others must not be
# doubled.  The wire-up trampoline (``hpcrun.render.wireup``) applies the same rule in sh.
EVALUATED_CHARS = ("\\", "$", "`")


def escape_container_value(value: str) -> str:
    """Escape a literal value for APPTAINERENV_*: the container's shell evaluates it."""
    for char in EVALUATED_CHARS:
        value = value.replace(char, "\\" + char)
    return value


def _same(value: str) -> str:
    return value


def _fold(entries: Sequence[EnvVar], base: Optional[str],
          quote: Callable[[str], str] = _same) -> Optional[str]:
    """Apply set/prepend/append/unset in order to ``base`` (None: unset)."""
    current = base
    for entry in entries:
        value = quote(entry.value)
        if entry.action == "set":
            current = value
        elif entry.action == "prepend":
            current = value + (":" + current if current else "") if value else current
        elif entry.action == "append":
            current = (current + ":" if current else "") + value if value else current
        elif entry.action == "unset":
            current = None
    return current


def _grouped(env: Sequence[EnvVar], scope: str) -> List[Tuple[str, List[EnvVar]]]:
    groups: Dict[str, List[EnvVar]] = {}
    for entry in env:
        if entry.scope == scope:
            groups.setdefault(entry.name, []).append(entry)
    return list(groups.items())


def launcher_env(plan: Plan, environ: Mapping[str, str]
                 ) -> Tuple[List[Tuple[str, str]], List[str]]:
    """Launcher-scope variables folded onto the caller's environment: (set, unset)."""
    env_set: List[Tuple[str, str]] = []
    env_unset: List[str] = []
    for name, entries in _grouped(plan.env, "launcher"):
        value = _fold(entries, environ.get(name))
        if value is None:
            env_unset.append(name)
        else:
            env_set.append((name, value))
    return env_set, env_unset


def _apptainer(plan: Plan, syntax: RuntimeSyntax, environ: Mapping[str, str], flavour: str,
               version: str, diags: List[Diagnostic]) -> Tuple[List[str], List[Tuple[str, str]]]:
    env_set: List[Tuple[str, str]] = []
    specs: List[str] = []
    for bind in plan.binds:
        try:
            specs.append(bind_spec(bind))
        except Inexpressible as error:
            diags.append(Diagnostic(ERROR, "bind-inexpressible", str(error),
                                    "rename the path or bind a parent directory",
                                    bind.reason.split(":")[0]))
    existing = environ.get(syntax.bind_var, "")
    if existing:
        specs = _merge_bind_path(existing, specs, syntax.bind_var, diags)
    if specs:
        value = ",".join(specs)
        env_set.append((syntax.bind_var, existing + "," + value if existing else value))
    legacy = flavour == "singularity" and _older_than(version, (3, 10))
    for name, entries in _grouped(plan.env, "container"):
        if any(e.action == "unset" for e in entries):
            diags.append(Diagnostic(WARNING, "container-unset", f"{syntax.kind} cannot unset "
                                    f"{name} inside the container: it is set empty instead",
                                    source=name))
        if legacy and any(set(e.value) & set('\\$`"\n') for e in entries):
            diags.append(Diagnostic(WARNING, "legacy-env-quoting", f"{name}: Singularity "
                                    f"{version} quotes {syntax.env_prefix} values with Go %q: "
                                    "backslashes, $, ` and newlines may not arrive unchanged",
                                    "upgrade to SingularityCE >= 3.10 or Apptainer",
                                    source=name))
        folded = _fold(entries, "$" + name, escape_container_value)
        env_set.append((syntax.env_prefix + name, folded or ""))
    argv = [plan.runtime_binary, *plan.runtime_args, plan.image, *plan.command]
    return argv, env_set


def _older_than(version: str, limit: Tuple[int, int]) -> bool:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return bool(version) and tuple(parts) < limit


def _charliecloud(plan: Plan, image_env: Optional[Sequence[Tuple[str, str]]],
                  diags: List[Diagnostic], environ: Mapping[str, str], prefix: str,
                  mount_slots: Optional[Sequence[str]]) -> Tuple[List[str], Optional[Stage]]:
    from hpcrun.render.chstage import layout

    staged = layout(plan.binds, prefix, mount_slots, environ, plan.image)
    diags.extend(staged.diagnostics)
    argv = [plan.runtime_binary, *plan.runtime_args]
    pairs = [(b.source, b.destination, b.reason.split(":")[0]) for b in staged.other]
    pairs += [(source, destination, "runtime") for source, destination in staged.mounts]
    for source, destination, key in pairs:
        bad = [p for p in (source, destination) if ":" in p or _has_control(p) or not p]
        if bad:
            diags.append(Diagnostic(ERROR, "bind-inexpressible", f"ch-run -b cannot express "
                                    f"the path {bad[0]!r} (':' or control character)",
                                    source=key))
            continue
        argv += ["-b", f"{source}:{destination}"]
    if staged.other:
        diags.append(Diagnostic(WARNING, "ch-run-bind-destinations", "ch-run cannot create "
                                "bind destinations; the image must already contain: "
                                + ", ".join(dict.fromkeys(b.destination for b in staged.other)),
                                "create those directories/files in the image (e.g. with "
                                "ch-image or mkdir in the image directory)", "runtime"))
    image_values = dict(image_env) if image_env is not None else None
    container = _grouped(plan.env, "container")
    if container:
        argv.append("--env-no-expand")
    for name, entries in container:
        needs_base = any(e.action in ("prepend", "append") for e in entries)
        if needs_base and image_values is None:
            diags.append(Diagnostic(WARNING, "image-env-unknown", f"{name}: the image's own "
                                    "value is unknown (image not inspected); ch-run cannot "
                                    "refer to it, so it is dropped", source=name))
        base = (image_values or {}).get(name)
        value = _fold(entries, base, staged.map_value)
        if value is None:
            diags.append(Diagnostic(WARNING, "container-unset", f"ch-run cannot unset {name}: "
                                    "set empty instead", source=name))
            value = ""
        argv.append(f"--set-env={name}={value}")
    argv += [plan.image, "--", *plan.command]
    return argv, staged.stage


# ch-run options that already choose how ranks share containers.
JOIN_OPTIONS = ("-j", "--join", "--join-ct", "--join-tag", "--join-pid")
# Hydra gives each rank MPI_LOCALNRANKS (its node's rank count) but none of the variables
# ch-run counts peers from; "$1" is ch-run, the rest its argv.
JOIN_SCRIPT = ('c=$1; shift; if [ -n "${MPI_LOCALNRANKS-}" ]; then '
               'exec "$c" --join-ct="$MPI_LOCALNRANKS" "$@"; else exec "$c" --join "$@"; fi')
JOIN_ARGV0 = "hpcrun-join"


def join_peers(argv: Sequence[str], runtime_args: Sequence[str], launcher_family: str,
               diags: List[Diagnostic]) -> List[str]:
    """The ch-run ``argv`` with a node's ranks in one container (``ch-run --join``).

    Each ch-run is otherwise its own user namespace, and the kernel refuses cross-memory
    attach (``process_vm_readv``) between sibling namespaces: MPI shared-memory transports
    that use it (UCX's cma, used from 16 KiB here) abort the job.  ch-run counts its peers
    from ``OMPI_COMM_WORLD_LOCAL_SIZE`` (Open MPI) or ``SLURM_STEP_TASKS_PER_NODE`` (srun) and
    names the group by ``SLURM_STEP_ID`` or its parent's PID, so ``--join`` is enough there;
    under Hydra (MPICH, Intel MPI) a one-line sh wrapper passes ``MPI_LOCALNRANKS`` as
    ``--join-ct``.  Runtime options that already say ``--join*`` or ``-j`` are left alone.
    """
    if any(a == o or a.startswith(o + "=") for a in runtime_args for o in JOIN_OPTIONS):
        return list(argv)
    from hpcrun.launch.launchers import OPENMPI, SRUN

    diags.append(Diagnostic(INFO, "ch-run-join", "ranks on a node share one ch-run container "
                            "(--join): the kernel refuses cross-memory attach between separate "
                            "containers, which MPI shared memory uses for large messages",
                            source="runtime"))
    if launcher_family in (SRUN, OPENMPI):
        return [argv[0], "--join", *argv[1:]]
    return ["/bin/sh", "-c", JOIN_SCRIPT, JOIN_ARGV0, *argv]


def render_invocation(plan: Plan, environ: Mapping[str, str],
                      image_env: Optional[Sequence[Tuple[str, str]]] = None,
                      flavour: str = "", version: str = "", launcher_family: str = "",
                      prefix: str = "/.hpcrun", mount_slots: Optional[Sequence[str]] = None
                      ) -> Tuple[Invocation, Tuple[Diagnostic, ...]]:
    """Render the final argv and environment changes for the plan's runtime.

    ``environ`` is the caller's environment (for launcher-scope prepend/append, an
    existing bind path, where the Charliecloud stage lives), ``image_env`` the image's
    environment (Charliecloud).  For Charliecloud the binds under ``prefix`` become a stage
    directory bound at one of ``mount_slots`` (the image's empty ``/mnt/N``; None:
    unknown, ``/mnt/0`` .. ``/mnt/9`` assumed), see :mod:`hpcrun.render.chstage`.  Returns
    the invocation and the diagnostics rendering found (inexpressible paths ...).  Pure.
    """
    diags: List[Diagnostic] = []
    syntax = RUNTIMES.get(plan.runtime, RUNTIMES["apptainer"])
    env_set, env_unset = launcher_env(plan, environ)
    stage: Optional[Stage] = None
    if plan.runtime == "charliecloud":
        runtime_argv, stage = _charliecloud(plan, image_env, diags, environ, prefix,
                                            mount_slots)
        if plan.launcher:
            runtime_argv = join_peers(runtime_argv, plan.runtime_args, launcher_family, diags)
    else:
        runtime_argv, runtime_env = _apptainer(plan, syntax, environ, flavour, version, diags)
        env_set = runtime_env + env_set
    launcher = list(plan.launcher)
    if launcher and launcher_family == "openmpi" and env_set:
        # Open MPI's mpirun forwards only OMPI_* and -x variables to remote nodes.
        end = len(launcher) - 1 if launcher[-1] == "--" else len(launcher)
        forward = [word for name, _ in env_set for word in ("-x", name)]
        launcher[end:end] = forward
    argv = (*launcher, *plan.wrapper, *runtime_argv)
    if plan.mpmd:
        argv = (*argv, *_mpmd_contexts(plan, runtime_argv, diags))
    return Invocation(tuple(argv), tuple(env_set), tuple(env_unset), stage), tuple(diags)


def _mpmd_contexts(plan: Plan, runtime_argv: Sequence[str], diags: List[Diagnostic]
                   ) -> Tuple[str, ...]:
    """``: OPTIONS [wrapper] RUNTIME... IMAGE COMMAND`` for each further MPMD program: the
    same runtime words as the first program, its own command.  Charliecloud is refused
    (its ranks of one node join one container, which MPMD programs cannot share)."""
    cut = len(runtime_argv) - len(plan.command)
    if plan.runtime == "charliecloud" or tuple(runtime_argv[cut:]) != tuple(plan.command):
        diags.append(Diagnostic(ERROR, "mpmd-unsupported", f"MPMD launches are not supported "
                                f"with {plan.runtime}", "use --runtime apptainer or "
                                "singularity, or one program per launch", source="runtime"))
        return ()
    out: List[str] = []
    for options, command in plan.mpmd:
        out.extend((":", *options, *plan.wrapper, *runtime_argv[:cut], *command))
    return tuple(out)
