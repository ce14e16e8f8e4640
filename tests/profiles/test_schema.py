"""The generated JSON Schema and key reference stay in sync with the dataclasses."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from hpcrun.profiles.load import field_types, public_fields
from hpcrun.profiles.model import Profile
from hpcrun.profiles.schema import build_schema, reference_markdown, schema_text, with_reference

from .conftest import REPO, SITE_PROFILES

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

HINT = "regenerate with: python -m hpcrun.profiles.schema"


def test_schema_files_are_in_sync() -> None:
    expected = schema_text()
    assert (SITE_PROFILES / "schema.json").read_text() == expected, HINT
    assert (REPO / "adapter/hpcrun/data/profile-schema.json").read_text() == expected, HINT


def test_docs_key_reference_is_in_sync() -> None:
    docs = (REPO / "docs/site-profiles.md").read_text()
    assert with_reference(docs) == docs, HINT


def test_every_field_is_documented_in_schema_and_reference() -> None:
    schema = build_schema()
    reference = reference_markdown()
    seen = [Profile]
    while seen:
        cls = seen.pop()
        for f in public_fields(cls):
            assert f.metadata.get("doc"), f"{cls.__name__}.{f.name} has no doc"
            if cls is not Profile:
                assert f"| `{f.name}` |" in reference or f.name in ("libraries",)
        for tp in field_types(cls).values():
            for arg in (*getattr(tp, "__args__", ()), tp):
                if hasattr(arg, "__dataclass_fields__") and arg not in seen and arg is not cls:
                    if arg.__name__ not in schema["$defs"]:
                        pytest.fail(f"{arg.__name__} missing from $defs")
    assert schema["properties"]["schema"]["const"] == 1
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Mpi"]["properties"]["family"]["enum"] == [
        "mpich", "openmpi", "mpi-abi", "none"]
    assert set(schema["properties"]["launchers"]["properties"]) == {"srun", "mpirun", "mpiexec"}


@pytest.fixture(scope="module")
def validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(schema_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", sorted(SITE_PROFILES.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_profiles_satisfy_the_schema(validator: Any, path: Path) -> None:
    errors = list(validator.iter_errors(tomllib.loads(path.read_text())))
    assert errors == []


@pytest.mark.parametrize("bad", [
    {"schema": 1, "name": "x", "bogus": 1},
    {"schema": 2, "name": "x"},
    {"schema": 1},
    {"schema": 1, "name": "x", "mpi": {"family": "lam"}},
    {"schema": 1, "name": "x", "binds": [{"destination": "/a"}]},
    {"schema": 1, "name": "x", "launchers": {"aprun": {"options": []}}},
    {"schema": 1, "name": "x", "threads": {"variables": "OMP_NUM_THREADS"}},
])
def test_schema_rejects_what_the_loader_rejects(validator: Any, bad: dict) -> None:
    from hpcrun.profiles.load import ProfileError, profile_from_dict

    assert list(validator.iter_errors(bad))
    with pytest.raises(ProfileError):
        profile_from_dict(bad)
