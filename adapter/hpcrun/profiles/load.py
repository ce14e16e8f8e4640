"""Load a site profile from TOML into the frozen dataclasses of :mod:`hpcrun.profiles.model`.

The conversion is generic: it walks the dataclass fields and their type hints, so the
format is defined once (in ``model.py``).  Every problem becomes a :class:`ProfileError`
(a :class:`~hpcrun.errors.ConfigError`) naming the file, the line when it can be found,
the key path (``binds[2].source``) and, for unknown keys and values, the closest valid
name.  This module is on the launch path: it imports only the standard library.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from hpcrun import records
from hpcrun.errors import ConfigError
from hpcrun.profiles.model import RECORDS, SCHEMA_VERSION, Profile

# typing is for type checkers only: importing it at run time costs every call ~5 ms.  Only
# parsing a profile (a cache miss) looks at type hints, through the helpers below.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Sequence


def _origin(tp: Any) -> Any:
    import typing

    return typing.get_origin(tp)


def _args(tp: Any) -> Any:
    import typing

    return typing.get_args(tp)


def _is_union(tp: Any) -> bool:
    import typing

    return typing.get_origin(tp) is typing.Union


def _toml() -> Any:
    """The TOML parser (tomllib, or tomli before Python 3.11), imported when first needed:
    a launch whose profile text was parsed before reads the result from the cache."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python < 3.11 only
        import tomli as tomllib
    return tomllib


class ProfileError(ConfigError):
    """A site profile could not be loaded.

    ``file`` is the profile path (or ``<string>``), ``line`` the 1-based line number or 0
    when unknown, ``key`` the key path (``mpi.family``, ``binds[2].source``) or "".
    """

    def __init__(self, message: str, hint: str = "", *, file: str = "", line: int = 0,
                 key: str = "") -> None:
        super().__init__(message, hint)
        self.file = file
        self.line = line
        self.key = key


# --- type introspection (cached: the hints of a class never change) -------------------

_HINTS: Dict[type, Dict[str, Any]] = {}


def field_types(cls: type) -> Dict[str, Any]:
    """The evaluated type hints of a profile dataclass (cached)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = records.type_hints(cls)
        _HINTS[cls] = hints
    return hints


def public_fields(cls: type) -> List[records.Field]:
    """The fields of a profile dataclass that appear in TOML (not the internal ``source``)."""
    return [f for f in records.fields(cls) if not f.metadata.get("internal")]


def unwrap_optional(tp: Any) -> Any:
    """``Optional[X]`` -> ``X``; any other type unchanged (TOML has no null)."""
    if _is_union(tp):
        args = [a for a in _args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def is_mapping_tuple(tp: Any) -> bool:
    """True for ``Tuple[Tuple[str, X], ...]``: a TOML table keyed by name."""
    if _origin(tp) is not tuple:
        return False
    args = _args(tp)
    if len(args) != 2 or args[1] is not Ellipsis:
        return False
    inner = args[0]
    return _origin(inner) is tuple and _args(inner)[:1] == (str,) \
        and len(_args(inner)) == 2


def describe_type(tp: Any) -> str:
    """How a type reads in an error message ("an array of strings")."""
    tp = unwrap_optional(tp)
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if records.is_record(tp):
        return "a table"
    if is_mapping_tuple(tp):
        return "a table of tables"
    if _origin(tp) is tuple:
        item = _args(tp)[0]
        if records.is_record(item):
            return "an array of tables"
        return "an array of " + describe_type(item).split(" ", 1)[1] + "s"
    return str(tp)


def _toml_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time" if value is not None else "nothing"


# --- locating keys in the text, only when an error is reported -------------------------

# Compiled at first use (re's cache): only a profile with a mistake needs line numbers.
_HEADER = r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?"
_KEY = r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')\s*(?:\.|=)"


def _split_dotted(text: str) -> List[str]:
    parts = []
    for piece in re.findall(r"\"[^\"]*\"|'[^']*'|[^.]+", text):
        piece = piece.strip()
        if piece[:1] in "\"'":
            piece = piece[1:-1]
        parts.append(piece)
    return parts


def key_lines(text: str) -> Dict[str, int]:
    """Map key paths (``mpi.family``, ``binds[1].source``) to the line that defines them.

    A light scan of table headers and ``key =`` lines, good enough to point at the culprit;
    keys inside inline tables map to the line of their enclosing key.
    """
    lines: Dict[str, int] = {}
    current = ""
    counts: Dict[str, int] = {}
    in_multiline = False
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                in_multiline = False
            continue
        header = re.match(_HEADER, line)
        if header:
            name = ".".join(_split_dotted(header.group(2)))
            if header.group(1) == "[[":
                index = counts.get(name, 0)
                counts[name] = index + 1
                current = f"{name}[{index}]"
            else:
                current = name
            lines.setdefault(current, number)
            continue
        key = re.match(_KEY, line)
        if key:
            name = ".".join(_split_dotted(line.split("=", 1)[0]))
            path = f"{current}.{name}" if current else name
            lines.setdefault(path, number)
            if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                in_multiline = True
    return lines


def _locate(text: str, key: str) -> int:
    if not text or not key:
        return 0
    table = key_lines(text)
    probe = key
    while probe:
        if probe in table:
            return table[probe]
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return 0


# --- conversion ------------------------------------------------------------------------


class _Context:
    """What error messages need: the file name and its text."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.text = text

    def error(self, key: str, message: str, hint: str = "") -> ProfileError:
        line = _locate(self.text, key)
        where = f"{self.file}:{line}" if line else self.file
        prefix = f"{where}: {key}: " if key else f"{where}: "
        return ProfileError(prefix + message, hint, file=self.file, line=line, key=key)


def _suggest(word: str, candidates: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _convert(value: Any, tp: Any, path: str, choices: Sequence[str], ctx: _Context) -> Any:
    tp = unwrap_optional(tp)
    if records.is_record(tp):
        if not isinstance(value, dict):
            raise ctx.error(path, f"expected a table, got {_toml_kind(value)}")
        return _build(tp, value, path, ctx)
    if is_mapping_tuple(tp):
        if not isinstance(value, dict):
            raise ctx.error(path, f"expected a table of tables, got {_toml_kind(value)}")
        item_type = _args(_args(tp)[0])[1]
        items = []
        for name, sub in value.items():
            sub_path = _join(path, name)
            if choices and name not in choices:
                hint = _suggest(name, choices) or f"allowed: {', '.join(choices)}"
                raise ctx.error(sub_path, f"unknown name '{name}'", hint)
            items.append((name, _convert(sub, item_type, sub_path, (), ctx)))
        return tuple(items)
    if _origin(tp) is tuple:
        if not isinstance(value, list):
            raise ctx.error(path, f"expected {describe_type(tp)}, got {_toml_kind(value)}")
        item_type = _args(tp)[0]
        return tuple(_convert(item, item_type, f"{path}[{index}]", choices, ctx)
                     for index, item in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ctx.error(path, f"expected true or false, got {_toml_kind(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(path, f"expected an integer, got {_toml_kind(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ctx.error(path, f"expected a string, got {_toml_kind(value)}")
        if choices and value not in choices:
            hint = _suggest(value, choices)
            allowed = "allowed: " + ", ".join(repr(c) for c in choices)
            raise ctx.error(path, f"invalid value {value!r}",
                            f"{hint} {allowed}" if hint else allowed)
        return value
    raise ctx.error(path, f"unsupported field type {tp!r}")  # pragma: no cover - model bug


def _build(cls: type, table: Mapping[str, Any], path: str, ctx: _Context) -> Any:
    fields = public_fields(cls)
    names = [f.name for f in fields]
    for key in table:
        if key not in names:
            hint = _suggest(key, names) or f"valid keys here: {', '.join(names)}"
            raise ctx.error(_join(path, key), f"unknown key '{key}'", hint)
    hints = field_types(cls)
    kwargs = {}
    for f in fields:
        if f.name in table:
            sub_path = _join(path, f.name)
            try:
                kwargs[f.name] = _convert(table[f.name], hints[f.name], sub_path,
                                          f.metadata.get("choices", ()), ctx)
            except ProfileError as error:
                if error.key == sub_path and not error.hint and f.metadata.get("example"):
                    error.hint = f"example: {f.name} = {_example(f)}"
                raise
        elif f.default is records.MISSING and f.default_factory is records.MISSING:
            where = f"in [{path}]" if path else "at the top level"
            raise ctx.error(path, f"missing required key '{f.name}' {where}",
                            f"add: {f.name} = {_example(f)}")
    return cls(**kwargs)


def _example(f: records.Field) -> str:
    import json

    example = f.metadata.get("example")
    if isinstance(example, dict):
        return "{ ... }"
    return json.dumps(example)


def profile_from_dict(data: Mapping[str, Any], file: str = "<string>", text: str = "") -> Profile:
    """Build a :class:`Profile` from parsed TOML (a dict), checking keys, types and values.

    ``file`` and ``text`` only improve error messages (file:line).
    """
    ctx = _Context(file, text)
    if "schema" not in data:
        raise ctx.error("", f"missing 'schema = {SCHEMA_VERSION}' at the top",
                        f"add the line 'schema = {SCHEMA_VERSION}' before any table")
    schema = data["schema"]
    if isinstance(schema, bool) or schema != SCHEMA_VERSION:
        raise ctx.error("schema", f"unsupported profile format version {schema!r}",
                        f"this hpcrun reads schema = {SCHEMA_VERSION}; upgrade hpcrun or "
                        "convert the profile")
    profile = _build(Profile, data, "", ctx)
    return records.replace(profile, source=file)


def build_record(cls: type, data: Mapping[str, Any], file: str, text: str) -> Any:
    """Any record of the TOML formats (site profile, job file) from parsed TOML, checked the
    same way: unknown keys, types, allowed values, required keys; errors name ``file``, the
    line found in ``text`` and the key path."""
    return _build(cls, data, "", _Context(file, text))


def located_error(file: str, text: str, key: str, message: str, hint: str = "") -> ProfileError:
    """A :class:`ProfileError` at ``key`` of a TOML file (``file:line: key: message``), for
    checks made after loading."""
    return _Context(file, text).error(key, message, hint)


def parse_toml(text: str, file: str) -> Dict[str, Any]:
    """The TOML document ``text`` as a dict (ProfileError with file:line:column)."""
    return _parse(text, file)


def loads_profile(text: str, file: str = "<string>") -> Profile:
    """Parse profile TOML text; ``file`` names it in error messages."""
    return profile_from_dict(_parse(text, file), file, text)


def _parse(text: str, file: str) -> Dict[str, Any]:
    """The TOML document ``text`` as a dict; ProfileError (file:line:column) when invalid."""
    tomllib = _toml()
    try:
        data: Dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        found = re.search(r"\(at line (\d+), column (\d+)\)", message)
        line = int(found.group(1)) if found else 0
        detail = re.sub(r"\s*\(at line \d+, column \d+\)", "", message)
        where = f"{file}:{line}:{found.group(2)}" if found else file
        raise ProfileError(f"{where}: invalid TOML: {detail}",
                           "fix the syntax (strings need double quotes, tables [name], "
                           "arrays of tables [[name]])", file=file, line=line) from None
    except RecursionError:  # arrays or inline tables nested thousands of levels deep
        raise ProfileError(f"{file}: invalid TOML: values nested too deeply to read",
                           "a site profile nests tables a few levels deep: look for a run of "
                           "'[' or '{' that never closes", file=file) from None
    return data


def _load_cached(raw: bytes, text: str, file: str) -> Profile:
    """:func:`loads_profile`, its result remembered in the facts cache.

    Keyed by the SHA-256 of the file's bytes, the Python version (whose TOML parser read
    it), hpcrun's version and the profile records' fields, an entry can never be stale.  A
    hit costs no TOML parsing and no checking: only profiles that passed every check are
    stored, never errors.  Anything wrong with the cache means parsing again.
    """
    try:
        from hpcrun import __version__
        from hpcrun.image.cache import FactsCache, sha256_hex

        cache = FactsCache()
        identity = f"{sys.version_info[:2]}{__version__}{records.layout(RECORDS)}"
        key = f"profile-{sha256_hex(identity.encode())}-{sha256_hex(raw)}"
        entry = cache.get(key)
    except (ConfigError, OSError, ValueError, TypeError):
        return loads_profile(text, file)
    cached = records.decode_as(entry.get("record"), RECORDS, Profile) if entry else None
    if cached is not None:
        return records.replace(cached, source=file)
    profile = loads_profile(text, file)
    try:
        cache.put(key, {"record": records.encode(records.replace(profile, source=""))})
    except (OSError, ValueError, TypeError):
        pass
    return profile


def load_profile(path: Path) -> Profile:
    """Read and check a site profile file; ``Profile.source`` is set to its path.

    Raises :class:`ProfileError` (a ConfigError) for unreadable files, malformed TOML,
    unknown keys, wrong types, invalid values and a missing or unsupported ``schema``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ProfileError(f"site profile {path} does not exist",
                           "check the path, or give a site name (see `hpcrun site list`)",
                           file=str(path)) from None
    except IsADirectoryError:
        raise ProfileError(f"site profile {path} is a directory, not a TOML file",
                           file=str(path)) from None
    except OSError as error:
        raise ProfileError(f"cannot read site profile {path}: {error.strerror}",
                           file=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ProfileError(f"{path}:{line}: not UTF-8 text", "TOML files must be UTF-8",
                           file=str(path), line=line) from None
    return _load_cached(raw, text, str(path))


def profile_to_dict(profile: Profile) -> Dict[str, Any]:
    """A plain, JSON-ready dict of a profile in field order (``launchers`` as a table).

    Stable: the same profile always gives the same dict; ``source`` comes last.
    """
    result = _to_plain(profile, Profile)
    result["source"] = profile.source
    return result


def _to_plain(value: Any, tp: Any) -> Any:
    tp = unwrap_optional(tp)
    if value is None:
        return None
    if records.is_record(tp):
        hints = field_types(tp)
        return {f.name: _to_plain(getattr(value, f.name), hints[f.name])
                for f in public_fields(tp)}
    if is_mapping_tuple(tp):
        item_type = _args(_args(tp)[0])[1]
        return {name: _to_plain(item, item_type) for name, item in value}
    if _origin(tp) is tuple:
        item_type = _args(tp)[0]
        return [_to_plain(item, item_type) for item in value]
    return value

