"""``--apply``: the recommended MemorySize becomes the template's default, one line edited.

The ``Default:`` line of the ``MemorySize`` entry under ``Parameters:`` gets the new number;
every other byte of the file (comments, layout, line endings, a comment on that line) stays.
"""

from __future__ import annotations

import re
from pathlib import Path

from mnist_lambda.aws_limits import check_memory_size
from mnist_lambda.storage import atomic_path
from mnist_lambda.template import MEMORY_PARAMETER

PARAMETER = MEMORY_PARAMETER

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):")
_DEFAULT = re.compile(r"^(?P<head> +Default:[ \t]*)(?P<value>[^\s#]+)(?P<tail>.*)$", re.S)


class TemplateEditError(ValueError):
    """The template has no ``Parameters: MemorySize: Default: N`` line to edit."""


def _indent(line: str) -> int | None:
    """Indentation of a line that holds YAML content (None for blank and comment lines)."""
    stripped = line.strip()
    return None if not stripped or stripped.startswith("#") else len(line) - len(line.lstrip())


def default_line(lines: list[str], parameter: str = PARAMETER) -> int:
    """Index of the ``Default:`` line of ``parameter`` under the top-level ``Parameters:``."""
    in_parameters, param_indent = False, None
    for i, line in enumerate(lines):
        indent = _indent(line)
        if indent is None:
            continue
        key = _KEY.match(line)
        if indent == 0:
            in_parameters, param_indent = bool(key and key["key"] == "Parameters"), None
            continue
        if not in_parameters:
            continue
        if param_indent is not None and indent <= param_indent:
            param_indent = None  # left the parameter's block
        if param_indent is None:
            if key and key["key"] == parameter:
                param_indent = indent
            continue
        if key and key["key"] == "Default" and _DEFAULT.match(line):
            return i
    raise TemplateEditError(f"no Parameters: {parameter}: Default: line")


def set_memory_default(template: Path, memory_mb: int) -> int:
    """Write ``memory_mb`` as the ``MemorySize`` parameter's default; return the old default."""
    check_memory_size(memory_mb)
    text = Path(template).read_bytes().decode("utf-8")  # bytes: CRLF line endings survive
    lines = re.findall(r"[^\n]*\n|[^\n]+$", text)
    try:
        i = default_line(lines)
    except TemplateEditError as exc:
        raise TemplateEditError(f"{template}: {exc}") from exc
    found = _DEFAULT.match(lines[i])
    assert found is not None
    value = found["value"]
    quote = value[0] if value[0] in "'\"" and value[-1] == value[0] else ""
    try:
        old = int(value.strip(quote) if quote else value)
    except ValueError:
        raise TemplateEditError(f"{template}: MemorySize default {value!r} is no number") from None
    lines[i] = f"{found['head']}{quote}{int(memory_mb)}{quote}{found['tail']}"
    with atomic_path(template) as tmp:
        tmp.write_bytes("".join(lines).encode("utf-8"))
    return old
