"""Validating profiles against a host: fake roots made of real files, and this machine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import List

import pytest

from hpcrun.plan.model import Diagnostic
from hpcrun.profiles.lookup import load_site
from hpcrun.profiles.model import (
    BindSpec,
    Container,
    EnvSpec,
    Gpu,
    LauncherDefaults,
    Library,
    Mpi,
    Profile,
    Runtime,
    Wireup,
)
from hpcrun.profiles.validate import (
    bind_syntax_problem,
    classify_library,
    deep_checks,
    host_elf_target,
    library_file_checks,
    validate_profile,
)

from .conftest import LIBDIR, MPICH_LIB, OPENMPI_LIB, copy_into, need, touch


def codes(findings: List[Diagnostic], severity: str = "") -> List[str]:
    return [f"{f.source} {f.code}" for f in findings if not severity or f.severity == severity]


def mpich_root(root: Path) -> Profile:
    """A fake root holding Debian's real MPICH libraries, and a profile describing it."""
    need(MPICH_LIB)
    files = [f"{LIBDIR}/{name}" for name in os.listdir(LIBDIR) if name.startswith("libmpich")]
    copy_into(root, files)
    touch(root, "/etc/dat.conf", "# DAPL providers\n")
    (root / "scratch").mkdir()
    return Profile(
        schema=1, name="fake",
        mpi=Mpi(family="mpich", libraries=(MPICH_LIB,), library_dirs=(LIBDIR,),
                sonames=("libmpich.so.12",), fortran=("libmpichfort.so.12",),
                cxx=("libmpichcxx.so.12",)),
        libraries=(Library(path=f"{LIBDIR}/libmpich*.so.12", kind="dependency"),),
        binds=(BindSpec(source="/scratch"), BindSpec(source="/etc/dat.conf", read_only=True),
               BindSpec(source="/missing/optional", optional=True)),
        env=(EnvSpec(name="UCX_POSIX_USE_PROC_LINK", value="n"),),
        launchers=(("srun", LauncherDefaults(options=("--mpi=pmi2",))),),
    )


def test_present_paths_are_clean(fake_root: Path) -> None:
    profile = mpich_root(fake_root)
    findings = validate_profile(profile, fake_root)
    assert codes(findings) == ["binds[2].source profile.optional-missing"]
    assert findings[0].severity == "info"
    assert library_file_checks(profile, fake_root) == []


def test_missing_paths_are_errors_naming_the_key(fake_root: Path) -> None:
    profile = mpich_root(fake_root)
    (fake_root / "scratch").rmdir()
    (fake_root / "etc/dat.conf").unlink()
    os.unlink(fake_root / LIBDIR.lstrip("/") / "libmpichfort.so.12")
    errors = codes(validate_profile(profile, fake_root), "error")
    assert errors == ["binds[0].source profile.missing-path",
                      "binds[1].source profile.missing-path"]
    warnings = codes(validate_profile(profile, fake_root), "warning")
    assert warnings == ["mpi.fortran[0] profile.soname-not-found"]


def test_dangling_link_and_glob_without_match(fake_root: Path) -> None:
    profile = mpich_root(fake_root)
    os.unlink(fake_root / LIBDIR.lstrip("/") / "libmpich.so.12.2.2")
    findings = validate_profile(profile, fake_root)
    assert "mpi.libraries[0] profile.dangling-link" in codes(findings, "error")
    shutil.rmtree(fake_root / "usr")
    findings = validate_profile(profile, fake_root)
    assert "libraries[0].path profile.glob-no-match" in codes(findings, "error")
    assert "mpi.library_dirs[0] profile.missing-path" in codes(findings, "error")
    # With nowhere to look, sonames are not reported one by one.
    assert not any("soname" in c for c in codes(findings))


def test_bind_problems(fake_root: Path) -> None:
    for name in ("a", "b", "with,comma:colon"):
        (fake_root / name).mkdir()
    profile = Profile(schema=1, name="t", binds=(
        BindSpec(source="/a", destination="/data"),
        BindSpec(source="/b", destination="/data/"),
        BindSpec(source="/with,comma:colon"),
        BindSpec(source="/a", destination="relative/dir"),
        BindSpec(source="/a", destination="/usr/lib64"),
        BindSpec(source="/a", destination="/.hpcrun/x"),
        BindSpec(source="relative"),
        BindSpec(source="/a\nb"),
    ))
    found = codes(validate_profile(profile, fake_root))
    assert found == [
        "binds[1] profile.duplicate-destination",
        "binds[3].destination profile.relative-destination",
        "binds[4] profile.shadows-system-dir",
        "binds[5] profile.inside-prefix",
        "binds[6].source profile.relative-path",
        "binds[7].source profile.unbindable-path",
    ]
    assert bind_syntax_problem("/x,y:z") == ""
    (fake_root / "lib*").mkdir()
    odd = Profile(schema=1, name="t", binds=(BindSpec(source="/lib*"),),
                  libraries=(Library(path="/a"),))
    assert codes(validate_profile(odd, fake_root)) == [
        "libraries[0].path profile.library-is-directory", "binds[0].source profile.glob-in-bind"]
    assert "control character" in bind_syntax_problem("/x\x00")
    assert "backslash" in bind_syntax_problem("/x\\y")


def test_mpi_without_libraries_and_bad_values(fake_root: Path) -> None:
    profile = Profile(
        schema=1, name=" ",
        runtime=Runtime(path="/usr/bin/apptainer"),
        mpi=Mpi(family="openmpi", sonames=("lib/libmpi.so.40",)),
        env=(EnvSpec(name="1BAD"), EnvSpec(name="X", value="1"), EnvSpec(name="X", value="2"),
             EnvSpec(name="LD_PRELOAD", value="/x.so"), EnvSpec(name="Y", action="unset",
                                                                value="v")),
        gpu=Gpu(vendor="none", libraries=("/gtl.so",)),
        container=Container(prefix="/usr", library_path=("lib",), preload=("/nope.so",)),
        launchers=(("srun", LauncherDefaults(options=("mpi=pmi2",))),),
        wireup=Wireup(forward=("I_MPI_*", "bad pattern")),
    )
    found = codes(validate_profile(profile, fake_root))
    for expected in ("name profile.no-name", "runtime.path profile.missing-path",
                     "mpi profile.mpi-without-libraries", "mpi.sonames[0] profile.bad-soname",
                     "env[0].name profile.bad-env-name", "env[2] profile.duplicate-env",
                     "env[3].name profile.managed-variable",
                     "env[4].value profile.unset-with-value",
                     "gpu.libraries[0] profile.missing-path",
                     "gpu.libraries profile.gpu-libraries-unused",
                     "container.preload[0] profile.missing-path",
                     "container.library_path[0] profile.relative-destination",
                     "container.prefix profile.bad-prefix",
                     "launchers.srun.options[0] profile.launcher-option",
                     "wireup.forward[1] profile.bad-pattern"):
        assert expected in found
    assert "mpi.family" not in " ".join(found)


def test_family_none_needs_nothing(fake_root: Path) -> None:
    profile = Profile(schema=1, name="t", mpi=Mpi(family="none"))
    assert validate_profile(profile, fake_root) == []


def test_runtime_path_must_be_executable(fake_root: Path) -> None:
    touch(fake_root, "/opt/apptainer/bin/apptainer", "not executable")
    profile = Profile(schema=1, name="t", runtime=Runtime(path="/opt/apptainer/bin/apptainer"))
    assert codes(validate_profile(profile, fake_root)) == ["runtime.path profile.not-executable"]
    os.chmod(fake_root / "opt/apptainer/bin/apptainer", 0o755)
    assert validate_profile(profile, fake_root) == []


# --- deep ----------------------------------------------------------------------------------


def test_deep_reports_ld_scripts_text_files_and_foreign_architectures(fake_root: Path) -> None:
    need(MPICH_LIB, f"{LIBDIR}/libc.so")
    copy_into(fake_root, [f"{LIBDIR}/libc.so", MPICH_LIB, f"{LIBDIR}/libmpich.so.12.2.2"])
    touch(fake_root, "/opt/notelf.so.1", "just text\n")
    profile = Profile(schema=1, name="t", libraries=(
        Library(path=f"{LIBDIR}/libc.so"),  # a GNU ld script on Debian
        Library(path="/opt/notelf.so.1"),
        Library(path=MPICH_LIB),
    ))
    found = library_file_checks(profile, fake_root)
    assert codes(found) == ["libraries[0].path profile.ld-script",
                            "libraries[1].path profile.not-elf"]
    foreign = library_file_checks(profile, fake_root, machine="aarch64")
    assert "libraries[2].path profile.wrong-architecture" in codes(foreign, "error")
    assert "64-bit x86_64" in foreign[-1].message


def test_classify_library_on_real_files() -> None:
    need(MPICH_LIB)
    target = host_elf_target("x86_64")
    assert classify_library(Path(MPICH_LIB), target) == ("elf", "")
    assert classify_library(Path("/bin/sh"), target)[0] in ("elf", "wrong-arch")
    assert classify_library(Path("/etc/hostname"), target)[0] == "not-elf"
    assert classify_library(Path("/nonexistent"), target)[0] == "unreadable"


# --- the shipped profiles on this machine -----------------------------------------------------


@pytest.mark.parametrize("site, library", [("debian-mpich", MPICH_LIB),
                                           ("debian-openmpi", OPENMPI_LIB)])
def test_debian_profiles_validate_clean_here(site: str, library: str) -> None:
    need(library)
    profile = load_site(site, {})
    assert validate_profile(profile) == []
    assert [d for d in deep_checks(profile) if d.severity == "error"] == []


def test_cluster_profiles_report_their_absent_paths_here() -> None:
    zeus = load_site("zeus", {})
    if os.path.exists("/pawsey"):
        pytest.skip("this is a Pawsey machine")
    found = validate_profile(zeus)
    assert "binds[0].source profile.missing-path" in codes(found, "error")  # /astro
    assert "libraries[0].path profile.missing-path" in codes(found, "error")
