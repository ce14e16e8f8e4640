"""The launch path: ``hpcrun [OPTIONS] [LAUNCHER [LAUNCHER-OPTIONS]] IMAGE COMMAND...``.

Parsed by hand (no typer, no rich unless ``--explain``) so that a launch stays fast.  The
stages that decide things (profiles, image inspection, resolver, GPU, threads, wire-up)
are imported lazily and used when they are installed; the plan is built purely by
:func:`hpcrun.plan.build.build_plan`, then printed (``--dry-run``, ``--explain``,
``--json``) or exec'd.

Charliecloud: ch-run cannot create bind destinations in the read-only image, so the host
libraries reach the container through a *stage*, a directory of symlinks bound at the
image's empty ``/mnt/0`` (:mod:`hpcrun.render.chstage`).  It is created here, before the
exec and for ``--dry-run`` (so the printed command works when pasted), in
``$HPCRUN_STAGE_DIR``, else ``$XDG_CACHE_HOME/hpcrun/stage``, else
``~/.cache/hpcrun/stage``.  On a multi-node cluster that directory must be visible on the
compute nodes: set ``HPCRUN_STAGE_DIR`` to a shared file system when the home directory
is not mounted there.
"""

from __future__ import annotations

import importlib
import os
import re
import sys

from hpcrun import records
from hpcrun.errors import EnvironmentNotFoundError, UsageError
from hpcrun.host.facts import HostFacts, RuntimeInfo
from hpcrun.image.facts import ImageFacts
from hpcrun.plan.model import Contribution, Plan, Request
from hpcrun.profiles.model import Profile

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, List, Mapping, Optional, Tuple

USAGE = """\
usage: hpcrun [OPTIONS] [srun|mpirun|mpiexec [LAUNCHER-OPTS]] IMAGE COMMAND...

Run COMMAND from the container IMAGE with the host's MPI (the bind model).

options (before the launcher):
  --site S              site profile name or file (default: $HPCRUN_SITE)
  --job FILE            the project's job file (default: ./hpcrun.toml)
  --no-job              ignore ./hpcrun.toml
  --runtime R           apptainer | singularity | charliecloud
  --image PATH          the image, when hpcrun cannot tell where it starts
  --gpu nvidia|rocm     enable the GPU runtime flag;  --no-gpu  disable it
  --threads N|auto|off  thread-count variables (OMP_NUM_THREADS ...)
  --abi-policy P        major | full | strict (host vs container MPI versions)
  --cleanenv            run the container with a clean environment
  --env NAME=VALUE      set a variable inside the container (repeatable)
  --force               launch despite errors in the plan
  --no-check            skip image inspection and the MPI compatibility check
  --dry-run             print the command as a shell snippet, do not run it
  --explain             show every bind and variable with its reason
  --json                print the plan as JSON
  --debug               show tracebacks
  --help                this help

environment:
  HPCRUN_SITE           the default site profile (--site); a job file's wins
  HPCRUN_STAGE_DIR      Charliecloud: where hpcrun's stage directories go
                        (default ~/.cache/hpcrun/stage); seen by compute nodes

runtime: --runtime, else the profile's runtime.kind; "auto" takes the first
installed of apptainer, singularity, ch-run.  A runtime that is not installed
is an error, in a dry run too.  --dry-run, --explain and --json name the
runtime chosen and why.

settings: site profile < job file (./hpcrun.toml or --job) < command line.

commands: hpcrun help site|inspect|check|env|module|recipe|job.
Version: hpcrun -V.
"""

_VALUE = ("--site", "--runtime", "--image", "--gpu", "--threads", "--abi-policy", "--env",
          "--job")
_FLAGS = ("--no-gpu", "--cleanenv", "--force", "--no-check", "--dry-run", "--explain",
          "--json", "--debug", "--help", "-h", "--no-job")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class Options:
    """hpcrun's own options (before the launcher).

    A plain class (a dataclass costs a launch ~0.5 ms to build at import); equality and
    repr as a dataclass's.
    """

    _FIELDS = ("site", "runtime", "image", "gpu", "threads", "abi_policy", "cleanenv", "force",
               "no_check", "dry_run", "explain", "json", "help", "env", "job", "no_job")

    def __init__(self, site: str = "", runtime: str = "", image: str = "", gpu: str = "",
                 threads: str = "", abi_policy: str = "", cleanenv: bool = False,
                 force: bool = False, no_check: bool = False, dry_run: bool = False,
                 explain: bool = False, json: bool = False, help: bool = False,
                 env: Optional[List[Tuple[str, str]]] = None, job: str = "",
                 no_job: bool = False) -> None:
        self.site = site
        self.runtime = runtime
        self.image = image
        self.gpu = gpu
        self.threads = threads
        self.abi_policy = abi_policy
        self.cleanenv = cleanenv
        self.force = force
        self.no_check = no_check
        self.dry_run = dry_run
        self.explain = explain
        self.json = json
        self.help = help
        self.env: List[Tuple[str, str]] = [] if env is None else env
        self.job = job
        self.no_job = no_job

    def _values(self) -> Tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # mutable, like a non-frozen dataclass

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"Options({inner})"

    @property
    def launching(self) -> bool:
        """True for a real launch (not a dry run, explanation or JSON)."""
        return not (self.dry_run or self.explain or self.json)


def _check_value(option: str, value: str) -> None:
    choices = {"--runtime": ("apptainer", "singularity", "charliecloud"),
               "--gpu": ("nvidia", "rocm"), "--abi-policy": ("major", "full", "strict")}
    if option in choices and value not in choices[option]:
        raise UsageError(f"{option} {value!r}: expected one of {', '.join(choices[option])}",
                         f"e.g. {option} {choices[option][0]}")
    if option == "--threads" and value not in ("auto", "off") and not (
            value.isdigit() and int(value) > 0):
        raise UsageError(f"--threads {value!r}: expected a positive number, auto or off",
                         "e.g. --threads 4")
    if option == "--env":
        name, sep, _ = value.partition("=")
        if not sep or not _NAME.match(name):
            raise UsageError(f"--env {value!r}: expected NAME=VALUE with a valid variable name",
                             "e.g. --env OMP_PROC_BIND=close")
    if option in ("--site", "--image", "--job") and not value:
        raise UsageError(f"{option} needs a non-empty value")


def parse_args(args: List[str]) -> Tuple[Options, List[str]]:
    """Split hpcrun's options from the rest (``[LAUNCHER ...] IMAGE COMMAND...``).

    Options end at the first word that is not one of hpcrun's options, or after ``--``.
    ``--opt=value`` and ``--opt value`` are both accepted.
    """
    opts = Options()
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        name, sep, inline = word.partition("=")
        if name in _VALUE:
            if sep:
                value = inline
                i += 1
            else:
                if i + 1 >= len(args):
                    raise UsageError(f"{name} needs a value", USAGE.splitlines()[0])
                value = args[i + 1]
                i += 2
            _check_value(name, value)
            if name == "--env":
                key, _, val = value.partition("=")
                opts.env.append((key, val))
            else:
                setattr(opts, name[2:].replace("-", "_"), value)
            continue
        if word in _FLAGS:
            if word == "--no-gpu":
                opts.gpu = "none"
            elif word in ("--help", "-h"):
                opts.help = True
            elif word != "--debug":
                setattr(opts, word[2:].replace("-", "_"), True)
            i += 1
            continue
        raise UsageError(f"unknown hpcrun option {word!r}",
                         "hpcrun's options come before the launcher; see `hpcrun --help`")
    return opts, args[i:]


def _optional(module: str, attribute: str) -> Optional[Callable[..., Any]]:
    """A function of a pipeline stage that may not be installed yet (None if absent)."""
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name and module.startswith(error.name):
            return None
        raise
    found = getattr(loaded, attribute, None)
    return found if callable(found) else None


def load_profile(site: str, environ: Mapping[str, str]) -> Profile:
    """The site profile: ``--site``, else ``$HPCRUN_SITE`` (UsageError when neither)."""
    from hpcrun.profiles.lookup import default_site, load_site

    return load_site(site or default_site(environ), environ)


def inspect(image: str, command: Tuple[str, ...],
            environ: Optional[Mapping[str, str]] = None) -> Optional[ImageFacts]:
    """Image facts (None when the inspector is not installed).

    A registry URI (``docker://``, ``oras://``, ``library://`` ...) is inspected from the
    SIF the runtime's cache holds for it (``find_cached_sif``); without one
    :class:`~hpcrun.image.open.UncheckedImage` is raised (the caller warns and goes on).
    An encrypted image raises :class:`~hpcrun.errors.EncryptedImageError`: the launch
    stops with its hint (``--no-check``).
    """
    inspect_image = _optional("hpcrun.image.inspect", "inspect_image")
    if inspect_image is None:
        return None
    from hpcrun.image.open import UncheckedImage, find_cached_sif, is_uri

    if is_uri(image):
        cached = find_cached_sif(image, os.environ if environ is None else environ)
        if cached is None:
            registry = image.startswith(("docker://", "oras://", "library://", "shub://"))
            raise UncheckedImage(
                f"{image}: " + ("no local copy in the Apptainer/Singularity cache (only a URI "
                                "pinned by digest can be found offline)" if registry else
                                "hpcrun does not read this kind of image source")
                + "; the image checks are skipped",
                hint=f"build a SIF first (apptainer pull image.sif {image}) and run that, or "
                     "pin the digest (docker://NAME@sha256:...)")
        image = cached
    return inspect_image(image, app=command)


def _inspect_or_note(image: str, command: Tuple[str, ...], environ: Mapping[str, str]
                     ) -> Tuple[Optional[ImageFacts], List[Contribution]]:
    """:func:`inspect`, turning an uninspectable registry image into a warning (no error)."""
    from hpcrun.image.open import UncheckedImage
    from hpcrun.plan.model import WARNING, Diagnostic

    try:
        return inspect(image, command, environ), []
    except UncheckedImage as why:  # says why; the resolver's not-checked says what is lost
        note = Diagnostic(WARNING, "image-not-inspected", why.message, why.hint, source="image")
        return None, [Contribution(diagnostics=(note,))]


def contributions(profile: Profile, request: Request, host: HostFacts,
                  image: Optional[ImageFacts], environ: Mapping[str, str]
                  ) -> List[Contribution]:
    """Ask every installed decision stage for its contribution, in a fixed order:
    resolver (library closure and verdict), GPU, threads, wire-up."""
    found: List[Any] = []
    kind = host.runtime.kind
    resolve = _optional("hpcrun.resolve.resolver", "resolve")
    if resolve is not None:
        found.append(resolve(profile, request, host, image))
    gpu = _optional("hpcrun.resolve.gpu", "decide")
    if gpu is not None:
        found.append(gpu(profile, request, host, image, kind))
    threads = _optional("hpcrun.resolve.threads", "decide")
    if threads is not None:
        found.append(threads(profile, request, host, environ))
    wireup = _optional("hpcrun.render.wireup", "decide")
    if wireup is not None:
        found.append(wireup(profile, request, kind))
    found.append(launcher_check(profile, request, environ))
    return [c for c in found if isinstance(c, Contribution)]


def _option_value(words: Tuple[str, ...], key: str) -> str:
    """The value of srun option ``key`` among launcher words ("" when not given)."""
    from hpcrun.launch.launchers import SRUN, parse_options

    options, _ = parse_options(SRUN, list(words), strict=False)
    value = ""
    for option in options:
        if key in option.keys:
            word = option.words[0]
            value = word.partition("=")[2] if "=" in word else (
                option.words[1] if len(option.words) > 1 else "")
    return value


def launcher_check(profile: Profile, request: Request, environ: Mapping[str, str]
                   ) -> Optional[Contribution]:
    """Can the launcher start ranks of the host MPI (:mod:`hpcrun.resolve.wireup`)?
    None without a launcher or a host MPI."""
    mpi = profile.mpi
    if not request.launcher or mpi is None:
        return None
    libraries = list(mpi.libraries) or [
        os.path.join(directory, soname) for soname in mpi.sonames
        for directory in mpi.library_dirs if os.path.exists(os.path.join(directory, soname))]
    if not libraries:
        return None
    from hpcrun.host.launcher import (
        find_alternatives,
        identify_launcher,
        pmi_clients,
        rules,
        slurm_mpi,
    )
    from hpcrun.resolve.wireup import check

    info = identify_launcher(request.launcher[0], environ)
    slurm = None
    if info.kind == "srun":
        option = _option_value(tuple(request.launcher[1:]), "mpi")
        source = "given on the command line"
        if not option:
            defaults = profile.launcher_defaults("srun")
            option = _option_value(tuple(defaults.options), "mpi") if defaults else ""
            source = "launchers.srun in the site profile"
        slurm = slurm_mpi(info.path, option, source, environ)
    label = f"{mpi.implementation or mpi.family} ({os.path.basename(libraries[0])})"
    clients = pmi_clients(libraries, mpi.library_dirs)
    names = [n for alt in rules()["alternatives"] for n in alt["launchers"]]
    return check(rules(), info, clients, label, slurm, find_alternatives(names, environ))


def apply_job(opts: Options, environ: Mapping[str, str], cwd: str = ""
              ) -> Tuple[Options, Any, Tuple[Any, ...]]:
    """The options with the job file's settings filled in where the command line gave none
    (site < job file < command line), the job (None without one) and where each setting
    came from (for --explain/--json; empty without a job file).  Imports the job file
    module only when a job file is used."""
    if opts.no_job and opts.job:
        raise UsageError("--job and --no-job contradict each other", "give one of them")
    explicit = opts.job
    if not explicit and not opts.no_job:
        here = cwd or os.getcwd()
        if not os.path.isfile(os.path.join(here, "hpcrun.toml")):
            return opts, None, ()
    from hpcrun.plan.model import Setting
    from hpcrun.profiles.job import find_job_file, job_image, load_job, setting_origins

    path = find_job_file(explicit, cwd or os.getcwd(), opts.no_job)
    if not path:
        return opts, None, ()
    job = load_job(path)
    given = {name: getattr(opts, name) for name in ("site", "image", "runtime", "gpu",
                                                     "threads", "abi_policy", "cleanenv")}
    origins = setting_origins(job, given, environ.get("HPCRUN_SITE", ""))
    merged = Options(**{name: getattr(opts, name) for name in Options._FIELDS})
    merged.env = list(opts.env)
    merged.site = opts.site or job.site
    merged.image = opts.image or job_image(job)
    merged.runtime = opts.runtime or job.runtime
    merged.gpu = opts.gpu or job.gpu
    merged.threads = opts.threads or job.threads
    merged.abi_policy = opts.abi_policy or job.abi_policy
    merged.cleanenv = opts.cleanenv or job.cleanenv
    return merged, job, tuple(Setting(n, v, o) for n, v, o in origins)


def make_plan(opts: Options, rest: List[str], environ: Mapping[str, str]) -> Plan:
    """Everything up to the plan: profile, runtime, command line, facts, decisions."""
    from hpcrun.launch.launchers import split_command_line
    from hpcrun.launch.runtime import detect_runtime, require_installed
    from hpcrun.plan.build import build_plan
    from hpcrun.plan.hostpaths import survey_host_paths

    opts, job, settings = apply_job(opts, environ)
    profile = load_profile(opts.site, environ)
    if job is not None:
        from hpcrun.profiles.job import layered_profile

        profile = layered_profile(profile, job)
    mpi_family = profile.mpi.family if profile.mpi is not None else ""
    try:
        line = split_command_line(rest, image=opts.image, environ=environ,
                                  mpi_family=mpi_family)
    except UsageError as error:
        misplaced = [w for w in rest if w.partition("=")[0] in _VALUE + _FLAGS]
        if misplaced and "unknown" in error.message:
            raise UsageError(error.message, f"{misplaced[0].partition('=')[0]} is an hpcrun "
                             "option: hpcrun's options go before the launcher") from None
        raise
    runtime: RuntimeInfo = detect_runtime(opts.runtime, profile.runtime.kind,
                                          profile.runtime.path, environ,
                                          probe=opts.launching)
    require_installed(runtime)  # a plan for a runtime that cannot start is no plan
    request = Request(launcher=line.launcher, image=line.image, command=line.command,
                      site=opts.site, runtime=opts.runtime, gpu=opts.gpu, threads=opts.threads,
                      abi_policy=opts.abi_policy, cleanenv=opts.cleanenv, force=opts.force,
                      no_check=opts.no_check, user_env=tuple(opts.env), mpmd=line.mpmd)
    host = _host_facts(runtime, environ)
    slots = None
    if runtime.kind == "charliecloud":
        from hpcrun.launch.stage import free_mount_points

        slots = free_mount_points(line.image)

    def plan_for(request: Request) -> Plan:
        image: Optional[ImageFacts] = None
        notes: List[Contribution] = []
        if not opts.no_check:
            image, notes = _inspect_or_note(request.image, request.command, environ)
        decided = contributions(profile, request, host, image, environ) + notes
        return build_plan(profile, request, host, image, decided, survey_host_paths(profile),
                          environ=environ, mount_slots=slots)

    plan = plan_for(request)
    # MPMD: every program gets the first one's runtime words, so each must need exactly them
    first = plan_for(records.replace(request, mpmd=())) if request.mpmd else plan
    for number, (_options, command) in enumerate(request.mpmd, 2):
        alone = plan_for(records.replace(request, command=command, mpmd=()))
        if _container_setup(alone) != _container_setup(first):
            from hpcrun.plan.model import ERROR, Diagnostic

            differs = Diagnostic(
                ERROR, "mpmd-programs-differ", f"MPMD program {number} ({command[0]}) needs "
                f"other container settings than the first ({request.command[0]}): one set of "
                "runtime options cannot serve both", "run them as separate launches, or "
                "compare `hpcrun --explain` of each program", source="command")
            return records.replace(plan, diagnostics=(*plan.diagnostics, differs),
                                   settings=settings)
        plan = records.replace(plan, diagnostics=(*plan.diagnostics, *(
            d for d in alone.errors if d not in plan.diagnostics)))
    return records.replace(plan, settings=settings) if settings else plan


def _container_setup(plan: Plan) -> Tuple[object, ...]:
    """What an MPMD program shares with the first: everything of the invocation but the
    launcher's words and the program's own argv."""
    inv = plan.invocation
    runtime = inv.argv[len(plan.launcher):len(inv.argv) - len(plan.command)]
    return runtime, inv.env_set, inv.env_unset


def _host_facts(runtime: RuntimeInfo, environ: Mapping[str, str]) -> HostFacts:
    """Facts about this node (``hpcrun.host.probe`` when installed) with the runtime."""
    probe = _optional("hpcrun.host.probe", "probe_host")
    if probe is None:
        return HostFacts(runtime=runtime)
    from pathlib import Path

    return records.replace(probe(Path("/"), environ), runtime=runtime)


def run(args: List[str]) -> int:
    """Parse the launch command line, build the plan, then print it or exec it."""
    opts, rest = parse_args(args)
    if opts.help:
        sys.stdout.write(USAGE)
        return 0
    environ = dict(os.environ)
    plan = make_plan(opts, rest, environ)
    if opts.json:
        from hpcrun.render.jsonout import render_json

        sys.stdout.write(render_json(plan))
        return _as_launch(plan, opts)
    if opts.explain:
        from hpcrun.render.explain import render_explain

        render_explain(plan)
        return _as_launch(plan, opts)
    if opts.dry_run:
        from hpcrun.render.dryrun import render_dry_run

        out = render_dry_run(plan)
        stage = plan.invocation.stage
        if stage is not None and not plan.errors:
            from hpcrun.launch.stage import materialise

            note = (f"# hpcrun created {materialise(stage)} (symlinks to the host libraries"
                    " for ch-run's stage mount): this command works when pasted\n")
            out = note + out
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is not None:  # bytes: arguments that were not valid UTF-8 come back as-is
            sys.stdout.flush()
            buffer.write(os.fsencode(out))
            buffer.flush()
        else:
            sys.stdout.write(out)
        return _as_launch(plan, opts)
    from hpcrun.launch.execute import check_plan, execute, print_warnings

    check_plan(plan, opts.force)
    print_warnings(plan)
    if plan.invocation.stage is not None:
        from hpcrun.launch.stage import materialise

        materialise(plan.invocation.stage)
    needed: List[str] = []
    if plan.launcher or plan.wrapper:
        if not os.path.isabs(plan.runtime_binary) and not _on_path(plan.runtime_binary,
                                                                  environ):
            raise EnvironmentNotFoundError(
                f"{plan.runtime_binary}: the container runtime is not installed or not on PATH",
                "install it or load its module; --runtime or the site profile select another")
        needed.append(plan.runtime_binary)
    elif not _on_path(plan.runtime_binary, environ):
        raise EnvironmentNotFoundError(
            f"{plan.runtime_binary}: the container runtime is not installed or not on PATH",
            "install it or load its module; --runtime or the site profile select another")
    execute(plan, environ, needed)
    return 0  # not reached: execute replaces the process


def _as_launch(plan: Plan, opts: Options) -> int:
    """After a plan is printed: 0 when it would launch, else raise the error the launch
    would have raised (so that a dry run used as a check exits as the launch would)."""
    from hpcrun.launch.execute import check_plan

    sys.stdout.flush()
    check_plan(plan, opts.force)
    return 0


def _on_path(program: str, environ: Mapping[str, str]) -> bool:
    from hpcrun.launch.which import which

    if os.sep in program:
        return os.access(program, os.X_OK)
    return which(program, path=environ.get("PATH", os.defpath)) is not None
