"""A what-if for people: the Markdown table and the figure, one row or bar group per rate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mnist_lambda.tuning.report import fmt

OUTCOMES = (
    ("served", "served (200)", "tab:green"),
    ("stage_429", "429 stage throttle", "tab:orange"),
    ("lambda_throttled_500", "500 Lambda throttled", "tab:red"),
    ("other_errors", "other errors", "tab:gray"),
)
"""A rate's outcomes as stacked: its key in the summary, its label, its colour."""


def table(result: Mapping[str, Any]) -> str:
    """The what-if as a Markdown table, one row per rate, with its settings above."""
    throttle = result.get("stage_throttle")
    stage = f"{throttle['rate']:g}/s, burst {throttle['burst']}" if throttle else "none"
    lines = [
        f"{result['environments']} environment(s) ({result['environments_source']}), "
        f"{result['memory_mb']} MB, stage throttle {stage}, {result['duration_s']:g} s per rate, "
        f"seed {result['seed']}",
        "",
        "| rate/s | sent | served | 429 stage | 500 Lambda | other | cold | p50 ms | p99 ms "
        "| fn p99 ms | USD/hour | envs needed (peak, Little) | stage admits |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    return "\n".join(lines + [_row(r) for r in result["rates"]])


def _row(r: Mapping[str, Any]) -> str:
    cost = r["cost_per_hour_usd"]
    need = r["environments_needed"]
    admits = r["stage_throttle"]["admits_rate"] if r["stage_throttle"] else True
    return (
        f"| {r['rate']:g} | {r['sent']} | {r['served']} | {r['stage_429']} "
        f"| {r['lambda_throttled_500']} | {r['other_errors']} | {r['cold_starts']} "
        f"| {fmt(r['latency_ms']['p50'])} | {fmt(r['latency_ms']['p99'])} "
        f"| {fmt(r['function_ms']['p99'])} | {fmt(cost and cost['total'], '.4f')} "
        f"| {need['recommended']} ({need['peak_in_flight']}, {need['littles_law']}) "
        f"| {'yes' if admits else 'no'} |"
    )


def figure(result: Mapping[str, Any]) -> Figure:
    """Per rate: stacked bars of served / stage 429 / Lambda 500 / other, and p50/p99 latency."""
    rows = result["rates"]
    labels = [f"{r['rate']:g}/s" for r in rows]
    fig = Figure(figsize=(11, 4.2))
    outcomes, latency = fig.subplots(1, 2)
    _outcome_bars(outcomes, rows, labels)
    outcomes.set_title(
        f"{result['environments']} environment(s), {result['duration_s']:g} s per rate"
    )
    _latency_lines(latency, rows, labels)
    throttle = result.get("stage_throttle")
    stage = f"stage {throttle['rate']:g}/s burst {throttle['burst']}" if throttle else ""
    latency.set_title(f"latency, {result['memory_mb']} MB {stage}".strip())
    fig.tight_layout()
    return fig


def _outcome_bars(ax: Axes, rows: Sequence[Mapping[str, Any]], labels: list[str]) -> None:
    """One stacked bar per rate: the requests of each outcome."""
    x = np.arange(len(rows))
    bottom = np.zeros(len(rows))
    for name, label, color in OUTCOMES:
        values = np.array([r[name] for r in rows], dtype=float)
        ax.bar(x, values, bottom=bottom, color=color, label=label)
        bottom += values
    ax.set(xticks=x, xticklabels=labels, xlabel="offered rate", ylabel="requests")
    ax.legend(fontsize=8)


def _latency_lines(ax: Axes, rows: Sequence[Mapping[str, Any]], labels: list[str]) -> None:
    """The served requests' p50 and p99 per rate, each p99 marked with the rate's cold starts."""
    x = np.arange(len(rows))
    for key, style in (("p50", "o-"), ("p99", "s--")):
        values = [r["latency_ms"][key] for r in rows]
        ax.plot(x, [np.nan if v is None else v for v in values], style, label=f"{key} latency")
    for i, r in enumerate(rows):
        p99 = r["latency_ms"]["p99"]
        if p99 is not None:
            ax.annotate(f"{r['cold_starts']} cold", (i, p99), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)  # fmt: skip
    ax.set(xticks=x, xticklabels=labels, xlabel="offered rate", ylabel="ms (client, served)")
    ax.margins(x=0.2)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
