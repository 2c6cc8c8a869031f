"""The per-model tables of ``results.md``: every model through the local stack, and both images
built and served with Docker beside the emulator's rows for the same models."""

from __future__ import annotations

from typing import Any

MB = 1024 * 1024
EMULATOR_LABEL = "Docker-free emulator (local stack)"


def _agreement(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def models_table(rows: list[dict[str, Any]]) -> str:
    """The model comparison as a markdown table."""
    lines = [
        f"| model | cold start (ms, p50) | init (ms) | warm {rows[0]['rows']:,} rows p50 / p95 "
        "(ms) | accuracy | agreement | shipped MB (requirements + code + model) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        s = r["shipped_bytes"]
        lines.append(
            f"| {r['model']} | {r['cold_first_response_ms_p50']:,.0f} | "
            f"{r['cold_init_ms_p50']:,.0f} | {r['warm_ms_p50']:,.0f} / {r['warm_ms_p95']:,.0f} | "
            f"{r['accuracy']:.4f} | {_agreement(r['agreement_with_the_model'])} | "
            f"{s['total'] / MB:,.1f} ({s['requirements'] / MB:,.1f} + {s['code'] / MB:,.2f} + "
            f"{s['model'] / MB:,.2f}) |"
        )
    return "\n".join(lines)


def models_lines(results: dict[str, Any]) -> list[str]:
    """The model comparison's part of ``results.md``, if it ran."""
    if not (rows := results.get("models")):
        return []
    return [
        "",
        f"Every kind of model that can ship, each on a stack of its own at "
        f"{rows[0]['memory_mb']:,} MB (agreement: the endpoint's labels against the model's "
        "own in-process on the held-out rows; shipped: what the image adds to the base "
        "image):",
        "",
        models_table(rows),
    ]


def _emulator_row(e: dict[str, Any]) -> str:
    """A model comparison row in the Docker table's columns."""
    return (
        f"| {e['model']} | {EMULATOR_LABEL} | - | {e['shipped_bytes']['total'] / MB:,.1f} "
        f"(shipped: requirements + code + model) | {e['cold_first_response_ms_p50']:,.0f} "
        f"| {e['warm_ms_p50']:,.0f} / {e['warm_ms_p95']:,.0f} | {e['accuracy']:.4f} | "
        f"{_agreement(e['agreement_with_the_model'])} |"
    )


def docker_table(docker: dict[str, Any], emulator_rows: list[dict[str, Any]]) -> str:
    """The Docker rows, each beside the emulator's row for the same model when there is one."""
    n = docker["rows"][0]["rows"]
    lines = [
        "| model | path | image MiB | above base MiB (its non-empty layers, oldest first) | "
        f"cold start (ms, p50) | warm {n:,} rows p50 / p95 (ms) | accuracy | agreement |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    emulator = {r["format"]: r for r in emulator_rows}
    for r in docker["rows"]:
        layers = " + ".join(
            f"{b / MB:,.1f}" if b >= MB / 10 else "<0.1" for b in r["layer_bytes_above_base"] if b
        )
        lines.append(
            f"| {r['model']} | {r['path']} | {r['image_bytes'] / MB:,.1f} | "
            f"{r['above_base_bytes'] / MB:,.1f} ({layers}) | "
            f"{r['cold_first_response_ms_p50']:,.0f} | {r['warm_ms_p50']:,.0f} / "
            f"{r['warm_ms_p95']:,.0f} | {r['accuracy']:.4f} | "
            f"{r['agreement_with_the_model']:.2%} |"
        )
        if (e := emulator.get(r["format"])) is not None and e["rows"] == n:
            lines.append(_emulator_row(e))
    return "\n".join(lines)


def docker_lines(results: dict[str, Any]) -> list[str]:
    """The Docker part of ``results.md``: the table, or why there is none."""
    docker = results.get("docker")
    if not docker:
        return []
    if "skipped" in docker:
        return ["", f"Docker rows (sam build + sam local start-api): {docker['skipped']}."]
    kind = "a labelled STAND-IN" if docker["base"]["stand_in"] else "AWS's image"
    return [
        "",
        f"The tutorial's image and ours, built by `sam build` on {docker['base']['tag']} "
        f"({kind}) and served by `sam local start-api` at {docker['memory_mb']:,} MB, beside the "
        "Docker-free emulator's rows for the same models (cold start: the first request to a "
        "new container; agreement: the endpoint's labels against the model's own in-process):",
        "",
        docker_table(docker, results.get("models") or []),
    ]
