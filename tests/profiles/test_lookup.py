"""Finding site profiles by name: search order, shadowing, paths, defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

from hpcrun.errors import ConfigError, UsageError
from hpcrun.profiles import lookup
from hpcrun.profiles.lookup import (
    bundled_dir,
    default_site,
    find_profile,
    list_sites,
    load_site,
    search_dirs,
)

from .conftest import REPO, SITE_PROFILES


def write(directory: Path, name: str, description: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(f'schema = 1\nname = "{name}"\ndescription = "{description}"\n')
    return path


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dict[str, Path]:
    """Two $HPCRUN_SITE_PATH entries, a home, and a system dir standing for /etc/hpcrun/sites."""
    system = tmp_path / "etc-sites"
    monkeypatch.setattr(lookup, "SYSTEM_DIR", system)
    return {"a": tmp_path / "a", "b": tmp_path / "b", "home": tmp_path / "home",
            "system": system}


def env_for(dirs: Dict[str, Path]) -> Dict[str, str]:
    return {"HPCRUN_SITE_PATH": f"{dirs['a']}:{dirs['b']}", "HOME": str(dirs["home"])}


def test_search_order(dirs: Dict[str, Path]) -> None:
    env = env_for(dirs)
    assert [d for d, _ in search_dirs(env)] == [
        dirs["a"], dirs["b"], dirs["home"] / ".config/hpcrun/sites", dirs["system"],
        bundled_dir()]
    xdg = dict(env, XDG_CONFIG_HOME=str(dirs["home"] / "xdg"))
    assert search_dirs(xdg)[2][0] == dirs["home"] / "xdg/hpcrun/sites"


def test_first_directory_with_the_name_wins(dirs: Dict[str, Path]) -> None:
    env = env_for(dirs)
    user = dirs["home"] / ".config/hpcrun/sites"
    in_system = write(dirs["system"], "zeus", "system copy")
    assert find_profile("zeus", env) == in_system  # before the bundled one
    in_user = write(user, "zeus", "user copy")
    assert find_profile("zeus", env) == in_user
    in_b = write(dirs["b"], "zeus", "b copy")
    assert find_profile("zeus", env) == in_b
    in_a = write(dirs["a"], "zeus", "a copy")
    assert find_profile("zeus", env) == in_a
    profile = load_site("zeus", env)
    assert profile.description == "a copy" and profile.source == str(in_a)


def test_bundled_profiles_are_found_last(dirs: Dict[str, Path]) -> None:
    path = find_profile("setonix", env_for(dirs))
    assert path == bundled_dir() / "setonix.toml"
    assert load_site("setonix", env_for(dirs)).name == "setonix"


def test_list_marks_shadowed_entries(dirs: Dict[str, Path]) -> None:
    env = env_for(dirs)
    write(dirs["b"], "zeus", "mine")
    write(dirs["a"], "alpha", "first")
    (dirs["a"] / "broken.toml").write_text("schema = 1\nname = [\n")
    entries = list_sites(env)
    names = [(e.name, e.shadowed) for e in entries]
    assert names[:3] == [("alpha", False), ("broken", False), ("zeus", False)]
    assert ("zeus", True) in names
    shadowed = [e for e in entries if e.name == "zeus" and e.shadowed]
    assert shadowed[0].path == bundled_dir() / "zeus.toml"
    broken = next(e for e in entries if e.name == "broken")
    assert broken.description.startswith("(invalid:")
    assert {e.name for e in entries} >= {"zeus", "topaz", "setonix", "debian-mpich",
                                         "debian-openmpi"}


def test_paths_are_taken_as_paths(tmp_path: Path, dirs: Dict[str, Path]) -> None:
    path = write(tmp_path / "x", "mysite", "by path")
    assert find_profile(str(path), {}) == path
    assert load_site(str(path), {}).source == str(path)
    with pytest.raises(ConfigError, match="does not exist"):
        find_profile(str(tmp_path / "none.toml"), {})
    with pytest.raises(ConfigError, match="does not exist"):
        find_profile("zeus.toml", {})  # a relative path, not the site zeus


def test_unknown_site_suggests_and_lists_where_it_looked(dirs: Dict[str, Path]) -> None:
    env = env_for(dirs)
    with pytest.raises(ConfigError) as caught:
        find_profile("zues", env)
    assert caught.value.message == "unknown site 'zues'"
    assert "did you mean 'zeus'?" in caught.value.hint
    assert str(dirs["a"]) in caught.value.hint and str(bundled_dir()) in caught.value.hint


def test_default_site() -> None:
    assert default_site({"HPCRUN_SITE": "zeus"}) == "zeus"
    for env in ({}, {"HPCRUN_SITE": " "}):
        with pytest.raises(UsageError) as caught:
            default_site(env)
        assert "--site" in caught.value.hint and "HPCRUN_SITE" in caught.value.hint
    with pytest.raises(UsageError):
        find_profile("", {})


def test_packaged_copies_match_the_source_profiles() -> None:
    source = {p.name: p.read_bytes() for p in SITE_PROFILES.glob("*.toml")}
    packaged_dir = REPO / "adapter/hpcrun/data/site-profiles"
    packaged = {p.name: p.read_bytes() for p in packaged_dir.glob("*.toml")}
    assert packaged == source, "run: python -m hpcrun.profiles.schema"
    assert bundled_dir().resolve() == packaged_dir.resolve()
