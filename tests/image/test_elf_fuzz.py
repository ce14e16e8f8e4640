"""Mutated real ELF files and ld.so.cache files: only HpcrunError subclasses may escape."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcrun.elf.ldcache import parse_ld_cache
from hpcrun.elf.mpi import classify_mpi
from hpcrun.elf.reader import (
    dynamic_symbols,
    dynamic_symbols_split,
    find_strings,
    read_elf,
    static_symbols,
)
from hpcrun.errors import HpcrunError

HOST_LIBDIR = "/usr/lib/x86_64-linux-gnu"


def _smallest_elf_libraries(count: int) -> List[bytes]:
    files = []
    for name in os.listdir(HOST_LIBDIR):
        path = os.path.join(HOST_LIBDIR, name)
        if ".so" in name and os.path.isfile(path) and not os.path.islink(path):
            size = os.path.getsize(path)
            with open(path, "rb") as stream:
                if stream.read(4) == b"\x7fELF" and size < 64 * 1024:
                    files.append((size, path))
    return [Path(p).read_bytes() for _, p in sorted(files)[:count]]


SAMPLES = _smallest_elf_libraries(4)
EXECUTABLE = Path(os.path.realpath("/bin/dash")).read_bytes()


def _cache_samples() -> List[bytes]:
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    if not os.path.exists(ldconfig):
        return []
    import tempfile

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lib = root / HOST_LIBDIR.lstrip("/")
        lib.mkdir(parents=True)
        for name in ("libc.so.6", "libz.so.1", "libm.so.6"):
            shutil.copy2(os.path.join(HOST_LIBDIR, name), lib / name)
        (root / "etc").mkdir()
        (root / "etc/ld.so.conf").write_text(HOST_LIBDIR + "\n")
        for fmt in ("old", "compat", "new"):
            subprocess.run(
                [ldconfig, "-X", "-c", fmt, "-r", str(root), "-C", f"/etc/c.{fmt}"],
                check=True,
                capture_output=True,
            )
            out.append((root / "etc" / f"c.{fmt}").read_bytes())
    return out


CACHES = _cache_samples()

edits = st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=24)


def _mutate(data: bytes, changes: List[Tuple[int, int]], cut: int) -> bytes:
    buf = bytearray(data)
    for position, value in changes:
        # bias edits towards the headers and tables at the start of the file
        where = position % (len(buf) if position % 3 else min(len(buf), 4096))
        buf[where] = value
    return bytes(buf[: len(buf) - cut % max(1, len(buf))]) if cut else bytes(buf)


def _exercise_elf(data: bytes) -> None:
    for call in (
        lambda s: read_elf(s, "fuzz.so"),
        lambda s: dynamic_symbols(s, "fuzz.so"),
        lambda s: dynamic_symbols_split(s, "fuzz.so"),
        lambda s: static_symbols(s, "fuzz.so"),
        lambda s: find_strings(s, ["MPICH Version:", "GLIBC"], "fuzz.so"),
    ):
        try:
            call(io.BytesIO(data))
        except HpcrunError:
            pass
    try:
        info = read_elf(io.BytesIO(data), "libmpi.so.12")
        classify_mpi("libmpi.so.12", "/x/libmpi.so.12", info, lambda: io.BytesIO(data))
    except HpcrunError:
        pass


@pytest.mark.skipif(not SAMPLES, reason="no small ELF libraries on this host")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, 10), changes=edits, cut=st.integers(min_value=0))
def test_mutated_elf_files(which: int, changes: List[Tuple[int, int]], cut: int) -> None:
    pool = [*SAMPLES, EXECUTABLE]
    _exercise_elf(_mutate(pool[which % len(pool)], changes, cut))


@pytest.mark.skipif(not CACHES, reason="ldconfig is not available")
@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, 2), changes=edits, cut=st.integers(min_value=0))
def test_mutated_ld_caches(which: int, changes: List[Tuple[int, int]], cut: int) -> None:
    data = _mutate(CACHES[which % len(CACHES)], changes, cut)
    try:
        parse_ld_cache(data, "/fuzz/ld.so.cache")
    except HpcrunError as error:
        assert "/fuzz/ld.so.cache" in error.message


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=256))
def test_random_bytes(data: bytes) -> None:
    _exercise_elf(b"\x7fELF" + data)
    _exercise_elf(data)
    try:
        parse_ld_cache(b"glibc-ld.so.cache1.1" + data)
    except HpcrunError:
        pass
    try:
        parse_ld_cache(b"ld.so-1.7.0\0" + data)
    except HpcrunError:
        pass
