"""Per-project job files (``hpcrun.toml``): a project's image, site and launch settings.

A job file is found as ``--job FILE``, else ``hpcrun.toml`` in the working directory
(``--no-job`` ignores it).  It is layered over the site profile, and the command line over
it (site < job file < command line):

* ``site``, ``image``, ``runtime``, ``gpu``, ``threads``, ``abi_policy``, ``cleanenv``:
  used when the command line does not give them; ``site`` also wins over ``$HPCRUN_SITE``
  (the job file names the project's site, the variable a module's default);
* ``[[binds]]`` and ``[[env]]`` (the site profile's formats) are added after the profile's;
  ``--env`` on the command line still wins over both;
* ``[launchers.NAME] options`` replace the profile's defaults for that launcher; options
  given on the command line win over both.

The format is defined here once, as records (like the site profile's in ``model.py``),
and loaded by the site profile's TOML loader (:func:`hpcrun.profiles.load.build_record`),
so errors name the file, line and key the same way.  Its JSON Schema is
``hpcrun/data/job-schema.json``.  Pure except :func:`find_job_file` / :func:`load_job`.
"""

from __future__ import annotations

import os

from hpcrun import records
from hpcrun.profiles.model import (
    ABI_POLICIES,
    LAUNCHER_NAMES,
    RUNTIME_KINDS,
    BindSpec,
    EnvSpec,
    LauncherDefaults,
    Profile,
    spec,
)
from hpcrun.records import field, record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Mapping, Optional, Tuple

JOB_FILE = "hpcrun.toml"
JOB_SCHEMA_VERSION = 1
GPU_CHOICES = ("nvidia", "rocm", "none")

# The scalar settings of a job file, in the order --explain lists them, with the
# command-line option each one stands for.
SETTINGS = (("site", "--site"), ("image", "--image"), ("runtime", "--runtime"),
            ("gpu", "--gpu"), ("threads", "--threads"), ("abi_policy", "--abi-policy"),
            ("cleanenv", "--cleanenv"))


@record
class Job:
    """A project's job file: what every launch of this project shares."""

    schema: int = spec(JOB_SCHEMA_VERSION, doc="Format version; 1.", example=1)
    site: str = spec("", doc="Site profile name or file (the command line's --site wins; "
                     "this wins over $HPCRUN_SITE).", example="debian-mpich")
    image: str = spec("", doc="The project's image (relative paths are relative to the job "
                      "file); the command line then gives no image.", example="app.sif")
    runtime: str = spec("", doc="Container runtime (as --runtime).",
                        choices=RUNTIME_KINDS[1:], example="apptainer")
    gpu: str = spec("", doc="GPU runtime flag (as --gpu; none as --no-gpu).",
                    choices=GPU_CHOICES, example="nvidia")
    threads: str = spec("", doc="Thread-count variables: a positive number, auto or off "
                        "(as --threads).", example="4")
    abi_policy: str = spec("", doc="Host vs container MPI version rule (as --abi-policy).",
                           choices=ABI_POLICIES, example="full")
    cleanenv: bool = spec(False, doc="Run the container with a clean environment "
                          "(as --cleanenv).", example=False)
    binds: Tuple[BindSpec, ...] = spec(factory=tuple, doc="Extra paths to bind, after the "
                                       "site profile's (same format).")
    env: Tuple[EnvSpec, ...] = spec(factory=tuple, doc="Extra environment, after the site "
                                    "profile's (same format); --env wins over both.")
    launchers: Tuple[Tuple[str, LauncherDefaults], ...] = spec(
        factory=tuple, doc="Per-launcher default options, replacing the site profile's for "
        "that launcher.", choices=LAUNCHER_NAMES, example={"srun": {"options": ["-n", "2"]}})
    source: str = field(default="", compare=False, metadata={"internal": True})


RECORDS = {cls.__name__: cls for cls in (Job, BindSpec, EnvSpec, LauncherDefaults)}


def job_from_text(text: str, file: str) -> Job:
    """Parse and check a job file's text; errors name ``file``, the line and the key."""
    from hpcrun.profiles.load import build_record, parse_toml

    data = parse_toml(text, file)
    threads = data.get("threads")
    if isinstance(threads, int) and not isinstance(threads, bool):
        data["threads"] = str(threads)  # threads = 4 reads as naturally as "4"
    job = build_record(Job, data, file, text)
    if job.schema != JOB_SCHEMA_VERSION:
        raise build_error(file, text, "schema", f"unsupported job file version {job.schema}",
                          f"this hpcrun reads schema = {JOB_SCHEMA_VERSION}")
    threads = job.threads
    if threads and threads not in ("auto", "off") and not (threads.isdigit() and
                                                          int(threads) > 0):
        raise build_error(file, text, "threads", f"invalid value {threads!r}",
                          "a positive number (as a string, \"4\"), \"auto\" or \"off\"")
    for index, item in enumerate(job.binds):
        if not item.source.startswith("/"):
            raise build_error(file, text, f"binds[{index}].source",
                              f"{item.source!r} is not an absolute path",
                              "bind sources are absolute host paths")
    return records.replace(job, source=file)


def build_error(file: str, text: str, key: str, message: str, hint: str = "") -> Exception:
    """A ProfileError at ``key`` of a job file (file:line: key: message)."""
    from hpcrun.profiles.load import located_error

    return located_error(file, text, key, message, hint)


def find_job_file(explicit: str, cwd: str, no_job: bool = False) -> str:
    """The job file to use: ``explicit`` (``--job``), else ``cwd/hpcrun.toml`` when it
    exists, else ""."""
    if no_job:
        return ""
    if explicit:
        return explicit
    candidate = os.path.join(cwd, JOB_FILE)
    return candidate if os.path.isfile(candidate) else ""


def load_job(path: str) -> Job:
    """Read and check a job file (ProfileError, a ConfigError, when it is wrong)."""
    from hpcrun.profiles.load import ProfileError

    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise ProfileError(f"job file {path} does not exist",
                           f"check the path given to --job (or create {JOB_FILE})",
                           file=path) from None
    except IsADirectoryError:
        raise ProfileError(f"job file {path} is a directory, not a TOML file",
                           file=path) from None
    except OSError as error:
        raise ProfileError(f"cannot read job file {path}: {error.strerror}",
                           file=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ProfileError(f"{path}:{line}: not UTF-8 text", "TOML files must be UTF-8",
                           file=path, line=line) from None
    return job_from_text(text, path)


def job_image(job: Job) -> str:
    """The job file's image, a relative path taken relative to the job file."""
    if not job.image or job.image.startswith("/") or "://" in job.image:
        return job.image
    return os.path.normpath(os.path.join(os.path.dirname(job.source) or ".", job.image))


def layered_profile(profile: Profile, job: Job) -> Profile:
    """The site profile with the job file's binds, environment and launcher defaults
    layered over it (each item's reason names the job file)."""
    where = job.source or JOB_FILE
    binds = tuple(records.replace(b, reason=f"job file {where}, binds[{i}]" + (
        f": {b.reason}" if b.reason else "")) for i, b in enumerate(job.binds))
    env = tuple(records.replace(e, reason=f"job file {where}, env[{i}]" + (
        f": {e.reason}" if e.reason else "")) for i, e in enumerate(job.env))
    launchers: List[Tuple[str, LauncherDefaults]] = [
        (name, value) for name, value in profile.launchers
        if name not in {n for n, _ in job.launchers}]
    for name, value in job.launchers:
        launchers.append((name, records.replace(value, reason=f"job file {where}, "
                                                f"launchers.{name}" + (
            f": {value.reason}" if value.reason else ""))))
    return records.replace(profile, binds=profile.binds + binds, env=profile.env + env,
                           launchers=tuple(launchers))


def setting_origins(job: Optional[Job], given: Mapping[str, Any], environ_site: str
                    ) -> List[Tuple[str, str, str]]:
    """(setting, value, where it came from) for --explain: the command line, the job file,
    $HPCRUN_SITE or the site profile / default."""
    out: List[Tuple[str, str, str]] = []
    for name, option in SETTINGS:
        value = given.get(name)
        if value:
            out.append((name, str(value), f"command line ({option})"))
            continue
        job_value = getattr(job, name) if job is not None else None
        if job_value:
            out.append((name, str(job_image(job) if name == "image" and job else job_value),
                        f"job file {job.source if job else ''}"))
            continue
        if name == "site" and environ_site:
            out.append((name, environ_site, "$HPCRUN_SITE"))
            continue
        out.append((name, "", "site profile / default"))
    return out
