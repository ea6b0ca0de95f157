"""A small checker of JSON values against the JSON Schema subset an OpenAPI 3.1 document uses.

No JSON Schema library is a dependency of the project, and the status API's description uses only
this subset: `$ref` (into `#/components/...`), `type` (one or a list), `enum`, `const`,
`properties`, `required`, `additionalProperties`, `items`, `anyOf`/`oneOf`, `pattern`,
`minimum`/`maximum` and the `date`/`date-time` formats; so do the schemas `mynapoint schema`
prints. An unknown keyword fails loudly rather than passing silently.

`strict=True` also refuses object keys the schema does not describe (when it sets no
`additionalProperties`): the response must not carry undocumented fields.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_ANNOTATIONS = {"title", "description", "default", "discriminator", "examples", "format"}
_KNOWN = _ANNOTATIONS | {"$ref", "type", "enum", "const", "properties", "required",
                         "additionalProperties", "items", "anyOf", "oneOf", "pattern",
                         "minimum", "maximum"}


def resolve(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/"), f"only local references are supported: {ref}"
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _format_ok(fmt: str, value: str) -> bool:
    try:
        if fmt == "date":
            dt.date.fromisoformat(value)
        elif fmt == "date-time":
            return dt.datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False
    return True


def errors(value: Any, schema: dict[str, Any], doc: dict[str, Any], *, strict: bool = True,
           path: str = "$") -> list[str]:
    """What does not fit, as readable lines; [] when `value` matches `schema`."""
    unknown = set(schema) - _KNOWN
    assert not unknown, f"{path}: the checker does not know {sorted(unknown)}"
    if "$ref" in schema:
        return errors(value, resolve(doc, schema["$ref"]), doc, strict=strict, path=path)
    out: list[str] = []
    for key in ("anyOf", "oneOf"):
        if key in schema:
            fits = sum(not errors(value, s, doc, strict=strict, path=path) for s in schema[key])
            if fits == 0 or (key == "oneOf" and fits > 1):
                out.append(f"{path}: {fits} of the {key} alternatives fit {value!r:.80}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return out + [f"{path}: expected {types}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: {value!r} is not {schema['const']!r}")
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{path}: {value!r} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{path}: {value!r} is above the maximum {schema['maximum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if "format" in schema and not _format_ok(schema["format"], value):
            out.append(f"{path}: {value!r} is not a {schema['format']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                out.append(f"{path}: required key {name!r} missing")
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            if name in props:
                out += errors(item, props[name], doc, strict=strict, path=f"{path}.{name}")
            elif isinstance(extra, dict):
                out += errors(item, extra, doc, strict=strict, path=f"{path}.{name}")
            elif extra is False or (strict and extra is None and "properties" in schema):
                out.append(f"{path}: key {name!r} is not described")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += errors(item, schema["items"], doc, strict=strict, path=f"{path}[{i}]")
    return out


def response_schema(doc: dict[str, Any], path: str, status: int) -> dict[str, Any]:
    """The JSON schema of the `status` answer to GET `path` (an OpenAPI path template)."""
    return doc["paths"][path]["get"]["responses"][str(status)]["content"]["application/json"][
        "schema"
    ]


def assert_fits(value: Any, doc: dict[str, Any], path: str, status: int) -> None:
    problems = errors(value, response_schema(doc, path, status), doc)
    assert not problems, "\n".join(problems[:20])
