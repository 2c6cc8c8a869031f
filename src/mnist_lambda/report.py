"""One HTML report of the executed notebooks of a run, figures embedded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from mnist_lambda.record import atomic_write_text


def write_html_report(notebooks: Sequence[Path], path: Path, title: str) -> Path:
    """Concatenate executed notebooks (those that exist) into one self-contained HTML page."""
    combined = nbformat.v4.new_notebook()
    combined.metadata["title"] = title
    for number, nb_path in enumerate(notebooks):
        if not Path(nb_path).exists():
            continue
        nb = nbformat.read(nb_path, as_version=4)
        combined.cells.append(nbformat.v4.new_markdown_cell(f"---\n*{Path(nb_path).name}*"))
        for cell in nb.cells:
            cell["id"] = f"n{number}-{cell.get('id', len(combined.cells))}"
            combined.cells.append(cell)
        combined.metadata.setdefault("kernelspec", nb.metadata.get("kernelspec", {}))
        combined.metadata.setdefault("language_info", nb.metadata.get("language_info", {}))
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(combined)
    return atomic_write_text(path, body)
