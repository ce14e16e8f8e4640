"""Rendering a plan for Apptainer, Singularity and Charliecloud."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcrun.host.facts import HostFacts, RuntimeInfo
from hpcrun.image.facts import ImageFacts
from hpcrun.plan.build import build_plan
from hpcrun.plan.model import ERROR, WARNING, Bind, EnvVar, Plan, Request
from hpcrun.profiles.model import BindSpec, Container, EnvSpec, Library, Profile, Runtime
from hpcrun.render.runtimes import (
    JOIN_SCRIPT,
    Inexpressible,
    bind_spec,
    escape_container_value,
    render_invocation,
)

REQUEST = Request(launcher=("srun", "-n", "2"), image="app.sif", command=("python", "hello.py"))


def host(kind: str = "apptainer", **kw: str) -> HostFacts:
    return HostFacts(runtime=RuntimeInfo(kind=kind, **kw))


def plan_for(profile: Profile, kind: str = "apptainer", request: Request = REQUEST,
             environ=None, image=None, **kw: str) -> Plan:
    return build_plan(profile, request, host(kind, **kw), image, [], None, environ or {})


def parse_bindpath(value: str) -> List[Tuple[str, ...]]:
    """Split a bind-path value as documented: unescaped ',' between items, unescaped ':'
    between fields, backslash escapes ',' and ':'."""
    items = re.split(r"(?<!\\),", value)
    return [tuple(f.replace("\\,", ",").replace("\\:", ":") for f in re.split(r"(?<!\\):", i))
            for i in items]


paths = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"),
                                       blacklist_characters="\\"), min_size=1, max_size=20
                ).map(lambda s: "/" + s)


@settings(max_examples=200, deadline=None)
@given(source=paths, destination=paths, read_only=st.booleans())
def test_bind_spec_round_trips(source: str, destination: str, read_only: bool) -> None:
    spec = bind_spec(Bind(source, destination, read_only))
    fields = parse_bindpath(spec)[0]
    expected = (source, destination, "ro") if read_only else (
        (source,) if source == destination else (source, destination))
    assert fields == expected


@pytest.mark.parametrize("path", ["/a\nb", "/a\tb", "/a\\b", "/x\x7f"])
def test_inexpressible_bind_paths(path: str) -> None:
    with pytest.raises(Inexpressible):
        bind_spec(Bind(path, "/mnt"))
    plan = plan_for(Profile(schema=1, name="t", binds=(BindSpec(path, "/mnt"),)))
    assert [d.code for d in plan.errors] == ["bind-inexpressible"]


def test_apptainer_and_singularity_spellings() -> None:
    profile = Profile(schema=1, name="t", binds=(BindSpec("/scratch"), BindSpec("/a,b:c", "/d")),
                      env=(EnvSpec("UCX_TLS", "rc"),), libraries=(Library("/l/libx.so.1"),))
    apptainer = plan_for(profile).invocation
    assert dict(apptainer.env_set) == {
        "APPTAINER_BINDPATH": "/scratch,/a\\,b\\:c:/d,/l/libx.so.1:/.hpcrun/lib/libx.so.1:ro",
        "APPTAINERENV_LD_LIBRARY_PATH": "/.hpcrun/lib:$LD_LIBRARY_PATH",
        "APPTAINERENV_UCX_TLS": "rc",
    }
    assert apptainer.argv == ("srun", "-n", "2", "apptainer", "exec", "app.sif", "python",
                              "hello.py")
    singularity = plan_for(profile, "singularity").invocation
    assert sorted(dict(singularity.env_set)) == ["SINGULARITYENV_LD_LIBRARY_PATH",
                                                 "SINGULARITYENV_UCX_TLS",
                                                 "SINGULARITY_BINDPATH"]
    assert singularity.argv[3] == "singularity"


def test_existing_bindpath_is_kept() -> None:
    profile = Profile(schema=1, name="t", binds=(BindSpec("/scratch"),))
    invocation = plan_for(profile, environ={"APPTAINER_BINDPATH": "/site"}).invocation
    assert dict(invocation.env_set)["APPTAINER_BINDPATH"] == "/site,/scratch"


def test_existing_bindpath_entries_not_repeated() -> None:
    """Destinations already in the caller's bind path (escapes honoured) are not bound
    again; the caller's entries stay byte for byte; a differing source gets one note."""
    profile = Profile(schema=1, name="t", binds=(
        BindSpec("/scratch"), BindSpec("/a,b:c", "/d"), BindSpec("/new", "/mnt/new"),
        BindSpec("/mine", "/taken")))
    existing = "/site,/a\\,b\\:c:/d,/scratch/,/old:/taken:ro"
    plan = plan_for(profile, environ={"APPTAINER_BINDPATH": existing})
    value = dict(plan.invocation.env_set)["APPTAINER_BINDPATH"]
    assert value == existing + ",/new:/mnt/new"
    (note,) = [d for d in plan.diagnostics if d.code == "bindpath-already-bound"]
    assert "/taken" in note.message and "/old" in note.message
    same = plan_for(profile, environ={"APPTAINER_BINDPATH": "/scratch,/new:/mnt/new"})
    assert "bindpath-already-bound" not in [d.code for d in same.diagnostics]


def test_module_environment_then_launch_binds_each_once(tmp_path) -> None:
    """`hpcrun module` / `hpcrun env` set the site's bind path; a launch of the same site
    then adds only what the module lacks: every destination is bound once."""
    from hpcrun.cli.run import make_plan, parse_args
    from hpcrun.plan.hostpaths import survey_host_paths
    from hpcrun.profiles.lookup import load_site
    from hpcrun.render.siteenv import site_environment

    profile = load_site("debian-mpich", {})
    if not os.path.exists("/usr/lib/x86_64-linux-gnu/libmpich.so.12"):
        pytest.skip("Debian mpich is not installed")
    module_env, _ = site_environment(profile, "debian-mpich", RuntimeInfo("apptainer"),
                                     survey_host_paths(profile))
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
               **dict(module_env)}
    assert environ["APPTAINER_BINDPATH"]
    sandbox = tmp_path / "image"
    (sandbox / "bin").mkdir(parents=True)
    shutil.copy2("/bin/true", sandbox / "bin" / "true")  # a real program, inspected
    for extra in ([], ["--no-check"]):
        opts, rest = parse_args(["--runtime", "apptainer", "--dry-run", *extra,
                                 "srun", "-n", "2", str(sandbox), "/bin/true"])
        plan = make_plan(opts, rest, environ)
        # Not set by the launch: the caller's value reaches the runtime unchanged.
        value = dict(plan.invocation.env_set).get("APPTAINER_BINDPATH",
                                                  environ["APPTAINER_BINDPATH"])
        entries = parse_bindpath(value)
        pairs = [(e[0], e[1] if len(e) > 1 else e[0]) for e in entries]
        destinations = [d for _, d in pairs]
        assert len(destinations) == len(set(destinations)), value
        assert len(pairs) == len(set(pairs))
        # Every bind of the plan is there, and the module's own entries stay.
        assert {b.destination for b in plan.binds} <= set(destinations)
        assert value.startswith(environ["APPTAINER_BINDPATH"].split(",")[0])


def _emulate_apptainer_inject(shell: str, name: str, rendered: str, image_value: str) -> bytes:
    """Evaluate a rendered APPTAINERENV_ value the way Apptainer (>= 1.0) does: it writes
    ``export NAME="VALUE"`` with only ``"`` escaped into a script sourced by the container's
    shell, after the image's own environment (here: ``image_value``)."""
    escaped = rendered.replace('"', '\\"')
    script = f'{name}={image_value!s}; export {name}; export {name}="{escaped}"; ' \
             f'printf "%s" "${name}"'
    return subprocess.run([shell, "-c", script], stdout=subprocess.PIPE, check=True).stdout


SHELLS = [s for s in ("bash", "dash") if shutil.which(s)]
values = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
                 max_size=30)


@pytest.mark.parametrize("shell", SHELLS)
@settings(max_examples=80, deadline=None)
@given(value=values)
def test_container_values_arrive_literally(shell: str, value: str) -> None:
    plan = plan_for(Profile(schema=1, name="t"),
                    request=Request((), "a.sif", ("x",), user_env=(("V", value),)))
    rendered = dict(plan.invocation.env_set)["APPTAINERENV_V"]
    assert rendered == escape_container_value(value)
    assert _emulate_apptainer_inject(shell, "V", rendered, "img") == value.encode()


@pytest.mark.parametrize("shell", SHELLS)
def test_library_path_keeps_the_image_value(shell: str) -> None:
    profile = Profile(schema=1, name="t", container=Container(library_path=("/opt/$weird",)))
    rendered = dict(plan_for(profile).invocation.env_set)["APPTAINERENV_LD_LIBRARY_PATH"]
    assert rendered == "/opt/\\$weird:$LD_LIBRARY_PATH"
    out = _emulate_apptainer_inject(shell, "LD_LIBRARY_PATH", rendered, "/img/lib")
    assert out == b"/opt/$weird:/img/lib"


def test_container_unset_and_legacy_quoting_warn() -> None:
    profile = Profile(schema=1, name="t", env=(EnvSpec("X", action="unset"),
                                               EnvSpec("Y", "a$b")))
    plan = plan_for(profile, "singularity", flavour="singularity", version="3.5.3")
    assert {"container-unset", "legacy-env-quoting"} <= {d.code for d in plan.warnings}
    assert dict(plan.invocation.env_set)["SINGULARITYENV_X"] == ""


def test_launcher_scope_folds_onto_the_callers_environment() -> None:
    profile = Profile(schema=1, name="t", env=(
        EnvSpec("PATH", "/opt/site/bin", action="prepend", scope="launcher"),
        EnvSpec("MANPATH", "/opt/man", action="append", scope="launcher"),
        EnvSpec("SLURM_EXPORT_ENV", action="unset", scope="launcher")))
    invocation = plan_for(profile, environ={"PATH": "/usr/bin", "SLURM_EXPORT_ENV": "NONE"}
                          ).invocation
    assert dict(invocation.env_set)["PATH"] == "/opt/site/bin:/usr/bin"
    assert dict(invocation.env_set)["MANPATH"] == "/opt/man"
    assert invocation.env_unset == ("SLURM_EXPORT_ENV",)


def test_open_mpi_forwards_the_variables_it_needs() -> None:
    request = Request(("mpirun.openmpi", "-np", "2"), "a.sif", ("x",), user_env=(("A", "1"),))
    argv = plan_for(Profile(schema=1, name="t"), request=request).invocation.argv
    assert argv[:5] == ("mpirun.openmpi", "-np", "2", "-x", "APPTAINERENV_A")
    request = Request(("mpirun.openmpi", "-np", "2", "--"), "a.sif", ("x",),
                      user_env=(("A", "1"),))
    argv = plan_for(Profile(schema=1, name="t"), request=request).invocation.argv
    assert argv[:7] == ("mpirun.openmpi", "-np", "2", "-x", "APPTAINERENV_A", "--", "apptainer")


def test_charliecloud_argv() -> None:
    profile = Profile(schema=1, name="t", binds=(BindSpec("/scratch"),),
                      libraries=(Library("/usr/lib64/libmlx5.so.1"),),
                      env=(EnvSpec("UCX_POSIX_USE_PROC_LINK", "n"), EnvSpec("A", "$x")))
    image = ImageFacts(source="img", kind="sandbox",
                       environment=(("LD_LIBRARY_PATH", "/usr/local/lib"),))
    plan = plan_for(profile, "charliecloud", request=Request((), "/img", ("python", "-c", "1")),
                    image=image, binary="/usr/bin/ch-run", environ={"HOME": "/home/u", "USER": "u"})
    stage = plan.invocation.stage
    assert stage is not None and stage.links == (("lib/libmlx5.so.1", "/mnt/1/libmlx5.so.1"),)
    assert stage.directory.startswith("/home/u/.cache/hpcrun/stage/")
    assert plan.invocation.argv == (
        "ch-run", "-b", "/scratch:/scratch",
        "-b", f"{stage.directory}:/mnt/0", "-b", "/usr/lib64:/mnt/1", "--env-no-expand",
        "--set-env=LD_LIBRARY_PATH=/mnt/0/lib:/usr/local/lib",
        "--set-env=UCX_POSIX_USE_PROC_LINK=n", "--set-env=A=$x",
        "/img", "--", "python", "-c", "1")
    warning = next(d for d in plan.warnings if d.code == "ch-run-bind-destinations")
    assert warning.message.endswith("must already contain: /scratch")
    assert plan.errors == ()
    unknown = plan_for(profile, "charliecloud", request=Request((), "/img", ("x",)))
    assert "image-env-unknown" in {d.code for d in unknown.warnings}


def test_real_ch_run_takes_the_rendered_argv(tmp_path) -> None:
    """ch-run itself runs our argv: bind, literal variable, LD_LIBRARY_PATH, command."""
    busybox = shutil.which("busybox")
    if not shutil.which("ch-run") or not busybox or os.geteuid() != 0:
        pytest.skip("needs ch-run, busybox-static and root")
    image = tmp_path / "img"
    for d in ("bin", "etc", "mnt/data", ".hpcrun/lib", "tmp", "dev", "proc", "sys", "home",
                  "root", "run", "var/tmp", "usr/bin"):
        (image / d).mkdir(parents=True)
    shutil.copy(busybox, image / "bin" / "busybox")
    (image / "bin" / "sh").symlink_to("busybox")
    for name in ("passwd", "group", "hosts", "resolv.conf"):
        (image / "etc" / name).write_text("root:x:0:0:root:/:/bin/sh\n" if name == "passwd"
                                          else "")
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("hello from the host\n")
    profile = Profile(schema=1, name="t", binds=(BindSpec(str(data), "/mnt/data"),),
                      env=(EnvSpec("LITERAL", "a $HOME `b` \\c"),))
    plan = plan_for(profile, "charliecloud", image=ImageFacts(source=str(image), kind="sandbox"),
                    request=Request((), str(image), (
                        "/bin/sh", "-c", 'cat /mnt/data/f.txt; printf "%s|%s" "$LITERAL" '
                        '"$LD_LIBRARY_PATH"')), binary=shutil.which("ch-run") or "")
    env = dict(os.environ, USER="root")
    done = subprocess.run(list(plan.invocation.argv), env=env, capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout.decode() == "hello from the host\na $HOME `b` \\c|"


def test_runtime_binary_is_the_name_unless_the_profile_gives_a_path() -> None:
    found = plan_for(Profile(schema=1, name="t"), binary="/usr/local/bin/apptainer")
    assert found.invocation.argv[3] == "apptainer"
    linked = plan_for(Profile(schema=1, name="t"), binary="/usr/bin/singularity")
    assert linked.invocation.argv[3] == "singularity"  # Apptainer's compatibility link
    profile = Profile(schema=1, name="t", runtime=Runtime(path="/opt/apptainer/bin/apptainer"))
    pinned = plan_for(profile, binary="/opt/apptainer/bin/apptainer")
    assert pinned.invocation.argv[3] == "/opt/apptainer/bin/apptainer"


def test_render_is_pure_function_of_plan() -> None:
    plan = plan_for(Profile(schema=1, name="t", env=(EnvSpec("A", "1"),)))
    again, diags = render_invocation(plan, {})
    assert again == plan.invocation and diags == ()
    assert EnvVar("A", "1", "container", "set", "profile", "env[0]") in plan.env
    assert ERROR not in {d.severity for d in plan.diagnostics} and WARNING not in {
        d.severity for d in plan.diagnostics}


def _ch_plan(launcher: Tuple[str, ...], options: Tuple[str, ...] = ()) -> Plan:
    profile = Profile(schema=1, name="t", runtime=Runtime(kind="charliecloud", options=options))
    return plan_for(profile, "charliecloud", request=Request(launcher, "/img", ("app",)),
                    image=ImageFacts(source="/img", kind="sandbox"),
                    environ={"HOME": "/home/u", "USER": "u"})


@pytest.mark.parametrize("launcher", [("srun", "-n", "2"), ("mpirun.openmpi", "-np", "2")])
def test_charliecloud_ranks_join_one_container_under_srun_and_open_mpi(
        launcher: Tuple[str, ...]) -> None:
    """ch-run counts the peers itself from SLURM_STEP_TASKS_PER_NODE / OMPI_COMM_WORLD_*."""
    plan = _ch_plan(launcher)
    argv = plan.invocation.argv
    assert argv[len(launcher):len(launcher) + 2] == ("ch-run", "--join")
    assert "ch-run-join" in {d.code for d in plan.diagnostics}


def test_charliecloud_under_hydra_passes_the_local_rank_count() -> None:
    plan = _ch_plan(("mpiexec.hydra", "-n", "2"))
    argv = plan.invocation.argv
    assert argv[3:8] == ("/bin/sh", "-c", JOIN_SCRIPT, "hpcrun-join", "ch-run")
    assert "--join" not in argv[8:]


def test_charliecloud_without_launcher_or_with_own_join_option_is_left_alone() -> None:
    assert _ch_plan(()).invocation.argv[:2] == ("ch-run", "/img")
    for options in (("--join-tag=x",), ("-j",), ("--join-ct", "4")):
        argv = _ch_plan(("srun", "-n", "2"), options).invocation.argv
        assert argv.count("--join") == 0 and argv[3] == "ch-run", argv


@pytest.mark.parametrize("shell", ["dash", "bash", "busybox"])
@pytest.mark.parametrize("count, expected", [("3", "--join-ct=3"), ("", "--join"),
                                             (None, "--join")])
def test_join_wrapper_runs_in_real_shells(shell: str, count: str, expected: str,
                                          tmp_path) -> None:
    """The Hydra wrapper: MPI_LOCALNRANKS as --join-ct, else plain --join; argv untouched."""
    show = tmp_path / "show-argv"  # stands where ch-run goes: prints its arguments
    show.write_text("#!/bin/sh\nfor a; do printf '%s\\n' \"$a\"; done\n")
    show.chmod(0o755)
    found = shutil.which(shell)
    if not found:
        pytest.skip(f"{shell} is not installed")
    sh = [found, "sh"] if shell == "busybox" else [found]
    env = {"PATH": os.environ.get("PATH", "")}
    if count is not None:
        env["MPI_LOCALNRANKS"] = count
    weird = ["-b", "/a b:/c", "$HOME", "`x`", "--", "it's"]
    done = subprocess.run([*sh, "-c", JOIN_SCRIPT, "hpcrun-join", str(show), *weird],
                          env=env, capture_output=True, check=True)
    assert done.stdout.decode().split("\n")[:-1] == [expected, *weird]
