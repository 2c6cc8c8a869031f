"""A tune.json for people: the table, the recommendation sentence and the Power Tuning figure."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from mnist_lambda.storage import atomic_path
from mnist_lambda.tuning.recommend import lambda_cost, usable

DURATION_COLOR, COST_COLOR, PICK_COLOR = "tab:blue", "tab:orange", "tab:green"


def sections(doc: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``("ours", doc)`` and, if it was swept, ``("tutorial", doc["tutorial"])``."""
    if doc.get("results"):
        yield "ours", doc
    if doc.get("tutorial"):
        yield "tutorial", doc["tutorial"]


def table(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per variant and MemorySize (for pandas or :func:`table_text`)."""
    rows = []
    for name, section in sections(doc):
        picked = (section.get("recommendation") or {}).get("memory_mb")
        for r in section["results"]:
            cost = r.get("usd_per_million") or {}
            rows.append(
                {
                    "variant": name,
                    "memory_mb": r["memory_mb"],
                    "vcpus": round(r["vcpus"], 2),
                    "cold_start_s": r["cold_start_seconds"],
                    "init_ms": r["init_ms"],
                    "snapstart_cold_start_s": (r.get("snapstart") or {}).get("cold_start_seconds"),
                    "snapstart_restore_ms": (r.get("snapstart") or {}).get("restore_ms"),
                    "warm_p50_ms": _ms(r["warm_p50_seconds"]),
                    "warm_p95_ms": _ms(r["warm_p95_seconds"]),
                    "peak_mb": r["peak_memory_mb"],
                    "usd_per_million_x86_64": cost.get("x86_64", {}).get("lambda"),
                    "usd_per_million_arm64": cost.get("arm64", {}).get("lambda"),
                    "agreement": r["agreement"],
                    "recommended": r["memory_mb"] == picked,
                    "error": r["error"] or "",
                }
            )
    return rows


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def fmt(value: Any, spec: str = ".0f") -> str:
    """``value`` formatted with ``spec``, or ``-`` when there is none."""
    return "-" if value is None else format(value, spec)


def table_text(doc: Mapping[str, Any]) -> str:
    """The table as fixed-width text; ``*`` marks each variant's recommended setting."""
    head = (
        f"{'variant':>8} {'MB':>6} {'vCPU':>5} {'cold s':>7} {'init ms':>8} {'snap s':>7} "
        f"{'p50 ms':>7} "
        f"{'p95 ms':>7} {'peak MB':>8} {'$/M x86':>8} {'$/M arm':>8} {'agree':>7}"
    )
    lines = [head, "-" * len(head)]
    for row in table(doc):
        lines.append(
            f"{row['variant']:>8} {row['memory_mb']:>6} {row['vcpus']:>5.2f} "
            f"{fmt(row['cold_start_s'], '.2f'):>7} {fmt(row['init_ms'], '.0f'):>8} "
            f"{fmt(row['snapstart_cold_start_s'], '.2f'):>7} "
            f"{fmt(row['warm_p50_ms'], '.0f'):>7} {fmt(row['warm_p95_ms'], '.0f'):>7} "
            f"{fmt(row['peak_mb'], '.0f'):>8} "
            f"{fmt(row['usd_per_million_x86_64'], '.4f'):>8} "
            f"{fmt(row['usd_per_million_arm64'], '.4f'):>8} "
            f"{fmt(row['agreement'], '.2%'):>7}"
            + (" *" if row["recommended"] else "")
            + (f"  FAILED: {row['error'][:60]}" if row["error"] else "")
        )
    lines.append(
        "snap s: the cold start with SnapStart on (--snapstart; emulated restore); "
        "$/M: Lambda USD per million predictions at the warm p50 (arm64 at the same duration; "
        "API Gateway adds the same at every size)"
    )
    return "\n".join(lines)


def recommendation_text(doc: Mapping[str, Any]) -> str:
    """The recommendation as a sentence, with its rule."""
    rec = doc.get("recommendation") or {}
    if rec.get("memory_mb") is None:
        return f"no recommendation: {rec.get('error', 'no results')}"
    cost = rec["usd_per_million"]
    text = (
        f"recommended MemorySize: {rec['memory_mb']} MB (warm p50 "
        f"{rec['warm_p50_seconds'] * 1000:.0f} ms, ${cost['lambda']:.4f} Lambda + "
        f"${cost['api_gateway']:.4f} API Gateway per million predictions on x86_64)\n"
        f"rule: {rec['rule']}"
    )
    tutorial = (doc.get("tutorial") or {}).get("recommendation") or {}
    if tutorial.get("memory_mb") is not None:
        text += f"\nthe tutorial's deployment by the same rule: {tutorial['memory_mb']} MB"
    return text


def figure(doc: Mapping[str, Any]) -> Figure:
    """Warm p50 duration (ms, left axis) and Lambda cost per million predictions (x86_64, right
    axis) against MemorySize; the tutorial's lines dashed; the recommendation starred."""
    fig = Figure(figsize=(8.5, 4.8))
    ax = fig.subplots()
    cost_ax = ax.twinx()
    memories: set[int] = set()
    durations: list[float] = []
    for name, section in sections(doc):
        ok = usable(section["results"])
        tutorial = name == "tutorial"
        style = {"linestyle": "--" if tutorial else "-", "markerfacecolor": "white" if tutorial
                 else None}  # fmt: skip
        mem = [r["memory_mb"] for r in ok]
        memories |= set(mem)
        ms = [r["warm_p50_seconds"] * 1000 for r in ok]
        durations += ms
        ax.plot(mem, ms, marker="o", color=DURATION_COLOR, label=f"{name}: duration", **style)
        cost_ax.plot(
            mem, [lambda_cost(r) for r in ok], marker="s", color=COST_COLOR,
            label=f"{name}: cost", **style,
        )  # fmt: skip
    rec = doc.get("recommendation") or {}
    if rec.get("memory_mb") is not None:
        ax.axvline(rec["memory_mb"], color=PICK_COLOR, linestyle=":", linewidth=1.2)
        ax.plot(
            [rec["memory_mb"]], [rec["warm_p50_seconds"] * 1000], "*", markersize=16,
            color=PICK_COLOR, label=f"recommended: {rec['memory_mb']} MB",
        )  # fmt: skip
    if durations and max(durations) > 10 * min(durations):  # the tutorial's are far slower
        for axis in (ax.yaxis, cost_ax.yaxis):
            axis.axes.set_yscale("log")
            axis.set_major_formatter(FuncFormatter(_log_label))
            axis.set_minor_formatter(FuncFormatter(_log_label))
    ax.set_xticks(sorted(memories))
    ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel("MemorySize (MB)")
    ax.set_ylabel("warm duration, p50 (ms)", color=DURATION_COLOR)
    cost_ax.set_ylabel("USD per million predictions (Lambda, x86_64)", color=COST_COLOR)
    rows = (doc.get("settings") or {}).get("rows")
    ax.set_title(f"MemorySize sweep on the local stack, {rows:,} rows per request")
    handles = ax.get_legend_handles_labels()
    more = cost_ax.get_legend_handles_labels()
    # below the plot: inside, "best" weighs the duration axis only and covers cost points
    ax.legend(
        handles[0] + more[0], handles[1] + more[1], fontsize=8, frameon=False,
        loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3,
    )  # fmt: skip
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _log_label(value: float, _: object) -> str:
    """Plain numbers on a log axis, at 1, 2 and 5 of each decade only."""
    if value <= 0:
        return ""
    lead = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(lead, 6) in (1, 2, 5) else ""


def save_png(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` as PNG (atomically)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return Path(path)
