"""What an application command is inside an image: real compiled apps, mpi4py, scripts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict

import pytest

from helpers.inspect_trees import MissingTool, mini_roots
from hpcrun.image.app import analyse_app, find_program, python_site_dirs
from hpcrun.image.fs import Tree
from hpcrun.image.sandbox import SandboxBackend

ENV = (("PATH", "/usr/local/bin:/usr/bin:/bin:/opt/scripts"),)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory, mpi_wheel) -> Tree:  # type: ignore[no-untyped-def]
    if shutil.which("ldconfig") is None and not Path("/sbin/ldconfig").exists():
        pytest.skip("ldconfig not installed")
    try:
        roots: Dict[str, Path] = mini_roots(
            str(tmp_path_factory.getbasetemp()), str(mpi_wheel("impi_rt"))
        )
    except MissingTool as error:
        pytest.skip(str(error))
    return Tree(SandboxBackend(str(roots["cached"])))


def test_mpich_app(tree: Tree) -> None:
    app = analyse_app(tree, ["hello_mpich", "-x"], ENV)
    assert (app.kind, app.path) == ("elf", "/usr/local/bin/hello_mpich")
    assert app.command == ("hello_mpich", "-x")
    assert app.mpi_needed == ("libmpich.so.12",) and app.mpi_family == "mpich"
    assert not app.static_mpi
    assert "MPI_Init" in app.mpi_symbols and "printf" not in app.mpi_symbols
    assert ("libc.so.6", "GLIBC_2.34") in app.version_needs
    assert app.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert app.warnings == ()


def test_openmpi_app(tree: Tree) -> None:
    app = analyse_app(tree, ["/usr/local/bin/hello_openmpi"], ENV)
    assert app.mpi_needed == ("libmpi.so.40",) and app.mpi_family == "openmpi"
    # Open MPI's MPI_COMM_WORLD is the data symbol ompi_mpi_comm_world, copied into the
    # executable by a copy relocation: still a symbol the library must define.
    assert "ompi_mpi_comm_world" in app.mpi_symbols and "MPI_Init" in app.mpi_symbols


def test_statically_linked_mpich(tree: Tree) -> None:
    if not tree.exists("/usr/local/bin/hello_static_mpich"):
        pytest.skip("libmpich.a is not installed")
    app = analyse_app(tree, ["hello_static_mpich"], ENV)
    assert app.kind == "elf" and app.static_mpi
    assert app.mpi_needed == () and app.mpi_family == "mpich"
    assert any("statically" in w for w in app.warnings)


def test_python_with_mpi4py(tree: Tree) -> None:
    if not tree.exists("/usr/local/lib/python3.11/dist-packages/mpi4py"):
        pytest.skip("mpi4py wheel not available")
    app = analyse_app(tree, ["python3", "-m", "mpi4py.bench", "helloworld"], ENV)
    assert app.kind == "python" and app.interpreter == "/usr/bin/python3"
    families = {e.mpi_family: e for e in app.extensions}
    assert set(families) == {"mpich", "openmpi"}
    assert app.mpi_family == ""  # both ABIs: either serves
    assert families["mpich"].mpi_needed == ("libmpi.so.12",)
    assert families["openmpi"].mpi_needed == ("libmpi.so.40",)
    assert "MPI_Init_thread" in families["mpich"].mpi_symbols


def test_python_script_through_shebang(tree: Tree) -> None:
    if not tree.exists("/usr/local/lib/python3.11/dist-packages/mpi4py"):
        pytest.skip("mpi4py wheel not available")
    app = analyse_app(tree, ["hello.py"], ENV)
    assert app.kind == "python" and app.command == ("hello.py",)
    assert len(app.extensions) == 2


def test_python_site_dirs(tree: Tree) -> None:
    dirs = python_site_dirs(tree, "/usr/bin/python3", (("PYTHONPATH", "/opt/py"),))
    assert dirs[0] == "/opt/py"
    assert "/usr/local/lib/python3.11/dist-packages" in dirs
    assert "/usr/lib/python3/dist-packages" in dirs


def test_shell_script_is_a_warning(tree: Tree) -> None:
    app = analyse_app(tree, ["run.sh"], ENV)
    assert app.kind == "script" and app.path == "/opt/scripts/run.sh"
    assert app.interpreter == "/bin/sh" and app.warnings


def test_missing_program(tree: Tree) -> None:
    app = analyse_app(tree, ["./a.out"], ENV)
    assert app.kind == "missing" and "not found" in app.warnings[0]
    assert analyse_app(tree, ["nosuchprogram"], ENV).kind == "missing"
    assert analyse_app(tree, [], ENV).kind == "missing"


def test_default_path_when_the_image_sets_none(tree: Tree) -> None:
    assert find_program(tree, "dash", None) == "/usr/bin/dash"
    assert find_program(tree, "run.sh", None) == ""  # /opt/scripts is not on the default PATH


def test_non_elf_non_script(tree: Tree) -> None:
    app = analyse_app(tree, ["/etc/ld.so.conf"], ENV)
    assert app.kind == "unknown" and app.warnings
