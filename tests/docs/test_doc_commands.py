"""Every command shown in README.md, examples/QUICKSTART.md and docs/*.md, run.

The shell blocks (fences marked ``sh``, ``bash``, ``shell`` or unmarked; output is fenced as
``text``) are extracted line by line.  Each command line must have an entry in
:data:`ANNOTATIONS`, reviewed by a person:

* ``RUN``: run as written (in a scratch directory, under :data:`WRITABLE` substitutions for
  system directories a test may not write) and expect the given exit code;
* ``run_as(COMMAND, why)``: what this machine can run instead, and why (zeus's Intel MPI is
  not here, so its `env` example runs for this machine's profile);
* ``skip(why)``: cannot run here at all (a real cluster, an hour-long image build).

A command added to the docs without an entry fails the test, and so does an entry whose
command left the docs: the docs and what is tested cannot drift apart.  Commands run in
document order within a file, in one scratch directory, so a later command sees the files
an earlier one wrote (``site detect -o`` then ``site validate``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, NamedTuple, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = ["README.md", "examples/QUICKSTART.md", *sorted(
    str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
SHELL_FENCES = ("", "sh", "bash", "shell")
HPCRUN = shutil.which("hpcrun") or ""
LMOD_INIT = "/usr/share/lmod/lmod/init/bash"


class Entry(NamedTuple):
    mode: str  # run | run-as | skip
    code: int = 0
    command: str = ""
    why: str = ""


RUN = Entry("run")


def run_as(command: str, why: str, code: int = 0) -> Entry:
    return Entry("run-as", code, command, why)


def skip(why: str) -> Entry:
    return Entry("skip", why=why)


ZEUS = ("zeus is Pawsey's cluster: its Intel MPI under /pawsey and the /usr/lib64 verbs/DAPL "
        "libraries are not on this machine (tests/render golden plans cover zeus's plan)")

OWN_IMAGE = ("tests/e2e/test_your_own_image.py runs the page's commands in order, with the files "
             "it shows, real Apptainer and the host's MPICH (the image build is cached)")

ANNOTATIONS: Dict[str, Entry] = {
    # README.md
    "hpcrun --site zeus srun -n 2 app.sif python hello.py": skip(ZEUS),
    "scripts/demo": run_as("scripts/demo --no-install", "the install step (apt, pip into the "
                           "system Python) is what scripts/test did before these tests"),
    "scripts/test": skip("runs this test suite"),
    "hpcrun --site zeus srun -n 64 app.sif ./solver input.nml": skip(ZEUS),
    "hpcrun --site zeus --dry-run srun -n 2 app.sif python3 x.py": skip(ZEUS),
    "hpcrun --site zeus --explain srun -n 2 app.sif python3 x.py": skip(ZEUS),
    "hpcrun check --site zeus app.sif --app python3 x.py": Entry("run", 68),  # incompatible
    "hpcrun inspect app.sif --json": RUN,
    "hpcrun site detect --name mysite -o mysite.toml": RUN,
    "hpcrun site validate --deep mysite.toml": RUN,
    # This machine has Debian's MPICH and Open MPI; detect takes Open MPI (Debian's default
    # mpirun) and the demo image is built with MPICH: refused, with the reason.
    "hpcrun check --site ./mysite.toml app.sif": Entry("run", 68, why="MPICH image, Open MPI "
                                                       "host: incompatible"),
    # python3 app.py is not an MPI program (no mpi4py in the demo image): nothing to refuse.
    "hpcrun --site ./mysite.toml --explain srun -n 4 app.sif python3 app.py": RUN,
    "hpcrun --site ./mysite.toml srun -n 4 app.sif python3 app.py": skip(
        "needs a Slurm cluster and an image its host MPI can serve"),
    "module load hpcrun/zeus": skip("needs hpcrun/zeus installed by `hpcrun module` on zeus; "
                                    "tests/cli/test_env_module.py loads a module with real "
                                    "Lmod, and docs/site-profiles.md's module commands run "
                                    "below"),
    # examples/QUICKSTART.md
    "hpcrun --site debian-mpich --runtime charliecloud mpiexec.hydra -n 2 IMAGE "
    "/usr/local/bin/hello": RUN,
    "hpcrun --site debian-mpich mpiexec.hydra -n 2 IMAGE /usr/local/bin/hello": RUN,
    "cd examples": RUN,
    "apptainer build mpich-mpi4py.sif mpich-mpi4py/apptainer.def": skip(
        "builds MPICH and mpi4py from source in a debootstrapped image: ~30 minutes, "
        "--fakeroot and Debian's archive"),
    "export HPCRUN_SITE=mysite": RUN,
    "hpcrun --explain srun -n 4 mpich-mpi4py.sif python3 /opt/examples/hello-mpi4py.py":
        skip("needs the image built above and the site's cluster"),
    "hpcrun srun -n 4 mpich-mpi4py.sif python3 /opt/examples/hello-mpi4py.py":
        skip("needs the image built above and the site's cluster"),
    "sbatch examples/slurm-job.sh": skip("needs the image built above and a Slurm cluster"),
    "hpcrun srun -n 2 --ntasks-per-node=1 mpich-mpi4py.sif python3 "
    "/opt/examples/osu_bw-mpi4py.py": skip("needs the image built above and a 2-node cluster"),
    # docs/lmod.md
    'eval "$(hpcrun env --site zeus)"': run_as(
        'eval "$(hpcrun env --site debian-mpich)" && test "$HPCRUN_SITE" = debian-mpich', ZEUS),
    'eval "$(hpcrun env --site zeus --shell sh)"': run_as(
        "dash -c 'eval \"$(hpcrun env --site debian-mpich --shell sh)\" && "
        "test -n \"$APPTAINER_BINDPATH\"'", ZEUS),
    "hpcrun env --site zeus --shell fish | source": run_as(
        "fish -c 'hpcrun env --site debian-mpich --shell fish | source; "
        "test -n \"$APPTAINER_BINDPATH\"'", ZEUS),
    "hpcrun env --site zeus --shell tcsh > ~/.hpcrun-zeus.csh; source ~/.hpcrun-zeus.csh":
        run_as("hpcrun env --site debian-mpich --shell tcsh > ~/.hpcrun-deb.csh; "
               "tcsh -c 'source ~/.hpcrun-deb.csh; test -n \"$APPTAINER_BINDPATH\"'", ZEUS),
    "hpcrun module --site zeus -o /apps/modulefiles": run_as(
        "hpcrun module --site debian-mpich -o /apps/modulefiles && "
        "test -f /apps/modulefiles/hpcrun/debian-mpich.lua", ZEUS),
    "hpcrun module --site zeus --name bindmpi/zeus --conflict singularity-bind -o DIR "
    "--wrappers": run_as("hpcrun module --site debian-mpich --name bindmpi/deb --conflict "
                         "singularity-bind -o DIR --wrappers && test -f DIR/bindmpi/deb.lua",
                         ZEUS),
    # docs/site-profiles.md
    "hpcrun site detect --name mycluster -o mycluster.toml": RUN,
    "hpcrun site detect --name mycluster --mpi /opt/intel/impi/2021.9/lib -o mycluster.toml":
        skip("Intel MPI is not installed on this machine"),
    "$EDITOR mycluster.toml": skip("an interactive editor"),
    "hpcrun site validate ./mycluster.toml": RUN,
    "hpcrun site validate --deep ./mycluster.toml": RUN,
    "install -D -m 0644 mycluster.toml /etc/hpcrun/sites/mycluster.toml": RUN,
    "hpcrun site schema > /etc/hpcrun/sites/schema.json": RUN,
    "echo 'export HPCRUN_SITE=mycluster' > /etc/profile.d/hpcrun.sh": RUN,
    "hpcrun site show mycluster": RUN,
    "hpcrun module --site mycluster -o /apps/modulefiles": RUN,
    "module use /apps/modulefiles; module load hpcrun/mycluster": run_as(
        "module use /apps/modulefiles; module load hpcrun/mycluster; "
        'test "$HPCRUN_SITE" = mycluster', "the same, and the site is then set"),
    # docs/your-own-image.md: the page is a walk-through run whole, in order, by its own test
    # (with a debootstrap image build of minutes, cached between runs)
    "hpcrun recipe --site debian-mpich --from Dockerfile --bootstrap debootstrap -o app.def":
        skip(OWN_IMAGE),
    "apptainer build --fakeroot app.sif app.def": skip(OWN_IMAGE),
    "hpcrun check --site debian-mpich app.sif --app python3 /opt/app/hello.py": skip(OWN_IMAGE),
    "hpcrun job validate": skip(OWN_IMAGE),
    "hpcrun --explain mpiexec.hydra python3 /opt/app/hello.py": skip(OWN_IMAGE),
    "hpcrun mpiexec.hydra python3 /opt/app/hello.py": skip(OWN_IMAGE),
    "hpcrun --dry-run srun -n 2 app.sif python3 hello.py": run_as(
        "module use /apps/modulefiles; module load hpcrun/mycluster; "
        "hpcrun --dry-run srun -n 2 app.sif python3 hello.py",
        "in the shell where the module was loaded (each line here runs in its own shell)"),
}


class Command(NamedTuple):
    file: str
    line: int
    text: str


def _strip_comment(line: str) -> str:
    """The command without a trailing ``#`` comment (a ``#`` after two spaces)."""
    return re.split(r"\s{2,}#\s", line, maxsplit=1)[0].strip()


def doc_commands() -> List[Command]:
    """Every command line of the shell blocks of :data:`DOCS`, in order."""
    found: List[Command] = []
    for name in DOCS:
        text = (REPO / name).read_text()
        for match in re.finditer(r"^```([\w-]*)\n(.*?)^```", text, re.S | re.M):
            if match.group(1) not in SHELL_FENCES:
                continue
            first = text[:match.start(2)].count("\n") + 1
            for offset, raw in enumerate(match.group(2).splitlines()):
                line = _strip_comment(raw)
                if line and not line.startswith("#"):
                    found.append(Command(name, first + offset, line))
    return found


def test_every_documented_command_is_annotated_and_no_annotation_is_stale() -> None:
    commands = doc_commands()
    missing = [f"{c.file}:{c.line}: {c.text}" for c in commands if c.text not in ANNOTATIONS]
    assert missing == [], "add these to ANNOTATIONS (run, run_as or skip, with the reason)"
    shown = {c.text for c in commands}
    stale = [text for text in ANNOTATIONS if text not in shown]
    assert stale == [], "these annotated commands are no longer in the docs"
    for text, entry in ANNOTATIONS.items():
        assert entry.mode == "run" or entry.why, text  # every exception says why


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Dict]:
    """A scratch directory with the repository's scripts and examples, the demo image as
    ``IMAGE`` (a directory, as scripts/demo builds it) and as ``app.sif`` (the same root as
    a squashfs file, which Apptainer runs as it runs a SIF: building a SIF here costs 40 s
    of mksquashfs gzip), and the environment the commands run in."""
    if not HPCRUN:
        pytest.skip("the hpcrun entry point is not installed")
    work = tmp_path_factory.mktemp("docs")
    for name in ("scripts", "examples", "tests", "adapter", "pyproject.toml"):
        source = REPO / name
        (work / name).symlink_to(source)
    for directory in ("home", "etc/hpcrun/sites", "etc/profile.d", "apps/modulefiles", "DIR"):
        (work / directory).mkdir(parents=True, exist_ok=True)
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from helpers.images import build_root

    build_root(work / "IMAGE", "mpich", None)
    mksquashfs = shutil.which("mksquashfs")
    if mksquashfs is None:
        pytest.skip("squashfs-tools is not installed")
    subprocess.run([mksquashfs, str(work / "IMAGE"), str(work / "app.sif"), "-comp", "lz4",
                    "-noappend", "-quiet"], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCRUN_")}
    env.update(HOME=str(work / "home"), USER=env.get("USER", "root"),
               XDG_CACHE_HOME=str(work / "cache"), COLUMNS="80",
               HPCRUN_SITE_PATH=str(work / "etc/hpcrun/sites"))
    return work, env


# System directories the docs write to, and where a test writes instead.
WRITABLE = ("/etc/hpcrun/sites", "/etc/profile.d", "/apps/modulefiles")


def _script(text: str, work: Path) -> str:
    for path in WRITABLE:
        text = text.replace(path, str(work) + path)
    for word in ("IMAGE", "DIR"):
        text = re.sub(rf"(?<![\w/$-]){word}(?![\w-])", str(work / word), text)
    if text.startswith("module ") or "; module " in text:
        text = f"source {LMOD_INIT}; {text}"
    return text


@pytest.mark.parametrize("name", DOCS)
def test_documented_commands_run(name: str, sandbox: Tuple[Path, Dict]) -> None:
    work, env = sandbox
    for command in (c for c in doc_commands() if c.file == name):
        entry = ANNOTATIONS.get(command.text)
        if entry is None or entry.mode == "skip":
            continue
        text = entry.command if entry.mode == "run-as" else command.text
        if text.startswith(("module", "source")) and not os.path.exists(LMOD_INIT):
            continue  # Lmod is in .ci/apt-packages.txt; without it the module lines wait
        done = subprocess.run(["bash", "-c", _script(text, work)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == entry.code, (
            f"{command.file}:{command.line}: {text}\nexit {done.returncode}\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        if name == "README.md" and command.text == "scripts/demo":
            assert_readme_shows_this_run(done.stdout)


def readme_demo_block() -> List[str]:
    """The lines of the README's ``text`` block that shows a demo run."""
    text = (REPO / "README.md").read_text()
    for match in re.finditer(r"^```text\n(.*?)^```", text, re.S | re.M):
        if "scripts/demo" in text[max(0, match.start() - 300):match.start()]:
            return match.group(1).splitlines()
    raise AssertionError("README.md has no text block after a mention of scripts/demo")


def assert_readme_shows_this_run(output: str) -> None:
    """Every line the README shows is a line this run printed, but for the host name (the
    README's run was on host `vm`) and the order in which the ranks' lines arrive."""
    import socket

    host = socket.gethostname()
    printed = set(output.splitlines())
    for line in readme_demo_block():
        assert line.replace(" on vm", f" on {host}") in printed, line
