"""The Charliecloud stage mapping: hpcrun's prefix layout as symlinks under /mnt/N (pure)."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

from hpcrun.host.facts import HostFacts, RuntimeInfo
from hpcrun.plan.build import build_plan
from hpcrun.plan.model import ERROR, Bind, Contribution, EnvVar, Request
from hpcrun.profiles.model import BindSpec, Profile
from hpcrun.render.chstage import DEFAULT_SLOTS, layout, stage_name, stage_root

MULTIARCH = "/usr/lib/x86_64-linux-gnu"
HOME = {"HOME": "/home/u", "USER": "u"}


def lib(source: str, destination: str, kind: str = "library") -> Bind:
    return Bind(source, destination, True, "test", kind)


def test_files_of_one_directory_and_its_plugin_subdir_share_one_slot() -> None:
    binds = [lib(f"{MULTIARCH}/libmpich.so.12.2.2", "/.hpcrun/lib/libmpich.so.12"),
             lib(f"{MULTIARCH}/libmpich.so.12.2.2", "/.hpcrun/lib/libmpi.so.12", "alias"),
             lib(f"{MULTIARCH}/ucx/libuct_cma.so.0.0.0", "/.hpcrun/lib/ucx/libuct_cma.so.0"),
             lib("/opt/wheel/lib/mpich/libfabric.so.1", "/.hpcrun/lib/mpich/libfabric.so.1")]
    found = layout(binds, "/.hpcrun", None, HOME)
    assert [d.code for d in found.diagnostics] == ["ch-run-stage"] and found.other == ()
    assert f"{MULTIARCH} at /mnt/1" in found.diagnostics[0].message
    assert found.stage is not None
    assert found.stage.links == (
        ("lib/libmpich.so.12", "/mnt/1/libmpich.so.12.2.2"),
        ("lib/libmpi.so.12", "/mnt/1/libmpich.so.12.2.2"),  # the alias beside the real file
        ("lib/ucx/libuct_cma.so.0", "/mnt/1/ucx/libuct_cma.so.0.0.0"),
        ("lib/mpich/libfabric.so.1", "/mnt/2/libfabric.so.1"))
    assert found.mounts == ((found.stage.directory, "/mnt/0"), (MULTIARCH, "/mnt/1"),
                            ("/opt/wheel/lib/mpich", "/mnt/2"))
    assert found.stage.directory == (
        "/home/u/.cache/hpcrun/stage/" + stage_name(found.stage.links))


def test_prefix_maps_to_the_stage_mount_point_and_nothing_else() -> None:
    found = layout([lib("/opt/x/libx.so.1", "/.hpcrun/lib/libx.so.1")], "/.hpcrun",
                   ("/mnt/3", "/mnt/7"), HOME)
    assert found.mount_point == "/mnt/3"
    assert found.container_path("/.hpcrun/lib") == "/mnt/3/lib"
    assert found.container_path("/.hpcrun") == "/mnt/3"
    assert found.container_path("/.hpcrunx/lib") == "/.hpcrunx/lib"
    assert found.map_value("/.hpcrun/lib:/usr/lib:/.hpcrun/gpu") == "/mnt/3/lib:/usr/lib:/mnt/3/gpu"
    nothing = layout([Bind("/scratch", "/scratch")], "/.hpcrun", None, HOME)
    assert nothing.stage is None and nothing.map_value("/.hpcrun/lib") == "/.hpcrun/lib"


def test_slots_used_by_other_binds_are_skipped() -> None:
    binds = [Bind("/scratch", "/mnt/0", kind="filesystem"),
             lib("/opt/x/libx.so.1", "/.hpcrun/lib/libx.so.1")]
    found = layout(binds, "/.hpcrun", None, HOME)
    assert [m[1] for m in found.mounts] == ["/mnt/1", "/mnt/2"]
    assert found.other == (binds[0],)


def test_more_host_directories_than_slots_is_an_error() -> None:
    binds = [lib(f"/opt/d{i}/libx{i}.so", f"/.hpcrun/lib/libx{i}.so") for i in range(3)]
    found = layout(binds, "/.hpcrun", ("/mnt/0", "/mnt/1", "/mnt/2"), HOME, "img")
    assert found.stage is None and found.other == tuple(binds)
    (diag,) = found.diagnostics
    assert diag.severity == ERROR and diag.code == "ch-run-too-many-host-dirs"
    assert "/opt/d0, /opt/d1, /opt/d2" in diag.message and "/mnt/N" in diag.hint
    assert layout(binds, "/.hpcrun", None, HOME).stage is not None  # 10 slots assumed


def test_image_without_mount_points_is_an_error() -> None:
    found = layout([lib("/opt/x/libx.so.1", "/.hpcrun/lib/libx.so.1")], "/.hpcrun", (), HOME,
                   "/images/app")
    (diag,) = found.diagnostics
    assert diag.code == "ch-run-no-mount-points" and "/images/app" in diag.message
    assert "ch-image" in diag.hint


def test_stage_location() -> None:
    assert stage_root({"HPCRUN_STAGE_DIR": "/shared/st/", "XDG_CACHE_HOME": "/c"}) == "/shared/st"
    assert stage_root({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == "/c/hpcrun/stage"
    assert stage_root({"XDG_CACHE_HOME": "rel", "HOME": "/h"}) == "/h/.cache/hpcrun/stage"
    assert stage_root({}) == ""
    found = layout([lib("/opt/x/libx.so.1", "/.hpcrun/lib/libx.so.1")], "/.hpcrun", None, {})
    assert [d.code for d in found.diagnostics] == ["ch-run-no-stage-dir"]


def test_stage_name_depends_on_the_whole_mapping() -> None:
    one = stage_name((("lib/a.so", "/mnt/1/a.so"),))
    assert one == stage_name((("lib/a.so", "/mnt/1/a.so"),))
    assert one != stage_name((("lib/a.so", "/mnt/2/a.so"),))
    assert one != stage_name((("lib/a.so", "/mnt/1/a.so"), ("lib/b.so", "/mnt/1/b.so")))
    assert len(DEFAULT_SLOTS) == 10


def _plan(contribution: Contribution, slots: Optional[Sequence[str]] = None,
          environ: Optional[Dict[str, str]] = None):
    profile = Profile(schema=1, name="t", binds=(BindSpec("/etc/dat.conf"),))
    request = Request(("srun", "-n", "2"), "/img", ("app",))
    return build_plan(profile, request, HostFacts(runtime=RuntimeInfo(kind="charliecloud")),
                      None, [contribution], None, HOME if environ is None else environ,
                      mount_slots=slots)


def test_plan_renders_stage_binds_and_mapped_variables() -> None:
    resolver = Contribution(
        binds=(lib(f"{MULTIARCH}/libmpich.so.12.2.2", "/.hpcrun/lib/libmpich.so.12"),
               lib("/opt/gtl/libmpi_gtl_cuda.so.0", "/.hpcrun/lib/libmpi_gtl_cuda.so.0"),
               lib("/opt/fab/libfabric/libtcp-fi.so", "/.hpcrun/lib/libfabric/libtcp-fi.so")),
        env=(EnvVar("FI_PROVIDER_PATH", "/.hpcrun/lib/libfabric", source="resolver"),),
        preload=("/.hpcrun/lib/libmpi_gtl_cuda.so.0",), verdict="compatible")
    plan = _plan(resolver, ("/mnt/0", "/mnt/1", "/mnt/2", "/mnt/3", "/mnt/4"))
    invocation = plan.invocation
    assert invocation.stage is not None and plan.errors == ()
    argv = invocation.argv
    assert "/etc/dat.conf:/etc/dat.conf" in argv
    assert f"{invocation.stage.directory}:/mnt/0" in argv
    assert {f"{MULTIARCH}:/mnt/1", "/opt/gtl:/mnt/2", "/opt/fab/libfabric:/mnt/3"} <= set(argv)
    assert not [a for a in argv if ":/.hpcrun" in a]
    assert "--set-env=LD_PRELOAD=/mnt/0/lib/libmpi_gtl_cuda.so.0" in argv
    assert "--set-env=FI_PROVIDER_PATH=/mnt/0/lib/libfabric" in argv
    assert any(a.startswith("--set-env=LD_LIBRARY_PATH=/mnt/0/lib") for a in argv)
    warning = next(d for d in plan.warnings if d.code == "ch-run-bind-destinations")
    assert warning.message.endswith(": /etc/dat.conf")
    too_few = _plan(resolver, ("/mnt/0", "/mnt/1"))
    assert [d.code for d in too_few.errors] == ["ch-run-too-many-host-dirs"]
    assert too_few.invocation.stage is None


def test_apptainer_rendering_has_no_stage() -> None:
    resolver = Contribution(binds=(lib(f"{MULTIARCH}/libmpich.so.12.2.2",
                                       "/.hpcrun/lib/libmpich.so.12"),), verdict="compatible")
    request = Request(("srun", "-n", "2"), "app.sif", ("app",))
    plan = build_plan(Profile(schema=1, name="t"), request,
                      HostFacts(runtime=RuntimeInfo(kind="apptainer")), None, [resolver], None,
                      HOME)
    assert plan.invocation.stage is None
    assert dict(plan.invocation.env_set)["APPTAINER_BINDPATH"] == (
        f"{MULTIARCH}/libmpich.so.12.2.2:/.hpcrun/lib/libmpich.so.12:ro")


def test_binds_nested_in_a_staged_directory() -> None:
    wheel = "/opt/wheel/lib"
    outer = Bind(f"{wheel}/mpich", "/.hpcrun/lib/mpich", True, "closure", "library")
    same = lib(f"{wheel}/mpich/libfabric.so.1", "/.hpcrun/lib/mpich/libfabric.so.1")
    found = layout([outer, same], "/.hpcrun", None, HOME)
    assert found.stage is not None and found.stage.links == (("lib/mpich", "/mnt/1/mpich"),)
    other = lib("/elsewhere/libfabric.so.1", "/.hpcrun/lib/mpich/libfabric.so.1")
    clash = layout([outer, other], "/.hpcrun", None, HOME)
    assert clash.stage is None
    assert [d.code for d in clash.diagnostics] == ["ch-run-nested-binds"]


def test_ch_run_preconditions_are_checked_before_launch() -> None:
    """ch-run stops on each rank without $USER, and cannot run a SIF: both are plan errors
    with a hint, before anything starts."""
    assert "ch-run-needs-user" in [d.code for d in _plan(Contribution(), environ={
        "HOME": "/home/u"}).errors]
    assert _plan(Contribution()).errors == ()
    profile = Profile(schema=1, name="t")
    for image in ("/img/app.sif", "/img/app.sqfs"):
        request = Request(("srun",), image, ("app",))
        plan = build_plan(profile, request, HostFacts(runtime=RuntimeInfo(kind="charliecloud")),
                          None, [], None, HOME)
        codes = [d.code for d in plan.errors]
        assert codes == (["ch-run-image-kind"] if image.endswith(".sif") else []), image
