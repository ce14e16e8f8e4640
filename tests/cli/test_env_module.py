"""`hpcrun env` through the real shells and `hpcrun module` through real Lmod.

The profile binds host paths with awkward names (spaces, quotes, `$`, `,`, `:`, non-ASCII):
every shell must end up with exactly the variables hpcrun computes, and Lmod's
`module unload` must restore the environment byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from helpers.recording_runtime import install_recorders, read_records

LMOD_INIT = Path("/usr/share/lmod/lmod/init/bash")
HPCRUN = shutil.which("hpcrun") or "hpcrun"
DUMP = ("import json,os,sys; json.dump({k: v for k, v in os.environ.items()}, sys.stdout)")
NASTY = ["with space", "quote'd", 'dq"x', "dollar$HOME", "comma,colon:x", "caf\u00e9", "bang!x"]


def _site(tmp_path: Path, newline: bool) -> Path:
    host = tmp_path / "host"
    binds = []
    for i, name in enumerate(NASTY):
        path = host / name
        path.mkdir(parents=True)
        binds.append(f"[[binds]]\nsource = {json.dumps(str(path))}\n"
                     f"destination = {json.dumps('/data/' + str(i))}\nreason = \"test\"\n")
    profile = tmp_path / "nasty.toml"
    profile.write_text(
        "schema = 1\nname = \"nasty\"\ndescription = \"awkward names\"\n"
        "[runtime]\nkind = \"apptainer\"\n"
        "[container]\nlibrary_path = [\"/opt/x y/lib\"]\n"
        + "".join(binds)
        + "[[env]]\nname = \"NASTY_VALUE\"\nvalue = \"a'b\\\"c $d `e` \\\\f !g"
        + ("\\nh" if newline else "") + "\"\n"
        + "reason = \"test\"\n"
    )
    return profile


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    """A profile whose bind sources and variables carry shell-hostile characters."""
    return _site(tmp_path, newline=True)


@pytest.fixture()
def lmod_site(tmp_path: Path) -> Path:
    """The same without the newline, which Lmod cannot carry (see test_snippets)."""
    return _site(tmp_path, newline=False)


def _expected(site: Path, shell_env: Dict[str, str]) -> Dict[str, str]:
    """What hpcrun itself computes (in-process) for the site."""
    from hpcrun.host.facts import RuntimeInfo
    from hpcrun.profiles.lookup import load_site
    from hpcrun.render.siteenv import site_environment

    profile = load_site(str(site), shell_env)
    assignments, _ = site_environment(profile, str(site), RuntimeInfo(kind="apptainer"))
    return dict(assignments)


def _clean_env(tmp: Path) -> Dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(tmp), "LANG": "C.UTF-8"}


SHELL_EVAL = {
    "bash": (["bash", "--norc", "-c"], 'eval "$(hpcrun env --site "$0" --shell bash)" && '
                                       'exec "$1" -c "$2"'),
    "sh": (["dash", "-c"], 'eval "$(hpcrun env --site "$0" --shell sh)" && exec "$1" -c "$2"'),
    "zsh": (["zsh", "-f", "-c"], 'eval "$(hpcrun env --site "$0" --shell zsh)" && '
                                 'exec "$1" -c "$2"'),
    "tcsh": (["tcsh", "-f", "-c"], 'hpcrun env --site $argv[1]:q --shell tcsh > $argv[4]:q && '
                                   'source $argv[4]:q && exec $argv[2]:q -c $argv[3]:q'),
    "fish": (["fish", "--no-config", "-c"], 'hpcrun env --site $argv[1] --shell fish | source; '
                                            'and exec $argv[2] -c $argv[3]'),
}


@pytest.mark.parametrize("shell", sorted(SHELL_EVAL))
def test_env_snippet_sets_exactly_the_planned_variables(shell: str, site: Path,
                                                        tmp_path: Path) -> None:
    prefix, script = SHELL_EVAL[shell]
    if shutil.which(prefix[0]) is None:
        pytest.skip(f"{prefix[0]} is not installed")
    env = _clean_env(tmp_path)
    argv = [*prefix, script]
    args = [str(site), sys.executable, DUMP, str(tmp_path / "snippet")]
    if shell in ("tcsh", "fish"):
        argv += args
    else:
        argv += args[:3]
    done = subprocess.run(argv, capture_output=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    seen = json.loads(done.stdout)
    expected = _expected(site, env)
    assert "APPTAINER_BINDPATH" in expected and "APPTAINERENV_NASTY_VALUE" in expected
    for name, value in expected.items():
        assert seen.get(name) == value, name
    # The bind path escapes ',' and ':' in the source with a backslash, as Apptainer reads it.
    assert "comma\\,colon\\:x:/data/4" in seen["APPTAINER_BINDPATH"]


def test_env_rejects_unknown_shell_and_site(tmp_path: Path) -> None:
    bad = subprocess.run([HPCRUN, "env", "--site", "debian-mpich", "--shell", "pwsh"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown shell" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = subprocess.run([HPCRUN, "env", "--site", "no-such-site-xyz"],
                             capture_output=True, text=True, env=_clean_env(tmp_path))
    assert missing.returncode == 78 and "no-such-site-xyz" in missing.stderr
    assert "Traceback" not in missing.stderr


def _lmod(script: str, tmp: Path, extra_env: Dict[str, str]) -> subprocess.CompletedProcess:
    if not LMOD_INIT.exists():
        pytest.skip("Lmod is not installed (Debian package lmod)")
    env = {**_clean_env(tmp), **extra_env}
    return subprocess.run(["bash", "--norc", "-c", f"source {LMOD_INIT}\n{script}"],
                          capture_output=True, env=env, timeout=120, text=True)


LMOD_INTERNAL = ("_ModuleTable", "__LMOD", "LMOD_", "_LMFILES_", "LOADEDMODULES", "MODULEPATH",
                 "MODULESHOME", "BASH_FUNC_", "OLDPWD", "_", "SHLVL", "PWD", "BASH_ENV")


def _user_env(env: Dict[str, str]) -> Dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith(LMOD_INTERNAL)}


def test_module_load_and_unload_with_real_lmod(lmod_site: Path, tmp_path: Path) -> None:
    site = lmod_site
    modules = tmp_path / "modules"
    made = subprocess.run([HPCRUN, "module", "--site", str(site), "--name", "hpcrun/nasty",
                           "-o", str(modules), "--wrappers"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert (modules / "hpcrun" / "nasty.lua").is_file()
    recorders = install_recorders(tmp_path / "bin", ("apptainer",))
    record = tmp_path / "record.jsonl"
    dump = f"{sys.executable} -c {json.dumps(DUMP)}"
    script = "\n".join([
        f"{dump} > {tmp_path}/before.json",
        f"module use {modules}",
        "module load hpcrun/nasty || exit 9",
        f"{dump} > {tmp_path}/loaded.json",
        # hpcrun sees the site from the module; a plain runtime call sees the variables.
        "hpcrun --no-check --dry-run srun -n 2 /images/app.sif python3 hello.py"
        f" > {tmp_path}/dry.sh",
        f"PATH={recorders}:$PATH apptainer exec /images/app.sif true",
        "type hpcrun-exec >/dev/null || exit 8",
        "module unload hpcrun/nasty || exit 7",
        f"{dump} > {tmp_path}/after.json",
    ])
    done = _lmod(script, tmp_path, {"APPTAINER_BINDPATH": "/pre,existing",
                                    "HPCRUN_RECORD": str(record)})
    assert done.returncode == 0, done.stdout + done.stderr
    before = json.loads((tmp_path / "before.json").read_text())
    loaded = json.loads((tmp_path / "loaded.json").read_text())
    after = json.loads((tmp_path / "after.json").read_text())
    expected = _expected(site, _clean_env(tmp_path))
    for name, value in expected.items():
        assert loaded.get(name) == value, name
    assert loaded["HPCRUN_SITE"] == str(site)
    # The module's bind path already holds every bind of the site: the launch adds none
    # (render/runtimes.py skips destinations the caller's bind path has).
    assert "APPTAINER_BINDPATH" not in (tmp_path / "dry.sh").read_text()
    (call,) = read_records(record)
    for name in ("APPTAINER_BINDPATH", "APPTAINERENV_LD_LIBRARY_PATH", "APPTAINERENV_NASTY_VALUE"):
        assert call["env"][name] == expected[name]
    # Unload restores exactly what was there, including the user's own bind path.
    assert _user_env(after) == _user_env(before)
    assert after["APPTAINER_BINDPATH"] == "/pre,existing"


def test_module_refuses_to_overwrite(tmp_path: Path) -> None:
    args = [HPCRUN, "module", "--site", "debian-mpich", "-o", str(tmp_path)]
    first = subprocess.run(args, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(args, capture_output=True, text=True)
    assert second.returncode == 64 and "exists" in second.stderr
    forced = subprocess.run([*args, "--force"], capture_output=True, text=True)
    assert forced.returncode == 0


def test_module_text_has_help_whatis_family(tmp_path: Path) -> None:
    out = subprocess.run([HPCRUN, "module", "--site", "debian-mpich", "--conflict", "mpi-bind"],
                         capture_output=True, text=True)
    text = out.stdout
    for needle in ("help([", 'whatis("Name: hpcrun site debian-mpich")', 'family("hpcrun_site")',
                   'conflict("mpi-bind")', 'pushenv("HPCRUN_SITE", "debian-mpich")'):
        assert needle in text
    lines: List[str] = [line for line in text.splitlines() if line.startswith("pushenv(")]
    assert len(lines) >= 3


def test_module_with_a_newline_value_is_a_clear_error(site: Path) -> None:
    done = subprocess.run([HPCRUN, "module", "--site", str(site)], capture_output=True, text=True)
    assert done.returncode == 64 and "newline" in done.stderr and "Traceback" not in done.stderr


def _bindpath(text: str) -> List[str]:
    """The entries of the APPTAINER_BINDPATH a snippet, modulefile or dry run sets."""
    import re

    found = re.search(r"APPTAINER_BINDPATH[\"',= ]+(/[^\"' ;\n]+)", text)
    assert found, text
    return sorted(found.group(1).split(","))


def test_env_module_and_dry_run_bind_the_same_set(tmp_path: Path) -> None:
    """For debian-mpich on this machine: `env`, `module` and `--dry-run --no-check` bind the
    same host files (the profile's MPI libraries and their closure); a dry run with an image
    binds the part its application needs (docs/lmod.md)."""
    if not os.path.exists("/usr/lib/x86_64-linux-gnu/libmpich.so.12"):
        pytest.skip("Debian MPICH is not installed")
    env = {k: v for k, v in os.environ.items() if k != "HPCRUN_SITE"}
    run = {"env": dict(env)}

    def out(*args: str) -> str:
        done = subprocess.run([HPCRUN, *args], capture_output=True, text=True, env=run["env"],
                              timeout=120, check=False)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    site = ["--site", "debian-mpich"]
    snippet = _bindpath(out("env", *site, "--runtime", "apptainer"))
    module = _bindpath(out("module", *site, "--runtime", "apptainer"))
    dry = _bindpath(out(*site, "--runtime", "apptainer", "--dry-run", "--no-check",
                        str(tmp_path), "true"))
    assert snippet == module == dry
    assert len(snippet) > 20  # 3 MPI libraries, 9 UCX module names, their closure
    assert any("/libhwloc.so." in entry for entry in snippet)  # a dependency, not named
