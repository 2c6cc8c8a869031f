"""Turn raw measurements into the summary, the targets, the figure and the markdown table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda import endpoint
from mnist_lambda.bench.profile import A, B, Profile


def summary(results: dict[str, Any], profile: Profile) -> dict[str, Any]:
    """Medians, percentiles and cost per configuration."""
    out: dict[str, Any] = {}
    ours_mb = results["memory_mb"][B]
    for name in (A, B):
        cold = results["cold"][name]
        per_size = {}
        for n in profile.sizes:
            calls = results["warm"][name][str(n)]
            fn_ms = [c["function_ms"] for c in calls if c["function_ms"] is not None]
            fn_s = float(np.median(fn_ms)) / 1000 if fn_ms else None
            cost = (
                endpoint.usd_per_million_predictions(fn_s, results["memory_mb"][name], n)
                if fn_s
                else None
            )
            cost_at_ours = endpoint.usd_per_million_predictions(fn_s, ours_mb, n) if fn_s else None
            per_size[str(n)] = {
                "latency_ms": {
                    k: v * 1000 if k != "n" else v
                    for k, v in endpoint.latency_summary([c["seconds"] for c in calls]).items()
                },
                "function_ms_p50": fn_s * 1000 if fn_s else None,
                "usd_per_million": cost,
                "usd_per_million_at_our_memory": cost_at_ours,
            }
        out[name] = {
            "cold_first_response_ms_p50": float(np.median([c["first_response_ms"] for c in cold])),
            "cold_init_ms_p50": float(np.median([c["init_ms"] or 0 for c in cold])),
            "cold_all_cold": all(c["cold"] for c in cold),
            "warm": per_size,
            "artifact_bytes": results["artifact_bytes"][name],
            "object_bytes": results["object_bytes"][name],
            "peak_mb": results["peak_mb"][name],
            "accuracy": results["accuracy"][name],
            "memory_mb": results["memory_mb"][name],
        }
    out["price"] = {
        "lambda_usd_per_gb_second": endpoint.LAMBDA_USD_PER_GB_SECOND,
        "lambda_usd_per_million_requests": endpoint.LAMBDA_USD_PER_MILLION_REQUESTS,
        "api_gateway_usd_per_million_requests": endpoint.APIGW_REST_USD_PER_MILLION_REQUESTS,
    }
    return out


def targets(results: dict[str, Any], profile: Profile) -> dict[str, Any]:
    """Ratios tutorial/ours against the issue's targets."""
    s = results["summary"]
    size = "2000" if "2000" in s[A]["warm"] else str(profile.sizes[-1])
    obj = str(profile.sizes[0])

    def ratio(a: float, b: float) -> float:
        return a / b if b else math.inf

    rows = {
        "cold_start": (
            ratio(s[A]["cold_first_response_ms_p50"], s[B]["cold_first_response_ms_p50"]),
            5.0,
        ),
        "cold_init": (ratio(s[A]["cold_init_ms_p50"], s[B]["cold_init_ms_p50"]), None),
        f"warm_p50_{size}_rows": (
            ratio(
                s[A]["warm"][size]["latency_ms"]["p50"], s[B]["warm"][size]["latency_ms"]["p50"]
            ),
            5.0,
        ),
        "model_artifact": (ratio(s[A]["artifact_bytes"], s[B]["artifact_bytes"]), 20.0),
        f"s3_object_{obj}_rows": (
            ratio(s[A]["object_bytes"][obj], s[B]["object_bytes"][obj]),
            8.0,
        ),
    }
    out = {
        name: {"ratio": round(r, 2), "target": t, "met": None if t is None else r >= t}
        for name, (r, t) in rows.items()
    }
    # Each A/B pair ran back to back: the median of the per-pair ratios is robust to drift.
    cold_pairs = [
        a["first_response_ms"] / b["first_response_ms"]
        for a, b in zip(results["cold"][A], results["cold"][B], strict=True)
    ]
    warm_pairs = [
        a["seconds"] / b["seconds"]
        for a, b in zip(results["warm"][A][size], results["warm"][B][size], strict=True)
    ]
    out["cold_start"]["pair_ratios"] = [round(r, 2) for r in cold_pairs]
    out["cold_start"]["pair_ratio_median"] = round(float(np.median(cold_pairs)), 2)
    out[f"warm_p50_{size}_rows"]["pair_ratio_median"] = round(float(np.median(warm_pairs)), 2)
    out["accuracy"] = {
        "tutorial": s[A]["accuracy"],
        "ours": s[B]["accuracy"],
        "met": s[B]["accuracy"] >= s[A]["accuracy"],
    }
    return out


def make_figure(results: dict[str, Any], profile: Profile, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["summary"]
    batch = results.get("batch")
    fig, axes = plt.subplots(1, 2 if batch else 1, figsize=(12 if batch else 6.5, 4.2))
    ax = axes[0] if batch else axes
    sizes = list(profile.sizes)
    for name, color in ((A, "tab:red"), (B, "tab:blue")):
        p50 = [s[name]["warm"][str(n)]["latency_ms"]["p50"] for n in sizes]
        p95 = [s[name]["warm"][str(n)]["latency_ms"]["p95"] for n in sizes]
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
    if batch:
        ax2 = axes[1]
        runs = batch["runs"]
        for threads, style in (("default", "o-"), (1, "s--")):
            mine = [r for r in runs if r["blas_threads"] == threads]
            if mine:
                label = "BLAS threads: " + ("machine default" if threads == "default" else "1")
                ax2.plot(
                    [r["instances"] for r in mine],
                    [r["rows_per_second"] for r in mine],
                    style,
                    label=label,
                )
        ax2.legend()
        ax2.set(
            xlabel="function instances (= client concurrency)",
            ylabel="rows per second",
            title=f"{batch['rows']:,}-row batch (ours), {results['machine']['cores']} cores",
            xticks=[r["instances"] for r in runs],
        )
        ax2.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict[str, Any], profile: Profile) -> str:
    """The results table (pasted into docs/performance.md)."""
    s, t, m = results["summary"], results["targets"], results["machine"]
    lines = [
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_gb']} GB; "
        f"{m['date_utc']}; profile `{profile.name}`; data {results['data']['source']} "
        f"({results['data']['train']:,} train / {results['data']['held_out']:,} held out).",
        "",
        "| | tutorial | ours | ratio (tutorial/ours) | target |",
        "|---|---:|---:|---:|---|",
    ]

    def row(label: str, a: str, b: str, r: str = "", target: str = "") -> None:
        lines.append(f"| {label} | {a} | {b} | {r} | {target} |")

    def mark(key: str) -> str:
        item = t[key]
        if item["target"] is None:
            return ""
        return f"≥{item['target']:g}x {'met' if item['met'] else '**missed**'}"

    row(
        "cold start: redeploy → first 200 (ms, p50)",
        f"{s[A]['cold_first_response_ms_p50']:,.0f}",
        f"{s[B]['cold_first_response_ms_p50']:,.0f}",
        f"{t['cold_start']['ratio']}x (pairs: {t['cold_start']['pair_ratio_median']}x)",
        mark("cold_start"),
    )
    row(
        "init duration reported by the emulator (ms, p50)",
        f"{s[A]['cold_init_ms_p50']:,.0f}",
        f"{s[B]['cold_init_ms_p50']:,.0f}",
        f"{t['cold_init']['ratio']}x",
    )
    for n in profile.sizes:
        wa, wb = s[A]["warm"][str(n)], s[B]["warm"][str(n)]
        key = f"warm_p50_{n}_rows"
        row(
            f"warm latency {n:,} rows, p50 / p95 (ms)",
            f"{wa['latency_ms']['p50']:,.0f} / {wa['latency_ms']['p95']:,.0f}",
            f"{wb['latency_ms']['p50']:,.0f} / {wb['latency_ms']['p95']:,.0f}",
            f"{wa['latency_ms']['p50'] / wb['latency_ms']['p50']:.1f}x"
            + (f" (pairs: {t[key]['pair_ratio_median']}x)" if key in t else ""),
            mark(key) if key in t else "",
        )
    row(
        "model artifact (bytes)",
        f"{s[A]['artifact_bytes']:,}",
        f"{s[B]['artifact_bytes']:,}",
        f"{t['model_artifact']['ratio']}x",
        mark("model_artifact"),
    )
    for n in profile.sizes:
        a, b = s[A]["object_bytes"][str(n)], s[B]["object_bytes"][str(n)]
        key = f"s3_object_{n}_rows"
        npy = results["npy_bytes"][str(n)]
        row(
            f"S3 object, {n:,} rows (bytes): ours .npz compressed [.npy]",
            f"{a:,}",
            f"{b:,} [{npy:,}]",
            f"{a / b:.1f}x [{a / npy:.3f}x]",
            mark(key) if key in t else "",
        )
    row(
        "peak memory, Max Memory Used of the environment (MB)",
        f"{s[A]['peak_mb'] or 0:,.0f}",
        f"{s[B]['peak_mb'] or 0:,.0f}",
        f"{(s[A]['peak_mb'] or 0) / (s[B]['peak_mb'] or 1):.1f}x",
    )
    row(
        f"accuracy on the {results['data']['held_out']:,} held-out rows",
        f"{s[A]['accuracy']:.4f}",
        f"{s[B]['accuracy']:.4f}",
        "",
        "equal or higher: " + ("met" if t["accuracy"]["met"] else "**missed**"),
    )
    row("MemorySize (MB)", f"{s[A]['memory_mb']:,}", f"{s[B]['memory_mb']:,}")
    for n in profile.sizes:
        ca, cb = s[A]["warm"][str(n)], s[B]["warm"][str(n)]
        if ca["usd_per_million"] and cb["usd_per_million"]:
            row(
                f"USD per million predictions, {n:,}-row requests (Lambda + API GW; "
                f"tutorial at our memory in brackets)",
                f"{ca['usd_per_million']['total']:.3f} "
                f"({ca['usd_per_million_at_our_memory']['total']:.3f})",
                f"{cb['usd_per_million']['total']:.3f}",
                f"{ca['usd_per_million']['total'] / cb['usd_per_million']['total']:.1f}x",
            )
    f = results["flops"]
    lines += [
        "",
        f"Predict step, {f['rows']:,} rows: {f['flops'] / 1e9:.2f} GFLOP in "
        f"{f['predict_ms_p50']:.1f} ms = {f['achieved_gflops']:.1f} GFLOP/s; this machine's "
        f"numpy sgemm: {f['sgemm_gflops_2048']:.1f} GFLOP/s at 2048³ "
        f"({f['share_of_sgemm_peak']:.0%} of it), {f['sgemm_gflops_same_shape']:.1f} GFLOP/s "
        f"at our distance-matmul shape (512x{results['profile']['n_components'] + 1} @ "
        f"{results['profile']['n_components'] + 1}x{results['data']['train']:,}; "
        f"{f['share_of_same_shape_sgemm']:.0%} of it).",
    ]
    if results.get("max_request"):
        mr = results["max_request"]
        lines.append(
            f"Largest request ours accepts ({mr['rows']:,} rows, {mr['object_bytes']:,} bytes): "
            f"{mr['seconds'] * 1000:,.0f} ms end to end, predict {mr['predict_ms']:,.0f} ms, "
            f"function peak {mr['peak_mb']:,.0f} MB."
        )
    if results.get("batch"):
        b = results["batch"]
        lines += [
            "",
            f"Batch of {b['rows']:,} rows (`predict-batch` logic, output_key to S3):",
            "",
            "| function instances | BLAS threads per function | rows/s (median) | runs, rows/s "
            "| chunks x rows | retries |",
            "|---:|---|---:|---|---|---:|",
        ]
        for r in b["runs"]:
            lines.append(
                f"| {r['instances']} | {r['blas_threads']} | {r['rows_per_second']:,.0f} | "
                f"{', '.join(f'{v:,.0f}' for v in r['rows_per_second_all'])} | "
                f"{r['chunks']} x {r['rows_per_chunk']:,} | {r['retries']} |"
            )
    if results.get("models"):
        from mnist_lambda.bench.models import markdown_table

        rows = results["models"]
        lines += [
            "",
            f"Every kind of model that can ship, each on a stack of its own at "
            f"{rows[0]['memory_mb']:,} MB (agreement: the endpoint's labels against the model's "
            "own in-process on the held-out rows; shipped: what the image adds to the base "
            "image):",
            "",
            markdown_table(rows),
        ]
    from mnist_lambda.bench.docker_rows import markdown_lines

    lines += markdown_lines(results)
    p = s["price"]
    lines += [
        "",
        f"Prices assumed: ${p['lambda_usd_per_gb_second']} per GB-second, "
        f"${p['lambda_usd_per_million_requests']} per million Lambda requests, "
        f"${p['api_gateway_usd_per_million_requests']} per million API Gateway REST requests "
        f"(us-east-1, x86). Durations are this machine's, not Lambda's.",
    ]
    return "\n".join(lines) + "\n"
