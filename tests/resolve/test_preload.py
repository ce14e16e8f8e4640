"""container.preload: bound and preloaded once, by the resolver, never again by the builder."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from helpers import mpi_trees
from helpers.gpu_trees import compile_library
from helpers.mpi_trees import HOST_LIBDIR
from hpcrun import records
from hpcrun.host.facts import HostFacts, RuntimeInfo
from hpcrun.plan.build import build_plan
from hpcrun.plan.hostpaths import survey_host_paths
from hpcrun.plan.model import Plan, Request
from hpcrun.profiles.model import BindSpec, Container, Library, Mpi, Profile
from hpcrun.resolve.resolver import resolve

XPMEM = "/opt/xpmem/lib64/libxpmem.so.0"
REQUEST = Request(launcher=("srun",), image="/x.sif", command=("true",), no_check=True)


@pytest.fixture(scope="module")
def xpmem_host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's MPICH plus a real compiled libxpmem.so.0 at setonix's path."""
    if not Path(HOST_LIBDIR, "libmpich.so.12").exists():
        pytest.skip("Debian mpich is not installed")
    root = mpi_trees.debian_mpich_host(tmp_path_factory.mktemp("xpmem")).root
    compile_library(root / XPMEM.lstrip("/"), "libxpmem.so.0")
    return root


def plan_with(profile: Profile, root: Path) -> Plan:
    decided = resolve(profile, REQUEST, HostFacts(architecture="x86_64"), None, root=root)
    return build_plan(profile, REQUEST, HostFacts(runtime=RuntimeInfo("apptainer")), None,
                      [decided], survey_host_paths(profile, str(root)), {})


def preload_of(plan: Plan) -> str:
    (entry,) = [e for e in plan.env if e.name == "LD_PRELOAD"]
    return entry.value


def mpich_profile(**changes: object) -> Profile:
    mpi = Mpi(family="mpich", libraries=(f"{HOST_LIBDIR}/libmpich.so.12",))
    return records.replace(Profile(schema=1, name="xpmem", mpi=mpi), **changes)


def test_setonix_style_preload_through_the_profile_bind(xpmem_host: Path) -> None:
    """setonix binds /opt/xpmem and preloads libxpmem from there, as its module does:
    preloaded once, at that path, and not bound a second time under /.hpcrun/lib."""
    profile = mpich_profile(binds=(BindSpec("/opt/xpmem"),),
                            container=Container(preload=(XPMEM,)))
    plan = plan_with(profile, xpmem_host)
    assert preload_of(plan) == XPMEM
    xpmem_binds = [b for b in plan.binds if "xpmem" in b.source]
    assert [(b.source, b.destination) for b in xpmem_binds] == [("/opt/xpmem", "/opt/xpmem")]


def test_plain_preload_bound_and_preloaded_once(xpmem_host: Path) -> None:
    profile = mpich_profile(container=Container(preload=(XPMEM,)))
    plan = plan_with(profile, xpmem_host)
    assert preload_of(plan) == "/.hpcrun/lib/libxpmem.so.0"
    assert [b.destination for b in plan.binds if b.source == XPMEM] == [
        "/.hpcrun/lib/libxpmem.so.0"]
    assert len(plan.binds) == len({b.destination for b in plan.binds})
    rendered = dict(plan.invocation.env_set)
    assert rendered["APPTAINERENV_LD_PRELOAD"] == "/.hpcrun/lib/libxpmem.so.0:$LD_PRELOAD"
    assert rendered["APPTAINER_BINDPATH"].count(XPMEM) == 1


def test_preload_needed_by_name_stays_under_the_prefix(xpmem_host: Path,
                                                       tmp_path: Path) -> None:
    """When another host library asks the loader for it by soname, it stays bound under the
    prefix (on the library path) and is preloaded from there, once."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    lib = xpmem_host / "opt/site/lib/libneedsxpmem.so.1"
    lib.parent.mkdir(parents=True, exist_ok=True)
    source = tmp_path / "needs.c"
    source.write_text("int needs_xpmem(void) { return 1; }\n")
    subprocess.run([gcc, "-shared", "-fPIC", "-Wl,-soname,libneedsxpmem.so.1", "-o", str(lib),
                    str(source), "-Wl,--no-as-needed", "-L", str(xpmem_host / "opt/xpmem/lib64"),
                    "-l:libxpmem.so.0", "-Wl,-rpath,/opt/xpmem/lib64"], check=True)
    profile = mpich_profile(binds=(BindSpec("/opt/xpmem"),),
                            libraries=(Library("/opt/site/lib/libneedsxpmem.so.1"),),
                            container=Container(preload=(XPMEM,)))
    plan = plan_with(profile, xpmem_host)
    assert preload_of(plan) == "/.hpcrun/lib/libxpmem.so.0"
    assert [b.destination for b in plan.binds if b.source == XPMEM] == [
        "/.hpcrun/lib/libxpmem.so.0"]


def test_preload_without_any_bind(host_sites: Callable) -> None:
    """A preload no profile bind covers is bound under the prefix and preloaded there."""
    site = host_sites("debian-mpich")
    profile = records.replace(site.profile, container=Container(
        preload=(f"{HOST_LIBDIR}/libmpich.so.12",)))
    decided = resolve(profile, REQUEST, HostFacts(architecture="x86_64"), None, root=site.root)
    assert decided.preload == ("/.hpcrun/lib/libmpich.so.12",)
