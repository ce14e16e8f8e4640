"""Any command line gives an exit code, never a traceback (property-based).

The launch path runs in-process with ``--dry-run`` always first, so nothing is exec'd;
the rest of the argv is drawn from hpcrun's and the launchers' real options mixed with
arbitrary strings.  Only :class:`~hpcrun.errors.HpcrunError` may end a run, and
``hpcrun.cli.main.main`` turns it into its exit code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.terminal import run_main
from hpcrun.cli.main import EXIT_CODES, EXIT_INTERNAL

DOCUMENTED = {code for code, _, _, _ in EXIT_CODES}

WORDS = ["--site", "zeus", "debian-mpich", "--runtime", "charliecloud", "apptainer", "--gpu",
         "nvidia", "--no-gpu", "--threads", "auto", "4", "--abi-policy", "strict", "--cleanenv",
         "--force", "--no-check", "--explain", "--json", "--env", "A=1", "--image", "srun",
         "-n", "2", "-c2", "--mpi=pmi2", "mpirun", "mpiexec.hydra", "-np", ":", "--", "",
         "python3", "x.py", "IMAGE", "docker://x/y:1", "/etc/passwd", "/dev/null", ".",
         "nosuch.toml", "--mpi", "-N", "--ntasks=2", "-x", "--oversubscribe"]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A sandbox directory image (empty root: inspection works, nothing is found)."""
    root = tmp_path_factory.mktemp("img")
    (root / "etc").mkdir()
    return str(root)


# What a real argv can hold: bytes without NUL, decoded as Python decodes argv.
ARGS = st.binary(max_size=8).filter(lambda b: b"\x00" not in b).map(
    lambda b: b.decode("utf-8", "surrogateescape"))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.one_of(st.sampled_from(WORDS), ARGS), max_size=10))
def test_any_argv_gives_an_exit_code(words: list, image: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HPCRUN_SITE", "debian-mpich")
    argv = ["--dry-run", *(image if w == "IMAGE" else w for w in words)]
    code, _out, errors = run_main(argv)
    assert code in DOCUMENTED and code != EXIT_INTERNAL, (code, errors)
    if code != 0:
        assert errors.startswith("hpcrun: error: "), errors
    assert "Traceback" not in errors
