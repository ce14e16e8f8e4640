"""Which container runtime runs the image: Apptainer, SingularityCE, Singularity 3.x, ch-run.

Precedence: ``--runtime`` > the profile's ``runtime.kind`` / ``runtime.path`` > what is on
PATH (``apptainer`` first, then ``singularity``, then Charliecloud's ``ch-run``).  Finding
the binary reads only PATH.
Telling Apptainer's ``singularity`` link from SingularityCE or legacy Singularity needs its
``--version`` output: at most ONE subprocess, and only when ``probe`` is true (a real launch,
or when asked).  The choice carries its reason, which every plan output prints; a runtime
that is not installed is refused before anything is printed (:func:`require_installed`).

spython (the design's runtime library) runs that one ``--version`` call, behind ONE small
adapter (:func:`_spython_version`) that is imported only when really launching (never for
``--dry-run``/``--explain``/``--json``: importing it costs time) and can never end the
process: whatever it raises, ``SystemExit`` included, falls back to a plain subprocess.  We
parse the text ourselves: spython cannot tell Apptainer from Singularity (both answer to
``singularity``, and its own helpers only ask which of the two programs exists).
"""

from __future__ import annotations

import os
import re

from hpcrun.errors import UsageError
from hpcrun.host.facts import RuntimeInfo
from hpcrun.launch.which import which

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, Mapping, Optional, Tuple

    VersionReader = Callable[[str], str]

APPTAINER = "apptainer"
SINGULARITY = "singularity"
CHARLIECLOUD = "charliecloud"
KINDS = (APPTAINER, SINGULARITY, CHARLIECLOUD)

# Flavours of the ``singularity`` program.
SINGULARITY_CE = "singularity-ce"
SINGULARITY_LEGACY = "singularity"  # Singularity 3.x before the Apptainer/CE split

BINARIES = {APPTAINER: "apptainer", SINGULARITY: "singularity", CHARLIECLOUD: "ch-run"}
# What ``auto`` looks for, in order of preference.
AUTO_ORDER = (APPTAINER, SINGULARITY, CHARLIECLOUD)


def _version_env() -> Dict[str, str]:
    env = dict(os.environ)
    if "USER" not in env:  # ch-run refuses to run, even --version, without $USER
        try:
            import pwd

            env["USER"] = pwd.getpwuid(os.getuid()).pw_name
        except (ImportError, KeyError):
            env["USER"] = "nobody"
    return env


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else ""


def _spython_version(binary: str, env: Mapping[str, str]) -> Optional[str]:
    """``BINARY --version`` through spython's command runner: its first line, "" when the
    program failed, None when spython is missing or misbehaved (the caller falls back)."""
    try:
        from spython.utils import run_command

        result = run_command([binary, "--version"], quiet=True, environ=dict(env))
        if not isinstance(result, dict):
            return None
        if result.get("return_code") != 0:
            return ""
        return _first_line("".join(str(part) for part in result.get("message") or ()))
    except (Exception, SystemExit):  # spython's helpers may sys.exit(); never let it end us
        return None


def _plain_version(binary: str, env: Mapping[str, str]) -> str:
    import subprocess  # only here: importing it costs a launch that never probes

    try:
        done = subprocess.run([binary, "--version"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=20, check=False, env=env)
    except (OSError, subprocess.SubprocessError):
        return ""
    if done.returncode != 0:
        return ""
    return _first_line(done.stdout.decode("utf-8", "replace"))


def read_version(binary: str) -> str:
    """Run ``BINARY --version`` once and return its first output line ("" on any failure).

    Through spython when it is installed and behaves, else a plain subprocess."""
    env = _version_env()
    text = _spython_version(binary, env)
    return _plain_version(binary, env) if text is None else text


def parse_version(text: str) -> Tuple[str, str, str]:
    """(kind, flavour, version) from a ``--version`` line.

    ``apptainer version 1.3.4`` -> apptainer; ``singularity-ce version 4.1.0`` ->
    singularity / singularity-ce; ``singularity version 3.8.7`` -> singularity / legacy;
    ``ch-run 0.31`` / bare ``0.31`` -> charliecloud.
    """
    line = text.strip().lower()
    match = re.search(r"(\d+(?:\.\d+)+\S*)", line)
    version = match.group(1) if match else ""
    if line.startswith("apptainer"):
        return APPTAINER, "", version
    if line.startswith("singularity-ce"):
        return SINGULARITY, SINGULARITY_CE, version
    if line.startswith("singularity"):
        return SINGULARITY, SINGULARITY_LEGACY, version
    if line.startswith("ch-run") or re.fullmatch(r"\d+(\.\d+)+\S*", line):
        return CHARLIECLOUD, "", version
    return "", "", version


def _kind_from_path(path: str) -> str:
    """Kind told by the binary's resolved name (Apptainer installs singularity -> apptainer)."""
    name = os.path.basename(os.path.realpath(path))
    if name.startswith("apptainer"):
        return APPTAINER
    if name.startswith("singularity"):
        return SINGULARITY
    if name.startswith("ch-run"):
        return CHARLIECLOUD
    return ""


def detect_runtime(requested: str, profile_kind: str, profile_path: str,
                   environ: Mapping[str, str], probe: bool = False,
                   version_reader: Optional[VersionReader] = None) -> RuntimeInfo:
    """Decide the runtime, find its binary and say why (``RuntimeInfo.reason``).

    ``requested`` is ``--runtime`` (or ""), ``profile_kind``/``profile_path`` the profile's
    ``[runtime]``.  ``auto`` (or no kind) takes the first installed of Apptainer,
    SingularityCE/Singularity (``singularity``), Charliecloud (``ch-run``), in that order.
    ``binary`` is "" when the program is not installed: the launch path refuses such a plan
    (:func:`require_installed`), the snippet writers (``env``, ``module``) still render for
    the kind.  With ``probe`` the binary's ``--version`` is read once (``version_reader``
    replaces the subprocess in tests).
    """
    kind = requested or (profile_kind if profile_kind not in ("", "auto") else "")
    if kind and kind not in KINDS:
        raise UsageError(f"unknown runtime {kind!r}", "use apptainer, singularity or charliecloud")
    if requested:
        why = f"--runtime {requested} on the command line"
    elif kind:
        why = f"the site profile's runtime.kind = \"{kind}\""
    else:
        why = "runtime.kind = \"auto\": the first installed of apptainer, singularity, ch-run"
    search = environ.get("PATH", "")
    binary = ""
    if profile_path and (not requested or _kind_from_path(profile_path) in ("", requested)):
        binary = profile_path if os.path.exists(profile_path) else ""
        if binary:
            why = f"the site profile's runtime.path = {profile_path}"
        if not kind:
            kind = _kind_from_path(profile_path) or APPTAINER
    if not binary:
        candidates = [kind] if kind else list(AUTO_ORDER)
        for candidate in candidates:
            found = which(BINARIES[candidate], path=search)
            if found:
                binary, kind = found, candidate
                break
    searched = kind or "auto"
    kind = kind or APPTAINER
    flavour = version = ""
    if binary and kind != CHARLIECLOUD:
        resolved = _kind_from_path(binary)
        if resolved == APPTAINER and kind != APPTAINER:
            kind = APPTAINER  # `singularity` is Apptainer's compatibility link
            why += f"; {binary} is Apptainer's singularity link"
    if binary and probe:
        text = (version_reader or read_version)(binary)
        seen_kind, flavour, version = parse_version(text)
        if seen_kind and kind != CHARLIECLOUD:
            if seen_kind != kind:
                why += f"; {binary} --version says {seen_kind}"
            kind = seen_kind
    if binary:
        why = f"{why}; found {binary}"
    else:
        programs = ", ".join(BINARIES[k] for k in (AUTO_ORDER if searched == "auto"
                                                   else (searched,)))
        why = f"{why}; not found ({programs} not on PATH)"
    return RuntimeInfo(kind=kind, binary=binary, version=version, flavour=flavour, reason=why)


def require_installed(runtime: RuntimeInfo) -> None:
    """Refuse a runtime whose program is not installed (EnvironmentNotFoundError).

    A plan for a runtime that cannot start is a certain failure: a dry run, an explanation
    or JSON says so as the launch does, with the same exit code.
    """
    if runtime.binary:
        return
    from hpcrun.errors import EnvironmentNotFoundError

    program = BINARIES.get(runtime.kind, runtime.kind)
    if "auto" in runtime.reason.split(";")[0]:
        message = ("no container runtime is installed: none of apptainer, singularity, ch-run "
                   "is on PATH")
    else:
        message = (f"{runtime.kind}: the container runtime is not installed ({program} is not "
                   f"on PATH); chosen by {runtime.reason.split(';')[0]}")
    raise EnvironmentNotFoundError(
        message, "install it or load its module (module load apptainer), or choose an installed "
                 "one with --runtime apptainer|singularity|charliecloud")
