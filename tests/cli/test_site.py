"""`hpcrun site ...` through the installed console script, in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Optional

import pytest

from hpcrun.profiles.load import profile_to_dict
from hpcrun.profiles.lookup import load_site

LIBDIR = "/usr/lib/x86_64-linux-gnu"
SHIPPED = ("zeus", "topaz", "setonix", "debian-mpich", "debian-openmpi")


@pytest.fixture(scope="module")
def hpcrun_bin() -> str:
    path = shutil.which("hpcrun")
    if path is None:
        pytest.skip("the hpcrun console script is not installed (pip install -e .)")
    return path


def run(binary: str, *args: str, env: Optional[Dict[str, str]] = None,
        cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HPCRUN_")}
    environ.update(COLUMNS="200", NO_COLOR="1")
    environ.update(env or {})
    return subprocess.run([binary, *args], capture_output=True, text=True, env=environ,
                          cwd=cwd, timeout=120)


def test_list_shows_every_shipped_profile_and_shadowing(hpcrun_bin: str, tmp_path: Path) -> None:
    done = run(hpcrun_bin, "site", "list")
    assert done.returncode == 0, done.stderr
    for name in SHIPPED:
        assert name in done.stdout
    mine = tmp_path / "zeus.toml"
    mine.write_text('schema = 1\nname = "zeus"\ndescription = "my own zeus"\n')
    done = run(hpcrun_bin, "site", "list", env={"HPCRUN_SITE_PATH": str(tmp_path),
                                                 "HPCRUN_SITE": "zeus"})
    assert done.returncode == 0, done.stderr
    assert "my own zeus" in done.stdout
    assert "zeus (default)" in done.stdout
    assert "shadowed: Pawsey Zeus" in done.stdout


def test_list_reads_well_at_80_columns_in_a_pipe(hpcrun_bin: str) -> None:
    done = run(hpcrun_bin, "site", "list", env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if len(line) > 80 and len(line.split()) > 1] == []
    assert not any(ch in done.stdout for ch in "┃│━─")  # plain text, no table borders
    for name in SHIPPED:
        assert any(line.startswith(f"  {name}: ") for line in lines), name


def test_show_json_is_the_profile(hpcrun_bin: str) -> None:
    done = run(hpcrun_bin, "site", "show", "setonix", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data == profile_to_dict(load_site("setonix", {}))
    assert list(data)[:3] == ["schema", "name", "description"]
    assert data["launchers"] == {"srun": {"options": ["--mpi=cray_shasta"],
                                          "reason": data["launchers"]["srun"]["reason"]}}


def test_show_renders_every_section(hpcrun_bin: str) -> None:
    done = run(hpcrun_bin, "site", "show", "zeus")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for title in ("[runtime]", "[mpi]", "[gpu]", "[container]", "[threads]", "[wireup]",
                  "[launchers.srun]", 'options = ["--mpi=pmi2"]'):
        assert title in lines, title
    assert lines.count("[[libraries]]") == 25 and lines.count("[[binds]]") == 7


@pytest.mark.parametrize("name", SHIPPED)
def test_show_prints_toml_as_a_sysadmin_writes_it(hpcrun_bin: str, name: str,
                                                   tmp_path: Path) -> None:
    """TOML (true/false, not Python's True), no empty table, no key without a value, and it
    loads back as the same profile."""
    from hpcrun.profiles.load import loads_profile

    done = run(hpcrun_bin, "site", "show", name, env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "True" not in text and "False" not in text and "None" not in text
    assert not any(line.endswith(('= ""', "= []", "= false")) for line in text.splitlines())
    tables = [i for i, line in enumerate(text.splitlines()) if line.startswith("[")]
    for index in tables:  # every table has at least one key
        following = text.splitlines()[index + 1] if index + 1 < len(text.splitlines()) else ""
        assert " = " in following, (name, text.splitlines()[index])
    assert loads_profile(text) == load_site(name, {})


def test_validate_exit_codes(hpcrun_bin: str) -> None:
    if not os.path.exists(f"{LIBDIR}/libmpich.so.12"):
        pytest.skip("Debian MPICH is not installed")
    done = run(hpcrun_bin, "site", "validate", "debian-mpich")
    assert done.returncode == 0, done.stdout
    assert done.stdout.strip().endswith("0 error(s), 0 warning(s)")
    done = run(hpcrun_bin, "site", "validate", "--deep", "debian-openmpi")
    assert done.returncode == 0, done.stdout
    done = run(hpcrun_bin, "site", "validate", "zeus")
    assert done.returncode == 78
    lines = done.stdout.splitlines()
    assert any(line.startswith("ERROR binds[0].source: bind source /astro does not exist on this "
                               "host (") for line in lines)
    assert all(line.split()[0] in ("ERROR", "WARNING", "INFO") for line in lines[:-1])


def test_bad_profile_is_one_error_line_without_traceback(hpcrun_bin: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('schema = 1\nname = "bad"\n\n[mpi]\nfamly = "mpich"\n')
    done = run(hpcrun_bin, "site", "validate", str(bad))
    assert done.returncode == 78
    assert done.stdout == (f"ERROR {bad}:5: mpi.famly: unknown key 'famly' "
                           "(did you mean 'family'?)\n")
    assert "Traceback" not in done.stderr
    bad.write_text("schema = 1\nname = [\n")
    done = run(hpcrun_bin, "site", "validate", str(bad))
    assert done.returncode == 78 and done.stdout.startswith(f"ERROR {bad}:")
    done = run(hpcrun_bin, "site", "show", str(bad))
    assert done.returncode == 78
    assert done.stderr.startswith(f"hpcrun: error: {bad}:")
    assert "Traceback" not in done.stderr


def test_unknown_site_suggests(hpcrun_bin: str) -> None:
    done = run(hpcrun_bin, "site", "show", "setonx")
    assert done.returncode == 78
    assert "unknown site 'setonx'" in done.stderr
    assert "did you mean 'setonix'?" in done.stderr


def test_schema_command_prints_the_schema(hpcrun_bin: str) -> None:
    done = run(hpcrun_bin, "site", "schema")
    assert done.returncode == 0
    repo = Path(__file__).resolve().parents[2]
    assert done.stdout == (repo / "site-profiles/schema.json").read_text()


def test_detect_writes_only_the_named_file(hpcrun_bin: str, tmp_path: Path) -> None:
    if not os.path.exists(f"{LIBDIR}/libmpich.so.12"):
        pytest.skip("Debian MPICH is not installed")
    out = tmp_path / "here.toml"
    done = run(hpcrun_bin, "site", "detect", "--name", "here", "--mpi",
               f"{LIBDIR}/libmpich.so.12", "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here.toml"]
    assert "review the GUESS comments" in done.stderr
    validated = run(hpcrun_bin, "site", "validate", "--deep", str(out))
    assert validated.returncode == 0, validated.stdout
    again = run(hpcrun_bin, "site", "detect", "-o", str(out))
    assert again.returncode == 64 and "exists" in again.stderr
    forced = run(hpcrun_bin, "site", "detect", "--mpi", f"{LIBDIR}/libmpi.so.40", "--force",
                 "-o", str(out))
    assert forced.returncode == 0, forced.stderr
    assert 'family = "openmpi"' in out.read_text()
    printed = run(hpcrun_bin, "site", "detect", "--name", "here", "--mpi",
                  f"{LIBDIR}/libmpich.so.12")
    assert printed.returncode == 0
    assert printed.stdout.startswith("# Site profile for hpcrun")
    missing = run(hpcrun_bin, "site", "detect", "--mpi", str(tmp_path / "nope"))
    assert missing.returncode == 64 and "no such file" in missing.stderr


@pytest.mark.parametrize("name", ["debian-mpich", "debian-openmpi"])
def test_bundled_debian_profiles_validate_clean_on_this_debian_machine(hpcrun_bin: str,
                                                                       name: str) -> None:
    """The profiles written for this machine's packages pass --deep here, warnings
    included (debian-openmpi used to miss the UCX transport modules libucs opens)."""
    probe = {"debian-mpich": "libmpich.so.12", "debian-openmpi": "libmpi.so.40"}[name]
    if not os.path.exists(f"{LIBDIR}/{probe}") or not os.path.isdir(f"{LIBDIR}/ucx"):
        pytest.skip(f"the Debian packages {name} describes are not installed")
    done = run(hpcrun_bin, "site", "validate", "--deep", name)
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines() == [f"{load_site(name, {}).source}: 0 error(s), "
                                        "0 warning(s)"]


@pytest.mark.parametrize("name", SHIPPED)
def test_offline_validation_of_every_bundled_profile(hpcrun_bin: str, name: str) -> None:
    """The file alone: zeus's /usr/lib64 and /pawsey paths do not exist here, and offline
    that is not looked at (online it is 25+ errors)."""
    done = run(hpcrun_bin, "site", "validate", "--offline", name)
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines()[-1].endswith(
        ": 0 error(s), 0 warning(s) (offline: syntax, schema and values; no host file "
        "looked at)")
    if name == "zeus":
        online = run(hpcrun_bin, "site", "validate", "zeus")
        assert online.returncode != 0 and "does not exist on this host" in online.stdout


@pytest.mark.parametrize("text, line", [
    ('schema = 1\nname = "x\n', "bad.toml:2:10: invalid TOML"),
    ('schema = 1\nname = "x"\n[[binds]]\nsource = "/s"\nread_only = "yes"\n',
     "bad.toml:5: binds[0].read_only: expected true or false, got a string"),
    ('schema = 1\nname = "x"\n[mpi]\nfamily = "mpich"\nlibraries = ["lib/libmpi.so.12"]\n'
     'sonames = ["libmpi.so.12"]\n',
     "ERROR mpi.libraries[0]: MPI library 'lib/libmpi.so.12' is not an absolute path"),
    ('schema = 1\nname = "x"\n[[env]]\nname = "1X"\nvalue = "a"\n',
     "ERROR env[0].name: '1X' is not a valid environment variable name"),
], ids=["syntax", "schema", "relative-path", "env-name"])
def test_offline_validation_finds_syntax_schema_and_value_errors(
        hpcrun_bin: str, tmp_path: Path, text: str, line: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    done = run(hpcrun_bin, "site", "validate", "--offline", str(bad))
    assert done.returncode == 78, done.stdout  # a configuration error
    assert line in done.stdout.splitlines()[0], done.stdout


def test_offline_and_deep_exclude_each_other(hpcrun_bin: str) -> None:
    done = run(hpcrun_bin, "site", "validate", "--offline", "--deep", "zeus")
    assert done.returncode == 64 and "exclude each other" in done.stderr  # usage
