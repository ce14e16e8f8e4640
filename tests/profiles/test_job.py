"""Per-project job files (hpcrun.toml): format, errors with file:line: key, layering over
the site profile (site < job file < command line), --explain/--json origins, job validate,
the published schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from hpcrun.cli.main import EXIT_CONFIG
from hpcrun.cli.run import Options, apply_job, make_plan
from hpcrun.errors import ConfigError, UsageError
from hpcrun.profiles.job import Job, job_from_text, layered_profile, load_job
from hpcrun.profiles.lookup import load_site
from hpcrun.profiles.model import BindSpec, LauncherDefaults
from hpcrun.profiles.schema import job_schema_text

REPO = Path(__file__).resolve().parents[2]

JOB = """\
schema = 1
site = "debian-mpich"
image = "app.sif"
runtime = "apptainer"
threads = 2

[[binds]]
source = "/tmp"
destination = "/scratch"
reason = "project scratch"

[[env]]
name = "APP_MODE"
value = "fast"

[launchers.srun]
options = ["--mpi=pmi2", "--cpu-bind=cores"]
reason = "the project pins ranks"
"""


def hpcrun(args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None
           ) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "HPCRUN_SITE"}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "hpcrun", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=120)


def test_job_file_loads_with_the_site_profile_formats() -> None:
    job = job_from_text(JOB, "hpcrun.toml")
    assert job.site == "debian-mpich" and job.threads == "2" and job.source == "hpcrun.toml"
    assert job.binds == (BindSpec(source="/tmp", destination="/scratch",
                                  reason="project scratch"),)
    assert dict(job.launchers)["srun"].options == ("--mpi=pmi2", "--cpu-bind=cores")
    assert job_from_text("", "empty.toml") == Job(source="empty.toml")


@pytest.mark.parametrize("text,expected", [
    ('site = "x"\nimgae = "a.sif"\n', "j.toml:2: imgae: unknown key 'imgae'"),
    ('gpu = "amd"\n', "j.toml:1: gpu: invalid value 'amd'"),
    ('threads = "many"\n', "j.toml:1: threads: invalid value 'many'"),
    ('[[binds]]\nsource = "rel/dir"\n', "j.toml:2: binds[0].source: 'rel/dir' is not an absolute"),
    ('[[env]]\nname = "A"\nacton = "set"\n', "j.toml:3: env[0].acton: unknown key"),
    ('[launchers.aprun]\noptions = []\n', "j.toml:1: launchers.aprun: unknown name 'aprun'"),
    ('cleanenv = "yes"\n', "j.toml:1: cleanenv: expected true or false"),
    ('schema = 2\n', "j.toml:1: schema: unsupported job file version 2"),
    ('site = "unterminated\n', "j.toml:1:"),
])
def test_errors_name_file_line_and_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        job_from_text(text, "j.toml")
    assert caught.value.message.startswith(expected), caught.value.message
    assert "\n" not in caught.value.message


def test_layering_adds_binds_and_env_and_replaces_launcher_defaults() -> None:
    site = load_site("debian-mpich", {})
    layered = layered_profile(site, job_from_text(JOB, "/p/hpcrun.toml"))
    assert layered.binds[-1].destination == "/scratch"
    assert "job file /p/hpcrun.toml, binds[0]: project scratch" == layered.binds[-1].reason
    assert layered.env[:len(site.env)] == site.env and layered.env[-1].name == "APP_MODE"
    srun = layered.launcher_defaults("srun")
    assert srun is not None and srun.options == ("--mpi=pmi2", "--cpu-bind=cores")
    assert site.launcher_defaults("srun") == LauncherDefaults(
        options=("--mpi=pmi2",), reason=site.launcher_defaults("srun").reason)  # type: ignore


def test_precedence_site_job_command_line(tmp_path: Path) -> None:
    (tmp_path / "hpcrun.toml").write_text(JOB)
    environ = {"HPCRUN_SITE": "debian-openmpi"}
    opts, job, settings = apply_job(Options(threads="4"), environ, cwd=str(tmp_path))
    assert job is not None
    assert opts.site == "debian-mpich"  # the job file wins over $HPCRUN_SITE
    assert opts.threads == "4"  # the command line wins over the job file
    assert opts.image == str(tmp_path / "app.sif")  # relative to the job file
    origins = {s.name: (s.value, s.origin) for s in settings}
    assert origins["threads"] == ("4", "command line (--threads)")
    assert origins["site"] == ("debian-mpich", f"job file {tmp_path / 'hpcrun.toml'}")
    assert origins["gpu"] == ("", "site profile / default")
    # no job file here, --no-job, and the contradiction
    assert apply_job(Options(), {}, cwd=str(tmp_path / "nowhere"))[1] is None
    assert apply_job(Options(no_job=True), {}, cwd=str(tmp_path))[1] is None
    with pytest.raises(UsageError):
        apply_job(Options(no_job=True, job="x.toml"), {}, cwd=str(tmp_path))


def test_plan_uses_the_job_file_and_records_origins(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hpcrun.toml").write_text(JOB)
    monkeypatch.chdir(tmp_path)
    environ = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root")}
    plan = make_plan(Options(no_check=True, dry_run=True, env=[("APP_MODE", "slow")]),
                     ["srun", "-n", "2", "python3", "x.py"], environ)
    assert plan.site == "debian-mpich" and plan.image == str(tmp_path / "app.sif")
    assert plan.command == ("python3", "x.py")
    assert plan.launcher[:3] == ("srun", "--mpi=pmi2", "--cpu-bind=cores")
    assert any(b.destination == "/scratch" for b in plan.binds)
    mode = [v for v in plan.env if v.name == "APP_MODE"]
    assert mode[-1].value == "slow"  # --env wins over the job file
    assert {s.name for s in plan.settings} >= {"site", "image", "threads"}


def test_explain_and_json_show_where_settings_came_from(tmp_path: Path) -> None:
    (tmp_path / "hpcrun.toml").write_text(JOB)
    out = hpcrun(["--no-check", "--explain", "srun", "-n", "2", "python3", "x.py"], tmp_path,
                 {"COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "Settings (site profile < job file < command line)" in out.stdout
    table = out.stdout.split("Binds")[0]
    assert "job file" in table and "(--threads)" not in table
    out = hpcrun(["--no-check", "--json", "--threads", "1", "srun", "-n", "2", "python3",
                  "x.py"], tmp_path)
    data = json.loads(out.stdout)
    settings = {s["name"]: s for s in data["settings"]}
    assert settings["threads"]["origin"] == "command line (--threads)"
    assert settings["site"]["origin"].startswith("job file ")
    import jsonschema

    schema = json.loads((REPO / "adapter/hpcrun/data/plan-schema.json").read_text())
    jsonschema.validate(data, schema)


def test_job_validate_offline(tmp_path: Path) -> None:
    (tmp_path / "hpcrun.toml").write_text(JOB)
    out = hpcrun(["job", "validate"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "valid job file; site debian-mpich" in out.stdout
    assert "app.sif does not exist" in out.stderr  # a warning, not an error
    (tmp_path / "bad.toml").write_text('schema = 1\nsite = "nosuch"\n')
    out = hpcrun(["job", "validate", "bad.toml"], tmp_path)
    assert out.returncode == EXIT_CONFIG
    assert out.stderr.startswith("hpcrun: error: bad.toml:2: site: unknown site 'nosuch'")
    assert len(out.stderr.splitlines()) == 2  # one error line and one hint
    out = hpcrun(["--job", "missing.toml", "--dry-run", "x.sif", "true"], tmp_path)
    assert out.returncode == EXIT_CONFIG and "job file missing.toml does not exist" in out.stderr


def test_schema_is_published_beside_the_site_profile_schema() -> None:
    published = REPO / "adapter/hpcrun/data/job-schema.json"
    assert published.read_text() == job_schema_text(), \
        "regenerate with: python -m hpcrun.profiles.schema"
    assert (REPO / "adapter/hpcrun/data/profile-schema.json").exists()
    import jsonschema

    schema = json.loads(published.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    import tomllib

    jsonschema.validate(tomllib.loads(JOB), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"schema": 1, "imgae": "x"}, schema)


def test_job_file_from_the_docs_is_valid(tmp_path: Path) -> None:
    text = (REPO / "docs/your-own-image.md").read_text()
    body = text.split("`hpcrun.toml`:\n\n```toml\n", 1)[1].split("```\n", 1)[0]
    job = job_from_text(body, "hpcrun.toml")
    assert job.site == "debian-mpich" and job.image == "app.sif"
    (tmp_path / "hpcrun.toml").write_text(body)
    assert load_job(str(tmp_path / "hpcrun.toml")).threads == "1"
