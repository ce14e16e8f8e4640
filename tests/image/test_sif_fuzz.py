"""Mutated real SIF files (flipped bytes, truncation, changed counts and offsets) through
``read_sif``, ``open_image`` and the file-system readers: only HpcrunError may escape."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.sif_corpus import HELLO
from hpcrun.errors import HpcrunError
from hpcrun.image.ext3 import Ext3Backend
from hpcrun.image.fs import DIR, FILE, Tree
from hpcrun.image.open import open_image
from hpcrun.image.sif import read_sif

SOURCES = ("one-group.sif", "two-groups.sif", "one-group-signed-pgp.sif", "one-object-sbom.sif")
# Where the structure lives in these files: header, descriptor table, partition heads.
REGIONS: List[Tuple[int, int]] = [
    (0, 128),
    (4096, 4096 + 5 * 585),
    (36864, 36864 + 4096),  # the squashfs of one-group / two-groups
    (40960, 40960 + 65536),  # the ext3 superblock, group descriptors, inodes, directories
]
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def originals(sif_data: Path) -> dict:
    return {name: (sif_data / "images" / name).read_bytes() for name in SOURCES}


def _walk(tree: Tree, path: str = "/", depth: int = 0) -> Iterator[str]:
    if depth > 8:
        return
    for name in tree.listdir(path)[:50]:
        child = path.rstrip("/") + "/" + name
        yield child
        node = tree.lookup(child, follow=False)
        if node is not None and node.kind == DIR:
            yield from _walk(tree, child, depth + 1)


def _exercise(path: str) -> None:
    """Everything a launch does with an image; HpcrunError is the only allowed failure."""
    try:
        read_sif(path)
    except HpcrunError:
        pass
    try:
        opened = open_image(path)
        for inner in _walk(opened.tree):
            node = opened.tree.lookup(inner)
            if node is not None and node.kind == FILE:
                opened.tree.read(inner, 0, 4096)
        opened.tree.realpath("/hello.txt/../x")
    except HpcrunError:
        pass


def _run(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.sif"
        path.write_bytes(data)
        _exercise(str(path))


flips = st.lists(
    st.tuples(st.sampled_from(REGIONS), st.integers(0, 1 << 30), st.integers(0, 255)),
    min_size=1,
    max_size=12,
)


@SETTINGS
@given(source=st.sampled_from(SOURCES), changes=flips)
def test_flipped_bytes(originals: dict, source: str, changes: list) -> None:
    data = bytearray(originals[source])
    for (lo, hi), where, value in changes:
        pos = lo + where % (hi - lo)
        if pos < len(data):
            data[pos] = value
    _run(bytes(data))


@SETTINGS
@given(source=st.sampled_from(SOURCES), cut=st.integers(0, 400_000))
def test_truncated(originals: dict, source: str, cut: int) -> None:
    data = originals[source]
    _run(data[: cut % (len(data) + 1)])


INT64_FIELDS = {  # header fields (offset of the int64)
    "free": 80, "total": 88, "descr_offset": 96, "descr_size": 104, "data_offset": 112,
    "data_size": 120,
}
DESCRIPTOR_INT64 = {"offset": 17, "size": 25, "size_with_padding": 33}
edge_values = st.one_of(
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.sampled_from([0, -1, 1, 47, 48, 49, 585, 4096, 32176, 1 << 31, 1 << 40]),
)


@SETTINGS
@given(
    source=st.sampled_from(SOURCES),
    header_field=st.sampled_from(sorted(INT64_FIELDS)),
    header_value=edge_values,
    descriptor=st.integers(0, 4),
    descriptor_field=st.sampled_from(sorted(DESCRIPTOR_INT64)),
    descriptor_value=edge_values,
    partition_type=st.integers(-2, 8),
    fstype=st.integers(-2, 8),
)
def test_changed_counts_offsets_and_types(
    originals: dict,
    source: str,
    header_field: str,
    header_value: int,
    descriptor: int,
    descriptor_field: str,
    descriptor_value: int,
    partition_type: int,
    fstype: int,
) -> None:
    data = bytearray(originals[source])
    struct.pack_into("<q", data, INT64_FIELDS[header_field], header_value)
    base = 4096 + descriptor * 585
    struct.pack_into("<q", data, base + DESCRIPTOR_INT64[descriptor_field], descriptor_value)
    struct.pack_into("<ii", data, base + 201, fstype, partition_type)
    _run(bytes(data))


@SETTINGS
@given(changes=st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 255)), min_size=1,
                        max_size=20))
def test_ext3_partition_mutations(originals: dict, changes: list) -> None:
    data = bytearray(originals["two-groups.sif"][40960 : 40960 + 262144])
    for where, value in changes:
        data[where] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "e.img"
        path.write_bytes(bytes(data))
        try:
            tree = Tree(Ext3Backend(str(path)))
            for inner in _walk(tree):
                node = tree.lookup(inner)
                if node is not None and node.kind == FILE:
                    tree.read(inner)
        except HpcrunError:
            pass


def test_unmutated_inputs_read(originals: dict) -> None:
    """The fuzzing baseline: the originals themselves open and read cleanly."""
    for name in ("one-group.sif", "two-groups.sif"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(originals[name])
            assert open_image(str(path)).tree.read("/hello.txt") == HELLO
