"""Frozen records: the decorator every contract class uses (a small frozen dataclass).

Why not ``dataclasses``: on Python < 3.13 its decorator compiles five or six methods per
class at import time and the module itself imports ``inspect`` (hence ``ast``, ``dis``,
``tokenize``): about 1 ms per class plus 8 ms once.  Every launch imports the ~30 contract
classes, so that was a third of ``hpcrun --dry-run``'s own time.  A record compiles nothing
when its class is created: the first instances are built by one generic ``__init__``, a
compiled one replaces it once a class has been instantiated a few dozen times, and the other
methods are shared functions.

The surface is the part of frozen dataclasses hpcrun uses, with the same names: fields in
annotation order (base classes' first), positional or keyword construction, ``default`` and
``default_factory``, ``compare`` and ``metadata`` per field, equality and hashing over the
compared fields, a ``Name(field=value, ...)`` repr, immutability
(:class:`FrozenInstanceError`), :func:`fields`, :func:`replace`, :func:`is_record`.
Type checkers see a frozen dataclass (``dataclass_transform``).
"""

from __future__ import annotations

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Mapping, Optional, Tuple, TypeVar

    T = TypeVar("T")


if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        """Run-time no-op: the marker only matters to type checkers."""
        return lambda decorated: decorated


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""The absence of a default (the counterpart of ``dataclasses.MISSING``)."""


class FrozenInstanceError(AttributeError):
    """Raised on an attempt to assign or delete a field of a record."""


class Field:
    """One field of a record: its name, annotation (a string), default and metadata."""

    __slots__ = ("compare", "default", "default_factory", "metadata", "name", "type")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING,
                 compare: bool = True, metadata: Mapping[str, Any] | None = None) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("a field cannot have both default and default_factory")
        self.name = ""
        self.type: Any = None
        self.default = default
        self.default_factory = default_factory
        self.compare = compare
        self.metadata: Mapping[str, Any] = dict(metadata or {})

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, type={self.type!r}, default={self.default!r})"


def field(*, default: Any = MISSING, default_factory: Any = MISSING, compare: bool = True,
          metadata: Mapping[str, Any] | None = None) -> Any:
    """Describe a field beyond its default: a factory, exclusion from equality, metadata."""
    return Field(default, default_factory, compare, metadata)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen record of the fields its annotations declare (see module doc)."""
    # The class's own annotations (inspect.get_annotations would import inspect).
    own: Dict[str, Any] = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
    collected: Dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for inherited in base.__dict__.get("__record_fields__", ()):
            collected[inherited.name] = inherited
    for name, annotation in own.items():
        if isinstance(annotation, str) and annotation.startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = cls.__dict__.get(name, MISSING)
        spec = value if isinstance(value, Field) else Field(default=value)
        spec.name, spec.type = name, annotation
        if isinstance(value, Field):
            if spec.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
        collected[name] = spec
    specs = tuple(collected.values())
    seen_default = ""
    for spec in specs:
        has_default = spec.default is not MISSING or spec.default_factory is not MISSING
        if seen_default and not has_default:
            raise TypeError(f"{cls.__name__}: field {spec.name!r} without a default follows "
                            f"{seen_default!r} which has one")
        seen_default = spec.name if has_default else seen_default
    setattr(cls, "__record_fields__", specs)  # noqa: B010  # mypy: not a declared attribute
    setattr(cls, "__record_compared__", tuple(s.name for s in specs if s.compare))  # noqa: B010
    methods = (("__init__", _lazy_init), ("__repr__", _repr), ("__eq__", _eq),
               ("__hash__", _hash), ("__setattr__", _setattr), ("__delattr__", _delattr))
    for name, method in methods:
        # Like dataclasses: a method the class writes itself is kept.
        if cls.__dict__.get(name) is None:
            setattr(cls, name, method)
    return cls


def fields(class_or_instance: Any) -> Tuple[Field, ...]:
    """The fields of a record class or instance, in declaration order."""
    try:
        return class_or_instance.__record_fields__
    except AttributeError:
        raise TypeError(f"{class_or_instance!r} is not a record") from None


def is_record(obj: Any) -> bool:
    """True for a record class or instance."""
    return hasattr(obj, "__record_fields__")


def type_hints(cls: type) -> Dict[str, Any]:
    """The evaluated field annotations of a record class (``typing.get_type_hints``).

    Record modules import ``typing`` for type checkers only (at run time it would cost
    every call a few ms), so the names their annotations use (``Optional``, ``Tuple`` ...)
    are supplied here, on the rare paths that evaluate them.
    """
    import sys
    import typing

    names = dict(vars(typing))
    names.update(vars(sys.modules[cls.__module__]))  # the module's own names win
    return typing.get_type_hints(cls, localns=names)


def replace(obj: T, **changes: Any) -> T:
    """A copy of the record ``obj`` with ``changes`` applied (it is validated by __init__)."""
    for spec in fields(obj):
        if spec.name not in changes:
            changes[spec.name] = obj.__dict__[spec.name]
    return obj.__class__(**changes)


def _init_source(specs: Tuple[Field, ...]) -> Tuple[str, Dict[str, Any]]:
    """Source of ``__init__`` for these fields, and the globals it refers to."""
    params, body = ["self"], ["    _d = self.__dict__"]
    namespace: Dict[str, Any] = {"_FACTORY": _FACTORY}
    for spec in specs:
        name = spec.name
        if spec.default_factory is not MISSING:
            namespace[f"_f_{name}"] = spec.default_factory
            params.append(f"{name}=_FACTORY")
            body.append(f"    _d[{name!r}] = _f_{name}() if {name} is _FACTORY else {name}")
            continue
        if spec.default is not MISSING:
            namespace[f"_v_{name}"] = spec.default
            params.append(f"{name}=_v_{name}")
        else:
            params.append(name)
        body.append(f"    _d[{name!r}] = {name}")
    if len(body) == 1:
        body.append("    pass")
    return f"def __init__({', '.join(params)}):\n" + "\n".join(body) + "\n", namespace


def _compile_init(cls: type) -> Callable[..., None]:
    """Compile and install the real ``__init__`` of ``cls``."""
    source, namespace = _init_source(cls.__dict__["__record_fields__"])
    exec(source, namespace)  # the source is built from field names, never from data
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    setattr(cls, "__init__", init)  # noqa: B010  # mypy forbids assigning __init__
    return init


_FACTORY = _Missing()
_COMPILE_AFTER = 24
"""Instances built by the generic __init__ before a class gets a compiled one: compiling
costs about as much as 40 generic constructions, and most classes are built a few times
per launch; those built by the thousand (ELF and squashfs readers) get the fast one."""


def _bind(specs: Tuple[Field, ...], args: Tuple[Any, ...], kwargs: Dict[str, Any]
          ) -> Dict[str, Any]:
    """Field values for a call with ``args`` and ``kwargs``: the generic ``__init__``."""
    if len(args) > len(specs):
        raise TypeError(f"__init__() takes {len(specs) + 1} positional arguments but "
                        f"{len(args) + 1} were given")
    values = {spec.name: arg for spec, arg in zip(specs, args)}
    if kwargs:
        known = {spec.name for spec in specs}
        for name, value in kwargs.items():
            if name not in known:
                raise TypeError(f"__init__() got an unexpected keyword argument {name!r}")
            if name in values:
                raise TypeError(f"__init__() got multiple values for argument {name!r}")
            values[name] = value
    for spec in specs[len(args):]:
        if spec.name in values:
            continue
        if spec.default_factory is not MISSING:
            values[spec.name] = spec.default_factory()
        elif spec.default is not MISSING:
            values[spec.name] = spec.default
        else:
            raise TypeError(f"__init__() missing 1 required argument: {spec.name!r}")
    return values


def _lazy_init(self: Any, *args: Any, **kwargs: Any) -> None:
    owner = next(k for k in type(self).__mro__ if "__record_fields__" in k.__dict__)
    built = owner.__dict__.get("__record_built__", 0) + 1
    if built >= _COMPILE_AFTER:
        _compile_init(owner)(self, *args, **kwargs)
        return
    self.__dict__.update(_bind(owner.__dict__["__record_fields__"], args, kwargs))
    setattr(owner, "__record_built__", built)  # noqa: B010


def _repr(self: Any) -> str:
    shown = ", ".join(f"{s.name}={self.__dict__[s.name]!r}" for s in self.__record_fields__)
    return f"{type(self).__qualname__}({shown})"


def _key(obj: Any) -> Tuple[Any, ...]:
    values = obj.__dict__
    return tuple(values[name] for name in obj.__record_compared__)


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        return _key(self) == _key(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(_key(self))


def _setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r} of a frozen record")


def _delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r} of a frozen record")


# --- a compact, type-free encoding for caches ---------------------------------------------
#
# Caches store records as plain JSON data that decodes without evaluating type hints or
# running __init__: a record is {"ClassName": [values in field order]}, a tuple a list.
# Contract records hold only records, tuples, strings, numbers, booleans and None, so a
# dict is always a record and a list always a tuple.


def encode(value: Any) -> Any:
    """``value`` (records, tuples, scalars) as plain JSON data for :func:`decode`."""
    specs = getattr(value, "__record_fields__", None)
    if specs is not None and not isinstance(value, type):
        values = value.__dict__
        return {type(value).__name__: [encode(values[s.name]) for s in specs]}
    if isinstance(value, (tuple, list)):
        return [encode(item) for item in value]
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise TypeError(f"cannot encode {type(value).__name__} {value!r}")


def decode(data: Any, classes: Mapping[str, type]) -> Any:
    """The value :func:`encode` gave ``data`` for; records only of ``classes`` (by name).

    ValueError when ``data`` does not fit: an unknown class or a wrong number of fields.
    """
    if isinstance(data, list):
        return tuple(decode(item, classes) for item in data)
    if isinstance(data, dict):
        if len(data) != 1:
            raise ValueError("a record is a one-key object")
        ((name, values),) = data.items()
        cls = classes.get(name)
        if cls is None or not isinstance(values, list):
            raise ValueError(f"not a known record: {name!r}")
        specs = cls.__dict__["__record_fields__"]
        if len(values) != len(specs):
            raise ValueError(f"{name}: {len(values)} values for {len(specs)} fields")
        obj: Any = object.__new__(cls)
        obj.__dict__.update(
            (spec.name, decode(item, classes)) for spec, item in zip(specs, values))
        return obj
    return data


def decode_as(data: Any, classes: Mapping[str, type], expected: type[T]) -> Optional[T]:
    """:func:`decode` for a cache reader: the ``expected`` record, or None when ``data`` is
    not one (anything that does not fit is a miss, never an error)."""
    try:
        value = decode(data, classes)
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, expected) else None


def layout(classes: Mapping[str, type]) -> str:
    """The names and fields of ``classes``: part of a cache key, so that an entry written by
    an hpcrun whose records had other fields is never decoded."""
    return ";".join(f"{name}({','.join(f.name for f in fields(cls))})"
                    for name, cls in sorted(classes.items()))
