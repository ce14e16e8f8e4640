"""Can this launcher start ranks of the host MPI?  Decided before launch, from data.

A launcher serves process-management interfaces (Hydra: the PMI wire protocol; Open MPI's
mpirun: PMIx; srun: whatever its ``--mpi`` plugin serves); the host MPI library is a
client of some of them (:func:`hpcrun.host.launcher.pmi_clients`).  When they share none,
the ranks cannot find each other: MPICH under Open MPI's ``mpirun`` or under ``srun
--mpi=pmix``/``none`` starts N singletons of size 1 and exits 0; Open MPI 4 under ``srun
--mpi=pmi2`` fails in ``MPI_Init``.  Such a launch is refused with one error naming the
launcher (and the links followed to it), the interfaces on both sides and, in the hint,
the launcher or ``--mpi`` value that would work.  The knowledge is
``data/wireup-rules.json``; this module only evaluates it.  Pure.
"""

from __future__ import annotations

import fnmatch

from hpcrun.plan.model import ERROR, INFO, Contribution, Diagnostic

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

    from hpcrun.host.launcher import LauncherInfo, PmiClients, SlurmMpi

MISMATCH = "launcher-cannot-wire-up"
NOT_OFFERED = "srun-mpi-plugin-not-offered"
UNKNOWN = "wire-up-not-checked"
WIRES_UP = "launcher-wires-up"


def _label(rules: Mapping[str, Any], kind: str) -> str:
    return next((r["label"] for r in rules["launchers"] if r["kind"] == kind), kind)


def _plugin_rule(rules: Mapping[str, Any], plugin: str) -> Optional[Dict[str, Any]]:
    return next((r for r in rules["srun_plugins"] if fnmatch.fnmatchcase(plugin, r["plugin"])),
                None)


def served(rules: Mapping[str, Any], launcher: LauncherInfo,
           slurm: Optional[SlurmMpi]) -> Tuple[Tuple[str, ...], str]:
    """The interfaces ``launcher`` serves and why (the rule's reason)."""
    if launcher.kind == "srun":
        if slurm is None:
            return (), ""
        rule = _plugin_rule(rules, slurm.plugin)
        if rule is None:
            return (), ""
        return tuple(rule["serves"]), rule["reason"]
    for rule in rules["launchers"]:
        if rule["kind"] == launcher.kind:
            return tuple(rule.get("serves", ())), rule.get("reason", "")
    return (), ""


def _where(launcher: LauncherInfo) -> str:
    chain = " -> ".join(launcher.chain) if len(launcher.chain) > 1 else launcher.path
    return f"{launcher.word} ({chain})" if chain and chain != launcher.word else launcher.word


def _alternatives(rules: Mapping[str, Any], clients: Sequence[str], on_path: Sequence[str],
                  slurm: Optional[SlurmMpi], is_srun: bool) -> List[str]:
    """What would work, in order: launchers on PATH, then ``srun --mpi=X``."""
    launchers: List[str] = []
    plugins: List[str] = []
    for interface in clients:
        for alt in rules["alternatives"]:
            if alt["serves"] != interface:
                continue
            launchers.extend(name for name in alt["launchers"] if name in on_path)
            plugin = alt.get("srun", "")
            offered = slurm.offered if slurm is not None else ()
            if plugin and (not offered or any(fnmatch.fnmatchcase(o, plugin + "*")
                                              for o in offered)):
                plugins.append(f"srun --mpi={plugin}")
    words = list(dict.fromkeys(plugins if is_srun else launchers + plugins))
    return words


def check(rules: Mapping[str, Any], launcher: LauncherInfo, clients: PmiClients,
          mpi_label: str, slurm: Optional[SlurmMpi] = None,
          on_path: Sequence[str] = ()) -> Contribution:
    """The wire-up verdict for one launch: an error when launcher and library share no
    interface (or srun's plugin is not offered), an info line when it cannot be told."""
    names = clients.names()
    if not launcher.kind:
        why = (f"{launcher.path} is not a launcher hpcrun recognises" if launcher.path
               else f"{launcher.word} is not on PATH")
        return _note(f"launcher wire-up not checked: {why}")
    if not names:
        return _note(f"launcher wire-up not checked: cannot tell which PMI the host "
                     f"{mpi_label} speaks")
    is_srun = launcher.kind == "srun"
    if is_srun and slurm is not None and slurm.offered and not any(
            fnmatch.fnmatchcase(slurm.plugin, o) or fnmatch.fnmatchcase(o, slurm.plugin + "*")
            for o in slurm.offered):
        alternatives = _alternatives(rules, names, on_path, slurm, True)
        return _error(NOT_OFFERED,
                      f"srun --mpi={slurm.plugin} ({slurm.source}): this Slurm offers "
                      f"{', '.join(slurm.offered)} (srun --mpi=list)",
                      _hint(alternatives, "choose a plugin Slurm offers"), launcher.path)
    serves, reason = served(rules, launcher, slurm)
    if not serves:
        what = f"srun --mpi={slurm.plugin}" if is_srun and slurm else _label(rules,
                                                                          launcher.kind)
        return _note(f"launcher wire-up not checked: no rule says what {what} serves")
    interfaces = rules["interfaces"]
    evidence = "; ".join(why for _, why in clients.interfaces)
    them = " or ".join(interfaces.get(n, n) for n in names)
    offers = " and ".join(interfaces.get(s, s) for s in serves)
    common = [n for n in names if n in serves]
    if common:
        via = f"srun --mpi={slurm.plugin} ({slurm.source})" if is_srun and slurm else \
            f"{_where(launcher)}, {_label(rules, launcher.kind)},"
        return Contribution(diagnostics=(Diagnostic(
            INFO, WIRES_UP, f"{via} serves {offers}; the host {mpi_label} speaks {them} "
            f"({evidence})", source=launcher.path),))
    if is_srun and slurm is not None:
        who = f"srun --mpi={slurm.plugin} ({slurm.source})"
    else:
        who = f"{_where(launcher)}, {_label(rules, launcher.kind)},"
    message = (f"{who} cannot start ranks of the host {mpi_label}: it serves {offers}, the "
               f"library speaks {them} ({evidence}); {reason}")
    alternatives = _alternatives(rules, names, on_path, slurm, is_srun)
    return _error(MISMATCH, message, _hint(alternatives, "use a launcher of the host MPI"),
                  launcher.path)


def _hint(alternatives: Sequence[str], fallback: str) -> str:
    if not alternatives:
        return fallback
    return "launch with " + " or ".join(f"`{a}`" for a in alternatives)


def _error(code: str, message: str, hint: str, source: str) -> Contribution:
    return Contribution(diagnostics=(Diagnostic(ERROR, code, message, hint, source=source),))


def _note(message: str) -> Contribution:
    return Contribution(diagnostics=(Diagnostic(INFO, UNKNOWN, message, source="launcher"),))

