"""Launcher grammars: where the launcher's options end and the image begins.

The user writes ``[LAUNCHER [LAUNCHER-OPTIONS]] IMAGE COMMAND...``.  To find IMAGE we must
know, for every option of the launcher, whether it takes a value (and how many), takes
none, or takes an optional value that can only be attached.  The tables below follow each
launcher's real parser:

* Slurm ``srun`` (22.05, ``man srun``): GNU ``getopt_long`` with ``+`` (stops at the first
  non-option): ``--opt=value`` or ``--opt value``, unique prefixes of long names, bundled
  short flags (``-lN2`` is ``-l -N 2``), optional values only attached (``-I5``,
  ``--immediate=5``), ``--`` ends the options.
* MPICH Hydra (``mpiexec.hydra``, 4.x ``ui/mpich/utils.c``): any number of leading dashes,
  ``-opt=value`` splits at ``=``, names are case-insensitive, ``-genv``/``-env`` take two
  values.
* Open MPI ``mpirun`` 4.1 (``mpirun --help all``) and 5.x (PRRTE): ``-name`` or ``--name``,
  ``--name=value``, ``-mca``/``--gmca`` take two values.

Plain ``mpirun``/``mpiexec`` is resolved by following the program on PATH
(:func:`resolve_family`); when that fails the union of the MPICH and Open MPI tables is used.
Parsing is pure; the arguments are never joined into a shell string.

An option the tables do not know does not stop the launch when the image can be found
without it: the first word that *is* a container image (an existing SIF, squashfs or ext3
file, a root file system directory, or a registry URI; ``hpcrun.image.open.
looks_like_image``) starts it.  Only when that word could be the unknown option's value and
the next word is an image too does hpcrun ask for ``--image``.  MPMD launches of Hydra and
Open MPI (``A : OPTIONS IMAGE B``, one image) are split into ``CommandLine.mpmd``; the ones
whose programs come from a file (``srun --multi-prog FILE``, Hydra's ``-configfile``, Open
MPI's ``--app``) and srun's ``:`` are refused: srun would otherwise read the container
runtime as its ``--multi-prog`` configuration file (:mod:`hpcrun.launch.guess`).
"""

from __future__ import annotations

import os

from hpcrun.errors import UsageError
from hpcrun.launch.which import which
from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

SRUN = "srun"
HYDRA = "hydra"
OPENMPI = "openmpi"
GENERIC_MPI = "mpi"  # mpirun/mpiexec of unknown implementation: union of the tables

_HINT_IMAGE = ("if this is a valid launcher option hpcrun does not know yet, name the image "
               "with `hpcrun --image IMAGE ...` so hpcrun can split the command line there")


@record
class OptionSpec:
    """One launcher option: its canonical ``key``, how many values it takes (0, 1, 2),
    whether the value is optional (then only attached: ``--opt=v`` / ``-Xv``), and whether
    it may repeat with different first values (``-genv A 1 -genv B 2``)."""

    key: str
    arity: int = 0
    optional: bool = False
    repeatable: bool = False


@record
class LauncherOption:
    """Launcher option words as the user typed them, with the option identities they carry
    (several for bundled short flags such as ``-lN2``)."""

    keys: Tuple[str, ...]
    words: Tuple[str, ...]


@record
class CommandLine:
    """The user's command line split into launcher argv, image and application argv."""

    launcher: Tuple[str, ...]  # launcher name and its options; () for no launcher
    image: str
    command: Tuple[str, ...]
    family: str = ""  # srun | hydra | openmpi | mpi, "" without launcher
    options: Tuple[LauncherOption, ...] = ()
    # MPMD (Hydra / Open MPI ``A : B``): the further programs as (local options, command)
    mpmd: Tuple[Tuple[Tuple[str, ...], Tuple[str, ...]], ...] = ()


# --------------------------------------------------------------------------- tables

def _table(flags: str = "", values: str = "", optional: str = "", two: str = "",
           repeat: str = "", aliases: Optional[Mapping[str, str]] = None
           ) -> Dict[str, OptionSpec]:
    """Build a name -> OptionSpec table from space-separated name lists."""
    table: Dict[str, OptionSpec] = {}
    repeatable = set(repeat.split())
    for names, arity, opt in ((flags, 0, False), (values, 1, False), (optional, 1, True),
                              (two, 2, False)):
        for name in names.split():
            table[name] = OptionSpec(name, arity, opt, name in repeatable)
    for alias, target in (aliases or {}).items():
        table[alias] = table[target]
    return table


SRUN_LONG = _table(
    flags="contiguous disable-status exact help hold label multi-prog no-allocate overcommit "
          "overlap oversubscribe preserve-env pty quiet quit-on-interrupt reboot spread-job "
          "test-only unbuffered usage use-min-nodes verbose version external-launcher",
    values="accel-bind account acctg-freq bb bbf bcast-exclude begin chdir cluster-constraint "
           "clusters comment constraint container container-id core-spec cores-per-socket "
           "cpu-bind cpu-freq cpus-per-gpu cpus-per-task ctrl-comm-ifhn deadline delay-boot "
           "dependency distribution epilog error exclude export extra-node-info gid gpu-bind "
           "gpu-freq gpus gpus-per-node gpus-per-socket gpus-per-task gres gres-flags "
           "het-group hint input job-name jobid licenses mail-type mail-user mcs-label mem "
           "mem-bind mem-per-cpu mem-per-gpu mincpus mpi mpi-combine msg-timeout network "
           "nodefile nodelist nodes ntasks ntasks-per-core ntasks-per-gpu ntasks-per-node "
           "ntasks-per-socket open-mode output partition power prefer priority profile prolog "
           "qos relative reservation signal slurmd-debug sockets-per-node switches "
           "task-epilog task-prolog thread-spec threads threads-per-core time time-min tmp "
           "tres-bind tres-per-task uid wait wckey",
    optional="bcast compress exclusive immediate kill-on-bad-exit nice no-kill propagate "
             "resv-ports send-libs x11",
    aliases={"cpu_bind": "cpu-bind", "mem_bind": "mem-bind", "slurmd_debug": "slurmd-debug"},
)

SRUN_SHORT: Dict[str, OptionSpec] = {
    letter: SRUN_LONG[name] for letter, name in {
        "A": "account", "b": "begin", "B": "extra-node-info", "c": "cpus-per-task",
        "C": "constraint", "d": "dependency", "D": "chdir", "e": "error", "E": "preserve-env",
        "F": "nodefile", "G": "gpus", "h": "help", "H": "hold", "i": "input",
        "I": "immediate", "J": "job-name", "k": "no-kill", "K": "kill-on-bad-exit",
        "l": "label", "L": "licenses", "m": "distribution", "M": "clusters", "n": "ntasks",
        "N": "nodes", "o": "output", "O": "overcommit", "p": "partition", "q": "qos",
        "Q": "quiet", "r": "relative", "s": "oversubscribe", "S": "core-spec", "t": "time",
        "T": "threads", "u": "unbuffered", "v": "verbose", "V": "version", "w": "nodelist",
        "W": "wait", "x": "exclude", "X": "disable-status", "Z": "no-allocate",
    }.items()
}

HYDRA_TABLE = _table(
    flags="help h genvnone genvall envnone envall enable-x disable-x verbose v debug info "
          "version print-all-exitcodes disable-auto-cleanup dac enable-auto-cleanup "
          "disable-hostname-propagation enable-hostname-propagation prepend-rank l profile "
          "pmi-port nopmi-port skip-launch-node silent-abort",
    values="genvlist f hostfile machinefile machine machines machinelist host hosts hostlist "
           "ppn prepend-pattern outfile-pattern errfile-pattern outfile errfile wdir "
           "configfile envlist n np launcher launcher-exec bootstrap bootstrap-exec rmk "
           "topolib binding bind-to map-by membind demux iface nameserver localhost usize "
           "tree-width order-nodes gpus-per-proc gpu-subdevs-per-proc tmpdir",
    two="genv env",
    repeat="genv env",
)
# Aliases that mean the same setting in Hydra (identity for profile defaults).
_HYDRA_SAME = {
    "h": "help", "np": "n", "hostfile": "f", "machinefile": "f", "machine": "hosts",
    "machines": "hosts", "machinelist": "hosts", "host": "hosts", "hostlist": "hosts",
    "l": "prepend-rank", "v": "verbose", "debug": "verbose", "version": "info",
    "dac": "disable-auto-cleanup", "outfile": "outfile-pattern", "errfile": "errfile-pattern",
    "binding": "bind-to", "bootstrap": "launcher", "bootstrap-exec": "launcher-exec",
}
for _alias, _target in _HYDRA_SAME.items():
    HYDRA_TABLE[_alias] = OptionSpec(_target, HYDRA_TABLE[_alias].arity,
                                     HYDRA_TABLE[_alias].optional,
                                     HYDRA_TABLE[_alias].repeatable)

OPENMPI_TABLE = _table(
    flags="allow-run-as-root bind-to-core bind-to-socket bycore bynode byslot continuous "
          "debug debug-daemons debug-daemons-file debug-devel d disable-recovery "
          "display-allocation display-devel-allocation display-devel-map "
          "display-diffable-map display-map display-topo do-not-launch do-not-resolve dvm "
          "enable-instant-on-support enable-recovery fwd-mpirun-port get-stack-traces "
          "index-argv-by-rank leave-session-attached merge-stderr-to-stdout nolocal "
          "nooversubscribe noprefix novm output-proctable oversubscribe pernode q quiet "
          "report-bindings report-child-jobs-separately report-state-on-timeout "
          "set-cwd-to-session-dir show-progress s preload-binary tag-output "
          "timestamp-output tv use-hwthread-cpus use-regexp v verbose V version xml "
          "h help fwd-environment stop-on-exec stop-in-init stop-in-app parsable parseable "
          "no-ready-msg",
    values="am app bind-to cf cartofile cpu-list cpu-set cpus-per-proc cpus-per-rank "
           "debugger default-hostfile hnp hostfile launch-agent machinefile map-by "
           "max-restarts max-vm-size N n c np npernode npersocket ompi-server "
           "output-filename path personality ppr prefix preload-files rank-by report-events "
           "report-pid report-uri rf rankfile stdin timeout tune wd wdir xml-file xterm H "
           "host x display output runtime-options stream-buffering forward-signals "
           "add-host add-hostfile dvm-uri pset spawn-timeout keepalive with-ft "
           "memory-alloc-kinds rank-file unset-env",
    two="mca gmca omca pmca prtemca pmixmca tune-mca",
    repeat="mca gmca omca pmca prtemca pmixmca x unset-env",
)
_OPENMPI_SAME = {
    "n": "np", "c": "np", "H": "host", "machinefile": "hostfile", "cf": "cartofile",
    "rf": "rankfile", "rank-file": "rankfile", "wd": "wdir", "q": "quiet", "v": "verbose",
    "V": "version", "h": "help", "d": "debug-devel", "s": "preload-binary",
    "parseable": "parsable", "cpus-per-rank": "cpus-per-proc",
}
for _alias, _target in _OPENMPI_SAME.items():
    OPENMPI_TABLE[_alias] = OptionSpec(_target, OPENMPI_TABLE[_alias].arity,
                                       OPENMPI_TABLE[_alias].optional,
                                       OPENMPI_TABLE[_alias].repeatable)


# --------------------------------------------------------------------------- families

_FAMILY_BY_NAME = {
    "srun": SRUN,
    "mpiexec.hydra": HYDRA, "mpirun.mpich": HYDRA, "mpiexec.mpich": HYDRA, "hydra": HYDRA,
    "mpirun.hydra": HYDRA,
    "mpirun.openmpi": OPENMPI, "mpiexec.openmpi": OPENMPI, "orterun": OPENMPI,
    "prterun": OPENMPI, "orterun.openmpi": OPENMPI,
    "mpirun": GENERIC_MPI, "mpiexec": GENERIC_MPI,
}


def launcher_family(word: str) -> str:
    """The grammar family of a launcher word (path or name), or "" if it is no launcher.

    ``srun`` -> srun; ``mpiexec.hydra``, ``mpirun.mpich`` -> hydra; ``mpirun.openmpi``,
    ``mpiexec.openmpi`` -> openmpi; plain ``mpirun``/``mpiexec`` -> mpi (unknown yet).
    """
    return _FAMILY_BY_NAME.get(os.path.basename(word), "")


def base_name(word: str) -> str:
    """The name profile defaults are keyed by: srun, mpirun or mpiexec."""
    name = os.path.basename(word)
    for base in ("srun", "mpirun", "mpiexec"):
        if name == base or name.startswith(base + "."):
            return base
    if name in ("orterun", "prterun", "orterun.openmpi"):
        return "mpirun"
    return name


def resolve_family(word: str, environ: Mapping[str, str], mpi_family: str = "") -> str:
    """Resolve a plain ``mpirun``/``mpiexec`` to hydra or openmpi.

    Follows the program on ``PATH`` through its symbolic links (Debian's alternatives point
    ``mpirun`` at ``mpirun.openmpi`` or ``mpirun.mpich``); then the profile's MPI family
    (mpich -> hydra, openmpi -> openmpi); otherwise the union grammar.  Reads only the file
    system, starts nothing.
    """
    family = launcher_family(word)
    if family != GENERIC_MPI:
        return family
    found = word if os.sep in word else which(word, path=environ.get("PATH", ""))
    if found:
        real = launcher_family(os.path.realpath(found))
        if real and real != GENERIC_MPI:
            return real
    if mpi_family == "mpich":
        return HYDRA
    if mpi_family == "openmpi":
        return OPENMPI
    return GENERIC_MPI


# --------------------------------------------------------------------------- parsing

def _unknown(word: str, launcher: str) -> UsageError:
    return UsageError(f"unknown {launcher} option {word!r}: cannot tell where the image starts",
                      _HINT_IMAGE)


def _missing_value(word: str, launcher: str) -> UsageError:
    return UsageError(f"{launcher} option {word!r} needs a value but the command line ends",
                      "give the option its value, then the image and the command")


def _identity(spec: OptionSpec, values: Sequence[str]) -> str:
    """The identity used to compare a user option with a profile default."""
    if spec.repeatable and values:
        return spec.key + " " + values[0].split("=", 1)[0]
    return spec.key


def _lookup_getopt_long(name: str) -> Tuple[str, OptionSpec]:
    """getopt_long lookup: exact name, else a unique prefix of one option."""
    if name in SRUN_LONG:
        return name, SRUN_LONG[name]
    matches = sorted({n for n in SRUN_LONG if n.startswith(name)})
    specs = {SRUN_LONG[n] for n in matches}
    if name and len(specs) == 1:
        return matches[0], SRUN_LONG[matches[0]]
    if name and len(specs) > 1:
        raise UsageError(f"srun option '--{name}' is ambiguous ({', '.join(matches[:6])})",
                         "spell the option out in full")
    raise KeyError(name)


def _parse_srun(words: Sequence[str], i: int, strict: bool) -> Tuple[LauncherOption, int]:
    word = words[i]
    if word.startswith("--"):
        name, sep, value = word[2:].partition("=")
        try:
            _, spec = _lookup_getopt_long(name)
        except KeyError:
            if strict:
                raise _unknown(word, "srun") from None
            return LauncherOption((name,), (word,)), i + 1
        if spec.arity == 0:
            if sep:
                raise UsageError(f"srun option '--{name}' takes no value: {word!r}",
                                 f"write '--{name}' alone")
            return LauncherOption((spec.key,), (word,)), i + 1
        if sep or spec.optional:
            return LauncherOption((_identity(spec, [value]),), (word,)), i + 1
        if i + 1 >= len(words):
            raise _missing_value(word, "srun")
        return LauncherOption((_identity(spec, [words[i + 1]]),), (word, words[i + 1])), i + 2
    # Bundled short options: -lN2, -n2, -lN 2
    keys: List[str] = []
    j = 1
    while j < len(word):
        letter = word[j]
        spec_or_none = SRUN_SHORT.get(letter)
        if spec_or_none is None:
            if strict:
                raise _unknown(word if len(word) == 2 else f"-{letter} (in {word})", "srun")
            keys.append(letter)
            j += 1
            continue
        spec = spec_or_none
        rest = word[j + 1:]
        if spec.arity == 0:
            keys.append(spec.key)
            j += 1
            continue
        if rest or spec.optional:
            keys.append(spec.key)
            return LauncherOption(tuple(keys), (word,)), i + 1
        if i + 1 >= len(words):
            raise _missing_value(word, "srun")
        keys.append(spec.key)
        return LauncherOption(tuple(keys), (word, words[i + 1])), i + 2
    return LauncherOption(tuple(keys), (word,)), i + 1


def _parse_table(words: Sequence[str], i: int, strict: bool,
                 tables: Sequence[Dict[str, OptionSpec]], launcher: str, fold_case: bool
                 ) -> Tuple[LauncherOption, int]:
    """Hydra / Open MPI style: any leading dashes, ``name=value`` split, N values."""
    word = words[i]
    body = word.lstrip("-")
    name, sep, inline = body.partition("=")
    spec: Optional[OptionSpec] = None
    for table in tables:
        spec = table.get(name.lower() if fold_case else name)
        if spec is None and fold_case:
            spec = table.get(name)
        if spec is not None:
            break
    if spec is None:
        if strict:
            raise _unknown(word, launcher)
        return LauncherOption((name,), (word,)), i + 1
    if spec.arity == 0:
        return LauncherOption((spec.key,), (word,)), i + 1
    values: List[str] = [inline] if sep else []
    need = spec.arity - len(values)
    if i + 1 + need > len(words):
        raise _missing_value(word, launcher)
    taken = tuple(words[i + 1:i + 1 + need])
    values.extend(taken)
    return LauncherOption((_identity(spec, values),), (word, *taken)), i + 1 + need


def parse_options(family: str, words: Sequence[str], strict: bool = True
                  ) -> Tuple[Tuple[LauncherOption, ...], int]:
    """Parse launcher options from ``words`` (without the launcher name).

    Returns the options and the index of the first word that is not an option (the image),
    ``len(words)`` when there is none.  A ``--`` ends the options and stays in the launcher's
    argv (Hydra rejects it: UsageError).  ``strict`` raises :class:`UsageError` on unknown
    options; otherwise they count as flags (used for profile defaults and ``--image`` splits).
    """
    options: List[LauncherOption] = []
    i = 0
    name = {SRUN: "srun", HYDRA: "mpiexec.hydra", OPENMPI: "mpirun (Open MPI)"}.get(family,
                                                                                  "mpirun")
    while i < len(words):
        word = words[i]
        if word == "--":
            if family == HYDRA:
                raise UsageError("mpiexec.hydra does not accept '--' (it reports \"unrecognized "
                                 "argument\")", "remove the '--' before the image")
            options.append(LauncherOption(("--",), (word,)))
            return tuple(options), i + 1
        if word == ":":
            raise _mpmd()
        if not word.startswith("-") or word == "-":
            break
        if family == SRUN:
            option, i = _parse_srun(words, i, strict)
        elif family == HYDRA:
            option, i = _parse_table(words, i, strict, [HYDRA_TABLE], name, True)
        elif family == OPENMPI:
            option, i = _parse_table(words, i, strict, [OPENMPI_TABLE], name, False)
        else:
            option, i = _parse_table(words, i, strict, [OPENMPI_TABLE, HYDRA_TABLE], name, False)
        options.append(option)
    return tuple(options), i


MPMD_HINT = ("hpcrun wraps MPMD programs written as `mpiexec -n 1 IMAGE A : -n 1 IMAGE B` "
             "(one image); otherwise print one program's runtime command with `hpcrun "
             "--dry-run ...` and write the launcher's MPMD line or file with it by hand")


def _mpmd() -> UsageError:
    return UsageError("':' here is not an MPMD launch hpcrun can wrap (srun's ':' separates "
                      "heterogeneous job components; before the image no program is named)",
                      MPMD_HINT)


def split_command_line(words: Sequence[str], image: str = "", family: str = "",
                       environ: Optional[Mapping[str, str]] = None, mpi_family: str = "",
                       is_image: Optional[Callable[[str], bool]] = None) -> CommandLine:
    """Split ``[LAUNCHER [OPTIONS]] IMAGE COMMAND...`` into its parts.

    ``image`` is hpcrun's ``--image``: when given and present among the words, the command
    line is split at that word without needing to understand the launcher options; when
    absent from the words, the first non-option word starts the command.  ``family``
    overrides the launcher grammar (tests); otherwise it is resolved from the launcher name
    (``environ`` PATH and ``mpi_family`` help for plain mpirun/mpiexec).  With an option
    the tables do not know, the image is the first word ``is_image`` accepts (default:
    :func:`hpcrun.image.open.looks_like_image`).
    """
    words = tuple(words)
    if not words:
        raise UsageError("nothing to run: give an image and a command",
                         "usage: hpcrun [OPTIONS] [srun|mpirun|mpiexec ...] IMAGE COMMAND...")
    first = launcher_family(words[0])
    if not first:
        if image and words[0] != image:
            return CommandLine((), image, _command(words, image))
        return CommandLine((), words[0], _command(words[1:], words[0]))
    fam = family or (resolve_family(words[0], environ or {}, mpi_family)
                     if first == GENERIC_MPI else first)
    rest = words[1:]
    if image and image in rest:
        at = rest.index(image)
        options, _ = parse_options(fam, rest[:at], strict=False)
        launcher = (words[0], *rest[:at])
        command = rest[at + 1:]
        img = image
    else:
        try:
            options, at = parse_options(fam, rest, strict=True)
        except UsageError as error:
            if image or not error.message.startswith("unknown"):
                raise
            from hpcrun.launch.guess import default_is_image, find_image

            found = find_image(fam, rest, is_image or default_is_image,
                               os.path.basename(words[0]))
            if found is None:
                raise
            options, _ = parse_options(fam, rest[:found], strict=False)
            at = found
        launcher = (words[0], *rest[:at])
        if image:
            img, command = image, rest[at:]
        else:
            if at >= len(rest):
                raise UsageError(f"no image after the {os.path.basename(words[0])} options",
                                 "usage: hpcrun [OPTIONS] LAUNCHER [OPTIONS] IMAGE COMMAND...")
            img, command = rest[at], rest[at + 1:]
    from hpcrun.launch.guess import check_mpmd, split_mpmd

    name = os.path.basename(words[0])
    check_mpmd(fam, options, name)
    mpmd: Tuple[Tuple[Tuple[str, ...], Tuple[str, ...]], ...] = ()
    if ":" in command:
        if fam == SRUN:
            raise _mpmd()
        command, mpmd = split_mpmd(fam, command, img, name)
    return CommandLine(launcher, img, _command(command, img), fam, options, mpmd)


def _command(command: Sequence[str], image: str) -> Tuple[str, ...]:
    if not image:
        raise UsageError("the image argument is empty", "give the path of the image")
    if not command:
        raise UsageError(f"nothing to run after the image {image!r}",
                         "give the command to run inside the container, e.g. "
                         f"`hpcrun ... {image} python app.py`")
    return tuple(command)


def merge_defaults(family: str, launcher: Sequence[str], defaults: Sequence[str]
                   ) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """Add profile default options the user did not give; the user's choice always wins.

    Options are compared by identity (``--mpi=pmi2`` and ``--mpi pmix`` are both ``mpi``;
    ``-n 2`` and ``--ntasks=4`` both ``ntasks``).  The defaults go right after the launcher
    name, the user's words follow unchanged.  Returns (new launcher argv, the default words
    that were added).
    """
    if not launcher or not defaults:
        return tuple(launcher), ()
    user, _ = parse_options(family, list(launcher[1:]), strict=False)
    given = {key for option in user for key in option.keys}
    wanted, _ = parse_options(family, list(defaults), strict=False)
    added: List[str] = []
    for option in wanted:
        if option.keys == ("--",) or any(key in given for key in option.keys):
            continue
        added.extend(option.words)
    return (launcher[0], *added, *launcher[1:]), tuple(added)
