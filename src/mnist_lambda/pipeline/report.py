"""What a run did: a short summary (terminal and HTML) and one HTML report of its notebooks.

The summary is read from the run folder (``metrics.json``, ``run_state.json``, ``run.json``), so
it says what the run measured, whichever steps ran.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from mnist_lambda.pipeline import metrics
from mnist_lambda.pipeline.metrics import (
    DataMetrics,
    EndpointMetrics,
    ModelMetrics,
    TrainingMetrics,
    TuneMetrics,
)
from mnist_lambda.pipeline.state import SampleState, read_state
from mnist_lambda.storage import atomic_write_text, read_json

KEY_FIGURES = {
    "confusion_matrices": "Confusion matrices of both models (test set)",
    "endpoint_vs_notebook": "Endpoint vs notebook predictions",
}


def fallback_warning(run_dir: Path) -> str:
    """A WARNING line when ``data_source=auto`` fell back to the 5,000-digit sample, else ""."""
    sample = read_state(run_dir, SampleState)
    if sample is None or not sample.fell_back:
        return ""
    return (
        "WARNING: data_source=auto fell back to the 5,000-digit MNIST sample instead of OpenML; "
        "pass -p data_source openml or idx:DIR for the full data"
    )


def _accuracy(model: ModelMetrics) -> str:
    cv = f", CV {model.cv_mean:.4f} ± {model.cv_std:.4f}" if model.cv_scores else ""
    return f"{model.test_accuracy:.4f}{cv}"


def _data_rows(data: DataMetrics) -> list[tuple[str, str]]:
    return [
        ("data", f"{data.data_source_used} (asked: {data.data_source})"),
        ("train / test", f"{data.n_train:,} / {data.n_test:,} digits"),
    ]


def _training_rows(training: TrainingMetrics) -> list[tuple[str, str]]:
    serving = training.serving
    return [
        ("baseline test accuracy", _accuracy(training.baseline)),
        ("serving test accuracy", _accuracy(serving)),
        ("serving model", f"{training.serving_model} ({serving.format})"),
    ]


def _endpoint_rows(endpoint: EndpointMetrics) -> list[tuple[str, str]]:
    warm = endpoint.warm_latency_seconds
    init = endpoint.cold_start_init_ms
    return [
        (
            "endpoint agreement",
            f"{endpoint.agreement:.2%} of {endpoint.rows_per_request:,} rows "
            f"(accuracy {endpoint.accuracy:.4f}) at {endpoint.url}",
        ),
        (
            "endpoint latency",
            f"cold start {endpoint.cold_start_seconds:.2f} s"
            + (f" (init {init:.0f} ms)" if init else "")
            + f"; warm p50 {warm['p50']:.3f} s, p95 {warm['p95']:.3f} s",
        ),
    ]


def _tune_rows(tune: TuneMetrics) -> list[tuple[str, str]]:
    picked = tune.recommendation.get("memory_mb") if tune.recommendation else None
    if not picked:
        return []
    swept = "/".join(str(r["memory_mb"]) for r in tune.results)
    return [
        (
            "MemorySize pick",
            f"{picked:,} MB of {swept} (the cheapest within 10 % of the fastest; "
            "`mnist-lambda tune` sweeps more)",
        )
    ]


def summary_rows(run_dir: Path) -> list[tuple[str, str]]:
    """(label, value) rows: data, split, both models, the endpoint, status and timings."""
    run_dir = Path(run_dir)
    rows: list[tuple[str, str]] = [("run", run_dir.name)]
    if data := metrics.read(run_dir, DataMetrics):
        rows += _data_rows(data)
    if training := metrics.read(run_dir, TrainingMetrics):
        rows += _training_rows(training)
    if endpoint := metrics.read(run_dir, EndpointMetrics):
        rows += _endpoint_rows(endpoint)
    if tune := metrics.read(run_dir, TuneMetrics):
        rows += _tune_rows(tune)
    run = read_json(run_dir / "run.json")
    if timings := run.get("timings") or {}:
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        rows.append(("steps", f"{steps} (total {sum(timings.values()):.1f} s)"))
    if run.get("status"):
        rows.append(("status", run["status"]))
    return rows


def summary_text(run_dir: Path, report: Path | None = None) -> str:
    """The summary as aligned terminal lines, the fallback warning first when there is one."""
    rows = summary_rows(run_dir) + ([("report", str(report))] if report else [])
    width = max(len(label) for label, _ in rows)
    lines = [f"  {label:<{width}}  {value}" for label, value in rows]
    warning = fallback_warning(run_dir)
    return "\n".join(([warning] if warning else []) + lines)


def _anchor(nb_path: Path) -> str:
    return f"section-{Path(nb_path).stem}"


def summary_markdown(run_dir: Path, title: str, notebooks: Sequence[Path]) -> str:
    """The report's opening: title, warning, figures table, key figures, links to sections."""
    run_dir = Path(run_dir)
    parts = [f"# {html.escape(title)}"]
    if warning := fallback_warning(run_dir):
        parts.append(f'<p style="color:#b00020"><strong>{html.escape(warning)}</strong></p>')
    cells = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in summary_rows(run_dir)
    )
    parts.append(f"<table>{cells}</table>")
    for stem, caption in KEY_FIGURES.items():
        png = run_dir / "figures" / f"{stem}.png"
        if png.exists():
            data = base64.b64encode(png.read_bytes()).decode()
            parts.append(
                f"**{caption}**\n\n"
                f'<img src="data:image/png;base64,{data}" alt="{caption}" style="max-width:100%">'
            )
    links = "\n".join(f"- [{Path(nb).stem}](#{_anchor(nb)})" for nb in notebooks)
    parts.append(f"## Notebooks\n{links}")
    return "\n\n".join(parts)


def write_html_report(
    notebooks: Sequence[Path], path: Path, title: str, run_dir: Path | None = None
) -> Path:
    """One self-contained HTML page: the run's summary (with ``run_dir``), then the notebooks."""
    present = [Path(nb) for nb in notebooks if Path(nb).exists()]
    combined = nbformat.v4.new_notebook()
    combined.metadata["title"] = title
    if run_dir is not None:
        combined.cells.append(
            nbformat.v4.new_markdown_cell(summary_markdown(run_dir, title, present))
        )
    for number, nb_path in enumerate(present):
        nb = nbformat.read(nb_path, as_version=4)
        combined.cells.append(
            nbformat.v4.new_markdown_cell(
                f'<a id="{_anchor(nb_path)}"></a>\n\n---\n*{nb_path.name}*'
            )
        )
        for cell in nb.cells:
            cell["id"] = f"n{number}-{cell.get('id', len(combined.cells))}"
            combined.cells.append(cell)
        combined.metadata.setdefault("kernelspec", nb.metadata.get("kernelspec", {}))
        combined.metadata.setdefault("language_info", nb.metadata.get("language_info", {}))
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(combined)
    return atomic_write_text(path, body)
