"""--dry-run snippet, --json (against the JSON Schema), --explain, and golden plans for
every shipped site profile (regenerate with HPCRUN_UPDATE_GOLDEN=1)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import List

import jsonschema
import pytest

from helpers.recording_runtime import install_recorders, read_records, recording_env
from hpcrun.host.facts import HostFacts, RuntimeInfo
from hpcrun.plan.build import build_plan
from hpcrun.plan.model import Plan, Request
from hpcrun.profiles.lookup import load_site
from hpcrun.profiles.model import BindSpec, EnvSpec, Profile
from hpcrun.render.dryrun import render_dry_run
from hpcrun.render.explain import render_explain
from hpcrun.render.jsonout import plan_to_dict, render_json

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "data" / "golden"
SCHEMA = json.loads((REPO / "adapter" / "hpcrun" / "data" / "plan-schema.json").read_text())
SITES = sorted(p.stem for p in (REPO / "site-profiles").glob("*.toml"))
AWKWARD = ["a b", "it's", '"q"', "$HOME", "*.py", "--", "", "é", "-n", "\\", "x=y", "line\nnext"]


def _site_plan(site: str) -> Plan:
    profile = load_site(str(REPO / "site-profiles" / f"{site}.toml"), {})
    kind = profile.runtime.kind if profile.runtime.kind != "auto" else "apptainer"
    request = Request(launcher=("srun", "-n", "2"), image="app.sif",
                      command=("python", "hello.py"), site=site)
    host = HostFacts(runtime=RuntimeInfo(kind=kind), environ=(("PATH", "/usr/bin:/bin"),))
    return build_plan(profile, request, host, None, [], None)


@pytest.mark.parametrize("site", SITES)
def test_golden_plans(site: str) -> None:
    plan = _site_plan(site)
    outputs = {f"{site}.sh": render_dry_run(plan), f"{site}.json": render_json(plan)}
    for name, text in outputs.items():
        path = GOLDEN / name
        if os.environ.get("HPCRUN_UPDATE_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"{path} missing: run with HPCRUN_UPDATE_GOLDEN=1"
        assert text == path.read_text(), f"{name} changed (HPCRUN_UPDATE_GOLDEN=1 to accept)"
    jsonschema.validate(json.loads(outputs[f"{site}.json"]), SCHEMA)


def test_shipped_sites_exist() -> None:
    assert {"zeus", "topaz", "setonix", "debian-mpich", "debian-openmpi"} <= set(SITES)


def test_zeus_goal_command() -> None:
    plan = _site_plan("zeus")
    argv = plan.invocation.argv
    assert argv == ("srun", "--mpi=pmi2", "-n", "2", "singularity", "exec", "app.sif",
                    "python", "hello.py")
    env = dict(plan.invocation.env_set)
    assert env["SINGULARITYENV_LD_LIBRARY_PATH"].endswith(":$LD_LIBRARY_PATH")
    assert "/etc/dat.conf:/etc/dat.conf:ro" in env["SINGULARITY_BINDPATH"]
    assert "/usr/lib64/libmlx5.so.1:/.hpcrun/lib/libmlx5.so.1:ro" in env["SINGULARITY_BINDPATH"]


def test_schema_is_valid_and_strict() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    data = plan_to_dict(_site_plan("zeus"))
    assert data["version"] == 1
    data["binds"][0]["unexpected"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


def _awkward_plan(launcher=("srun", "-n", "2")) -> Plan:
    profile = Profile(schema=1, name="t", binds=(BindSpec("/a b,c:d", "/mnt/x"),),
                      env=(EnvSpec("WEIRD", "a'b\"c $x `y` \\z\nw"),
                           EnvSpec("SLURM_EXPORT_ENV", action="unset", scope="launcher")))
    request = Request(launcher=tuple(launcher), image="my image.sif", command=("prog", *AWKWARD))
    host = HostFacts(runtime=RuntimeInfo(kind="apptainer"))
    return build_plan(profile, request, host, None, [], None, {"SLURM_EXPORT_ENV": "NONE"})


@pytest.mark.parametrize("shell", [s for s in ("sh", "dash", "bash", "zsh") if shutil.which(s)])
def test_dry_run_snippet_runs_exactly_the_invocation(shell: str, tmp_path: Path) -> None:
    plan = _awkward_plan()
    snippet = render_dry_run(plan)
    assert snippet.startswith("env \\\n")
    bindir = install_recorders(tmp_path / "bin", ["srun"])
    record = tmp_path / "record.jsonl"
    env = recording_env(bindir, record, SLURM_EXPORT_ENV="NONE")
    subprocess.run([shell, "-c", snippet], env=env, check=True, timeout=60)
    (got,) = read_records(record)
    assert tuple(got["argv"][1:]) == plan.invocation.argv[1:]
    for name, value in plan.invocation.env_set:
        assert got["env"][name] == value
    assert "SLURM_EXPORT_ENV" not in got["env"]


def test_dry_run_comments_warnings_on_single_lines() -> None:
    profile = Profile(schema=1, name="t", binds=(BindSpec("/usr/lib64"),))
    plan = build_plan(profile, Request((), "a.sif", ("x",)), HostFacts(), None, [], None)
    lines = render_dry_run(plan).splitlines()
    assert lines[0].startswith("# error: /usr/lib64 would be bound over")
    assert lines[-1] == "apptainer exec a.sif x"


def test_json_and_explain_cover_everything() -> None:
    plan = _awkward_plan()
    data = json.loads(render_json(plan))
    jsonschema.validate(data, SCHEMA)
    assert data["command"] == ["prog", *AWKWARD]
    out = io.StringIO()
    render_explain(plan, file=out, width=200)
    text = out.getvalue()
    for needle in ("/a b,c:d", "/mnt/x", "binds[0]", "WEIRD", "env[0]", "Diagnostics",
                   "SLURM_EXPORT_ENV"):
        assert needle in text, needle


def test_explain_does_not_interpret_markup() -> None:
    profile = Profile(schema=1, name="t", env=(EnvSpec("X", "[bold]not markup[/bold]"),))
    plan = build_plan(profile, Request((), "a.sif", ("x",)), HostFacts(), None, [], None)
    out = io.StringIO()
    render_explain(plan, file=out, width=200)
    assert "[bold]not markup[/bold]" in out.getvalue()


def _words(text: str) -> List[str]:
    return text.split()
