"""`hpcrun check` end to end: real sandbox images, a real site profile, this host's MPI."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Dict

import pytest

from helpers.mpi_trees import HOST_LIBDIR, compile_c, copy_host_file, wheel_lib
from hpcrun.cli.main import main

HELLO = r"""
#include <mpi.h>
int main(int argc, char **argv) { MPI_Init(&argc, &argv); MPI_Finalize(); return 0; }
"""


def _sandbox(root: Path, app: Path, mpi_files: list) -> Path:
    for name in ("libc.so.6", "libm.so.6"):
        copy_host_file(root, f"{HOST_LIBDIR}/{name}")
    copy_host_file(root, "/lib64/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2")
    for path in mpi_files:
        copy_host_file(root, path)
    (root / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy(app, root / "usr/local/bin/app")
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/ld.so.conf").write_text(f"{HOST_LIBDIR}\n")
    subprocess.run(["ldconfig", "-X", "-r", str(root)], check=True, capture_output=True)
    return root


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory,
           mpi_wheel: Callable[[str], Path]) -> Dict[str, Path]:
    """Sandbox images: Debian-MPICH app, Open MPI app, an app built against upstream MPICH
    5.0.2 (the PyPI wheel), each with its own MPI inside."""
    for tool in ("mpicc.mpich", "mpicc.openmpi", "ldconfig"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    work = tmp_path_factory.mktemp("check")
    mpich = compile_c(work, "mpich-app", HELLO, ["mpicc.mpich"])
    ompi = compile_c(work, "ompi-app", HELLO, ["mpicc.openmpi"])
    lib = wheel_lib(mpi_wheel("mpich"), "mpich")
    upstream = compile_c(work, "up-app", HELLO, ["gcc", f"-I{lib.parent / 'include'}"],
                         [f"-L{lib}", "-lmpi"])
    up = _sandbox(work / "img-up", upstream, [])
    shutil.copy(lib / "libmpi.so.12", up / HOST_LIBDIR.lstrip("/") / "libmpi.so.12")
    subprocess.run(["ldconfig", "-X", "-r", str(up)], check=True, capture_output=True)
    return {
        "upstream": up,
        "mpich": _sandbox(work / "img-mpich", mpich, [f"{HOST_LIBDIR}/libmpich.so.12"]),
        "openmpi": _sandbox(work / "img-ompi", ompi, [f"{HOST_LIBDIR}/libmpi.so.40"]),
    }


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site profile naming this machine's Debian MPICH as the host MPI."""
    profile = tmp_path / "deb.toml"
    profile.write_text('schema = 1\nname = "deb"\n[mpi]\nfamily = "mpich"\n'
                       f'libraries = ["{HOST_LIBDIR}/libmpich.so.12"]\n')
    monkeypatch.setenv("HPCRUN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return profile


def test_compatible_exit_0(images: Dict[str, Path], site: Path,
                           capsys: pytest.CaptureFixture) -> None:
    code = main(["check", "--site", str(site), str(images["mpich"]), "--app",
                 "/usr/local/bin/app", "--explain"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "compatible" in out
    assert "/.hpcrun/lib/libmpich.so.12" in out.replace("\n", "") or "libmpich.so.12" in out


def test_incompatible_exit_2_json(images: Dict[str, Path], site: Path,
                                  capsys: pytest.CaptureFixture) -> None:
    code = main(["check", "--site", str(site), str(images["openmpi"]), "--json", "--",
                 "/usr/local/bin/app"])
    data = json.loads(capsys.readouterr().out)
    assert code == 68
    assert data["verdict"] == "incompatible" and data["exit_code"] == 68
    assert "mpi-family-mismatch" in [d["code"] for d in data["diagnostics"]]


def test_warnings_exit_67_and_policy(images: Dict[str, Path], site: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    """Host Debian MPICH 4.0.2 is older than the container's MPICH 5.0.2 (alias libmpi.so.12)."""
    args = ["check", "--site", str(site), str(images["upstream"]), "--json", "--app",
            "/usr/local/bin/app"]
    code = main(args)
    data = json.loads(capsys.readouterr().out)
    assert (code, data["verdict"]) == (67, "warnings")
    assert main([*args, "--abi-policy", "major"]) == 0
    capsys.readouterr()
    assert main([*args, "--abi-policy", "strict"]) == 68


@pytest.mark.parametrize("spelling", [["--app", "/usr/local/bin/app a b"],
                                      ["--app", "/usr/local/bin/app", "a", "b"],
                                      ["--", "/usr/local/bin/app", "a", "b"]],
                         ids=["quoted", "app-then-args", "positional"])
def test_the_app_command_spellings_agree(images: Dict[str, Path], site: Path,
                                         spelling: list, capsys: pytest.CaptureFixture) -> None:
    """`--app` with the arguments quoted or following it, or the command after the image:
    the whole command is checked, none of it dropped."""
    code = main(["check", "--site", str(site), str(images["mpich"]), "--json", *spelling])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["app"] == ["/usr/local/bin/app", "a", "b"]


@pytest.mark.parametrize("form", [
    ["--json", "--site", "{site}", "{image}"],
    ["--site={site}", "--json", "--abi-policy", "strict", "{image}"],
    ["--site", "other", "--site", "{site}", "--app", "/usr/local/bin/app x", "--json", "{image}"],
    ["--site", "{site}", "--explain", "{image}"],
    ["--site", "{site}", "{image}", "--json", "--app", "/usr/local/bin/app"],
    ["--site", "{site}", "{image}", "/usr/local/bin/app", "--json", "a", "--", "-b"],
])
def test_the_typer_free_path_answers_like_typer(images: Dict[str, Path], site: Path,
                                                 form: list, capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`hpcrun check`'s usual forms skip typer's import: same output, same exit code."""
    from hpcrun.cli import check
    from hpcrun.cli.app import run_app

    monkeypatch.setenv("COLUMNS", "200")
    args = [w.format(site=site, image=images["mpich"]) for w in form]
    direct = check.run_direct(args)
    direct_out = capsys.readouterr().out
    typer_code = run_app(["check", *args])
    assert direct is not None and (direct, direct_out) == (typer_code, capsys.readouterr().out)


@pytest.mark.parametrize("args", [
    ["--help"], ["{image}", "--help"], ["--site"], ["--site", "--json", "{image}"],
    ["--bogus", "{image}"], [], ["--json"], ["{image}", "app", "-c", "1"],
])
def test_other_forms_are_left_to_typer(images: Dict[str, Path], args: list) -> None:
    from hpcrun.cli import check

    assert check.run_direct([w.format(image=images["mpich"]) for w in args]) is None
