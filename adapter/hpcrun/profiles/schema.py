"""JSON Schema (draft 2020-12) and key reference generated from the profile records.

The schema lets editors (Taplo / Even Better TOML) complete and check profiles as they are
written; ``site-profiles/schema.json`` and the packaged ``hpcrun/data/profile-schema.json``
are this module's output, kept identical by a test.  ``python -m hpcrun.profiles.schema``
rewrites both (and the packaged copies of the bundled profiles) from a source checkout.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any, Dict, List

from hpcrun import records
from hpcrun.profiles.load import (
    describe_type,
    field_types,
    is_mapping_tuple,
    public_fields,
    unwrap_optional,
)
from hpcrun.profiles.model import SCHEMA_VERSION, Profile

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _default(f: records.Field) -> Any:
    if f.default is not records.MISSING:
        return f.default
    if f.default_factory is not records.MISSING:
        value = f.default_factory()
        if value is None or records.is_record(value):
            return records.MISSING
        return value
    return records.MISSING


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _type_schema(tp: Any, choices: typing.Sequence[str], defs: Dict[str, Any]) -> Dict[str, Any]:
    tp = unwrap_optional(tp)
    if records.is_record(tp):
        name = typing.cast(type, tp).__name__
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            defs[name] = _object_schema(tp, defs)
        return {"$ref": f"#/$defs/{name}"}
    if is_mapping_tuple(tp):
        item = _type_schema(typing.get_args(typing.get_args(tp)[0])[1], (), defs)
        if choices:
            return {"type": "object", "properties": {c: item for c in choices},
                    "additionalProperties": False}
        return {"type": "object", "additionalProperties": item}
    if typing.get_origin(tp) is tuple:
        return {"type": "array", "items": _type_schema(typing.get_args(tp)[0], choices, defs)}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is str:
        result: Dict[str, Any] = {"type": "string"}
        if choices:
            result["enum"] = list(choices)
        return result
    raise TypeError(f"no JSON Schema for {tp!r}")  # pragma: no cover - model bug


def _object_schema(cls: type, defs: Dict[str, Any]) -> Dict[str, Any]:
    hints = field_types(cls)
    properties: Dict[str, Any] = {}
    required: List[str] = []
    for f in public_fields(cls):
        prop = dict(_type_schema(hints[f.name], f.metadata.get("choices", ()), defs))
        if "$ref" in prop:
            prop = {"$ref": prop["$ref"]}
        prop["description"] = f.metadata.get("doc", "")
        default = _default(f)
        if default is not records.MISSING:
            prop["default"] = _jsonable(default)
        example = f.metadata.get("example")
        if example is not None:
            prop["examples"] = [example]
        if f.default is records.MISSING and f.default_factory is records.MISSING:
            required.append(f.name)
        properties[f.name] = prop
    result: Dict[str, Any] = {
        "type": "object",
        "description": (cls.__doc__ or "").strip(),
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        result["required"] = required
    return result


def build_schema(cls: type = Profile, title: str = "hpcrun site profile",
                 version: int = SCHEMA_VERSION) -> Dict[str, Any]:
    """The JSON Schema of a site profile (or of another TOML format's top record, such as
    the job file's), as a dict."""
    defs: Dict[str, Any] = {}
    top = _object_schema(cls, defs)
    top["properties"]["schema"] = {"const": version,
                                   **{k: v for k, v in top["properties"]["schema"].items()
                                      if k != "type"}}
    schema: Dict[str, Any] = {
        "$schema": DRAFT,
        "title": title,
        **top,
        "$defs": dict(sorted(defs.items())),
    }
    return schema


def schema_text() -> str:
    """The JSON Schema as the text of ``schema.json`` (stable: 2-space indent, newline)."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


def job_schema_text() -> str:
    """The JSON Schema of a job file (``hpcrun.toml``) as the text of ``job-schema.json``."""
    from hpcrun.profiles.job import JOB_SCHEMA_VERSION, Job

    schema = build_schema(Job, "hpcrun job file (hpcrun.toml)", JOB_SCHEMA_VERSION)
    threads = schema["properties"]["threads"]
    threads.pop("type", None)  # a number (threads = 4) or a string ("4", "auto", "off")
    threads["anyOf"] = [{"type": "integer", "minimum": 1},
                        {"type": "string", "pattern": "^([1-9][0-9]*|auto|off)?$"}]
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def _sections() -> List[typing.Tuple[str, Any, bool]]:
    """(TOML name, dataclass, is an array of tables) for the top-level tables of a profile."""
    hints = field_types(Profile)
    result: List[typing.Tuple[str, Any, bool]] = []
    for f in public_fields(Profile):
        tp = unwrap_optional(hints[f.name])
        if records.is_record(tp):
            result.append((f.name, tp, False))
        elif is_mapping_tuple(tp):
            result.append((f"{f.name}.NAME", typing.get_args(typing.get_args(tp)[0])[1], False))
        elif typing.get_origin(tp) is tuple and records.is_record(typing.get_args(tp)[0]):
            result.append((f.name, typing.get_args(tp)[0], True))
    return result


def _is_table(tp: Any) -> bool:
    return records.is_record(tp) or is_mapping_tuple(tp) or (
        typing.get_origin(tp) is tuple and records.is_record(typing.get_args(tp)[0]))


def _md_value(value: Any) -> str:
    return "`" + json.dumps(_jsonable(value)) + "`"


def _md_rows(cls: type) -> List[str]:
    hints = field_types(cls)
    rows = []
    for f in public_fields(cls):
        tp = unwrap_optional(hints[f.name])
        if _is_table(tp):
            continue
        doc = f.metadata.get("doc", "").replace("|", "\\|")
        choices = f.metadata.get("choices", ())
        if choices:
            doc += " One of: " + ", ".join(f"`{c}`" for c in choices) + "."
        default = _default(f)
        shown = "required" if default is records.MISSING else _md_value(default)
        example = f.metadata.get("example")
        kind = describe_type(hints[f.name]).replace("true or false", "boolean")
        rows.append(f"| `{f.name}` | {kind} | {shown} | "
                    f"{_md_value(example) if example is not None else ''} | {doc} |")
    return rows


def reference_markdown() -> str:
    """The key reference of ``docs/site-profiles.md`` (between its generated markers)."""
    header = ["| key | type | default | example | meaning |", "|---|---|---|---|---|"]
    out = ["### Top level", "", *header, *_md_rows(Profile), ""]
    for name, cls, is_array in _sections():
        title = f"[[{name}]]" if is_array else f"[{name}]"
        out += [f"### `{title}`", "", (cls.__doc__ or "").strip(), "", *header, *_md_rows(cls), ""]
    return "\n".join(out)


BEGIN_MARK = "<!-- BEGIN KEY REFERENCE (generated by python -m hpcrun.profiles.schema) -->"
END_MARK = "<!-- END KEY REFERENCE -->"


def with_reference(document: str) -> str:
    """``document`` with the text between the key-reference markers regenerated."""
    start = document.find(BEGIN_MARK)
    end = document.find(END_MARK)
    if start < 0 or end < start:
        return document
    return (document[: start + len(BEGIN_MARK)] + "\n\n" + reference_markdown() + "\n"
            + document[end:])


def sync(repo: Path) -> List[Path]:
    """Rewrite the generated files of a source checkout; returns the files that changed.

    ``site-profiles/schema.json``, ``adapter/hpcrun/data/profile-schema.json``, the job
    file's ``adapter/hpcrun/data/job-schema.json``, the
    packaged copies ``adapter/hpcrun/data/site-profiles/*.toml`` of ``site-profiles/*.toml``
    and the key reference in ``docs/site-profiles.md``.
    """
    changed = []
    targets = {repo / "site-profiles" / "schema.json": schema_text(),
               repo / "adapter" / "hpcrun" / "data" / "profile-schema.json": schema_text(),
               repo / "adapter" / "hpcrun" / "data" / "job-schema.json": job_schema_text()}
    packaged = repo / "adapter" / "hpcrun" / "data" / "site-profiles"
    for source in sorted((repo / "site-profiles").glob("*.toml")):
        targets[packaged / source.name] = source.read_text(encoding="utf-8")
    docs = repo / "docs" / "site-profiles.md"
    if docs.exists():
        targets[docs] = with_reference(docs.read_text(encoding="utf-8"))
    for path, text in targets.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    wanted = {p.name for p in targets if p.parent == packaged}
    for stale in sorted(packaged.glob("*.toml")):
        if stale.name not in wanted:
            stale.unlink()
            changed.append(stale)
    return changed


if __name__ == "__main__":  # pragma: no cover - developer tool
    import sys

    root = Path(__file__).resolve().parents[3]
    for changed_path in sync(root):
        sys.stdout.write(f"wrote {changed_path}\n")
