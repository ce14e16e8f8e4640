"""hpcrun.records behaves like a frozen dataclass for everything hpcrun relies on.

The oracle is Python's own ``dataclasses``: the same class declared both ways must agree on
construction, defaults, repr, equality, hashing, immutability and replace.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Tuple  # noqa: F401  # dataclasses looks ClassVar up here

import pytest

from hpcrun import records
from hpcrun.plan.model import Bind, Plan
from hpcrun.records import FrozenInstanceError, field, record


def _namespace(field_spec: Any) -> Dict[str, Any]:
    """The body of class Shape, with fields made by ``field_spec`` (ours or dataclasses')."""
    return {
        "__doc__": "A shape.",
        "__annotations__": {"kind": "str", "sides": "int", "tags": "Tuple[str, ...]",
                            "note": "Optional[str]", "seen": "list", "origin": "str",
                            "LIMIT": "ClassVar[int]"},
        "sides": 0, "tags": (), "note": None,
        "seen": field_spec(default_factory=list, compare=False),  # a list is not hashable
        "origin": field_spec(default="", compare=False),
        "LIMIT": 3,
    }


def _pair() -> Tuple[type, type]:
    """The same class Shape as a record and as a frozen dataclass."""
    as_record: type = record(type("Shape", (), _namespace(field)))
    as_dataclass: type = dataclasses.dataclass(frozen=True)(
        type("Shape", (), _namespace(dataclasses.field)))
    return as_record, as_dataclass


@pytest.mark.parametrize("args, kwargs", [
    (("square", 4), {}),
    (("tri",), {"tags": ("a",), "note": "n"}),
    ((), {"kind": "line", "sides": 1, "origin": "here"}),
])
def test_construction_repr_and_equality_match_dataclasses(args, kwargs) -> None:
    Rec, Dc = _pair()
    r, d = Rec(*args, **kwargs), Dc(*args, **kwargs)
    assert repr(r) == repr(d)
    assert (r == Rec(*args, **kwargs)) == (d == Dc(*args, **kwargs)) is True
    assert hash(r.__class__(*args, **kwargs)) == hash(Rec(*args, **kwargs))
    assert [f.name for f in records.fields(Rec)] == [f.name for f in dataclasses.fields(Dc)]


def test_a_class_variable_is_not_a_field() -> None:
    Rec, _ = _pair()
    assert "LIMIT" not in [f.name for f in records.fields(Rec)]
    assert Rec.LIMIT == 3  # type: ignore[attr-defined]


def test_argument_mistakes_are_type_errors_like_dataclasses() -> None:
    Rec, Dc = _pair()
    bad: tuple
    for bad in ((), ("a", 1, (), None, [], "", "extra")):
        with pytest.raises(TypeError):
            Rec(*bad)
        with pytest.raises(TypeError):
            Dc(*bad)
    with pytest.raises(TypeError, match="unexpected keyword"):
        Rec("a", colour="red")
    with pytest.raises(TypeError, match="multiple values"):
        Rec("a", kind="b")


def test_factory_gives_each_instance_its_own_value() -> None:
    Rec, _ = _pair()
    one, two = Rec("a"), Rec("b")
    one.seen.append(1)
    assert two.seen == []


def test_compare_false_fields_do_not_take_part_in_equality_or_hash() -> None:
    Rec, _ = _pair()
    assert Rec("a", origin="x") == Rec("a", origin="y")
    assert hash(Rec("a", origin="x")) == hash(Rec("a", origin="y"))
    assert Rec("a", sides=1) != Rec("a", sides=2)


def test_records_of_different_classes_are_never_equal() -> None:
    Rec, _ = _pair()
    Other, _ = _pair()
    assert Rec("a") != Other("a")
    assert Rec("a") != ("a", 0, (), None, [], "")


def test_fields_cannot_be_assigned_or_deleted() -> None:
    Rec, _ = _pair()
    shape = Rec("a")
    with pytest.raises(FrozenInstanceError):
        shape.kind = "b"
    with pytest.raises(FrozenInstanceError):
        del shape.kind
    assert isinstance(FrozenInstanceError(), AttributeError)
    assert shape.kind == "a"


def test_replace_copies_with_changes_and_checks_names() -> None:
    Rec, _ = _pair()
    shape = Rec("a", sides=3, note="n")
    changed = records.replace(shape, sides=4)
    assert (changed.kind, changed.sides, changed.note) == ("a", 4, "n")
    assert shape.sides == 3
    with pytest.raises(TypeError):
        records.replace(shape, colour="red")
    with pytest.raises(TypeError, match="not a record"):
        records.replace(object())


def test_is_record_and_fields_metadata() -> None:
    @record
    class Item:
        name: str = field(default="x", metadata={"doc": "the name"})

    assert records.is_record(Item) and records.is_record(Item())
    assert not records.is_record(object())
    (only,) = records.fields(Item())
    assert (only.name, only.type, only.default, only.metadata["doc"]) == (
        "name", "str", "x", "the name")
    assert only.default_factory is records.MISSING


def test_a_required_field_after_a_defaulted_one_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="'b' without a default follows 'a'"):
        @record
        class Bad:
            a: int = 0
            b: int  # type: ignore[misc]


def test_a_field_cannot_have_both_default_and_factory() -> None:
    with pytest.raises(ValueError):
        field(default=1, default_factory=list)


def test_inherited_fields_come_first_and_subclasses_construct() -> None:
    @record
    class Base:
        a: int
        b: int = 2

    @record
    class Child(Base):
        c: int = 3

    class Plain(Base):
        """Not a record itself: shares its base's fields."""

    assert [f.name for f in records.fields(Child)] == ["a", "b", "c"]
    assert repr(Child(1)).endswith(".<locals>.Child(a=1, b=2, c=3)")
    assert Plain(5).a == 5 and Base(5).a == 5


def test_a_method_the_class_writes_itself_is_kept() -> None:
    @record
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

    assert repr(Named("n")) == "<n>"


def test_real_contract_records_pickle_and_hash() -> None:
    def make() -> Plan:
        return Plan(site="s", runtime="apptainer", runtime_binary="apptainer", launcher=(),
                    runtime_args=("exec",), image="i.sif", command=("true",),
                    binds=(Bind("/a", "/b", reason="r"),))

    plan = make()
    assert pickle.loads(pickle.dumps(plan)) == plan
    assert len({plan, make()}) == 1
    assert records.replace(plan, image="j.sif") != plan


@pytest.mark.parametrize("count", [1, records._COMPILE_AFTER - 1, records._COMPILE_AFTER + 5])
def test_generic_and_compiled_init_agree_with_dataclasses(count: int) -> None:
    """The first instances use the generic __init__, later ones the compiled one."""
    Rec, Dc = _pair()
    calls = [((f"k{i}",), {"sides": i, "note": None if i % 2 else "n"}) for i in range(count)]
    for args, kwargs in calls:
        assert repr(Rec(*args, **kwargs)) == repr(Dc(*args, **kwargs))
    compiled = "__init__" in Rec.__dict__ and Rec.__dict__["__init__"] is not records._lazy_init
    assert compiled == (count >= records._COMPILE_AFTER)
    bad_calls: List[Tuple[Tuple[Any, ...], Dict[str, Any]]] = [
        ((), {}), (("a",), {"colour": 1}), (("a",), {"kind": "b"}),
        (("a", 1, (), None, [], "", "x"), {}), ((), {"sides": 2})]
    for bad_args, bad_kwargs in bad_calls:
        with pytest.raises(TypeError):
            Rec(*bad_args, **bad_kwargs)
        with pytest.raises(TypeError):
            Dc(*bad_args, **bad_kwargs)


def _reachable_records(root: type) -> set:
    """Every record class a ``root`` value can hold, from the type hints (the oracle)."""
    import typing

    found, todo = set(), [root]
    while todo:
        cls = todo.pop()
        if cls in found:
            continue
        found.add(cls)
        stack = list(records.type_hints(cls).values())
        while stack:
            hint = stack.pop()
            if isinstance(hint, type) and records.is_record(hint):
                todo.append(hint)
            stack.extend(typing.get_args(hint))
    return found


@pytest.mark.parametrize("module, root", [
    ("hpcrun.image.facts", "ImageFacts"), ("hpcrun.profiles.model", "Profile")])
def test_cache_registries_name_every_record_their_root_can_hold(module: str, root: str) -> None:
    import importlib

    loaded = importlib.import_module(module)
    assert set(loaded.RECORDS.values()) == _reachable_records(getattr(loaded, root))


def test_encode_decode_round_trips_real_profiles_and_image_facts(sif_data: Path) -> None:
    from hpcrun.image.facts import RECORDS as FACT_RECORDS
    from hpcrun.image.inspect import inspect_image
    from hpcrun.profiles.load import load_profile
    from hpcrun.profiles.model import RECORDS as PROFILE_RECORDS

    repo = Path(__file__).resolve().parent.parent
    for path in sorted((repo / "site-profiles").glob("*.toml")):
        profile = load_profile(path)
        data = json.loads(json.dumps(records.encode(profile)))
        assert records.decode(data, PROFILE_RECORDS) == profile
    from hpcrun.errors import ImageError

    decoded = 0
    for image in sorted((sif_data / "images").glob("*.sif")):
        try:
            facts = inspect_image(str(image), app=["python3"], use_cache=False)
        except ImageError:  # some of the corpus files have no file system to read
            continue
        data = json.loads(json.dumps(records.encode(facts)))
        assert records.decode(data, FACT_RECORDS) == facts
        decoded += 1
    assert decoded >= 3


@pytest.mark.parametrize("data, why", [
    ({"Plan": [1]}, "not a known record"),
    ({"Bind": ["/a"]}, "1 values for 5 fields"),
    ({"Bind": "x"}, "not a known record"),
    ({"Bind": [], "Flag": []}, "one-key object"),
])
def test_decode_refuses_what_does_not_fit(data: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        records.decode(data, {"Bind": Bind})


def test_encode_refuses_what_decode_could_not_give_back() -> None:
    with pytest.raises(TypeError, match="cannot encode"):
        records.encode({"a": 1})
    with pytest.raises(TypeError, match="cannot encode"):
        records.encode(Bind(Path("/a"), "/b"))  # type: ignore[arg-type]


def test_decode_as_gives_the_expected_record_or_none() -> None:
    bind = Bind("/a", "/b")
    classes = {"Bind": Bind, "Plan": Plan}
    assert records.decode_as(records.encode(bind), classes, Bind) == bind
    assert records.decode_as(records.encode(bind), classes, Plan) is None
    assert records.decode_as({"Bind": ["/a"]}, classes, Bind) is None
    assert records.decode_as(None, classes, Bind) is None
