"""``bench --readme``: this run's table in the README, between its bench markers."""

from __future__ import annotations

from pathlib import Path

from mnist_lambda.storage import atomic_write_text

README_BEGIN = "<!-- bench:begin (written by `mnist-lambda bench --readme`) -->"
README_END = "<!-- bench:end -->"


def update_readme(readme: Path, table_md: str) -> None:
    """Put ``table_md`` between the bench markers of ``readme`` (atomically)."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme}: no {README_BEGIN!r} ... {README_END!r} block")
    head = text[: start + len(README_BEGIN)]
    atomic_write_text(readme, f"{head}\n{table_md.strip()}\n{text[end:]}")
