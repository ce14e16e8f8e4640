"""Thread counts (``OMP_NUM_THREADS`` ...) from the job's allocation, decided once per job.

A containerised MPI rank that does not know its share of the node starts one OpenMP /
BLAS thread per CPU it sees, and N ranks per node then fight over the same cores.  So,
unless the user chose a value, hpcrun sets each of ``profile.threads.variables`` inside
the container, on the launch node, once for the whole job (no per-rank Python), from the
first source that says something:

1. ``--threads N``;
2. the launcher's own options: ``srun -c N`` / ``--cpus-per-task=N`` (also bundled, as
   ``-c2`` or ``-lc2``), ``mpirun --cpus-per-rank N`` / ``--cpus-per-proc N`` /
   ``--map-by ...:PE=N``;
3. ``SLURM_CPUS_PER_TASK`` (the job's ``--cpus-per-task``; the step's own ``-c`` in (2)
   is more specific, which is why it comes first);
4. the cgroup CPU quota of the launch process divided by the ranks per node;
5. the CPUs this process may use (affinity) divided by the ranks per node.

Ranks per node come from ``--ntasks-per-node`` / ``--npernode`` / ``-ppn`` / ``ppr:N:node``,
else ranks / nodes (``-n`` with ``-N`` or ``SLURM_JOB_NUM_NODES``), else Slurm's
``SLURM_NTASKS_PER_NODE`` / ``SLURM_TASKS_PER_NODE``.  The launcher grammar here is a
small local parser (only the options above matter; ``hpcrun.launch`` owns the full one).
"""

from __future__ import annotations

import math
import os
import re

from hpcrun.errors import UsageError
from hpcrun.host.facts import HostFacts
from hpcrun.plan.model import INFO, WARNING, Contribution, Diagnostic, EnvVar, Request
from hpcrun.profiles.model import Profile
from hpcrun.records import record
from hpcrun.render.wireup import cleanenv_active

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Mapping, Sequence, Tuple

# srun short options that take a value (the rest of the token or the next token).
_SRUN_VALUE_SHORT = "ABCDGJLMNSTWbcdeimnopqrtwx"
# Long options (srun and mpirun/mpiexec) whose value is the next token when not "=...".
_VALUE_LONG = {
    "cpus-per-task", "ntasks", "nodes", "ntasks-per-node", "np", "n", "N", "npernode",
    "ppn", "perhost", "cpus-per-rank", "cpus-per-proc", "map-by", "host", "H", "hostfile",
    "machinefile", "f",
}
_HOSTS = {"host", "H", "hostfile", "machinefile", "f"}
_PE = re.compile(r"[:,]pe=([0-9]+)", re.IGNORECASE)
_PPR = re.compile(r"^ppr:([0-9]+):node", re.IGNORECASE)


@record
class LaunchShape:
    """What a launcher's options say about ranks and CPUs (0 / "" when they say nothing)."""

    cpus_per_rank: int = 0
    cpus_option: str = ""  # the option it came from, for reasons
    ranks: int = 0
    nodes: int = 0
    ranks_per_node: int = 0
    ranks_option: str = ""
    hosts_given: bool = False  # mpirun --host/--hostfile: ranks spread over unknown nodes


def _int(text: str) -> int:
    match = re.match(r"^\s*([0-9]+)", text)
    return int(match.group(1)) if match else 0


def _srun_options(argv: Sequence[str]) -> Dict[str, Tuple[str, str]]:
    """srun options of interest as {c, n, N, ntasks-per-node: (value, spelling)}."""
    found: Dict[str, Tuple[str, str]] = {}
    short_names = {"c": "c", "n": "n", "N": "N"}
    long_names = {"cpus-per-task": "c", "ntasks": "n", "nodes": "N",
                  "ntasks-per-node": "ntasks-per-node"}
    index = 0
    while index < len(argv):
        token = argv[index]
        index += 1
        if token.startswith("--"):
            name, eq, value = token[2:].partition("=")
            if name in long_names:
                if not eq and index < len(argv):
                    value = argv[index]
                    index += 1
                found[long_names[name]] = (value, token if eq else token + " " + value)
        elif token.startswith("-") and len(token) > 1:
            for pos in range(1, len(token)):
                letter = token[pos]
                if letter in _SRUN_VALUE_SHORT:
                    value = token[pos + 1:]
                    spelled = token
                    if not value and index < len(argv):
                        value = argv[index]
                        index += 1
                        spelled = token + " " + value
                    if letter in short_names:
                        found[short_names[letter]] = (value, spelled)
                    break
    return found


def _mpirun_options(argv: Sequence[str]) -> Dict[str, Tuple[str, str]]:
    """mpirun/mpiexec options of interest (single or double dash, "=" or next token)."""
    found: Dict[str, Tuple[str, str]] = {}
    index = 0
    while index < len(argv):
        token = argv[index]
        index += 1
        if not token.startswith("-") or token == "-":
            continue
        name, eq, value = token.lstrip("-").partition("=")
        if name not in _VALUE_LONG:
            continue
        if not eq and index < len(argv):
            value = argv[index]
            index += 1
        found[name] = (value, token if eq else token + " " + value)
    return found


def _srun_shape(argv: Sequence[str]) -> LaunchShape:
    opts = _srun_options(argv)
    cpus, cpus_opt = opts.get("c", ("", ""))
    ranks, ranks_opt = opts.get("n", ("", ""))
    nodes, nodes_opt = opts.get("N", ("", ""))
    per_node, per_node_opt = opts.get("ntasks-per-node", ("", ""))
    spelled = " ".join(o for o in ("srun", ranks_opt, nodes_opt, per_node_opt) if o)
    return LaunchShape(
        cpus_per_rank=_int(cpus), cpus_option=("srun " + cpus_opt) if _int(cpus) else "",
        ranks=_int(ranks), nodes=_int(nodes), ranks_per_node=_int(per_node),
        ranks_option=spelled if (ranks or nodes or per_node) else "")


def launcher_shape(launcher: Sequence[str]) -> LaunchShape:
    """Parse the launcher argv (name + options) for CPUs per rank, ranks and ranks per node."""
    if not launcher:
        return LaunchShape(ranks=1, nodes=1, ranks_per_node=1, ranks_option="no launcher")
    name = os.path.basename(launcher[0])
    argv = launcher[1:]
    if name == "srun":
        return _srun_shape(argv)
    opts = _mpirun_options(argv)
    cpus = 0
    cpus_opt = ""
    per_node = 0
    per_node_opt = ""
    for key in ("cpus-per-rank", "cpus-per-proc"):
        if key in opts and _int(opts[key][0]):
            cpus, cpus_opt = _int(opts[key][0]), opts[key][1]
    if "map-by" in opts:
        value, spelled = opts["map-by"]
        pe = _PE.search(value)
        if pe:
            cpus, cpus_opt = int(pe.group(1)), spelled
        ppr = _PPR.match(value)
        if ppr:
            per_node, per_node_opt = int(ppr.group(1)), spelled
    for key in ("npernode", "N", "ppn", "perhost"):
        if key in opts and _int(opts[key][0]):
            per_node, per_node_opt = _int(opts[key][0]), opts[key][1]
    ranks, ranks_opt = 0, ""
    for key in ("np", "n"):
        if key in opts and _int(opts[key][0]):
            ranks, ranks_opt = _int(opts[key][0]), opts[key][1]
    spelled = " ".join(o for o in (name, ranks_opt, per_node_opt) if o)
    return LaunchShape(
        cpus_per_rank=cpus, cpus_option=(name + " " + cpus_opt) if cpus else "",
        ranks=ranks, ranks_per_node=per_node,
        ranks_option=spelled if (ranks or per_node) else "",
        hosts_given=any(k in opts for k in _HOSTS))


def _slurm_tasks_per_node(environ: Mapping[str, str]) -> int:
    """The largest per-node task count of ``SLURM_TASKS_PER_NODE`` ("4(x2),3"), 0 if absent."""
    counts = [_int(part) for part in environ.get("SLURM_TASKS_PER_NODE", "").split(",")]
    return max(counts) if counts else 0


def ranks_per_node(shape: LaunchShape, environ: Mapping[str, str], launcher: Sequence[str]) -> \
        Tuple[int, str]:
    """Ranks this job runs per node and how that was derived; (0, "") when unknown.

    srun reads ``SLURM_NTASKS`` / ``SLURM_NNODES`` as defaults for -n / -N, so they fill
    in what the options leave out; mpirun in an allocation spreads over its nodes.
    """
    if shape.ranks_per_node:
        return shape.ranks_per_node, shape.ranks_option
    if not launcher:
        return 1, "no launcher: one process"
    ranks, ranks_why = shape.ranks, shape.ranks_option
    nodes, nodes_why = shape.nodes, ""
    is_srun = os.path.basename(launcher[0]) == "srun"
    if is_srun and not ranks and _int(environ.get("SLURM_NTASKS", "")):
        ranks = _int(environ["SLURM_NTASKS"])
        ranks_why = f"SLURM_NTASKS={ranks}"
    if not nodes:
        for key in ("SLURM_NNODES", "SLURM_JOB_NUM_NODES"):
            if _int(environ.get(key, "")):
                nodes, nodes_why = _int(environ[key]), f"{key}={environ[key]}"
                break
    if ranks and shape.hosts_given and not shape.nodes:
        return 0, ""
    if ranks:
        if nodes:
            why = " ".join(w for w in (ranks_why, nodes_why) if w)
            return max(1, math.ceil(ranks / nodes)), why + " (ranks / nodes)"
        return ranks, ranks_why + " on one node"
    if is_srun and nodes:
        return 1, "srun -N without -n: one task per node"
    per_node = _int(environ.get("SLURM_NTASKS_PER_NODE", ""))
    if per_node:
        return per_node, f"SLURM_NTASKS_PER_NODE={per_node}"
    per_node = _slurm_tasks_per_node(environ)
    if per_node:
        return per_node, "SLURM_TASKS_PER_NODE={}".format(environ["SLURM_TASKS_PER_NODE"])
    return 0, ""


def _mode(profile: Profile, request: Request) -> Tuple[str, int, str]:
    """("off" | "auto" | "fixed", N, why)."""
    if request.threads:
        value = request.threads.strip().lower()
        if value in ("off", "auto"):
            return value, 0, f"--threads {value}"
        if value.isdigit() and int(value) > 0:
            return "fixed", int(value), f"--threads {value}"
        raise UsageError(f"--threads {request.threads}: expected a positive number, auto or "
                         "off", hint="for example --threads 4")
    return ("off" if profile.threads.mode == "off" else "auto"), 0, \
        f"profile threads.mode = {profile.threads.mode}"


def derive(profile: Profile, request: Request, host: HostFacts, environ: Mapping[str, str]) -> \
        Tuple[int, str, Tuple[Diagnostic, ...]]:
    """The thread count for the job and why: (N, reason, diagnostics); N = 0 when unknown."""
    mode, fixed, why = _mode(profile, request)
    if mode == "off":
        return 0, why, ()
    shape = launcher_shape(request.launcher)
    rpn, rpn_why = ranks_per_node(shape, environ, request.launcher)
    value, reason = 0, ""
    if mode == "fixed":
        value, reason = fixed, why
    elif shape.cpus_per_rank:
        value, reason = shape.cpus_per_rank, f"CPUs per rank from {shape.cpus_option}"
    elif _int(environ.get("SLURM_CPUS_PER_TASK", "")):
        value = _int(environ["SLURM_CPUS_PER_TASK"])
        reason = "SLURM_CPUS_PER_TASK={}".format(environ["SLURM_CPUS_PER_TASK"])
    elif rpn and host.cgroup_cpu_quota > 0:
        value = max(1, int(host.cgroup_cpu_quota // rpn))
        reason = (f"cgroup CPU quota {host.cgroup_cpu_quota:g} CPUs / {rpn} rank(s) per node "
                  f"({rpn_why})")
    elif rpn and host.cpus > 0:
        value = max(1, host.cpus // rpn)
        reason = (f"{host.cpus} CPUs usable on the launch node / {rpn} rank(s) per node "
                  f"({rpn_why})")
    diagnostics: List[Diagnostic] = []
    if not value:
        diagnostics.append(Diagnostic(
            INFO, "threads-unknown",
            "could not tell how many CPUs each rank gets (no -c/--cpus-per-task, no "
            "SLURM_CPUS_PER_TASK, ranks per node unknown): thread variables left alone",
            hint="give the launcher -c N (srun) or --map-by ...:PE=N (mpirun), or --threads N",
            source="threads"))
        return 0, "", tuple(diagnostics)
    if rpn and host.cpus and rpn * value > host.cpus:
        diagnostics.append(Diagnostic(
            WARNING, "threads-oversubscribed",
            f"{rpn} rank(s) per node x {value} thread(s) = {rpn * value} exceeds the "
            f"{host.cpus} CPU(s) of this node",
            hint="lower --threads or the ranks per node, or ask for more CPUs per task (-c)",
            source="threads"))
    return value, reason, tuple(diagnostics)


def decide(profile: Profile, request: Request, host: HostFacts, environ: Mapping[str, str]) -> \
        Contribution:
    """Set ``profile.threads.variables`` in the container from the allocation (see module doc).

    A variable the user set (``--env`` or the calling environment) is left alone; under a
    cleaned environment (``--cleanenv``) the user's own value from the environment is
    passed in explicitly, since the runtime would drop it.  ``--threads N`` overrides the
    environment but not an explicit ``--env``.
    """
    names = tuple(dict.fromkeys(profile.threads.variables))
    if not names:
        return Contribution()
    mode, _fixed, _why = _mode(profile, request)
    if mode == "off":
        return Contribution()
    user_env = dict(request.user_env)
    cleaned, cleaned_why = cleanenv_active(profile, request)
    value, reason, diagnostics = derive(profile, request, host, environ)
    env: List[EnvVar] = []
    for name in names:
        if name in user_env:
            continue
        if name in environ and mode != "fixed":
            if cleaned:
                env.append(EnvVar(name, environ[name], source="threads",
                                  reason=f"the user's {name}={environ[name]}, passed in "
                                         f"explicitly ({cleaned_why} drops the environment)"))
            continue
        if value:
            env.append(EnvVar(name, str(value), source="threads",
                              reason=f"{name}={value} per rank, decided once for the job: "
                                     f"{reason}"))
    return Contribution(env=tuple(env), diagnostics=diagnostics)

