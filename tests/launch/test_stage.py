"""Creating the Charliecloud stage directory: atomic, reused, safe under concurrent jobs."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest

from hpcrun.launch.stage import StageError, free_mount_points, materialise
from hpcrun.plan.model import Bind, Stage
from hpcrun.render.chstage import layout, stage_name

LINKS = (("lib/libmpich.so.12", "/mnt/1/libmpich.so.12.2.2"),
         ("lib/libmpi.so.12", "/mnt/1/libmpich.so.12.2.2"),
         ("lib/ucx/libuct_cma.so.0", "/mnt/1/ucx/libuct_cma.so.0.0.0"),
         ("gpu/bin/nvidia-smi", "/mnt/2/nvidia-smi"))


def stage_in(root: Path) -> Stage:
    return Stage(str(root / "stage" / stage_name(LINKS)), LINKS)


def test_creates_the_links_readable_by_all(tmp_path: Path) -> None:
    stage = stage_in(tmp_path / "cache")
    path = Path(materialise(stage))
    assert str(path) == stage.directory
    for relative, target in LINKS:
        assert os.readlink(path / relative) == target
    assert sorted(p.name for p in path.iterdir()) == ["gpu", "lib"]
    for directory in (path, path / "lib", path / "lib" / "ucx", path / "gpu" / "bin"):
        assert directory.stat().st_mode & 0o777 == 0o755
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_existing_stage_is_reused(tmp_path: Path) -> None:
    stage = stage_in(tmp_path)
    first = materialise(stage)
    inode = os.stat(first).st_ino
    assert materialise(stage) == first and os.stat(first).st_ino == inode


def test_a_tampered_stage_is_reported(tmp_path: Path) -> None:
    stage = stage_in(tmp_path)
    path = Path(materialise(stage))
    (path / "lib" / "libmpi.so.12").unlink()
    (path / "lib" / "libmpi.so.12").symlink_to("/elsewhere")
    with pytest.raises(StageError) as caught:
        materialise(stage)
    assert str(path) in caught.value.message and "rm -r" in caught.value.hint


def test_unusable_cache_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(StageError) as caught:
        materialise(Stage(str(blocker / "stage" / "abc"), LINKS))
    assert str(blocker / "stage") in caught.value.message
    assert "HPCRUN_STAGE_DIR" in caught.value.hint


def _worker(directory: str, barrier: multiprocessing.synchronize.Barrier,
            results: multiprocessing.queues.Queue[str]) -> None:
    barrier.wait()
    try:
        results.put(materialise(Stage(directory, LINKS)))
    except Exception as error:
        results.put(f"error: {error!r}")


def test_concurrent_creation_by_many_processes(tmp_path: Path) -> None:
    """The jobs of an array start at once: every one gets the same complete stage."""
    stage = stage_in(tmp_path)
    context = multiprocessing.get_context("fork")
    count = 8
    barrier = context.Barrier(count)
    results = context.Queue()
    workers = [context.Process(target=_worker, args=(stage.directory, barrier, results))
               for _ in range(count)]
    for worker in workers:
        worker.start()
    found: List[str] = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert found == [stage.directory] * count
    assert [p.name for p in Path(stage.directory).parent.iterdir()] == [
        Path(stage.directory).name]
    for relative, target in LINKS:
        assert os.readlink(Path(stage.directory) / relative) == target


def test_free_mount_points(tmp_path: Path) -> None:
    image = tmp_path / "img"
    for name in ("0", "1", "2", "10", "data"):
        (image / "mnt" / name).mkdir(parents=True)
    (image / "mnt" / "1" / "kept").write_text("the image's own")
    (image / "mnt" / "3").symlink_to("/tmp")
    assert free_mount_points(str(image)) == ("/mnt/0", "/mnt/2", "/mnt/10")
    bare = tmp_path / "bare"
    bare.mkdir()
    assert free_mount_points(str(bare)) == ()
    assert free_mount_points(str(tmp_path / "app.sif")) is None


def _compile(output: Path, source: str, *flags: str) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    c_file = output.with_suffix(".c")
    c_file.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(output), str(c_file), *flags],
                   check=True, capture_output=True)


def test_origin_is_the_stage_directory_under_real_ch_run(tmp_path: Path) -> None:
    """The loader's $ORIGIN is the directory of the symlink it opened in the stage, not of
    the host file it points to: libA (RUNPATH $ORIGIN/sub) finds libB in the stage's
    lib/sub/, although libB's host directory is elsewhere and libA's has no sub/."""
    if os.geteuid() != 0 or not shutil.which("ch-run") or not shutil.which("gcc"):
        pytest.skip("needs root, ch-run (charliecloud-runtime) and gcc")
    from helpers.images import build_root

    lib_b = tmp_path / "h2" / "libB.so"
    _compile(lib_b, "int b(void) { return 42; }\n", "-Wl,-soname,libB.so")
    lib_a = tmp_path / "h1" / "libA.so"
    _compile(lib_a, "int b(void);\nint a(void) { return b() + 1; }\n",
             "-Wl,-soname,libA.so", f"-L{lib_b.parent}", "-lB",
             "-Wl,--enable-new-dtags,-rpath,$ORIGIN/sub")
    binds = [Bind(str(lib_a), "/.hpcrun/lib/libA.so", True, "test", "library"),
             Bind(str(lib_b), "/.hpcrun/lib/sub/libB.so", True, "test", "library")]
    image = tmp_path / "img"
    build_root(image, "mpich", None)
    found = layout(binds, "/.hpcrun", free_mount_points(str(image)),
                   {"HPCRUN_STAGE_DIR": str(tmp_path / "stages")})
    assert found.stage is not None
    materialise(found.stage)
    argv = ["ch-run"]
    for source, destination in found.mounts:
        argv += ["-b", f"{source}:{destination}"]
    script = ("import ctypes; lib = ctypes.CDLL('libA.so'); print(lib.a()); "
              "print([l.split()[-1] for l in open('/proc/self/maps') if 'libB' in l][0])")
    argv += [f"--set-env=LD_LIBRARY_PATH={found.map_value('/.hpcrun/lib')}", str(image), "--",
             "python3", "-c", script]
    done = subprocess.run(argv, env=dict(os.environ, USER="root"), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["43", "/mnt/2/libB.so"]
