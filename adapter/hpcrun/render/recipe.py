"""``hpcrun recipe``: an Apptainer definition file for an image a site's host MPI can serve.

A pure function of the resolver's facts about the host MPI
(:class:`~hpcrun.resolve.requirements.HostRequirements`), a known base
(:mod:`hpcrun.render.bases`) and, optionally, the user's own steps
(:class:`~hpcrun.render.userrecipe.UserRecipe`).  The recipe installs:

* an MPI of the family the host serves: the MPICH ABI (Debian's/Ubuntu's ``mpich``) for
  MPICH, Intel MPI, Cray MPICH and MVAPICH hosts; Open MPI for Open MPI hosts; with
  ``abi="mpi5"`` MPICH's MPI-5 standard ABI library (``libmpi_abi.so.1``, PyPI ``mpich``)
  when the host ships it too;
* in a version the site's ABI policy accepts against the host's (the rules of
  :func:`hpcrun.resolve.verdict.check_version`);
* on a base whose glibc defines every ``GLIBC_x`` symbol version the host closure needs;
* mpi4py built from source against that MPI;
* the directories (and files) the plan binds into, which Apptainer cannot create when its
  configuration disables overlay and underlay.

Every line the recipe adds carries a comment that says why.  Refusals are errors: a base
hpcrun cannot judge (:class:`~hpcrun.errors.ImageError`), a base whose glibc or MPI the
host cannot serve (:class:`~hpcrun.errors.IncompatibleError`), a site without a usable host
MPI (:class:`~hpcrun.errors.ConfigError`).
"""

from __future__ import annotations

import shlex

from hpcrun.errors import ConfigError, ImageError, IncompatibleError, UsageError
from hpcrun.image.facts import MpiLibrary
from hpcrun.plan.model import ERROR, WARNING
from hpcrun.records import record
from hpcrun.render.bases import BASES, Base, find_base, known_names
from hpcrun.resolve import families, verdict
from hpcrun.resolve.requirements import HostRequirements, version_number

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

    from hpcrun.render.userrecipe import UserRecipe

MPI4PY = "4.1.2"  # built from source (--no-binary): the wheel bundles no MPI, but links by name
MPICH_WHEEL = "5.0.2"  # PyPI mpich: ships libmpi_abi.so.1 and mpicc_abi (MPI-5 ABI)
BOOTSTRAPS = ("docker", "debootstrap")
ABIS = ("", "mpi5")


@record
class RecipeOptions:
    """The choices of ``hpcrun recipe``: ``base`` (a docker reference, "" to choose),
    ``bootstrap`` (``docker`` or ``debootstrap`` from the distribution's archive), ``abi``
    ("" for the host's family, ``mpi5`` for the MPI-5 standard ABI), ``version`` (hpcrun's,
    for the header) and ``command`` (the command line, for the header)."""

    base: str = ""
    bootstrap: str = "docker"
    abi: str = ""
    version: str = ""
    command: str = ""


@record
class MpiLayer:
    """The container MPI a recipe installs and why it suits the host."""

    family: str
    label: str  # MPICH 4.0.2 (Debian's mpich)
    packages: Tuple[str, ...]
    mpicc: str
    why: str
    version_note: str


def _judge_version(req: HostRequirements, implementation: str, version: str
                   ) -> Tuple[str, str]:
    """(severity, sentence) of the site's ABI policy on host vs container versions."""
    host = MpiLibrary(soname=req.c_soname, path=req.c_soname, family=req.family,
                      implementation=req.implementation, version=req.version)
    container = MpiLibrary(soname=req.c_soname, path=req.c_soname, family=req.family,
                           implementation=implementation, version=version)
    found = verdict.check_version(host, container, req.policy, req.version, req.implementation)
    if not found:
        return "", (f'policy "{req.policy}" accepts it: host {req.implementation} '
                    f"{req.version} against container {implementation} {version}")
    worst = found[0]
    if worst.code == verdict.VERSION_NOT_COMPARED:
        return "", (f"host {req.implementation or '?'} {req.version or '?'} and container "
                    f"{implementation} {version} are different implementations of the MPICH "
                    "ABI: not ordered, the soname major (12) is what must match")
    return worst.severity, f'policy "{req.policy}": {worst.message}'


def mpi_layer(req: HostRequirements, base: Base, abi: str) -> Tuple[MpiLayer, str]:
    """The MPI layer for ``base`` and the policy's severity ("" when accepted)."""
    if abi == "mpi5":
        why = (f"the MPI-5 standard ABI: the host ships {req.abi_soname}, which serves any "
               "application built against libmpi_abi.so.1 whatever the implementation")
        return MpiLayer(families.MPI_ABI, f"MPICH {MPICH_WHEEL} (PyPI mpich, libmpi_abi.so.1)",
                        (), "mpicc_abi", why, "the standard ABI has no version order"), ""
    if req.family == families.OPENMPI:
        severity, note = _judge_version(req, "Open MPI", base.openmpi)
        why = (f"Open MPI: the host's {req.implementation or 'Open MPI'} {req.version} "
               f"({req.c_file or req.c_soname}) serves only Open MPI applications "
               "(libmpi.so.40); the MPICH ABI would be refused")
        return MpiLayer(families.OPENMPI, f"Open MPI {base.openmpi} ({base.label}'s openmpi)",
                        ("openmpi-bin", "libopenmpi-dev"), "mpicc.openmpi", why, note), severity
    severity, note = _judge_version(req, "MPICH", base.mpich)
    why = (f"the MPICH ABI (libmpi.so.12, which {base.distro.capitalize()} names "
           f"libmpich.so.12): the host's {req.implementation or 'MPICH-family MPI'} "
           f"{req.version} ({req.c_file or req.c_soname}) keeps it; so do Intel MPI, Cray "
           "MPICH and MVAPICH")
    return MpiLayer(families.MPICH, f"MPICH {base.mpich} ({base.label}'s mpich)",
                    ("mpich", "libmpich-dev"), "mpicc.mpich", why, note), severity


def _glibc_ok(req: HostRequirements, base: Base) -> bool:
    need = req.need("GLIBC")
    return need is None or version_number(base.glibc) >= need.number


def choose_base(req: HostRequirements, reference: str, abi: str) -> Tuple[Base, List[str]]:
    """The base to build on and notes for the header.

    ``reference`` given: judged (unknown -> ImageError; glibc too old or a version the policy
    refuses -> IncompatibleError; a policy warning is kept as a note).  Not given: the first
    known base with a new enough glibc whose MPI the policy accepts without warning.
    """
    if reference:
        base = find_base(reference)
        if base is None:
            raise ImageError(f"base image {reference!r}: hpcrun cannot judge it (it knows the "
                             "glibc and MPI packages of known releases only)",
                             f"use one of: {known_names()}")
        problem = _refusal(req, base, abi)
        if problem:
            raise IncompatibleError(f"base image {reference}: {problem}",
                                    _alternatives(req, abi))
        layer, severity = mpi_layer(req, base, abi)
        notes = [f"warning: {layer.version_note}"] if severity == WARNING else []
        return base, notes
    for base in BASES:
        if not _refusal(req, base, abi) and not mpi_layer(req, base, abi)[1]:
            return base, []
    raise IncompatibleError(f"no known base suits the host MPI of site {req.site}",
                            "write the definition file by hand from the host's needs shown by "
                            "`hpcrun check --explain`")


def _refusal(req: HostRequirements, base: Base, abi: str) -> str:
    need = req.need("GLIBC")
    if not _glibc_ok(req, base) and need is not None:
        return (f"its glibc {base.glibc} is older than {need.version}, which host "
                f"{need.needed_by} needs ({need.chain})")
    layer, severity = mpi_layer(req, base, abi)
    if severity == ERROR:
        return f"its {layer.label}: {layer.version_note}"
    return ""


def _alternatives(req: HostRequirements, abi: str) -> str:
    good = [b.name for b in BASES if not _refusal(req, b, abi)]
    return f"use --base {good[0]} (suitable: {', '.join(good)})" if good else \
        "no known base suits this host MPI"


def _header(req: HostRequirements, base: Base, options: RecipeOptions) -> List[str]:
    if options.bootstrap == "debootstrap":
        lines = ["Bootstrap: debootstrap", f"OSVersion: {base.codename}",
                 f"MirrorURL: {base.mirror}"]
    else:
        lines = ["Bootstrap: docker", f"From: {options.base or base.name}"]
    return lines


def _comment_block(text: str, indent: str = "", width: int = 92) -> List[str]:
    import textwrap

    return [indent + "# " + line for line in textwrap.wrap(text, width - len(indent) - 2)]


def render_recipe(req: HostRequirements, options: RecipeOptions,
                  user: Optional[UserRecipe] = None) -> str:
    """The Apptainer definition file text (see the module docstring)."""
    if req.diagnostics:
        first = req.diagnostics[0]
        raise ConfigError(f"site {req.site}: {first.message}", first.hint)
    if req.family in ("none", ""):
        raise ConfigError(f"site {req.site} has no host MPI: there is nothing an image must be "
                          "built against", "give a site profile with an [mpi] table")
    if options.bootstrap not in BOOTSTRAPS:
        raise UsageError(f"--bootstrap {options.bootstrap!r}: expected docker or debootstrap")
    if options.abi not in ABIS:
        raise UsageError(f"--abi {options.abi!r}: expected mpi5 (or leave it out)")
    if options.abi == "mpi5" and not req.abi_soname:
        raise IncompatibleError(f"site {req.site}: the host MPI ships no libmpi_abi.so.1, so "
                                "it cannot serve an MPI-5 standard ABI image",
                                "leave out --abi mpi5: the recipe then uses the host's family")
    if req.family == families.MPI_ABI and options.abi != "mpi5":
        options = RecipeOptions(options.base, options.bootstrap, "mpi5", options.version,
                                options.command)
    reference = options.base or (user.base if user is not None else "")
    if user is not None and user.base.startswith("debootstrap:"):
        reference = options.base or "debian:" + user.base.split(":", 1)[1]
        options = RecipeOptions(options.base, "debootstrap", options.abi, options.version,
                                options.command)
    elif user is not None and not options.base and user.kind == "definition" \
            and not user.base.startswith("docker:") and ":" in user.base and \
            find_base(user.base) is None:
        raise ImageError(f"{user.source}: bootstrap {user.base.split(':')[0]!r}: hpcrun cannot "
                         "judge this base", f"use Bootstrap: docker with one of: {known_names()}")
    base, notes = choose_base(req, reference, options.abi)
    if options.base == "" and reference:
        options = RecipeOptions(reference, options.bootstrap, options.abi, options.version,
                                options.command)
    layer, _severity = mpi_layer(req, base, options.abi)
    return _render(req, base, layer, options, user, notes)


def _render(req: HostRequirements, base: Base, layer: MpiLayer, options: RecipeOptions,
            user: Optional[UserRecipe], notes: List[str]) -> str:
    out: List[str] = []
    origin = f" from {user.source}" if user is not None else ""
    out += _comment_block(f"Apptainer definition written by hpcrun {options.version} for site "
                          f"{req.site}{origin}: an image whose MPI the host's "
                          f"{req.implementation} {req.version} serves (the bind model).")
    out += ["# Build:  apptainer build --fakeroot app.sif THIS_FILE",
            f"# Check:  hpcrun check --site {req.site} app.sif --app python3 -c "
            "'from mpi4py import MPI'"]
    for note in notes:
        out += _comment_block(note)
    for text in (user.notes if user is not None else ()):
        out += _comment_block(f"spython: {text}")
    out += _header(req, base, options)
    if user is not None:
        out += [f"{k}: {v}" for k, v in user.header]
    out.append("")
    out += ["%arguments", "    # Build arguments (apptainer build --build-arg NAME=VALUE); "
            "empty by default", "    PIP_CERT=", "    MPI4PY_CFLAGS="]
    if user is not None and user.section("arguments"):
        out.append(user.section("arguments"))
    out.append("")
    for name in ("setup", "files"):
        if user is not None and user.section(name):
            out += [f"%{name}", user.section(name), ""]
    out += ["%labels", f"    org.hpcrun.site {req.site}",
            f"    org.hpcrun.mpi.family {layer.family}",
            f"    org.hpcrun.mpi.host {req.implementation} {req.version}".rstrip()]
    if user is not None and user.section("labels"):
        out.append(user.section("labels"))
    out += ["", "%environment"]
    if layer.family == families.MPICH:
        out += _comment_block("mpi4py's MPI module links libmpich.so.12 (built against "
                              "Debian's MPICH); hpcrun binds the host's library under that "
                              "name at run time", "    ")
    if user is not None and user.section("environment"):
        out.append(user.section("environment"))
    out += ["    export LC_ALL=C.UTF-8", "", "%post"]
    out += _post(req, base, layer, options)
    if user is not None and user.section("post"):
        out += ["", f"    # ---- your own steps, from {user.source} ----",
                _indent(user.section("post"))]
    out += ["", "    # Smaller image: package lists are not needed at run time.",
            "    apt-get clean", "    rm -rf /var/lib/apt/lists/*"]
    for name in ("runscript", "startscript", "test", "help"):
        if user is not None and user.section(name):
            out += ["", f"%{name}", user.section(name)]
    for name, body in (user.sections if user is not None else ()):
        if name.startswith("app"):
            out += ["", f"%{name}", body]
    return "\n".join(out).rstrip("\n") + "\n"


def _indent(text: str) -> str:
    return "\n".join(line if line.startswith("    ") or not line.strip() else "    " + line
                     for line in text.splitlines())


def _post(req: HostRequirements, base: Base, layer: MpiLayer, options: RecipeOptions
          ) -> List[str]:
    out = ["    set -eu", "    export DEBIAN_FRONTEND=noninteractive"]
    need = req.need("GLIBC")
    if need is not None:
        out += _comment_block(
            f"Base {base.label}: glibc {base.glibc}. The host MPI closure needs "
            f"{need.version} (host {need.needed_by}: {need.chain}); the container keeps its "
            "own glibc, so it must define that version.", "    ")
    for prefix in ("GLIBCXX", "GFORTRAN"):
        runtime = req.need(prefix)
        if runtime is None:
            continue
        fits = prefix != "GLIBCXX" or version_number(base.glibcxx) >= runtime.number
        out += _comment_block(
            f"Host {runtime.needed_by} needs {runtime.version} from {runtime.provider}: "
            + ("the image's own copy (installed with the MPI packages) defines it." if fits else
               f"this base's libstdc++ stops at {base.glibcxx}: hpcrun binds the host's."),
            "    ")
    if base.distro == "ubuntu" and options.bootstrap == "debootstrap":
        out += _comment_block("debootstrap enables main only; Ubuntu's MPI packages are in "
                              "universe.", "    ")
        out.append("    sed -i 's/ main$/ main universe/' /etc/apt/sources.list")
    out.append("    apt-get update")
    out += _comment_block(f"MPI: {layer.label}. Why: {layer.why}. Version: "
                          f"{layer.version_note}.", "    ")
    tools = ["python3", "python3-dev", "python3-pip", "gcc", "libc6-dev", "ca-certificates"]
    packages = list(layer.packages) + tools
    out.append("    apt-get install -y --no-install-recommends " + " ".join(packages))
    out += _comment_block("A CA for pip behind a proxy that re-signs TLS (--build-arg "
                          "PIP_CERT=/path/ca.crt): set only when given; pip's isolated "
                          "build of mpi4py inherits it.", "    ")
    out.append('    if [ -n "{{ PIP_CERT }}" ]; then export PIP_CERT="{{ PIP_CERT }}"; fi')
    pip = "python3 -m pip install --no-cache-dir " + " ".join(base.pip_flags)
    if layer.family == families.MPI_ABI:
        out += _comment_block("MPICH's wheel installs libmpi_abi.so.1, mpi_abi.h and mpicc_abi "
                              "under /usr/local; ldconfig lets the loader find them.", "    ")
        out.append(f"    {pip} mpich=={MPICH_WHEEL}")
        out.append("    ldconfig")
    out += _comment_block(
        f"mpi4py {MPI4PY} built from source with {layer.mpicc}, so that its MPI module links "
        "the container's MPI, the library hpcrun replaces by the host's at run time "
        "(the distribution's python3-mpi4py is built against Open MPI; the PyPI wheel "
        "links MPI by name and needs extra links). MPI4PY_CFLAGS adds compiler flags "
        "(--build-arg MPI4PY_CFLAGS=-O1 compiles faster on a small machine).", "    ")
    out.append(f'    CFLAGS="{{{{ MPI4PY_CFLAGS }}}}" MPICC={layer.mpicc} {pip} '
               f"--no-binary=mpi4py mpi4py=={MPI4PY}")
    if req.mount_points:
        out += _comment_block(
            "Where the plan binds host paths (hpcrun's private prefix "
            f"{req.prefix} and the site's binds): Apptainer cannot create missing bind "
            "destinations when its configuration disables overlay and underlay.", "    ")
        dirs = [shlex.quote(p.path) for p in req.mount_points if p.kind == "dir"]
        if dirs:
            out.append("    mkdir -p " + " ".join(dirs))
        for point in (p for p in req.mount_points if p.kind == "file"):
            out += _comment_block(f"{point.path} is a file the site binds ({point.reason}).",
                                  "    ")
            parent = point.path.rsplit("/", 1)[0] or "/"
            out.append(f"    mkdir -p {shlex.quote(parent)} && touch {shlex.quote(point.path)}")
    return out
