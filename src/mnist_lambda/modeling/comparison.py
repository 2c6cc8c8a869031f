"""Compare fitted candidates: the table, a one-paragraph verdict and the figure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from mnist_lambda.modeling.fit_export import PREDICT_ROWS, CandidateResult

MAX_FOLDS = 3
"""Cross-validation folds of the compared candidates at most (the serving model keeps
``cv_folds``): enough to rank them, quick enough for the default run."""


def parity_text(result: CandidateResult) -> str:
    """The parity column: labels equal, and for ONNX the probabilities' largest difference (the
    tolerance is the export's, 1e-4). At most 50 characters up to 99,999 test rows: pandas cuts
    a longer text off with "..." in a notebook."""
    p = result.parity
    labels = f"{p['labels_equal']:,}/{p['rows_checked']:,} labels"
    if p.get("max_probability_difference") is None:
        return f"{labels} (numpy k-NN, not enforced)"
    status = "ok" if p["passed"] else "FAILED"
    return f"{status}: {labels}, max |Δp| {p['max_probability_difference']:.1e}"


def row(result: CandidateResult) -> dict[str, Any]:
    """One candidate's row of the comparison table."""
    r = result.report
    return {
        "model": result.name,
        "format": result.artifact.suffix.lstrip("."),
        "cv folds": len(r.cv_scores),
        "cv accuracy": round(r.cv_mean, 4) if r.cv_scores else "-",
        "test accuracy": round(r.test_accuracy, 4),
        "artifact bytes": r.artifact_bytes,
        "fit s": round(r.fit_seconds, 2),
        f"predict s ({PREDICT_ROWS:,} rows)": round(result.predict_1k_seconds, 4),
        "parity": parity_text(result),
    }


def rows(results: Iterable[CandidateResult]) -> list[dict[str, Any]]:
    """Rows of the candidate comparison table."""
    return [row(r) for r in results]


def verdict(
    results: Iterable[CandidateResult], serving: str, baseline_accuracy: float | None = None
) -> str:
    """One paragraph: the serving model's accuracy against the baseline and the best candidate."""
    results = list(results)
    by_name = {r.name: r for r in results}
    chosen = by_name[serving].report.test_accuracy
    best = max(results, key=lambda r: r.report.test_accuracy)
    lines = [f"serving model {serving!r}: test accuracy {chosen:.4f}"]
    if baseline_accuracy is not None:
        if chosen < baseline_accuracy:
            lines.append(
                f"WARNING: {serving!r} is less accurate than the baseline (tutorial k-NN, "
                f"{baseline_accuracy:.4f}) on this split"
            )
        else:
            lines.append(f"at least as accurate as the baseline ({baseline_accuracy:.4f})")
    if best.name != serving and best.report.test_accuracy > chosen:
        lines.append(
            f"most accurate candidate compared: {best.name!r} ({best.report.test_accuracy:.4f})"
        )
    return "; ".join(lines)


def figure(
    results: Iterable[CandidateResult],
    baseline_accuracy: float | None = None,
    serving: str | None = None,
) -> Figure:
    """Test accuracy against in-process predict time for 1,000 rows; marker area follows the
    artifact's size; the baseline's accuracy as a dashed line."""
    results = list(results)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    sizes = np.array([r.report.artifact_bytes for r in results], dtype=float)
    areas = 60 + 1500 * sizes / sizes.max() if sizes.size else sizes
    for r, area in zip(results, areas, strict=True):
        _plot_candidate(ax, r, area, is_serving=r.name == serving)
    if baseline_accuracy is not None:
        ax.axhline(baseline_accuracy, ls="--", color="grey", lw=1)
        ax.annotate(
            f"baseline (k-NN, raw pixels) {baseline_accuracy:.4f}",
            (0.01, baseline_accuracy),
            xycoords=("axes fraction", "data"),
            textcoords="offset points",
            xytext=(0, 4),
            fontsize=8,
            color="grey",
        )
    ax.set_xscale("log")
    ax.set(
        xlabel=f"predict time for {PREDICT_ROWS:,} rows, in process (ms, log scale)",
        ylabel="test accuracy",
        title="Serving candidates: accuracy, speed and artifact size (marker area)",
    )
    ax.margins(x=0.6, y=0.15)
    fig.tight_layout()
    return fig


def _plot_candidate(ax: Any, r: CandidateResult, area: float, is_serving: bool) -> None:
    """One marker (outlined for the serving model) and its label just right of its edge."""
    x, y = r.predict_1k_seconds * 1000, r.report.test_accuracy
    ax.scatter(
        x,
        y,
        s=area,
        alpha=0.55,
        edgecolors="black" if is_serving else "none",
        linewidths=2 if is_serving else 0,
    )
    name = f"{r.name} (serving)" if is_serving else r.name
    ax.annotate(
        f"{name}, {_human_bytes(r.report.artifact_bytes)}",
        (x, y),
        textcoords="offset points",
        xytext=(np.sqrt(area) / 2 + 4, 0),  # just right of the marker's edge
        va="center",
        fontsize=9,
    )


def _human_bytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"
