"""ABI family names and the version-order rules (pure)."""

from __future__ import annotations

import pytest

from hpcrun.elf.model import ElfInfo, VersionNeed
from hpcrun.image.facts import Libc, MpiLibrary, VersionDefs
from hpcrun.resolve import families, verdict


@pytest.mark.parametrize(("name", "hint", "family", "role"), [
    ("libmpi.so.12", "", "mpich", "c"),
    ("libmpi.so.12", "openmpi", "openmpi", "c"),  # Open MPI 1.10
    ("libmpich.so.12", "openmpi", "mpich", "c"),
    ("libmpichfort.so.12", "", "mpich", "fortran"),
    ("libmpicxx.so.12", "", "mpich", "cxx"),
    ("libmpi.so.40", "", "openmpi", "c"),
    ("libmpi.so.20", "", "openmpi", "c"),
    ("libmpi_mpifh.so.40", "", "openmpi", "fortran"),
    ("libmpi_abi.so.1", "", "mpi-abi", "abi"),
    ("libfabric.so.1", "", "unknown", ""),
])
def test_soname_family(name: str, hint: str, family: str, role: str) -> None:
    assert families.soname_family(name, hint) == family
    assert families.soname_role(name) == role


HOST = [("libmpich.so.12", "/h/libmpich.so.12", "mpich"),
        ("libmpifort.so.12", "/h/libmpifort.so.12", "mpich"),
        ("libmpi_abi.so.1", "/h/libmpi_abi.so.1", "mpi-abi")]


def test_find_provider_aliases_within_family() -> None:
    exact = families.find_provider("libmpich.so.12", "mpich", HOST)
    assert exact is not None and not exact.alias
    alias = families.find_provider("libmpi.so.12", "mpich", HOST)
    assert alias is not None and alias.alias and alias.host_soname == "libmpich.so.12"
    fort = families.find_provider("libmpichfort.so.12", "mpich", HOST)
    assert fort is not None and fort.host_soname == "libmpifort.so.12"
    assert families.find_provider("libmpi.so.40", "openmpi", HOST) is None
    assert families.find_provider("libmpicxx.so.12", "mpich", HOST) is None
    abi = families.find_provider("libmpi_abi.so.1", "mpi-abi", HOST)
    assert abi is not None and not abi.alias


def test_parse_soname() -> None:
    info = families.parse_soname("/usr/lib/libmpich.so.12.2.2")
    assert (info.stem, info.major, info.version) == ("libmpich", "12", (12, 2, 2))
    assert families.parse_soname("libmpi.so").major == ""


def _lib(real: str, impl: str = "", version: str = "") -> MpiLibrary:
    return MpiLibrary(soname="libmpi.so.12", path=real, real_path=real, implementation=impl,
                      version=version)


@pytest.mark.parametrize(("host", "cont", "policy", "codes"), [
    ("libmpi.so.12.1.8", "libmpi.so.12.1.0", "full", []),
    ("libmpi.so.12.0.5", "libmpi.so.12.1.0", "full", ["mpi-version-older"]),
    ("libmpi.so.12.0.5", "libmpi.so.12.1.0", "major", []),
    ("libmpi.so.12.2.0", "libmpi.so.12.1.0", "strict", ["mpi-version-differs"]),
    ("libmpi.so.12.1.9", "libmpi.so.12.1.0", "strict", []),  # PATCH ignored
])
def test_sarus_policies(host: str, cont: str, policy: str, codes: list) -> None:
    found = verdict.check_version(_lib(host), _lib(cont), policy)
    assert [d.code for d in found] == codes
    if codes == ["mpi-version-older"]:
        assert found[0].severity == "warning"


def test_versions_of_different_implementations_not_ordered() -> None:
    found = verdict.check_version(_lib("libmpi.so.12", "Intel MPI", "2021.10"),
                                  _lib("libmpi.so.12", "MPICH", "4.1.2"), "strict")
    assert [d.code for d in found] == ["mpi-version-not-compared"]


def test_symbol_versions_host_provider_and_container() -> None:
    info = ElfInfo(path="/h/libx.so.1", elf_class=64, machine="EM_X86_64",
                   architecture="x86_64",
                   version_needs=(VersionNeed("libc.so.6", ("GLIBC_2.2.5", "GLIBC_2.34")),
                                  VersionNeed("libstdc++.so.6", ("GLIBCXX_3.4.30",))))
    loading = [verdict.Loading("libx.so.1", "libmpi.so.12 -> libx.so.1", info)]
    container = (VersionDefs("libc.so.6", "/lib/libc.so.6",
                             ("GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.30")),)
    found = verdict.check_symbol_versions(loading, {"libstdc++.so.6": ("GLIBCXX_3.4.30",)},
                                          container, Libc("glibc", "2.31"))
    assert [d.message for d in found] == [
        "host libx.so.1 needs GLIBC_2.34 from libc.so.6; the container's glibc 2.31 "
        "(libc.so.6) defines up to GLIBC_2.30"]
    musl = verdict.check_symbol_versions(loading, {}, (), Libc("musl", "1.2.4"))
    assert [d.code for d in musl] == ["container-not-glibc"]


def test_verdict_of_worst_severity() -> None:
    from hpcrun.plan.model import Diagnostic

    assert verdict.verdict_of([]) == "compatible"
    assert verdict.verdict_of([Diagnostic("info", "a", "m")]) == "compatible"
    assert verdict.verdict_of([Diagnostic("warning", "a", "m")]) == "warnings"
    assert verdict.verdict_of([Diagnostic("warning", "a", "m"),
                               Diagnostic("error", "b", "m")]) == "incompatible"


def test_mpi_symbols_filter() -> None:
    assert verdict.mpi_symbols(["MPI_Init", "printf", "MPII_Op_set_cxx", "ompi_mpi_comm_world",
                                "mpi_init_", "malloc"]) == (
        "MPII_Op_set_cxx", "MPI_Init", "mpi_init_", "ompi_mpi_comm_world")


def test_family_rules_are_data_with_reasons_that_match_their_schema() -> None:
    """data/mpi-families.json is the source of the family rules; every family and rule
    carries its reason, the file matches its schema, and the image-side name table
    (hpcrun.elf.mpi, which reads images without this file) agrees with it."""
    import json
    from pathlib import Path

    jsonschema = pytest.importorskip("jsonschema")
    data = families.rules()
    schema = json.loads((Path(families.DATA).parent / "mpi-families.schema.json").read_text())
    jsonschema.validate(data, schema)
    assert {f["family"] for f in data["families"]} == {"mpich", "openmpi", "mpi-abi"}
    assert all(f["reason"] and f["serves"]["reason"] for f in data["families"])
    from hpcrun.elf.mpi import mpi_name

    for entry in data["families"]:
        for stem, role in entry["stems"].items():
            major = (entry["libmpi_majors"] or ["1"])[0]
            if entry["family"] == "openmpi":
                major = "40"
            assert families.soname_family(f"{stem}.so.{major}") == entry["family"]
            assert mpi_name(f"{stem}.so.{major}") == (entry["family"], role), stem
        for role, soname in entry["canonical"].items():
            assert families.canonical(entry["family"], role) == soname
            assert families.soname_role(soname) == role
    # The standard ABI's details file names the same libraries.
    from hpcrun.resolve import abi

    (standard,) = [f for f in data["families"] if f["family"] == "mpi-abi"]
    assert {f"{stem}.so.1" for stem in standard["stems"]} == set(abi.sonames())


def test_a_family_the_data_does_not_know_is_never_served_by_alias() -> None:
    host = [("libmpi.so.12", "/h/libmpi.so.12", "other")]
    assert families.find_provider("libmpich.so.12", "other", host) is None
    assert families.family_label("other") == "unknown MPI family"
