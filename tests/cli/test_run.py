"""The launch path through the installed ``hpcrun`` program, in a subprocess.

Real launches exec recording stand-ins (``tests/helpers/recording_runtime.py``) put first on
PATH: they prove the exact argv and environment hpcrun exec'd, and - by their pid and parent
pid - that no process sat in between.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import jsonschema
import pytest

from helpers.recording_runtime import install_recorders, read_records, recording_env

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "adapter" / "hpcrun" / "data" / "plan-schema.json").read_text())
HPCRUN = shutil.which("hpcrun") or ""

PROFILE = """\
schema = 1
name = "testsite"
description = "test site for the launch path"

[runtime]
kind = "apptainer"

[[binds]]
source = "{data}"
destination = "/data"
reason = "test data"

[[env]]
name = "SITE_VAR"
value = "site value"
reason = "a site setting"

[launchers.srun]
options = ["--mpi=pmi2"]
reason = "PMI-2"
"""

Arg = Union[str, bytes]


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "testsite.toml"
    path.write_text(PROFILE.format(data=data))
    return path


def hpcrun(args: Sequence[Arg], env: Optional[Dict[str, str]] = None,
           cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    if not HPCRUN:
        pytest.skip("the hpcrun entry point is not installed")
    return subprocess.run([HPCRUN, *args], env=env, cwd=cwd, capture_output=True,
                          timeout=120, check=False)


def no_runtime_path(tmp_path: Path) -> Dict[str, str]:
    """An environment whose PATH has no launcher and no container runtime."""
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    env = dict(os.environ)
    env["PATH"] = str(empty)
    env.pop("HPCRUN_SITE", None)
    return env


def only_python_path(tmp_path: Path) -> Dict[str, str]:
    """An environment whose PATH has no launcher, only the real Apptainer (a plan names an
    installed runtime: a missing one is refused, dry runs included)."""
    real = shutil.which("apptainer")
    if real is None:
        pytest.skip("Apptainer is not installed (scripts/install-test-deps)")
    env = no_runtime_path(tmp_path)
    link = Path(env["PATH"]) / "apptainer"
    if not link.exists():
        link.symlink_to(real)
    return env


def test_dry_run_prints_the_command(site: Path, tmp_path: Path) -> None:
    done = hpcrun(["--dry-run", "--no-check", "--site", str(site), "srun", "-n", "2", "app.sif",
                   "python", "hello.py"], env=only_python_path(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert out.splitlines()[-1] == ("  srun --mpi=pmi2 -n 2 apptainer exec app.sif python "
                                    "hello.py")
    assert f"APPTAINER_BINDPATH={site.parent}/data:/data" in out
    assert "'APPTAINERENV_SITE_VAR=site value'" in out


def test_json_is_valid(site: Path, tmp_path: Path) -> None:
    done = hpcrun(["--json", "--no-check", f"--site={site}", "--env", "A=1", "app.sif", "x"],
                  env=only_python_path(tmp_path))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    jsonschema.validate(data, SCHEMA)
    assert data["invocation"]["argv"] == ["apptainer", "exec", "app.sif", "x"]
    assert ["APPTAINERENV_A", "1"] in data["invocation"]["env_set"]


def test_explain(site: Path, tmp_path: Path) -> None:
    done = hpcrun(["--explain", "--no-check", "--site", str(site), "srun", "app.sif", "x"],
                  env=dict(only_python_path(tmp_path), COLUMNS="200"))
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    for needle in ("Binds", "binds[0]: test data", "SITE_VAR", "env[0]: a site setting",
                   "launcher-default"):
        assert needle in out, needle


def test_explain_and_json_with_bytes_that_are_not_utf8(site: Path, tmp_path: Path) -> None:
    env = only_python_path(tmp_path)
    args: List[Arg] = ["--no-check", "--site", str(site), "app.sif", b"\xff\xfe"]
    explain = hpcrun(["--explain", *args], env=env)
    assert explain.returncode == 0, explain.stderr
    assert b"\\xff\\xfe" in explain.stdout
    data = json.loads(hpcrun(["--json", *args], env=env).stdout)
    assert os.fsencode(data["command"][0]) == b"\xff\xfe"


def test_default_site_from_environment(site: Path, tmp_path: Path) -> None:
    env = dict(only_python_path(tmp_path), HPCRUN_SITE=str(site))
    done = hpcrun(["--dry-run", "--no-check", "app.sif", "x"], env=env)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("args, code, needle", [
    (["--dry-run", "srun", "-n", "2"], 64, "no image"),
    (["--dry-run", "srun", "-n", "2", "app.sif"], 64, "nothing to run"),
    (["--dry-run", "--bogus", "app.sif", "x"], 64, "unknown hpcrun option '--bogus'"),
    (["--dry-run", "srun", "--bogus", "app.sif", "x"], 64, "--bogus"),
    (["srun", "--dry-run", "app.sif", "x"], 64, "hpcrun's options go before the launcher"),
    (["--dry-run", "--gpu", "intel", "app.sif", "x"], 64, "--gpu"),
    (["--dry-run", "--threads", "0", "app.sif", "x"], 64, "--threads"),
    (["--dry-run", "--env", "1A=x", "app.sif", "x"], 64, "--env"),
    (["--dry-run", "--site"], 64, "--site needs a value"),
    (["--dry-run", "mpiexec.hydra", "-n", "1", "a.sif", "x", ":", "-n", "1", "b.sif", "y"], 64,
     "MPMD"),
    (["--dry-run", "--site", "no-such-site-anywhere", "app.sif", "x"], 78, "no-such-site"),
])
def test_usage_errors(args: List[str], code: int, needle: str, site: Path,
                      tmp_path: Path) -> None:
    env = dict(only_python_path(tmp_path), HPCRUN_SITE=str(site))
    done = hpcrun(args, env=env)
    assert done.returncode == code, done.stderr
    err = done.stderr.decode()
    assert needle in err
    assert "Traceback" not in err
    assert err.startswith("hpcrun: error: ")


def test_help() -> None:
    done = hpcrun(["--site", "x", "--help"])
    assert done.returncode == 0 and b"--dry-run" in done.stdout


def test_no_runtime_installed(site: Path, tmp_path: Path) -> None:
    """A runtime that is not on PATH fails the launch and every plan output alike: one
    error line naming the runtime and why it was chosen, the same exit code, no plan."""
    env = no_runtime_path(tmp_path)
    launch = hpcrun(["--no-check", "--site", str(site), "app.sif", "x"], env=env)
    assert launch.returncode == 69, launch.stderr
    assert b"apptainer" in launch.stderr and b"not installed" in launch.stderr
    for mode in ("--dry-run", "--explain", "--json"):
        plan = hpcrun([mode, "--no-check", "--site", str(site), "app.sif", "x"], env=env)
        assert (plan.returncode, plan.stdout) == (69, b""), (mode, plan.stderr)
        assert plan.stderr.startswith(b"hpcrun: error: apptainer: the container runtime is "
                                      b"not installed"), plan.stderr
        assert b"runtime.kind" in plan.stderr


def test_launcher_missing(site: Path, tmp_path: Path) -> None:
    bindir = install_recorders(tmp_path / "bin", ["apptainer"])
    env = recording_env(bindir, tmp_path / "rec.jsonl")
    env["PATH"] = str(bindir)
    done = hpcrun(["--no-check", "--site", str(site), "srun", "-n", "2", "app.sif", "x"],
                  env=env)
    assert done.returncode == 69 and b"srun: not found" in done.stderr


AWKWARD: List[Arg] = ["a b", "it's", '"q"', "$HOME", "*.py", "--", "", "é", "-n", "\\",
                      "x=y", "line\nnext", b"\xff\xfe raw bytes", "[a-z]"]


def _launch(args: Sequence[Arg], env: Dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([HPCRUN, *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_launch_execs_the_launcher_byte_for_byte(site: Path, tmp_path: Path) -> None:
    if not HPCRUN:
        pytest.skip("the hpcrun entry point is not installed")
    bindir = install_recorders(tmp_path / "bin", ["srun", "apptainer"])
    record = tmp_path / "rec.jsonl"
    env = recording_env(bindir, record)
    env["PATH"] = f"{bindir}{os.pathsep}/usr/bin:/bin"
    args: List[Arg] = ["--no-check", "--site", str(site), "--env", "USER_VAR=$not expanded",
                       "srun", "-n", "2", "app.sif", "python", *AWKWARD]
    proc = _launch(args, env, tmp_path)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    probe, got = read_records(record)
    # at most one subprocess before the exec: the runtime's --version
    assert probe["program"] == "apptainer" and probe["argv"][1:] == ["--version"]
    # exec, not fork: the launcher IS the process we started, its parent is this test.
    assert got["pid"] == proc.pid
    assert got["ppid"] == os.getpid()
    assert got["program"] == "srun"
    assert os.path.basename(got["argv"][0]) == "srun"  # a script's argv[0] is its path
    argv = [os.fsencode(a) for a in got["argv"][1:]]
    expected = [b"--mpi=pmi2", b"-n", b"2", b"apptainer", b"exec", b"app.sif",
                b"python", *[a if isinstance(a, bytes) else os.fsencode(a) for a in AWKWARD]]
    assert argv == expected
    assert got["env"]["APPTAINERENV_USER_VAR"] == "\\$not expanded"
    assert got["env"]["APPTAINERENV_SITE_VAR"] == "site value"
    assert got["env"]["APPTAINER_BINDPATH"] == f"{site.parent}/data:/data"


def test_launch_without_launcher_execs_the_runtime(site: Path, tmp_path: Path) -> None:
    if not HPCRUN:
        pytest.skip("the hpcrun entry point is not installed")
    bindir = install_recorders(tmp_path / "bin", ["apptainer"])
    record = tmp_path / "rec.jsonl"
    env = recording_env(bindir, record)
    proc = _launch(["--no-check", "--site", str(site), "--cleanenv", "app.sif", "true"], env,
                   tmp_path)
    proc.communicate(timeout=120)
    got = read_records(record)[-1]
    assert got["pid"] == proc.pid and got["program"] == "apptainer"
    assert got["argv"][1:] == ["exec", "--cleanenv", "app.sif", "true"]


def test_exit_status_and_signals_are_the_jobs(site: Path, tmp_path: Path) -> None:
    if not HPCRUN:
        pytest.skip("the hpcrun entry point is not installed")
    bindir = install_recorders(tmp_path / "bin", ["apptainer"])
    args = ["--no-check", "--site", str(site), "app.sif", "x"]
    env = recording_env(bindir, tmp_path / "a.jsonl", HPCRUN_RECORD_EXIT="7")
    proc = _launch(args, env, tmp_path)
    proc.communicate(timeout=120)
    assert proc.returncode == 7
    env = recording_env(bindir, tmp_path / "b.jsonl",
                        HPCRUN_RECORD_SIGNAL=str(int(signal.SIGTERM)))
    proc = _launch(args, env, tmp_path)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGTERM


def test_plan_errors_block_unless_forced(tmp_path: Path) -> None:
    if not HPCRUN:
        pytest.skip("the hpcrun entry point is not installed")
    profile = tmp_path / "bad.toml"
    profile.write_text('schema = 1\nname = "bad"\n[runtime]\nkind = "apptainer"\n'
                       '[[binds]]\nsource = "/usr/lib64"\nreason = "shadows"\n')
    bindir = install_recorders(tmp_path / "bin", ["apptainer"])
    record = tmp_path / "rec.jsonl"
    env = recording_env(bindir, record)
    done = hpcrun(["--no-check", "--site", str(profile), "app.sif", "x"], env=env)
    assert done.returncode == 78 and b"/usr/lib64" in done.stderr
    assert [r["argv"][1:] for r in read_records(record)] == [["--version"]]  # no exec
    record.unlink()
    forced = hpcrun(["--no-check", "--force", "--site", str(profile), "app.sif", "x"], env=env)
    assert forced.returncode == 0, forced.stderr
    assert [r["argv"][1:] for r in read_records(record)] == [["--version"],
                                                            ["exec", "app.sif", "x"]]


def test_real_sif_through_the_default_path(site: Path, sif_data: Path, tmp_path: Path) -> None:
    image = sif_data / "images" / "one-group.sif"
    done = hpcrun(["--dry-run", "--site", str(site), "srun", "-n", "2", str(image), "cat",
                   "/hello.txt"], env=only_python_path(tmp_path))
    # An i686 image on this x86_64 host: the plan is printed, then refused as the launch is.
    assert done.returncode == 68, done.stderr
    assert str(image) in done.stdout.decode()
    assert done.stderr.startswith(b"hpcrun: error: the host MPI cannot serve this application")


def test_launch_path_imports_no_heavy_modules(site: Path, tmp_path: Path) -> None:
    code = ("import sys; from hpcrun.cli.main import main; rc = main(%r); "
            "heavy = [m for m in ('typer', 'rich', 'spython', 'elftools', 'click') "
            "if m in sys.modules]; print(','.join(heavy)); sys.exit(rc)")
    args = ["--dry-run", "--no-check", "--site", str(site), "srun", "-n", "2", "app.sif", "x"]
    done = subprocess.run([sys.executable, "-c", code % (args,)], env=only_python_path(tmp_path),
                          capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines()[-1] == ""


@pytest.mark.parametrize("launcher", [
    ["mpiexec.hydra", "-n", "2"],
    ["mpirun.openmpi", "--allow-run-as-root", "--oversubscribe", "-np", "2"],
])
def test_real_launcher_starts_the_runtime_per_rank(launcher: List[str], site: Path,
                                                   tmp_path: Path) -> None:
    """A real launcher runs hpcrun's runtime command once per rank, with its variables."""
    if not HPCRUN or not shutil.which(launcher[0]):
        pytest.skip(f"{launcher[0]} not installed")
    bindir = install_recorders(tmp_path / "bin", ["apptainer"])
    record = tmp_path / "rec.jsonl"
    env = recording_env(bindir, record)
    done = hpcrun(["--no-check", "--site", str(site), "--env", "RANK_VAR=a b", *launcher,
                   "app.sif", "python", "it's.py"], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ranks = [r for r in read_records(record) if r["argv"][1:2] == ["exec"]]
    assert len(ranks) == 2
    for rank in ranks:
        assert rank["argv"][1:] == ["exec", "app.sif", "python", "it's.py"]
        assert rank["env"]["APPTAINERENV_RANK_VAR"] == "a b"
        assert rank["env"]["APPTAINER_BINDPATH"] == f"{site.parent}/data:/data"
        assert rank["ppid"] != os.getpid()  # started by the launcher, not by hpcrun


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory: pytest.TempPathFactory):
    """A real single-node Slurm (helpers.slurm) for the srun launch test."""
    from helpers import slurm

    missing = slurm.missing_programs()
    if missing:
        pytest.skip(f"Slurm not installed ({', '.join(missing)})")
    try:
        cluster = slurm.start_cluster(tmp_path_factory.mktemp("slurm-cli"))
    except slurm.SlurmUnavailable as error:
        pytest.skip(str(error))
    env = {k: v for k, v in cluster.environ().items() if not k.startswith("SLURM_")}
    env.update(cluster.env)
    yield env
    cluster.stop()


def test_real_srun_starts_the_runtime_per_rank(slurm_env: Dict[str, str], site: Path,
                                               tmp_path: Path) -> None:
    """The goal command through real Slurm: profile default --mpi=pmi2, two ranks, each
    started by slurmstepd with hpcrun's variables."""
    if not HPCRUN:
        pytest.skip("the hpcrun entry point is not installed")
    bindir = install_recorders(tmp_path / "bin", ["apptainer"])
    record = tmp_path / "rec.jsonl"
    env = dict(slurm_env)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["HPCRUN_RECORD"] = str(record)
    done = hpcrun(["--no-check", "--site", str(site), "--env", "X=$y", "srun", "-n", "2",
                   "app.sif", "python", "hello.py"], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ranks = [r for r in read_records(record) if r["argv"][1:2] == ["exec"]]
    assert sorted(r["env"]["SLURM_PROCID"] for r in ranks) == ["0", "1"]
    for rank in ranks:
        assert rank["argv"][1:] == ["exec", "app.sif", "python", "hello.py"]
        assert rank["env"]["SLURM_MPI_TYPE"] == "pmi2"  # the profile's --mpi=pmi2
        assert rank["env"]["APPTAINERENV_X"] == "\\$y"
        assert rank["env"]["APPTAINER_BINDPATH"] == f"{site.parent}/data:/data"
