"""docs/your-own-image.md, run for real: every ``sh`` block of the page, in order, in one
working directory, with this checkout's hpcrun, real Apptainer (``apptainer build
--fakeroot`` of a ``Bootstrap: debootstrap`` recipe from Debian's archive) and the host's
real MPICH.  Then the same recipe with a deliberately wrong MPI family (Open MPI) is built
and refused.

A debootstrap build takes minutes, so images are cached between runs in
``$HPCRUN_TEST_IMAGES`` (default ``~/.cache/hpcrun-test-images``), keyed by the SHA-256 of
the recipe, the files it copies in and Apptainer's version: a changed recipe is built
again, an unchanged one at most once per machine.  On a machine whose TLS is re-signed by a
proxy (``/etc/ssl/certs`` holds its CA) the build gets that CA for pip, as the page's tip
says (``--bind /etc/ssl/certs:/mnt --build-arg PIP_CERT=...``), and mpi4py is compiled with
``--build-arg MPI4PY_CFLAGS=-O0`` (minutes less on a 2-core machine).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

# Two debootstrap builds (5-30 min each on a loaded 2-core machine) are not yet proven to fit
# CI's 90 minutes from a cold cache; run with HPCRUN_TEST_RECIPE_BUILD=1 (issue #17 open).
pytestmark_build = pytest.mark.skipif(
    os.environ.get("HPCRUN_TEST_RECIPE_BUILD") != "1",
    reason="real recipe builds run with HPCRUN_TEST_RECIPE_BUILD=1 (not yet in CI's budget)")

from hpcrun.cli.main import EXIT_INCOMPATIBLE

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "your-own-image.md"
HOST_LIBMPICH = "/usr/lib/x86_64-linux-gnu/libmpich.so.12"
CACHE = Path(os.environ.get("HPCRUN_TEST_IMAGES",
                            Path.home() / ".cache" / "hpcrun-test-images"))

pytestmark = [pytestmark_build, pytest.mark.e2e, pytest.mark.slow]


def _requirements() -> str:
    if os.geteuid() != 0:
        return "a --fakeroot build of a debootstrap recipe needs root here"
    for program in ("apptainer", "debootstrap", "mpiexec.hydra"):
        if shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
            return f"{program} is not installed (scripts/install-test-deps installs it)"
    if not os.path.exists(HOST_LIBMPICH):
        return "Debian's MPICH (libmpich12) is not installed"
    return ""


def sh_blocks(text: str) -> List[str]:
    """The page's ```sh blocks, in order."""
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


def shown_files(text: str) -> Dict[str, str]:
    """The files the page shows: a line `` `NAME`: `` then a fenced block."""
    return dict(re.findall(r"^`([\w./-]+)`:\n\n```\w*\n(.*?)^```", text, flags=re.S | re.M))


def environment() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPCRUN_SITE", "COLUMNS"))}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}:/usr/sbin:/sbin"
    env["COLUMNS"] = "200"
    return env


def run_block(block: str, cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=environment(),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{block}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
    return out


def _proxy_ca() -> List[str]:
    """Build options giving pip this machine's CA bundle (harmless where TLS is not
    intercepted: the bundle then holds the usual public CAs)."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.exists():
        return []
    return ["--bind", "/etc/ssl/certs:/mnt", "--build-arg",
            "PIP_CERT=/mnt/ca-certificates.crt"]


def cached_build(argv: List[str], recipe: Path, image: Path, inputs: List[Path]) -> str:
    """Run ``argv`` (an ``apptainer build`` command line) unless the cache holds the image
    of this recipe; either way ``image`` is there afterwards.  Returns "cached" or "built"."""
    version = subprocess.run(["apptainer", "--version"], capture_output=True, text=True,
                             check=True).stdout
    digest = hashlib.sha256(version.encode() + recipe.read_bytes())
    for path in inputs:
        digest.update(path.name.encode() + path.read_bytes())
    cached = CACHE / f"{digest.hexdigest()[:32]}.sif"
    if cached.exists():
        shutil.copyfile(cached, image)
        return "cached"
    CACHE.mkdir(parents=True, exist_ok=True)
    building = image.with_name(image.name + ".building.sif")
    # -O0: mpi4py's generated C compiles in a fraction of the time on a small CI machine
    command = [*argv[:-2], *_proxy_ca(), "--build-arg", "MPI4PY_CFLAGS=-O0", str(building),
               argv[-1]]
    out = subprocess.run(command, cwd=recipe.parent, capture_output=True, text=True,
                         timeout=1800)
    assert out.returncode == 0, f"{' '.join(command)}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    shutil.copyfile(building, cached.with_suffix(".part"))
    os.replace(cached.with_suffix(".part"), cached)
    os.replace(building, image)
    return "built"


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, object]:
    """The page run block by block; what each block printed, by block index."""
    why = _requirements()
    if why:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("your-own-image")
    outputs: Dict[str, object] = {"work": work}
    for name, body in shown_files(DOC.read_text()).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(body)
    for index, block in enumerate(sh_blocks(DOC.read_text())):
        if block.lstrip().startswith("apptainer build"):
            argv = block.split()
            assert argv[:3] == ["apptainer", "build", "--fakeroot"] and len(block.splitlines()) \
                == 1, block
            outputs["build"] = cached_build(argv, work / argv[-1], work / argv[-2],
                                            sorted((work / "app").rglob("*")))
            continue
        outputs[str(index)] = run_block(block, work)
    return outputs


def test_every_command_of_the_page_runs(walkthrough: Dict[str, object]) -> None:
    blocks = sh_blocks(DOC.read_text())
    assert sorted(shown_files(DOC.read_text())) == ["Dockerfile", "app/hello.py", "hpcrun.toml"]
    assert len(blocks) == 5 and sum(1 for i in range(len(blocks)) if str(i) in walkthrough) == 4
    assert walkthrough["build"] in ("built", "cached")


def test_recipe_says_why_and_what_glibc(walkthrough: Dict[str, object]) -> None:
    recipe = (Path(str(walkthrough["work"])) / "app.def").read_text()
    assert "Bootstrap: debootstrap\nOSVersion: bookworm\nMirrorURL: http://deb.debian.org/debian" \
        in recipe
    flat = " ".join(line.strip(" #") for line in recipe.splitlines())
    assert re.search(r"The host MPI closure needs GLIBC_2\.\d+ \(host lib", flat)
    assert "your own steps, from Dockerfile" in recipe
    assert "%files\napp /opt/app" in recipe


def test_check_says_compatible(walkthrough: Dict[str, object]) -> None:
    out = walkthrough["2"]
    assert isinstance(out, subprocess.CompletedProcess)
    assert "compatible" in out.stdout and "incompatible" not in out.stdout


def test_two_ranks_run_on_the_host_mpich(walkthrough: Dict[str, object]) -> None:
    validate = walkthrough["3"]
    assert isinstance(validate, subprocess.CompletedProcess)
    assert "valid job file; site debian-mpich" in validate.stdout
    explain = walkthrough["4"]
    assert isinstance(explain, subprocess.CompletedProcess)
    head = explain.stdout.split("Binds")[0]
    assert "Settings" in head and "job file" in head
    assert re.search(r"site = debian-mpich: job file \S*hpcrun\.toml", head)
    lines = [line for line in explain.stdout.splitlines() if line.startswith("rank ")]
    host_inode = os.stat(HOST_LIBMPICH).st_ino
    ranks = {}
    for line in lines:
        found = re.match(r"rank (\d+) of (\d+): MPICH Version:\s+(\S+) \| (\S+) \| inode (\d+)",
                         line)
        assert found, line
        ranks[int(found.group(1))] = found.groups()
    assert sorted(ranks) == [0, 1], explain.stdout
    for _rank, size, version, library, inode in ranks.values():
        assert size == "2" and version == "4.0.2"
        assert library.startswith("/.hpcrun/lib/libmpich.so.12"), library
        assert int(inode) == host_inode  # the host's own file, bound in


def test_wrong_mpi_family_is_refused(walkthrough: Dict[str, object]) -> None:
    work = Path(str(walkthrough["work"]))
    wrong = work / "wrong"
    wrong.mkdir(exist_ok=True)
    shutil.copytree(work / "app", wrong / "app", dirs_exist_ok=True)
    recipe = (work / "app.def").read_text()
    assert "mpich libmpich-dev" in recipe and "MPICC=mpicc.mpich" in recipe
    text = recipe.replace("mpich libmpich-dev", "openmpi-bin libopenmpi-dev") \
        .replace("MPICC=mpicc.mpich", "MPICC=mpicc.openmpi")
    (wrong / "app.def").write_text(text)
    cached_build(["apptainer", "build", "--fakeroot", "app.sif", "app.def"], wrong / "app.def",
                 wrong / "app.sif", sorted((wrong / "app").rglob("*")))
    env = environment()
    check = subprocess.run(["hpcrun", "check", "--site", "debian-mpich", "app.sif", "--app",
                            "python3", "/opt/app/hello.py"], cwd=wrong, env=env,
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == EXIT_INCOMPATIBLE, check.stdout + check.stderr
    assert "Open MPI" in check.stdout + check.stderr
    launch = subprocess.run(["hpcrun", "--site", "debian-mpich", "--runtime", "apptainer",
                             "mpiexec.hydra", "-n", "2", "app.sif", "python3",
                             "/opt/app/hello.py"], cwd=wrong, env=env, capture_output=True,
                            text=True, timeout=300)
    assert launch.returncode == EXIT_INCOMPATIBLE, launch.stdout + launch.stderr
    assert "rank " not in launch.stdout  # the job did not start
