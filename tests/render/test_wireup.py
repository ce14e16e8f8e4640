"""The --cleanenv wire-up trampoline, run for real by dash and bash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from hpcrun.errors import ConfigError
from hpcrun.plan.model import INFO, WARNING, Request
from hpcrun.profiles.model import Profile, Runtime, Wireup
from hpcrun.render.runtimes import escape_container_value
from hpcrun.render.wireup import (
    ARGV0,
    cleanenv_active,
    cleanenv_options,
    decide,
    forward_patterns,
    glob_to_ere,
    trampoline_script,
)

PROFILE = Profile(schema=1, name="site", wireup=Wireup(forward=("I_MPI_*", "FI_*", "UCX_?LS")))


def req(cleanenv: bool = False, options: Tuple[str, ...] = ()) -> Request:
    return Request(launcher=("srun", "-n", "2"), image="img.sif", command=("app",),
                   cleanenv=cleanenv, runtime_options=options)


NASTY = {
    "SLURM_PROCID": "0",
    "PMI_FD": "7",
    "PMIX_NAMESPACE": "slurm.pmix.42.0",
    "SLURM_NEWLINES": "line one\nline two\n\n",
    "SLURM_QUOTES": "it's \"quoted\" 'twice'",
    "SLURM_DOLLAR": "$HOME ${PATH} $(id) `id` $$ $1 $@",
    "SLURM_BACKSLASH": "back\\slash\\n\\\\ end\\",
    "SLURM_EMPTY": "",
    "SLURM_SPACES": "  leading and trailing  ",
    "SLURM_GLOB": "* ? [a-z] ~",
    "SLURM_DASH": "-n -e --help",
    "SLURM_UNICODE": "ünïcødé ✓ \t tab",
    "SLURM_EQUALS": "a=b=c",
    "SLURM_SEMICOLON": "x; rm -rf /; echo pwned",
    "OMPI_COMM_WORLD_RANK": "1",
    "PALS_RANKID": "3",
    "I_MPI_PMI_LIBRARY": "/usr/lib64/libpmi2.so",
    "FI_PROVIDER": "verbs;ofi_rxm",
    "UCX_TLS": "rc,sm",
    "UCX_NET_DEVICES": "mlx5_0:1",  # UCX_?LS does not match this one
    "CUDA_VISIBLE_DEVICES": "0,1",
    "OTHER": "not forwarded",
    "XSLURM_A": "not forwarded",
    "slurm_lower": "not forwarded",
    "SLURMX": "not forwarded",
    "SLURM_LONG": "x" * 100000,
}
EXPECTED_MISSING = ("UCX_NET_DEVICES", "OTHER", "XSLURM_A", "slurm_lower", "SLURMX")
ARGS = ["exec", "--bind", "/a b:/c", "img.sif", "app", "", "with space", "*", "$HOME",
        "line\nbreak", "'", "\"", "-e"]


@pytest.fixture(scope="module")
def fake_runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in "apptainer" that prints its environment and argv as JSON."""
    path = tmp_path_factory.mktemp("runtime") / "apptainer"
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    "json.dump({'env': dict(os.environ), 'argv': sys.argv[1:]}, sys.stdout)\n")
    path.chmod(0o755)
    return path


def run_trampoline(shell: str, wrapper: Tuple[str, ...], runtime: Path,
                   env: Dict[str, str]) -> Tuple[Dict[str, str], List[str]]:
    assert wrapper[0] == "/bin/sh"
    argv = [shell, *wrapper[1:], str(runtime), *ARGS]
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out = json.loads(proc.stdout)
    return out["env"], out["argv"]


SHELLS = ["/bin/dash", "/bin/bash", "/bin/sh"]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("runtime, prefix", [("apptainer", "APPTAINERENV_"),
                                             ("singularity", "SINGULARITYENV_")])
def test_trampoline_forwards_exact_values(shell: str, runtime: str, prefix: str,
                                          fake_runtime: Path) -> None:
    if not os.path.exists(shell):
        pytest.skip(f"{shell} not installed")
    wrapper = decide(PROFILE, req(cleanenv=True), runtime).wrapper
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **NASTY}
    seen, argv = run_trampoline(shell, wrapper, fake_runtime, env)
    assert argv == ARGS
    for name, value in NASTY.items():
        assert seen[name] == value  # the originals stay untouched
        if name in EXPECTED_MISSING:
            assert prefix + name not in seen
        else:
            # Escaped exactly as the renderer escapes its own values (Apptainer evaluates
            # them once more inside the container).
            assert seen[prefix + name] == escape_container_value(value), name
    assert not [k for k in seen if k.startswith(prefix + "PATH")]


def _emulate_container_shell(shell: str, name: str, rendered: str) -> bytes:
    """What the application sees: Apptainer (>= 1.0) writes ``export NAME="VALUE"`` with
    only ``"`` escaped into a script the container's shell sources."""
    escaped = rendered.replace('"', '\\"')
    script = f'export {name}="{escaped}"; printf "%s" "${name}"'
    return subprocess.run([shell, "-c", script], stdout=subprocess.PIPE, check=True).stdout


@pytest.mark.parametrize("shell", ["/bin/dash", "/bin/bash"])
def test_values_arrive_in_the_app_byte_identical(shell: str, fake_runtime: Path) -> None:
    """Trampoline (dash and bash) then Apptainer's evaluation (dash and bash): unchanged."""
    wrapper = decide(PROFILE, req(cleanenv=True), "apptainer").wrapper
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **NASTY,
           "SLURM_JOB_NAME": "a$b", "SLURM_TICK": "`x`\\\n\n", "SLURM_ONLY": "\\",
           "SLURM_TRAIL": "$\n\n\n"}
    seen, _ = run_trampoline(shell, wrapper, fake_runtime, env)
    for name, value in env.items():
        if name == "PATH" or name in EXPECTED_MISSING:
            continue
        for container_shell in ("/bin/dash", "/bin/bash"):
            arrived = _emulate_container_shell(container_shell, name,
                                               seen["APPTAINERENV_" + name])
            assert arrived == value.encode(), (name, container_shell)


def test_trampoline_escapes_like_the_renderer(fake_runtime: Path) -> None:
    """One rule for both: the trampoline's sh escaping equals escape_container_value."""
    values = ["a$b", "\\$`", "``", "\\\\", "x\n", "${A}\\", "'\"'", "\n$\n", "$$$$"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update({f"PMI_V{i}": v for i, v in enumerate(values)})
    seen, _ = run_trampoline("/bin/dash", decide(PROFILE, req(cleanenv=True), "apptainer")
                             .wrapper, fake_runtime, env)
    for i, value in enumerate(values):
        assert seen[f"APPTAINERENV_PMI_V{i}"] == escape_container_value(value)


def test_explicit_prefixed_value_wins(fake_runtime: Path) -> None:
    wrapper = decide(PROFILE, req(cleanenv=True), "apptainer").wrapper
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PMI_RANK": "5",
           "APPTAINERENV_PMI_RANK": "chosen by --env", "SLURM_X": "1",
           "APPTAINERENV_SLURM_X": ""}
    seen, _ = run_trampoline("/bin/dash", wrapper, fake_runtime, env)
    assert seen["APPTAINERENV_PMI_RANK"] == "chosen by --env"
    assert seen["APPTAINERENV_SLURM_X"] == ""  # set (even empty) means chosen


def test_strange_variable_names_never_reach_eval(fake_runtime: Path) -> None:
    """Names that are not shell identifiers are skipped, and the trampoline still runs."""
    wrapper = decide(PROFILE, req(cleanenv=True), "apptainer").wrapper
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SLURM_OK": "1",
           "SLURM_A-B": "dash in name", "SLURM_A.B": "dot", "PMI_$(id)": "x"}
    for shell in ("/bin/dash", "/bin/bash"):
        seen, argv = run_trampoline(shell, wrapper, fake_runtime, env)
        assert seen["APPTAINERENV_SLURM_OK"] == "1"
        assert argv == ARGS
        forwarded = [k for k in seen if k.startswith("APPTAINERENV_")]
        assert forwarded == ["APPTAINERENV_SLURM_OK"]


def test_busybox_sh_runs_it_too(fake_runtime: Path, tmp_path: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox not installed (busybox-static)")
    # busybox's own awk, through a PATH holding only busybox applets.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "awk").symlink_to(busybox)
    wrapper = decide(PROFILE, req(cleanenv=True), "apptainer").wrapper
    env = {"PATH": str(bin_dir), **{k: v for k, v in NASTY.items() if k != "SLURM_LONG"}}
    proc = subprocess.run([busybox, "sh", *wrapper[1:], str(fake_runtime), *ARGS], env=env,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)["env"]
    assert seen["APPTAINERENV_SLURM_NEWLINES"] == NASTY["SLURM_NEWLINES"]
    assert seen["APPTAINERENV_SLURM_DOLLAR"] == escape_container_value(NASTY["SLURM_DOLLAR"])
    assert seen["APPTAINERENV_SLURM_BACKSLASH"] == escape_container_value(
        NASTY["SLURM_BACKSLASH"])
    assert "APPTAINERENV_OTHER" not in seen


def test_script_is_one_line_and_the_wrapper_shape() -> None:
    result = decide(PROFILE, req(cleanenv=True), "apptainer")
    shell, dash_c, script, argv0 = result.wrapper
    assert (shell, dash_c, argv0) == ("/bin/sh", "-c", ARGV0)
    assert "\n" not in script and script.endswith('exec "$@"')
    (note,) = result.diagnostics
    assert note.severity == INFO and "--cleanenv requested" in note.message


@pytest.mark.parametrize("options, active", [
    ((), False),
    (("-e",), True),
    (("--cleanenv",), True),
    (("-C",), True),
    (("--containall",), True),
    (("-c",), False),               # --contain keeps the environment
    (("-eB", "/x"), True),
    (("-Be",), False),              # "e" is the value of -B here
    (("--cleanenv=true",), True),
    (("--bind", "/e"), False),
])
def test_cleanenv_detection(options: Tuple[str, ...], active: bool) -> None:
    assert bool(cleanenv_options(options)) == active
    assert bool(decide(Profile(schema=1, name="s"), req(options=options), "apptainer").wrapper) \
        == active


def test_profile_runtime_options_turn_it_on() -> None:
    profile = Profile(schema=1, name="s", runtime=Runtime(options=("--containall",)))
    active, why = cleanenv_active(profile, req())
    assert active and why == "runtime option --containall"
    assert decide(profile, req(), "singularity").wrapper[0] == "/bin/sh"


def test_no_cleanenv_no_trampoline() -> None:
    result = decide(PROFILE, req(), "apptainer")
    assert result.wrapper == () and result.diagnostics == ()


def test_charliecloud_needs_none() -> None:
    assert decide(PROFILE, req(cleanenv=True), "charliecloud").wrapper == ()
    result = decide(PROFILE, req(options=("--unset-env=*",)), "charliecloud")
    assert result.wrapper == ()
    (diag,) = result.diagnostics
    assert diag.severity == WARNING and diag.code == "wireup-unset-env"
    assert "I_MPI_*" in diag.message


def test_patterns() -> None:
    assert forward_patterns(PROFILE)[:3] == ("PMI_*", "PMIX_*", "SLURM_*")
    assert forward_patterns(PROFILE)[-3:] == ("I_MPI_*", "FI_*", "UCX_?LS")
    assert glob_to_ere("FI_*", "x") == "FI_[A-Za-z0-9_]*"
    with pytest.raises(ConfigError) as info:
        decide(Profile(schema=1, name="s", wireup=Wireup(forward=("BAD;rm",))),
               req(cleanenv=True), "apptainer")
    assert "BAD;rm" in info.value.message and "wireup.forward" in info.value.message
    assert trampoline_script((), "APPTAINERENV_") == 'exec "$@"'
