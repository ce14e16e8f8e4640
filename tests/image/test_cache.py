"""The facts cache: round trips, bad entries, bounds, unwritable places, many writers."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from pathlib import Path
from typing import List, Optional

from hpcrun.image.cache import CACHE_FORMAT, FactsCache, default_directory

VALUE = {"kind": "sif", "mpi": [{"soname": "libmpi.so.12", "family": "mpich"}], "n": 3}


def test_round_trip(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path / "c")
    assert cache.get("image-a") is None
    cache.put("image-a", VALUE)
    assert cache.get("image-a") == VALUE
    assert cache.get("image-b") is None
    files = list((tmp_path / "c").iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"
    assert "image-a" not in files[0].name  # named by a hash of the key
    head, body = files[0].read_bytes().split(b"\n", 1)
    fmt, checksum, key = head.decode().split(" ", 2)
    assert (int(fmt), key) == (CACHE_FORMAT, "image-a") and json.loads(body) == VALUE
    assert checksum == hashlib.sha256(body).hexdigest()


def test_a_changed_value_with_its_header_intact_is_a_miss(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path)
    cache.put("k", {"n": 3})
    path = _only_file(tmp_path)
    path.write_bytes(path.read_bytes().replace(b'"n":3', b'"n":4'))  # still valid JSON
    assert cache.get("k") is None and not path.exists()  # removed, to be recomputed
    cache.put_text("t", "glibc 2.36")
    (text,) = tmp_path.glob("*.txt")
    text.write_bytes(text.read_bytes().replace(b"2.36", b"2.38"))
    assert cache.get_text("t") is None


def test_overwrite(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path)
    cache.put("k", {"v": 1})
    cache.put("k", {"v": 2})
    assert cache.get("k") == {"v": 2}
    assert len(list(tmp_path.glob("*.json"))) == 1


def _only_file(directory: Path) -> Path:
    (path,) = list(directory.glob("*.json"))
    return path


def test_corrupt_entries_are_misses_and_get_rewritten(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path)
    cache.put("k", VALUE)
    path = _only_file(tmp_path)
    for bad in (b"", b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'{"format": 1, "key": "k"}',
                b'{"format": 1, "key": "k", "value": [1]}', b"[" * 100000):
        path.write_bytes(bad)
        assert cache.get("k") is None, bad[:20]
    cache.put("k", VALUE)
    assert cache.get("k") == VALUE


def test_foreign_key_and_old_format_are_misses(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path)
    cache.put("k", VALUE)
    path = _only_file(tmp_path)
    path.write_text(json.dumps({"format": CACHE_FORMAT, "key": "other", "value": VALUE}))
    assert cache.get("k") is None
    path.write_text(json.dumps({"format": CACHE_FORMAT + 1, "key": "k", "value": VALUE}))
    assert cache.get("k") is None
    path.write_text(json.dumps({"format": CACHE_FORMAT - 1, "key": "k", "value": VALUE}))
    assert cache.get("k") is None


def test_unwritable_directory_is_silently_skipped(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cache = FactsCache(blocker / "cache")  # mkdir fails even for root
    cache.put("k", VALUE)
    assert cache.get("k") is None
    cache.put("k2", VALUE)  # once disabled, stays quiet
    assert cache.evict() == 0


def test_not_json_value_is_skipped(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path)
    cache.put("k", {"x": object()})
    assert cache.get("k") is None and list(tmp_path.iterdir()) == []


def test_evicts_oldest_beyond_max_entries(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path, max_entries=1000)
    for i in range(10):
        cache.put(f"k{i}", {"i": i})
        os.utime(cache._path(f"k{i}"), (1_000_000 + i, 1_000_000 + i))
    cache.max_entries = 4
    assert cache.evict() == 6
    assert [cache.get(f"k{i}") is not None for i in range(10)] == [False] * 6 + [True] * 4


def test_evicts_beyond_max_bytes(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path, max_bytes=10_000_000)
    for i in range(5):
        cache.put(f"k{i}", {"blob": "x" * 1000})
        os.utime(cache._path(f"k{i}"), (2_000_000 + i, 2_000_000 + i))
    cache.max_bytes = 3500  # room for three entries of about 1 KB
    cache.evict()
    kept = [i for i in range(5) if cache.get(f"k{i}") is not None]
    assert kept == [2, 3, 4]


def test_put_keeps_the_bound(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path, max_entries=3)
    for i in range(20):
        cache.put(f"k{i}", {"i": i})
    assert len(list(tmp_path.glob("*.json"))) <= 3
    assert cache.get("k19") == {"i": 19}


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".tmp-dead.json"
    stale.write_text("{")
    os.utime(stale, (1_000_000, 1_000_000))
    fresh = tmp_path / ".tmp-live.json"
    fresh.write_text("{")
    FactsCache(tmp_path).evict()
    assert not stale.exists() and fresh.exists()


def test_default_directory() -> None:
    assert default_directory({"XDG_CACHE_HOME": "/x/y", "HOME": "/h"}) == "/x/y/hpcrun"
    assert default_directory({"HOME": "/h"}) == "/h/.cache/hpcrun"


def _worker(args: tuple) -> List[str]:
    directory, rank = args
    cache = FactsCache(Path(directory), max_entries=50)
    problems: List[str] = []
    for round_ in range(5):
        key = f"image-{(rank + round_) % 7}"
        value = {"key": key, "rank": rank, "payload": "y" * (100 * (rank % 13))}
        cache.put(key, value)
        if cache.get(key) is None:  # in-place (non-atomic) writes would show up here
            problems.append(f"{key} missing or unreadable right after a put")
        for probe in range(7):
            got: Optional[dict] = cache.get(f"image-{probe}")
            if got is not None and (got.get("key") != f"image-{probe}"
                                    or len(got["payload"]) != 100 * (got["rank"] % 13)):
                problems.append(f"torn entry for image-{probe}: {str(got)[:80]}")
    return problems


def _process(directory: str, rank: int) -> None:
    problems = _worker((directory, rank))
    os._exit(1 if problems else 0)


def test_hundreds_of_concurrent_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_process, args=(str(tmp_path), rank)) for rank in range(200)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0] * len(procs)
    cache = FactsCache(tmp_path)
    for i in range(7):
        got = cache.get(f"image-{i}")
        assert got is not None and got["key"] == f"image-{i}"
    assert not list(tmp_path.glob(".tmp-*"))
    assert len(list(tmp_path.glob("*.json"))) == 7


def test_text_round_trip_beside_the_json_value(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path)
    text = '{\n  "a": "é $x `y`\\n"\n}\n\n'
    cache.put_text("k", text)
    cache.put("k", VALUE)
    assert cache.get_text("k") == text and cache.get("k") == VALUE
    assert cache.get_text("other") is None
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".txt"]


def test_text_of_another_key_or_format_is_a_miss(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path)
    cache.put_text("k", "value")
    (path,) = list(tmp_path.glob("*.txt"))
    path.write_text(f"{CACHE_FORMAT} other\nvalue")  # a file name collision
    assert cache.get_text("k") is None
    path.write_text(f"{CACHE_FORMAT + 1} k\nvalue")
    assert cache.get_text("k") is None
    path.write_text(f"{CACHE_FORMAT} k")  # cut short
    assert cache.get_text("k") is None
    path.write_bytes(b"\xff\xfe")
    assert cache.get_text("k") is None


def test_texts_are_evicted_and_cleared_like_values(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path, max_entries=1000)
    for i in range(6):
        cache.put_text(f"k{i}", f"text {i}")
        os.utime(cache._path(f"k{i}", ".txt"), (1_000_000 + i, 1_000_000 + i))
    cache.max_entries = 2
    assert cache.evict() == 4
    assert [cache.get_text(f"k{i}") for i in range(6)] == [None] * 4 + ["text 4", "text 5"]
    cache.clear()
    assert list(tmp_path.iterdir()) == []
