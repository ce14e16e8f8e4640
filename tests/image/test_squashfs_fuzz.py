"""Property: damaged real squashfs images raise only HpcrunError, never anything else.

Real images (made by mksquashfs from real files) are mutated by hypothesis: bytes
overwritten (biased towards the metadata tables, where structure lives) and truncations.
Opening the image and walking known paths through :class:`hpcrun.image.fs.Tree` must either
work or raise an :class:`~hpcrun.errors.HpcrunError`.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from helpers.squashfs_trees import LIBDIR, mksquashfs
from hpcrun.errors import HpcrunError
from hpcrun.image.fs import Tree
from hpcrun.image.squashfs import SquashfsBackend

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PATHS = (
    "/etc/hostname",
    "/lib/x86_64-linux-gnu/libmunge.so.2",
    "/usr/lib/x86_64-linux-gnu/libmunge.so.2.0.0",
    "/usr/share/many/f-017",
    "/link-abs",
    "/usr/share/many",
)
VARIANTS = {
    "gzip": ("-comp", "gzip", "-b", "4096"),
    "plain-metadata": ("-noI", "-b", "4096"),  # flips hit inodes and entries directly
    "lzo": ("-comp", "lzo", "-b", "4096"),  # the pure-Python LZO1X decoder
    "lz4": ("-comp", "lz4", "-b", "4096"),
    # Blocks larger than a read: gzip and xz blocks are decoded part-way, then further.
    "gzip-1M": ("-comp", "gzip", "-b", "1M"),
    "xz": ("-comp", "xz"),
}


@pytest.fixture(scope="session")
def fuzz_images(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Tuple[bytes, int]]:
    """name -> (image bytes, inode table offset) for each variant."""
    base = tmp_path_factory.mktemp("fuzz")
    src = base / "root"
    lib = src / "usr/lib/x86_64-linux-gnu"
    lib.mkdir(parents=True)
    for path in LIBDIR.glob("libmunge.so*"):
        shutil.copy2(path, lib / path.name, follow_symlinks=False)
    if not (lib / "libmunge.so.2").exists():
        pytest.skip("libmunge.so.2 (Debian munge) is not installed")
    os.symlink("usr/lib", src / "lib")
    os.symlink("/usr/lib/x86_64-linux-gnu/libmunge.so.2", src / "link-abs")
    (src / "etc").mkdir()
    (src / "etc/hostname").write_text("fuzz\n")
    many = src / "usr/share/many"
    many.mkdir(parents=True)
    for i in range(400):
        (many / f"f-{i:03d}").write_text(str(i) * (i % 7))
    images = {}
    for name, options in VARIANTS.items():
        image = mksquashfs(src, base / f"{name}.sqfs", *options, pseudo=False)
        backend = SquashfsBackend(str(image))
        images[name] = (image.read_bytes(), backend.inode_table)
        backend.close()
    return images


@pytest.fixture(scope="session")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-scratch") / "mutated.sqfs"


def exercise(path: str) -> None:
    """Everything a caller does with an image: open, resolve, read, list, walk."""
    backend = SquashfsBackend(path)
    try:
        tree = Tree(backend)
        for inner in PATHS:
            _canonical, node = tree.resolve(inner)
            if node is None:
                continue
            if node.kind == "file":
                tree.read(inner, 0, 70_000)
                tree.read(inner, max(0, node.size - 100), 200)
            elif node.kind == "dir":
                tree.listdir(inner)
        tree.lookup("/link-abs", follow=False)
        for _path, _node in itertools.islice(backend.walk(), 2000):
            pass
    finally:
        backend.close()


@st.composite
def mutations(draw: st.DrawFn, images: Dict[str, Tuple[bytes, int]]) -> Tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(images)))
    data, tables = images[name]
    size = len(data)
    anywhere = st.integers(0, size - 1)
    in_tables = st.integers(tables, size - 1)
    in_superblock = st.integers(0, 95)
    spot = st.one_of(in_tables, in_tables, anywhere, in_superblock)
    changes: List[Tuple[int, int]] = draw(
        st.lists(st.tuples(spot, st.integers(0, 255)), min_size=0, max_size=6)
    )
    cut: Optional[int] = draw(st.one_of(st.none(), st.none(), anywhere))
    mutated = bytearray(data)
    for at, value in changes:
        mutated[at] = value
    if cut is not None:
        del mutated[cut:]
    return name, bytes(mutated)


def test_unmodified_images_work(fuzz_images: Dict[str, Tuple[bytes, int]], scratch: Path) -> None:
    for data, _tables in fuzz_images.values():
        scratch.write_bytes(data)
        exercise(str(scratch))
        assert Tree(SquashfsBackend(str(scratch))).read("/etc/hostname") == b"fuzz\n"


def test_damaged_images_raise_only_hpcrun_errors(
    fuzz_images: Dict[str, Tuple[bytes, int]], scratch: Path
) -> None:
    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutations(fuzz_images))
    def run(case: Tuple[str, bytes]) -> None:
        _name, data = case
        scratch.write_bytes(data)
        try:
            exercise(str(scratch))
        except HpcrunError as exc:
            assert exc.message  # named, explained

    run()
