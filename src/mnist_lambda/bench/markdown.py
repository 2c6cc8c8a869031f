"""``results.md``: the tutorial/ours table, the notes under it, and the batch, model and Docker
tables (pasted into docs/performance.md; ``bench --readme`` puts it in the README)."""

from __future__ import annotations

from typing import Any

from mnist_lambda.bench.model_tables import docker_lines, models_lines
from mnist_lambda.bench.profile import A, B, Profile
from mnist_lambda.template import AUTH_TYPES


def _row(label: str, a: str, b: str, ratio: str = "", target: str = "") -> str:
    return f"| {label} | {a} | {b} | {ratio} | {target} |"


def _mark(targets: dict[str, Any], key: str) -> str:
    """``≥5x met`` (or missed) for a target; empty for a ratio without one or no such key."""
    item = targets.get(key)
    if item is None or item["target"] is None:
        return ""
    return f"≥{item['target']:g}x {'met' if item['met'] else '**missed**'}"


def header(results: dict[str, Any], profile: Profile) -> list[str]:
    """The machine, the profile (and ours' API auth, when it has one) and the data; the
    table's head."""
    m, data = results["machine"], results["data"]
    auth = "" if profile.auth == "none" else f"; ours behind `{AUTH_TYPES[profile.auth]}`"
    return [
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_gb']} GB; "
        f"{m['date_utc']}; profile `{profile.name}`{auth}; data {data['source']} "
        f"({data['train']:,} train / {data['held_out']:,} held out).",
        "",
        "| | tutorial | ours | ratio (tutorial/ours) | target |",
        "|---|---:|---:|---:|---|",
    ]


def time_rows(s: dict[str, Any], t: dict[str, Any], profile: Profile) -> list[str]:
    """Cold start, init and warm latency per size."""
    rows = [
        _row(
            "cold start: redeploy → first 200 (ms, p50)",
            f"{s[A]['cold_first_response_ms_p50']:,.0f}",
            f"{s[B]['cold_first_response_ms_p50']:,.0f}",
            f"{t['cold_start']['ratio']}x (pairs: {t['cold_start']['pair_ratio_median']}x)",
            _mark(t, "cold_start"),
        ),
        _row(
            "init duration reported by the emulator (ms, p50)",
            f"{s[A]['cold_init_ms_p50']:,.0f}",
            f"{s[B]['cold_init_ms_p50']:,.0f}",
            f"{t['cold_init']['ratio']}x",
        ),
    ]
    for n in profile.sizes:
        wa, wb = s[A]["warm"][str(n)]["latency_ms"], s[B]["warm"][str(n)]["latency_ms"]
        key = f"warm_p50_{n}_rows"
        pairs = f" (pairs: {t[key]['pair_ratio_median']}x)" if key in t else ""
        rows.append(
            _row(
                f"warm latency {n:,} rows, p50 / p95 (ms)",
                f"{wa['p50']:,.0f} / {wa['p95']:,.0f}",
                f"{wb['p50']:,.0f} / {wb['p95']:,.0f}",
                f"{wa['p50'] / wb['p50']:.1f}x{pairs}",
                _mark(t, key),
            )
        )
    return rows


def byte_rows(results: dict[str, Any], profile: Profile) -> list[str]:
    """The model artifacts, the request objects per size and the peak memory."""
    s, t = results["summary"], results["targets"]
    rows = [
        _row(
            "model artifact (bytes)",
            f"{s[A]['artifact_bytes']:,}",
            f"{s[B]['artifact_bytes']:,}",
            f"{t['model_artifact']['ratio']}x",
            _mark(t, "model_artifact"),
        )
    ]
    for n in profile.sizes:
        a, b = s[A]["object_bytes"][str(n)], s[B]["object_bytes"][str(n)]
        npy = results["npy_bytes"][str(n)]
        rows.append(
            _row(
                f"S3 object, {n:,} rows (bytes): ours .npz compressed [.npy]",
                f"{a:,}",
                f"{b:,} [{npy:,}]",
                f"{a / b:.1f}x [{a / npy:.3f}x]",
                _mark(t, f"s3_object_{n}_rows"),
            )
        )
    peak_a, peak_b = s[A]["peak_mb"] or 0, s[B]["peak_mb"] or 0
    rows.append(
        _row(
            "peak memory, Max Memory Used of the environment (MB)",
            f"{peak_a:,.0f}",
            f"{peak_b:,.0f}",
            f"{peak_a / (s[B]['peak_mb'] or 1):.1f}x",
        )
    )
    return rows


def accuracy_and_cost_rows(results: dict[str, Any], profile: Profile) -> list[str]:
    """Accuracy, MemorySize and the cost of a million predictions per request size."""
    s, t = results["summary"], results["targets"]
    rows = [
        _row(
            f"accuracy on the {results['data']['held_out']:,} held-out rows",
            f"{s[A]['accuracy']:.4f}",
            f"{s[B]['accuracy']:.4f}",
            "",
            "equal or higher: " + ("met" if t["accuracy"]["met"] else "**missed**"),
        ),
        _row("MemorySize (MB)", f"{s[A]['memory_mb']:,}", f"{s[B]['memory_mb']:,}"),
    ]
    for n in profile.sizes:
        ca, cb = s[A]["warm"][str(n)], s[B]["warm"][str(n)]
        if ca["usd_per_million"] and cb["usd_per_million"]:
            a, b = ca["usd_per_million"]["total"], cb["usd_per_million"]["total"]
            rows.append(
                _row(
                    f"USD per million predictions, {n:,}-row requests (Lambda + API GW; "
                    f"tutorial at our memory in brackets)",
                    f"{a:.3f} ({ca['usd_per_million_at_our_memory']['total']:.3f})",
                    f"{b:.3f}",
                    f"{a / b:.1f}x",
                )
            )
    return rows


def flops_lines(results: dict[str, Any]) -> list[str]:
    """Our predict step's rate against this machine's sgemm."""
    f, c = results["flops"], results["profile"]["n_components"] + 1
    return [
        "",
        f"Predict step, {f['rows']:,} rows: {f['flops'] / 1e9:.2f} GFLOP in "
        f"{f['predict_ms_p50']:.1f} ms = {f['achieved_gflops']:.1f} GFLOP/s; this machine's "
        f"numpy sgemm: {f['sgemm_gflops_2048']:.1f} GFLOP/s at 2048³ "
        f"({f['share_of_sgemm_peak']:.0%} of it), {f['sgemm_gflops_same_shape']:.1f} GFLOP/s "
        f"at our distance-matmul shape (512x{c} @ {c}x{results['data']['train']:,}; "
        f"{f['share_of_same_shape_sgemm']:.0%} of it).",
    ]


def max_request_lines(results: dict[str, Any]) -> list[str]:
    """Our largest request, if it was measured."""
    if not (mr := results.get("max_request")):
        return []
    return [
        f"Largest request ours accepts ({mr['rows']:,} rows, {mr['object_bytes']:,} bytes): "
        f"{mr['seconds'] * 1000:,.0f} ms end to end, predict {mr['predict_ms']:,.0f} ms, "
        f"function peak {mr['peak_mb']:,.0f} MB."
    ]


def batch_lines(results: dict[str, Any]) -> list[str]:
    """The batch's table, if it ran."""
    if not (b := results.get("batch")):
        return []
    lines = [
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
    return lines


def price_lines(price: dict[str, Any]) -> list[str]:
    """The prices assumed."""
    return [
        "",
        f"Prices assumed: ${price['lambda_usd_per_gb_second']} per GB-second, "
        f"${price['lambda_usd_per_million_requests']} per million Lambda requests, "
        f"${price['api_gateway_usd_per_million_requests']} per million API Gateway REST requests "
        f"(us-east-1, x86). Durations are this machine's, not Lambda's.",
    ]


def markdown(results: dict[str, Any], profile: Profile) -> str:
    """The results table and everything under it."""
    lines = [
        *header(results, profile),
        *time_rows(results["summary"], results["targets"], profile),
        *byte_rows(results, profile),
        *accuracy_and_cost_rows(results, profile),
        *flops_lines(results),
        *max_request_lines(results),
        *batch_lines(results),
        *models_lines(results),
        *docker_lines(results),
        *price_lines(results["summary"]["price"]),
    ]
    return "\n".join(lines) + "\n"
