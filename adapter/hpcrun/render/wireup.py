"""Wire-up variables under ``--cleanenv``: a per-rank POSIX sh trampoline.

The launcher (srun, mpirun, mpiexec) sets per-rank variables -- ``PMI_*``, ``PMIX_*``,
``SLURM_*``, ``OMPI_*``, ``PALS_*``, the GPU selection of the task -- *after* hpcrun ran,
so hpcrun cannot copy them itself.  Apptainer's and Singularity's ``--cleanenv`` (and
``--containall``) drop them, but still honour ``APPTAINERENV_<NAME>`` /
``SINGULARITYENV_<NAME>``.  So, when the environment is cleaned, one line of POSIX sh is
put between the launcher and the runtime::

    srun ... /bin/sh -c '<script>' hpcrun-wireup apptainer exec ... IMAGE CMD...

For each variable whose *name* matches the patterns it exports ``<PREFIX>ENV_<name>``
with the value, unless that prefixed variable is already set (an explicit
``--env`` wins), then ``exec "$@"``: the runtime's argv is untouched.  Names come from
``awk``'s ``ENVIRON`` (names cannot hold newlines, values can), each is checked to be a
shell identifier, and values are copied with ``eval "_hpcrun_v=\\${$n}"``, a double-
quoted expansion that never re-parses the value.  Apptainer then evaluates ``*ENV_`` values
once more in the container's shell (``export NAME="VALUE"``, only ``"`` escaped; see
``hpcrun.render.runtimes``), so a value holding ``\\``, ``$`` or a backquote (a job name
``a$b``) gets those backslash-escaped first -- the same rule as
:func:`~hpcrun.render.runtimes.escape_container_value`, applied by parameter expansion only
when such a character is present (no subprocess, trailing newlines kept).  Values arrive in
the application byte for byte.  (Runtime option ``--no-eval`` is not special-cased: with it
the escapes would stay visible.)

Charliecloud: ``ch-run`` passes the environment through unless ``--unset-env`` says
otherwise, so no trampoline is used; with ``--unset-env`` a warning says which patterns it
may remove.
"""

from __future__ import annotations

import re

from hpcrun.errors import ConfigError, UsageError
from hpcrun.plan.model import INFO, WARNING, Contribution, Diagnostic, Request
from hpcrun.profiles.model import Profile
from hpcrun.render.runtimes import EVALUATED_CHARS

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, List, Tuple

# Name patterns (shell globs) always forwarded: per-rank wire-up of Slurm, PMI-1/2, PMIx,
# Open MPI and PRRTE, HPE/Cray PALS, and the GPUs Slurm assigns to each task.
DEFAULT_FORWARD = (
    "PMI_*", "PMIX_*", "SLURM_*", "OMPI_*", "PRTE_*", "PALS_*",
    "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL",
)
PREFIX = {"apptainer": "APPTAINERENV_", "singularity": "SINGULARITYENV_"}
CLEANENV_LONG = ("--cleanenv", "--containall", "--cleanenv=true", "--containall=true")
# Short options of `apptainer exec` that clean the environment (-e, -C) and those that
# take a value (after which a bundle like -eB stops).
_CLEANENV_SHORT = "eC"
_VALUE_SHORT = "BHSWo"
_GLOB_OK = re.compile(r"^[A-Za-z0-9_*?]+$")
_IDENT = "[A-Za-z0-9_]"
ARGV0 = "hpcrun-wireup"


def cleanenv_options(options: Iterable[str]) -> Tuple[str, ...]:
    """The runtime options among ``options`` that clean the environment (-e, -C, long forms)."""
    found: List[str] = []
    for option in options:
        if option in CLEANENV_LONG:
            found.append(option)
        elif re.match(r"^-[A-Za-z]+$", option):
            for letter in option[1:]:
                if letter in _CLEANENV_SHORT:
                    found.append(option)
                    break
                if letter in _VALUE_SHORT:
                    break
    return tuple(found)


def cleanenv_active(profile: Profile, request: Request) -> Tuple[bool, str]:
    """Whether the container starts with a cleaned environment, and why (for reasons)."""
    if request.cleanenv:
        return True, "--cleanenv requested"
    options = cleanenv_options(tuple(profile.runtime.options) + tuple(request.runtime_options))
    if options:
        return True, f"runtime option {options[0]}"
    return False, ""


def glob_to_ere(pattern: str, where: str) -> str:
    """A variable-name glob (``I_MPI_*``, ``FI_?``) as an unanchored POSIX ERE fragment.

    Only letters, digits, ``_``, ``*`` and ``?`` are accepted: the fragment goes into an
    awk program inside a shell script, and names are identifiers anyway.
    """
    if not _GLOB_OK.match(pattern):
        raise ConfigError(f"{where}: variable pattern {pattern!r} may use only letters, "
                          "digits, _, * and ?",
                          hint="write a shell glob over variable names, e.g. I_MPI_*")
    return pattern.replace("*", _IDENT + "*").replace("?", _IDENT)


def forward_patterns(profile: Profile) -> Tuple[str, ...]:
    """The default wire-up patterns followed by the profile's ``wireup.forward``, deduplicated."""
    return tuple(dict.fromkeys(DEFAULT_FORWARD + tuple(profile.wireup.forward)))


def trampoline_script(patterns: Iterable[str], prefix: str, where: str = "wireup.forward") -> str:
    """The one-line POSIX sh script forwarding matching variables as ``<prefix><name>``.

    Run as ``sh -c SCRIPT hpcrun-wireup RUNTIME ARGS...``.  ``awk`` lists the matching
    names (identifiers only, so a strange name can never reach ``eval``); ``eval`` copies
    each value with a plain double-quoted expansion; a value holding one of
    :data:`~hpcrun.render.runtimes.EVALUATED_CHARS` gets them backslash-escaped (by
    parameter expansion, no subprocess, so trailing newlines survive), because Apptainer
    evaluates ``*ENV_`` values again in the container; ``exec "$@"`` starts the runtime.
    """
    if not re.match(r"^[A-Z][A-Z0-9_]*_$", prefix):
        raise UsageError(f"bad variable prefix {prefix!r}")
    alternatives = "|".join(glob_to_ere(p, where) for p in patterns)
    if not alternatives:
        return 'exec "$@"'
    awk = ("awk 'BEGIN{for(k in ENVIRON)if(k~/^[A-Za-z_][A-Za-z0-9_]*$/"
           f"&&k~/^({alternatives})$/)print k}}'")
    # _hpcrun_q C: put a backslash before every C in $_hpcrun_v.
    quote = ('_hpcrun_q() { _hpcrun_o=; while :; do case $_hpcrun_v in *"$1"*) '
             '_hpcrun_o=$_hpcrun_o${_hpcrun_v%%"$1"*}\\\\$1; _hpcrun_v=${_hpcrun_v#*"$1"};; '
             '*) break;; esac; done; _hpcrun_v=$_hpcrun_o$_hpcrun_v; }; ')
    quoted = [f"'{c}'" for c in EVALUATED_CHARS]  # none of them is a single quote
    any_special = "|".join(f"*{q}*" for q in quoted)
    escape = "; ".join(f"_hpcrun_q {q}" for q in quoted)
    return (quote + f'for _hpcrun_n in $({awk}); do '
            f'eval "_hpcrun_s=\\${{{prefix}$_hpcrun_n+x}} _hpcrun_v=\\${{$_hpcrun_n}}"; '
            '[ -n "$_hpcrun_s" ] && continue; '
            f'case $_hpcrun_v in {any_special}) {escape};; esac; '
            f'export "{prefix}$_hpcrun_n=$_hpcrun_v"; done; exec "$@"')


def decide(profile: Profile, request: Request, runtime: str) -> Contribution:
    """Whether wire-up variables need the trampoline, and the wrapper argv when they do.

    Apptainer/Singularity with a cleaned environment (``request.cleanenv``, or ``-e``,
    ``--cleanenv``, ``-C``, ``--containall`` among the profile's or the request's runtime
    options): ``wrapper = ("/bin/sh", "-c", SCRIPT, "hpcrun-wireup")``.  Otherwise no
    wrapper.  Charliecloud never gets one (see the module docstring).
    """
    active, why = cleanenv_active(profile, request)
    patterns = forward_patterns(profile)
    if runtime == "charliecloud":
        options = tuple(profile.runtime.options) + tuple(request.runtime_options)
        unset = [o for o in options if o.startswith("--unset-env")]
        if unset:
            return Contribution(diagnostics=(Diagnostic(
                WARNING, "wireup-unset-env",
                f"ch-run {' '.join(unset)} may remove per-rank wire-up variables "
                f"({', '.join(patterns)})",
                hint="narrow --unset-env so it spares PMI_*, PMIX_*, SLURM_* and the "
                     "profile's wireup.forward patterns", source="runtime options"),))
        return Contribution()
    if not active:
        return Contribution()
    prefix = PREFIX.get(runtime)
    if prefix is None:
        raise UsageError(f"unknown container runtime {runtime!r}",
                         hint="use apptainer, singularity or charliecloud")
    script = trampoline_script(patterns, prefix)
    note = Diagnostic(
        INFO, "wireup-trampoline",
        "{} drops the launcher's per-rank variables: a /bin/sh trampoline per rank forwards "
        "{} as {}<name>".format(why, " ".join(patterns), prefix),
        source="wireup")
    return Contribution(wrapper=("/bin/sh", "-c", script, ARGV0), diagnostics=(note,))
