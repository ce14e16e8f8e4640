"""Plugin directories (UCX's ucx/, libfabric's libfabric/) keep their place beside the owner."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Dict

import pytest

from helpers import mpi_trees
from helpers.gpu_trees import compile_library
from helpers.mpi_trees import HOST_LIBDIR, copy_host_file, fill_missing, write_ld_config
from hpcrun import records
from hpcrun.host.facts import HostFacts, RuntimeInfo
from hpcrun.plan.build import build_plan
from hpcrun.plan.model import Request
from hpcrun.profiles.lookup import load_site
from hpcrun.profiles.model import EnvSpec, Library, Mpi, Profile
from hpcrun.resolve.hostlibs import plugin_subdir
from hpcrun.resolve.resolver import resolve

HOST = HostFacts(architecture="x86_64", glibc="2.36")
UCX_DIR = f"{HOST_LIBDIR}/ucx"
REQUEST = Request(launcher=("srun", "-n", "2"), image="/tmp/x.sif", command=("true",),
                  no_check=True)


def _need(*paths: str) -> None:
    for path in paths:
        if not os.path.exists(path):
            pytest.skip(f"{path} is not installed (Debian mpich / libucx0 / libfabric1)")


@pytest.fixture(scope="module")
def ucx_host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's MPICH with its real UCX (libucs beside a ucx/ directory of modules)."""
    _need(f"{HOST_LIBDIR}/libmpich.so.12", f"{UCX_DIR}/libuct_cma.so.0")
    root = mpi_trees.debian_mpich_host(tmp_path_factory.mktemp("ucx-host")).root
    for name in sorted(os.listdir(UCX_DIR)):
        if ".so" in name:
            copy_host_file(root, f"{UCX_DIR}/{name}")
    fill_missing(root, [f"{UCX_DIR}/libuct_cma.so.0"])
    write_ld_config(root, [HOST_LIBDIR])
    return root


def destinations(binds) -> Dict[str, str]:
    return {b.destination: b.source for b in binds}


def test_debian_mpich_profile_puts_ucx_modules_beside_libucs(ucx_host: Path) -> None:
    """The shipped debian-mpich profile, resolved on a tree of the real Debian files."""
    profile = load_site("debian-mpich", {})
    result = resolve(profile, REQUEST, HOST, None, root=ucx_host)
    dest = destinations(result.binds)
    assert dest["/.hpcrun/lib/libucs.so.0"].endswith("/libucs.so.0.0.0")
    modules = [d for d in dest if "libuct_" in d]
    assert modules and all(d.startswith("/.hpcrun/lib/ucx/") for d in modules), modules
    assert "/.hpcrun/lib/ucx/libuct_cma.so.0" in dest
    # Their own dependencies stay on LD_LIBRARY_PATH, flat.
    assert "/.hpcrun/lib/libuct.so.0" in dest
    assert result.library_path == ("/.hpcrun/lib",)
    assert not [e for e in result.env if e.name == "FI_PROVIDER_PATH"]


def test_without_resolver_the_builder_does_the_same() -> None:
    """`hpcrun env` / `hpcrun module` (no resolver) place the modules the same way."""
    _need(f"{UCX_DIR}/libuct_cma.so.0")
    from hpcrun.plan.hostpaths import survey_host_paths

    profile = load_site("debian-mpich", {})
    plan = build_plan(profile, Request((), "", ()), HostFacts(runtime=RuntimeInfo("apptainer")),
                      None, (), survey_host_paths(profile), {})
    modules = [b.destination for b in plan.binds if "libuct_" in b.destination]
    assert modules and all(d.startswith("/.hpcrun/lib/ucx/") for d in modules), modules


@pytest.fixture(scope="module")
def fabric_host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's real libfabric.so.1 with a provider (a real compiled library) in libfabric/."""
    _need(f"{HOST_LIBDIR}/libfabric.so.1")
    root = tmp_path_factory.mktemp("fabric-host")
    copy_host_file(root, f"{HOST_LIBDIR}/libfabric.so.1")
    compile_library(root / HOST_LIBDIR.lstrip("/") / "libfabric" / "libtest-fi.so",
                    "libtest-fi.so")
    write_ld_config(root, [HOST_LIBDIR], cache=False)
    fill_missing(root, [f"{HOST_LIBDIR}/libfabric.so.1"])
    write_ld_config(root, [HOST_LIBDIR])
    return root


def test_libfabric_providers_go_to_libfabric_and_fi_provider_path(fabric_host: Path) -> None:
    profile = Profile(schema=1, name="fabric", mpi=Mpi(family="mpich"), libraries=(
        Library(f"{HOST_LIBDIR}/libfabric.so.1"), Library(f"{HOST_LIBDIR}/libfabric/*-fi.so")))
    result = resolve(profile, REQUEST, HOST, None, root=fabric_host)
    dest = destinations(result.binds)
    assert "/.hpcrun/lib/libfabric.so.1" in dest
    assert dest["/.hpcrun/lib/libfabric/libtest-fi.so"].endswith("/libfabric/libtest-fi.so")
    (variable,) = [e for e in result.env if e.name == "FI_PROVIDER_PATH"]
    assert variable.value == "/.hpcrun/lib/libfabric" and variable.scope == "container"
    # A profile's own FI_PROVIDER_PATH wins over the resolver's (profile > decisions).
    mine = records.replace(profile, env=(EnvSpec("FI_PROVIDER_PATH", "/site/prov"),))
    plan = build_plan(mine, REQUEST, HostFacts(runtime=RuntimeInfo("apptainer")), None,
                      [resolve(mine, REQUEST, HOST, None, root=fabric_host)], None, {})
    assert [e.value for e in plan.env if e.name == "FI_PROVIDER_PATH"] == ["/site/prov"]


@pytest.mark.parametrize("path, expected", [
    ("/usr/lib/x86_64-linux-gnu/ucx/libuct_ib.so.0", "ucx"),
    ("/opt/mpich/lib/mpich/libfabric/libsockets-fi.so", "libfabric"),
    ("/opt/intel/lib/libfabric/libfabric.so.1", ""),  # Intel MPI: the owner itself lives there
    ("/opt/intel/lib/libfabric/prov/libtcp-fi.so", "prov"),  # Intel MPI's providers
    ("/opt/site/prov/libfoo.so", ""),  # a prov/ directory of something else
    ("/usr/lib/x86_64-linux-gnu/libucs.so.0", ""),
    ("/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3/mca_btl_tcp.so", ""),
])
def test_plugin_subdir(path: str, expected: str) -> None:
    assert plugin_subdir(path) == expected


def test_intel_libfabric_in_its_own_directory_stays_flat(host_sites: Callable) -> None:
    site = host_sites("wheel-impi")
    result = resolve(site.profile, REQUEST, HOST, None, root=site.root)
    assert "/.hpcrun/lib/libfabric.so.1" in destinations(result.binds)


def test_intel_libfabric_providers_in_prov_get_fi_provider_path(
        host_sites: Callable, mpi_wheel: Callable, tmp_path: Path) -> None:
    """Intel MPI 2019's libfabric/prov/*-fi.so go to prov/ beside its libfabric in the
    container, and FI_PROVIDER_PATH points there (the host's value names a host path)."""
    site = host_sites("wheel-impi")
    prov = mpi_trees.wheel_lib(mpi_wheel("impi"), "impi") / "libfabric" / "prov"
    target = site.root / "opt/intel/lib/libfabric/prov"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("libtcp-fi.so", "libsockets-fi.so"):
        if not (target / name).exists():
            shutil.copy2(prov / name, target / name)
    profile = records.replace(site.profile, libraries=(
        Library("/opt/intel/lib/libfabric/prov/*-fi.so"),))
    result = resolve(profile, REQUEST, HOST, None, root=site.root)
    dest = destinations(result.binds)
    assert dest["/.hpcrun/lib/prov/libtcp-fi.so"].endswith("/prov/libtcp-fi.so")
    assert "/.hpcrun/lib/libtcp-fi.so" not in dest
    (variable,) = [e for e in result.env if e.name == "FI_PROVIDER_PATH"]
    assert variable.value == "/.hpcrun/lib/prov"

