"""Typed sections of the run folder's JSON files: a dataclass in, a dataclass out.

A file (``run_state.json``, ``metrics.json``) is one JSON object; a section is a dataclass whose
fields stand under one key of it, or at its top level. Paths are written as strings and read
back as paths; nested dataclasses are rebuilt.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from mnist_lambda.storage import atomic_write_json, jsonable, read_json

T = TypeVar("T")


def dump(section: Any) -> dict[str, Any]:
    """A dataclass (nested ones included) as plain JSON values."""
    return json.loads(json.dumps(asdict(section), default=jsonable))


def load(kind: type[T], data: Mapping[str, Any] | None) -> T | None:
    """``kind`` from ``data``'s keys that are its fields; None when a required one is missing."""
    data = data or {}
    if any(_required(f) and f.name not in data for f in fields(kind)):  # type: ignore[arg-type]
        return None
    hints = typing.get_type_hints(kind)
    values = {}
    for f in fields(kind):  # type: ignore[arg-type]
        if f.name in data:
            values[f.name] = _typed(hints[f.name], data[f.name])
    return kind(**values)


def write(path: Path, key: str | None, section: Any) -> None:
    """Merge ``section`` into the JSON object in ``path`` (atomically): under ``key``, or its
    fields at the top level when ``key`` is None."""
    document = read_json(path)
    if key is None:
        document.update(dump(section))
    else:
        document[key] = dump(section)
    atomic_write_json(path, document)


def read(path: Path, key: str | None, kind: type[T]) -> T | None:
    """The ``kind`` section of the JSON object in ``path`` (see :func:`write`), or None."""
    document = read_json(path)
    return load(kind, document if key is None else document.get(key))


def _required(f: Any) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _typed(hint: Any, value: Any) -> Any:
    if hint is Path and value is not None:
        return Path(value)
    if isinstance(hint, type) and is_dataclass(hint) and isinstance(value, Mapping):
        return load(hint, value)
    return value
