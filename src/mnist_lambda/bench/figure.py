"""The benchmark's figure: warm latency against rows per request, and the batch's throughput
against function instances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mnist_lambda.bench.profile import A, B, Profile
from mnist_lambda.storage import atomic_path

COLORS = {A: "tab:red", B: "tab:blue"}
BLAS_STYLES = (("default", "o-"), (1, "s--"))


def latency_axes(ax: Axes, summary: dict[str, Any], sizes: list[int]) -> None:
    """Warm p50 and p95 per request size, both configurations, on log axes."""
    for name, color in COLORS.items():
        p50 = [summary[name]["warm"][str(n)]["latency_ms"]["p50"] for n in sizes]
        p95 = [summary[name]["warm"][str(n)]["latency_ms"]["p95"] for n in sizes]
        ax.plot(sizes, p50, "o-", color=color, label=f"{name} p50")
        ax.plot(sizes, p95, "x--", color=color, alpha=0.6, label=f"{name} p95")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="rows per request",
        ylabel="warm latency, ms (client side)",
        title="POST /predict, local stack",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()


def batch_axes(ax: Axes, batch: dict[str, Any], cores: int) -> None:
    """Rows per second against instances, one line per BLAS thread setting."""
    runs = batch["runs"]
    for threads, style in BLAS_STYLES:
        mine = [r for r in runs if r["blas_threads"] == threads]
        if mine:
            label = "BLAS threads: " + ("machine default" if threads == "default" else "1")
            x, y = [r["instances"] for r in mine], [r["rows_per_second"] for r in mine]
            ax.plot(x, y, style, label=label)
    ax.legend()
    ax.set(
        xlabel="function instances (= client concurrency)",
        ylabel="rows per second",
        title=f"{batch['rows']:,}-row batch (ours), {cores} cores",
        xticks=[r["instances"] for r in runs],
    )
    ax.grid(True, alpha=0.3)


def make_figure(results: dict[str, Any], profile: Profile, path: Path) -> None:
    """The latency panel, and the batch panel beside it when the batch ran; a PNG at ``path``."""
    batch = results.get("batch")
    fig = Figure(figsize=(12 if batch else 6.5, 4.2))
    axes = fig.subplots(1, 2) if batch else [fig.subplots()]
    latency_axes(axes[0], results["summary"], list(profile.sizes))
    if batch:
        batch_axes(axes[1], batch, results["machine"]["cores"])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
