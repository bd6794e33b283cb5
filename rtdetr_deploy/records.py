"""Frozen dataclasses to and from JSON, driven by their type hints: one codec for every typed report.

A record is a frozen dataclass whose fields are JSON values, other records, tuples, ``dict[str, ...]`` of them, or
``X | None``. ``to_jsonable`` writes a record as a JSON object keyed by field name; ``from_jsonable`` reads it back
into the same types (lists into tuples, nested objects into records). Field metadata adjusts the mapping:

- ``key("delta_AP")``: the JSON key differs from the field's name;
- ``OPTIONAL``: a ``None`` value is left out of the JSON (a section that only some runs write; files written before
  the field existed read back as ``None``), so adding an optional field is one line;
- ``FLAT``: a ``dict[str, object]`` field whose items sit in the record's own JSON object (the keys no other field
  names are read back into it).

A record class may name read-only properties in ``DERIVED``: they are written (for readers of the file) and skipped
when reading.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["FLAT", "OPTIONAL", "from_jsonable", "key", "to_jsonable"]

OPTIONAL: Mapping[str, object] = types.MappingProxyType({"optional": True})
FLAT: Mapping[str, object] = types.MappingProxyType({"flat": True})


def key(name: str, *, optional: bool = False) -> Mapping[str, object]:
    """Field metadata: the field is ``name`` in JSON (and left out when ``None`` if ``optional``)."""
    return types.MappingProxyType({"key": name, "optional": optional})


def _key(field: dataclasses.Field) -> str:
    return str(field.metadata.get("key", field.name))


def to_jsonable(value: Any) -> Any:
    """``value`` as JSON-ready Python: records as dicts, tuples as lists, paths as strings, numpy scalars unboxed."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            if field.metadata.get("flat"):
                out.update(to_jsonable(item))
            elif item is not None or not field.metadata.get("optional"):
                out[_key(field)] = to_jsonable(item)
        for name in getattr(type(value), "DERIVED", ()):
            out[name] = to_jsonable(getattr(value, name))
        return out
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def _record(cls: type, data: Mapping[str, Any]) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    used, values, flat = set(getattr(cls, "DERIVED", ())), {}, None
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        if field.metadata.get("flat"):
            flat = field
        elif _key(field) in data:
            values[field.name] = from_jsonable(hints[field.name], data[_key(field)])
            used.add(_key(field))
    if flat is not None:
        values[flat.name] = {k: v for k, v in data.items() if k not in used}
    try:
        return cls(**values)
    except TypeError as exc:
        raise ValueError(f"{cls.__name__}: {exc}") from None


def from_jsonable(hint: Any, data: Any) -> Any:
    """``data`` (parsed JSON) as the type ``hint``: records, tuples, dicts, ``X | None``, paths and plain values.

    Raises:
        ValueError: a record's object lacks a required field or is not an object.
    """
    if dataclasses.is_dataclass(hint):
        return _record(hint, data)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        options = [a for a in args if a is not type(None)]
        return from_jsonable(options[0], data) if len(options) == 1 else data
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_jsonable(args[0], item) for item in data)
        return tuple(from_jsonable(a, item) for a, item in zip(args, data, strict=True))
    if origin in (dict, Mapping) and args:
        return {k: from_jsonable(args[1], v) for k, v in data.items()}
    if origin is list and args:
        return [from_jsonable(args[0], item) for item in data]
    if hint is Path:
        return Path(data)
    if hint is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    return data
