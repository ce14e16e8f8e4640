"""load_profile's cache: same profiles, same errors, no parsing or checking on a hit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpcrun.profiles import load
from hpcrun.profiles.load import ProfileError, load_profile, loads_profile

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def _no_parser(*_: Any) -> Any:
    raise AssertionError("the TOML parser or the checker was used on a cache hit")


def test_second_load_comes_from_the_cache_and_equals_the_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = REPO / "site-profiles" / "zeus.toml"
    path = tmp_path / "zeus.toml"
    path.write_bytes(source.read_bytes())
    first = load_profile(path)
    assert first == loads_profile(source.read_text(), str(path))
    monkeypatch.setattr(load, "_toml", _no_parser)
    monkeypatch.setattr(load, "profile_from_dict", _no_parser)
    again = load_profile(path)
    assert again == first and again.source == str(path)
    # The same text elsewhere is the same entry, with its own source.
    other = tmp_path / "copy.toml"
    other.write_bytes(source.read_bytes())
    assert load_profile(other).source == str(other)


def test_every_bundled_profile_comes_back_equal_from_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = sorted((REPO / "site-profiles").glob("*.toml"))
    assert len(paths) >= 4
    first = [load_profile(p) for p in paths]
    monkeypatch.setattr(load, "profile_from_dict", _no_parser)
    assert [load_profile(p) for p in paths] == first


def test_a_damaged_entry_is_a_miss(tmp_path: Path, private_cache: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('schema = 1\nname = "ok"\n')
    load_profile(path)
    (entry,) = (private_cache / "hpcrun").glob("*.json")
    entry.write_text(entry.read_text().replace('"Profile"', '"Nothing"'))
    assert load_profile(path).name == "ok"


def test_changed_text_is_parsed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "site.toml"
    path.write_text('schema = 1\nname = "one"\n')
    assert load_profile(path).name == "one"
    path.write_text('schema = 1\nname = "two"\n')
    assert load_profile(path).name == "two"
    monkeypatch.setattr(load, "_toml", _no_parser)
    assert load_profile(path).name == "two"


def test_errors_keep_their_line_numbers_on_a_hit(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('schema = 1\nname = "bad"\n\n[mpi]\nfamly = "mpich"\n')
    messages = []
    for _ in range(2):  # the first parse is stored, the second comes from the cache
        with pytest.raises(ProfileError) as info:
            load_profile(path)
        messages.append((info.value.message, info.value.line))
    assert messages[0] == messages[1]
    assert messages[0][1] == 5 and "famly" in messages[0][0]


def test_invalid_toml_is_never_cached(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('schema = 1\nname = "x\n')
    for _ in range(2):
        with pytest.raises(ProfileError, match="invalid TOML"):
            load_profile(path)


def test_unwritable_cache_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file where the directory goes
    path = tmp_path / "site.toml"
    path.write_text('schema = 1\nname = "ok"\n')
    assert load_profile(path).name == "ok"
    assert load_profile(path).name == "ok"
