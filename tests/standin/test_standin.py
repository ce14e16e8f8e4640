"""Tests of the Apptainer TEST STAND-IN (``tests/standin/apptainer``): each documented
behaviour it implements, run for real (root, mount namespaces) on a busybox image."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Optional

import pytest

from helpers.images import IMAGE_LIBDIR, BuiltImage, build_busybox_image

STANDIN = Path(__file__).resolve().parent / "apptainer"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root")


def load_standin() -> ModuleType:
    """Import the stand-in script as a module (for its pure functions)."""
    loader = importlib.machinery.SourceFileLoader("apptainer_standin", str(STANDIN))
    spec = importlib.util.spec_from_loader("apptainer_standin", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """The busybox test image in its three forms."""
    if shutil.which("mksquashfs") is None or not (shutil.which("busybox")
                                                  or os.path.exists("/bin/busybox")):
        pytest.skip("needs squashfs-tools and busybox-static")
    return build_busybox_image(tmp_path_factory.mktemp("standin-images"))


def clean_env(**extra: str) -> Dict[str, str]:
    """The test's environment without any Apptainer/Singularity variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("APPTAINER", "SINGULARITY"))}
    env.update(extra)
    return env


def run(args: List[str], env: Optional[Dict[str, str]] = None,
        cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run the stand-in; text output."""
    return subprocess.run([str(STANDIN), *args], env=env if env is not None else clean_env(),
                          cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def sh(image: Path, script: str, *options: str, env: Optional[Dict[str, str]] = None,
       cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """``apptainer exec [options] IMAGE sh -c SCRIPT``."""
    return run(["exec", *options, str(image), "sh", "-c", script], env=env, cwd=cwd)


def test_says_it_is_a_stand_in() -> None:
    version = run(["--version"])
    assert version.returncode == 0
    assert version.stdout.strip() == "apptainer version 1.3.0-hpcrun-standin"
    help_text = run(["help"]).stdout
    assert "TEST STAND-IN" in help_text and "not Apptainer" in help_text
    assert "TEST STAND-IN" in STANDIN.read_text().splitlines()[1]


@pytest.mark.parametrize("form", ["sandbox", "squashfs", "sif"])
def test_runs_each_image_form(busybox: BuiltImage, form: str) -> None:
    image = getattr(busybox, form)
    proc = sh(image, "cat /etc/image-marker; echo $APPTAINER_NAME")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["hpcrun test image", image.name]


def test_sif_offset_matches_unsquashfs(busybox: BuiltImage, sif_data: Path) -> None:
    """The partition offset parsed from real SIF files is where unsquashfs finds squashfs."""
    standin = load_standin()
    offset = standin.sif_squashfs_offset(str(busybox.sif))
    with open(busybox.sif, "rb") as handle:
        handle.seek(offset)
        assert handle.read(4) == b"hsqs"
    real = sif_data / "images" / "one-group.sif"
    real_offset = standin.sif_squashfs_offset(str(real))
    listing = subprocess.run(["unsquashfs", "-o", str(real_offset), "-l", str(real)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert "hello.txt" in listing.stdout


def test_image_without_primary_squashfs_is_refused(sif_data: Path, tmp_path: Path) -> None:
    empty = sif_data / "images" / "empty.sif"
    if not empty.exists():
        pytest.skip(f"{empty} absent")
    proc = run(["exec", str(empty), "true"])
    assert proc.returncode == 255
    assert proc.stderr.startswith("FATAL:")
    assert "no primary system partition" in proc.stderr


def test_bind_option_ro_rw_and_default_destination(busybox: BuiltImage, tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    (src / "f").write_text("payload\n")
    proc = sh(busybox.squashfs,
              "cat /new/ro/f; touch /new/ro/g 2>/dev/null && echo ro-writable;"
              "touch /new/rw/h && echo rw-ok; cat " + str(src / "f"),
              "-B", f"{src}:/new/ro:ro", "--bind", f"{src}:/new/rw:rw", "-B", str(src))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["payload", "rw-ok", "payload"]
    assert (src / "h").exists() and not (src / "g").exists()


def test_backslash_escapes_comma_and_colon(busybox: BuiltImage, tmp_path: Path) -> None:
    odd = tmp_path / "a,b:c"
    odd.mkdir()
    (odd / "f").write_text("odd\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "f").write_text("other\n")
    escaped = str(odd).replace(",", "\\,").replace(":", "\\:")
    proc = sh(busybox.sandbox, "cat /x/f /y/f", "-B", f"{escaped}:/x,{other}:/y")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["odd", "other"]


def test_bind_variables_and_legacy_precedence(busybox: BuiltImage, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for path in (one, two):
        path.mkdir()
        (path / "name").write_text(path.name + "\n")
    proc = sh(busybox.sif, "cat /b/name /bp/name",
              env=clean_env(APPTAINER_BIND=f"{one}:/b", APPTAINER_BINDPATH=f"{two}:/bp"))
    assert proc.stdout.splitlines() == ["one", "two"], proc.stderr
    legacy = sh(busybox.sif, "cat /s/name", env=clean_env(SINGULARITY_BINDPATH=f"{one}:/s"))
    assert legacy.stdout.splitlines() == ["one"]
    assert "SINGULARITY_BINDPATH" in legacy.stderr and "APPTAINER_BINDPATH" in legacy.stderr
    both = sh(busybox.sif, "cat /s/name",
              env=clean_env(SINGULARITY_BINDPATH=f"{one}:/s", APPTAINER_BINDPATH=f"{two}:/s"))
    assert both.stdout.splitlines() == ["two"]
    assert "WARNING" in both.stderr


def test_missing_bind_source_fails(busybox: BuiltImage, tmp_path: Path) -> None:
    proc = sh(busybox.sandbox, "true", "-B", f"{tmp_path}/absent:/x")
    assert proc.returncode == 255
    assert "absent" in proc.stderr and proc.stderr.startswith("FATAL:")


def test_bad_bind_option_fails(busybox: BuiltImage, tmp_path: Path) -> None:
    proc = sh(busybox.sandbox, "true", "-B", f"{tmp_path}:/x:rx")
    assert proc.returncode == 255
    assert "rx" in proc.stderr


def test_environment_passthrough_and_exceptions(busybox: BuiltImage) -> None:
    env = clean_env(HPCRUN_HOST_VAR="from-host", HPCRUN_TEST_IMAGE="host-value",
                    LD_LIBRARY_PATH="/host/lib", PATH="/host/bin:/usr/bin:/bin", HOME="/nowhere")
    proc = sh(busybox.sandbox, 'echo "$HPCRUN_HOST_VAR|$HPCRUN_TEST_IMAGE|$LD_LIBRARY_PATH|'
              '$PATH|$HOME"', env=env)
    assert proc.returncode == 0, proc.stderr
    host_var, image_var, ld_path, path, home = proc.stdout.strip().split("|")
    assert host_var == "from-host"
    assert image_var == "1"  # the image's %environment overrides a passed-through variable
    assert ld_path == f"{IMAGE_LIBDIR}:/.singularity.d/libs"
    assert "/host" not in path and path.endswith("/usr/bin:/sbin:/bin")
    assert home == os.path.expanduser("~" + __import__("pwd").getpwuid(os.getuid()).pw_name)


def test_apptainerenv_precedence(busybox: BuiltImage) -> None:
    env = clean_env(APPTAINERENV_HPCRUN_TEST_IMAGE="apptainer",
                    SINGULARITYENV_HPCRUN_TEST_IMAGE="singularity",
                    SINGULARITYENV_ONLY_LEGACY="legacy", APPTAINERENV_PLAIN="plain")
    proc = sh(busybox.sandbox, 'echo "$HPCRUN_TEST_IMAGE $ONLY_LEGACY $PLAIN"; '
              'env | grep -c "^APPTAINERENV_\\|^SINGULARITYENV_"', env=env)
    assert proc.stdout.splitlines()[0] == "apptainer legacy plain"
    assert proc.stdout.splitlines()[1] == "0"
    assert "WARNING" in proc.stderr
    cli = sh(busybox.sandbox, 'echo "$PLAIN"', "--env", "PLAIN=from-option", env=env)
    assert cli.stdout.strip() == "from-option"


def test_ld_library_path_replacement_is_evaluated(busybox: BuiltImage) -> None:
    env = clean_env(APPTAINERENV_LD_LIBRARY_PATH="/.hpcrun/lib:$LD_LIBRARY_PATH")
    proc = sh(busybox.squashfs, 'echo "$LD_LIBRARY_PATH"', env=env)
    assert proc.stdout.strip() == (f"/.hpcrun/lib:{IMAGE_LIBDIR}:/.singularity.d/libs"
                                   ":/.singularity.d/libs")
    replaced = sh(busybox.squashfs, 'echo "$LD_LIBRARY_PATH"',
                  env=clean_env(APPTAINERENV_LD_LIBRARY_PATH="/only"))
    assert replaced.stdout.strip() == "/only:/.singularity.d/libs"
    literal = sh(busybox.squashfs, 'echo "$LD_LIBRARY_PATH"', "--no-eval", env=env)
    assert literal.stdout.strip() == "/.hpcrun/lib:$LD_LIBRARY_PATH:/.singularity.d/libs"


def test_cleanenv_keeps_only_the_documented_variables(busybox: BuiltImage) -> None:
    env = clean_env(TERM="xterm", http_proxy="http://proxy:1", LANG="de_DE.UTF-8",
                    SLURM_PROCID="3", PMI_RANK="3", APPTAINERENV_KEPT="yes")
    for flag in ("--cleanenv", "-e"):
        proc = sh(busybox.sandbox, "env", flag, env=env)
        assert proc.returncode == 0, proc.stderr
        names = {line.split("=", 1)[0]: line.split("=", 1)[1]
                 for line in proc.stdout.splitlines() if "=" in line}
        assert names["TERM"] == "xterm" and names["http_proxy"] == "http://proxy:1"
        assert names["LANG"] == "C" and names["KEPT"] == "yes"
        assert "SLURM_PROCID" not in names and "PMI_RANK" not in names


def test_gpu_flags_are_accepted_with_a_note(busybox: BuiltImage) -> None:
    proc = sh(busybox.sandbox, 'echo "$APPTAINER_STANDIN_NOTES"', "--nv", "--rocm")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "nv,rocm"
    assert "--nv" in proc.stderr and "--rocm" in proc.stderr


def test_host_directories_and_working_directory(busybox: BuiltImage, tmp_path: Path) -> None:
    (tmp_path / "here.txt").write_text("cwd\n")
    proc = sh(busybox.sif, "cat here.txt; ls /dev/shm >/dev/null && echo shm;"
              "test -d /sys/devices && echo sys; test -e /proc/self/maps && echo proc",
              cwd=tmp_path)
    assert proc.stdout.splitlines() == ["cwd", "shm", "sys", "proc"], proc.stderr


def test_no_stand_in_process_stays(busybox: BuiltImage) -> None:
    """The command replaces the stand-in: the PID the caller started is the command's."""
    child = subprocess.Popen([str(STANDIN), "exec", str(busybox.squashfs), "sh", "-c",
                              "echo $$; read c < /proc/$$/comm; echo $c"], env=clean_env(),
                             stdout=subprocess.PIPE, text=True)
    out, _ = child.communicate(timeout=60)
    pid, comm = out.split()
    assert int(pid) == child.pid
    assert comm == "sh"


def test_mounts_stay_private(busybox: BuiltImage) -> None:
    before = Path("/proc/self/mountinfo").read_text()
    proc = sh(busybox.sif, "grep -c hpcrun-apptainer-standin /proc/self/mountinfo")
    assert int(proc.stdout.strip()) >= 1
    after = Path("/proc/self/mountinfo").read_text()
    assert "hpcrun-apptainer-standin" not in after
    assert before.count("\n") == after.count("\n")


def test_usage_errors() -> None:
    assert run(["exec"]).returncode == 255
    unknown = run(["exec", "--frobnicate", "/x", "true"])
    assert unknown.returncode == 255 and "--frobnicate" in unknown.stderr
    assert run(["build", "x.sif", "y.def"]).returncode == 255
    missing = run(["exec", "/no/such/image.sif", "true"])
    assert missing.returncode == 255 and "/no/such/image.sif" in missing.stderr


def test_split_helpers() -> None:
    standin = load_standin()
    assert standin.split_list(r"a\,b:c,d") == [r"a\,b:c", "d"]
    assert standin.parse_bind(r"/x\:y:/z:ro") == ("/x:y", "/z", True)
    assert standin.parse_bind("/x") == ("/x", "/x", False)


def test_option_forms_pwd_and_contain(busybox: BuiltImage, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x\n")
    proc = sh(busybox.sandbox, "cat /eq/f; pwd", f"--bind={tmp_path}:/eq", "--pwd", "/etc")
    assert proc.stdout.splitlines() == ["x", "/etc"], proc.stderr
    contained = sh(busybox.sandbox, "test -e f || echo no-cwd; ls /tmp | grep -c . || true",
                   "--contain", cwd=tmp_path)
    assert contained.stdout.splitlines()[0] == "no-cwd"
    assert contained.stdout.splitlines()[1] == "0"


def test_apptainerenv_quoting_as_apptainer_writes_it(busybox: BuiltImage) -> None:
    """Values go inside double quotes with only ``"`` escaped: ``$X`` expands, ``\\$`` is a
    literal dollar, a double quote survives; injected after 99-base.sh."""
    env = clean_env(APPTAINERENV_EXPANDED="[$HPCRUN_TEST_IMAGE]",
                    APPTAINERENV_LITERAL="cost \\$5", APPTAINERENV_QUOTE='say "hi"',
                    APPTAINERENV_UID="12345")
    proc = sh(busybox.sandbox, 'echo "$EXPANDED|$LITERAL|$QUOTE|$UID"', env=env)
    assert proc.stdout.rstrip("\n") == '[1]|cost $5|say "hi"|', proc.stderr
