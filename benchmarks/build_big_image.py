"""Build (once) a large, realistic squashfs image for the inspection benchmark.

The image holds this machine's real ``/usr/lib/x86_64-linux-gnu`` (Debian's MPICH and Open MPI
among ~800 MB of libraries), ``/usr/share``, ``/usr/include``, ``/usr/bin``, the PyPI MPICH
wheel's libraries under ``/opt/mpich`` when the wheel is in the test wheel cache, and enough
extra small files to pass 100,000 entries; ``/etc/ld.so.cache`` is made with ``ldconfig -r``
as in a real image.  The staging tree is a hard-link farm (``cp -al``), so no data is copied.
The result is cached in ``benchmarks/out/`` (gitignored) and reused while it exists.

    python benchmarks/build_big_image.py [--comp gzip|lz4|...] [--force]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
WHEELS = Path(os.environ.get("HPCRUN_TEST_WHEELS", str(Path.home() / ".cache/hpcrun-test-wheels")))
HOST_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/share", "usr/include", "usr/bin")
MIN_ENTRIES = 100_000


def image_path(comp: str) -> Path:
    """Where the cached benchmark image for compressor ``comp`` lives."""
    return OUT / f"big-{comp}.sqfs"


def _farm(src: Path, dest: Path) -> None:
    """Hard-link ``src`` into ``dest`` (a real copy when hard links are impossible)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["cp", "-al", str(src), str(dest)], capture_output=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        subprocess.run(["cp", "-a", str(src), str(dest)], check=True)


def _count(root: Path) -> int:
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(root))


def _unpack_mpich_wheel(stage: Path) -> List[str]:
    wheels = sorted(WHEELS.glob("mpich-*.whl"))
    if not wheels:
        return []
    dest = stage / "opt/mpich"
    with zipfile.ZipFile(wheels[0]) as archive:
        archive.extractall(dest)
    libs = sorted({str(p.parent.relative_to(stage)) for p in dest.rglob("libmpi*.so*")})
    return ["/" + lib for lib in libs]


def stage_tree(stage: Path) -> int:
    """Assemble the root file system under ``stage``; the number of entries."""
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for rel in HOST_DIRS:
        if Path("/", rel).is_dir():
            _farm(Path("/", rel), stage / rel)
    for link, target in (("lib", "usr/lib"), ("bin", "usr/bin"), ("lib64", "usr/lib64")):
        os.symlink(target, stage / link)
    (stage / "usr/lib64").mkdir(parents=True)
    os.symlink(
        "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", stage / "usr/lib64/ld-linux-x86-64.so.2"
    )
    etc = stage / "etc"
    (etc / "ld.so.conf.d").mkdir(parents=True)
    (etc / "ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    extra = _unpack_mpich_wheel(stage)
    (etc / "ld.so.conf.d/x86_64-linux-gnu.conf").write_text(
        "/usr/local/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n"
    )
    if extra:
        (etc / "ld.so.conf.d/mpich-wheel.conf").write_text("\n".join(extra) + "\n")
    for name, text in (
        ("passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("group", "root:x:0:\n"),
        ("hosts", "127.0.0.1 localhost\n"),
        ("resolv.conf", ""),
        ("hostname", "bench\n"),
    ):
        (etc / name).write_text(text)
    for sub in ("tmp", "proc", "sys", "dev", "mnt/0", "root"):
        (stage / sub).mkdir(parents=True, exist_ok=True)
    # -X: build the cache only, never touch the (hard-linked) library symlinks.
    subprocess.run(["ldconfig", "-X", "-r", str(stage)], check=True)
    entries = _count(stage)
    small = stage / "usr/share/bench-small"
    index = 0
    while entries < MIN_ENTRIES:
        folder = small / f"d{index // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=index % 1000 != 0)
        (folder / f"note-{index:06d}.txt").write_text(f"small file {index}\n" * (index % 9))
        index += 1
        entries += 1 + (index % 1000 == 1)
    return _count(stage)


def build(comp: str = "gzip", force: bool = False) -> Path:
    """The cached image (built now when missing or ``force``)."""
    image = image_path(comp)
    if image.exists() and not force:
        return image
    OUT.mkdir(parents=True, exist_ok=True)
    stage = OUT / "stage"
    started = time.monotonic()
    entries = stage_tree(stage)
    staged = time.monotonic()
    tmp = image.with_suffix(".tmp")
    cmd = ["mksquashfs", str(stage), str(tmp), "-comp", comp, "-noappend", "-no-progress"]
    cmd += ["-quiet", "-processors", str(min(2, os.cpu_count() or 1))]
    subprocess.run(cmd, check=True)
    tmp.rename(image)
    shutil.rmtree(stage)
    print(
        f"built {image}: {entries} entries, {image.stat().st_size / 1e6:.0f} MB, {comp}; "
        f"staging {staged - started:.1f} s, mksquashfs {time.monotonic() - staged:.1f} s",
        file=sys.stderr,
    )
    return image


def main() -> None:
    """Command line: build the benchmark image unless it is cached."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comp", default="gzip", help="mksquashfs compressor (default gzip)")
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    args = parser.parse_args()
    print(build(args.comp, args.force))


if __name__ == "__main__":
    main()
