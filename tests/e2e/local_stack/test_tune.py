"""``mnist-lambda tune`` on the real local stack: a short sweep whose durations must follow the
CPU share Lambda gives each MemorySize (half a vCPU at 885 MB, one at 1,769 MB)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mnist_lambda import local_stack
from mnist_lambda.tuning import recommend, tune

ROWS = 20_000
"""Rows per request: the small model's call is CPU-bound, 250-450 ms at 1,769 MB, several CFS
periods (100 ms) long, so that where in a period a call starts weighs little on its duration
(at 8,000 rows, half a vCPU gave 2 or 3 periods for one: a bimodal ratio of 2.0 or 2.8)."""
WARM = 12
RESULT_KEYS = {
    "memory_mb", "vcpus", "rows", "error", "cold", "cold_start_seconds", "init_ms",
    "warm_calls", "warm_seconds", "warm_source", "warm_p50_seconds", "warm_p95_seconds",
    "warm_min_seconds", "peak_memory_mb", "usd_per_million", "agreement",
}  # fmt: skip

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="not root: the sandbox enforces no memory or CPU limit"
)


@pytest.fixture(scope="module")
def swept(tmp_path_factory, small_model_path: Path, unseen_pixels: np.ndarray) -> dict:
    out = tmp_path_factory.mktemp("tune")
    doc = tune.tune(
        model_path=small_model_path,
        pixels=unseen_pixels,
        out=out,
        memory=(885, 1769),
        warm=WARM,
        rows=ROWS,
        snapstart=True,
        progress=False,
    )
    limits = doc["machine"]["limits"]
    if not limits.startswith("enforced"):
        pytest.skip(limits)
    return doc


def test_tune_json_has_the_documented_keys(swept: dict) -> None:
    saved = json.loads(Path(swept["paths"]["tune_json"]).read_text())
    assert {"machine", "settings", "results", "recommendation", "paths"} <= set(saved)
    assert saved["settings"]["rows"] == ROWS and saved["settings"]["warm_calls"] == WARM
    assert [r["memory_mb"] for r in saved["results"]] == [885, 1769]
    for r in saved["results"]:
        assert set(r) >= RESULT_KEYS, RESULT_KEYS - set(r)
        assert r["error"] is None and r["cold"] is True and r["init_ms"] > 0
        assert r["warm_calls"] == WARM and r["warm_cold_calls"] == 0
        assert r["warm_source"] == "emulator function duration"
        assert 0 < r["warm_p50_seconds"] <= r["warm_p95_seconds"]
        assert r["usd_per_million"]["arm64"]["lambda"] < r["usd_per_million"]["x86_64"]["lambda"]
    assert Path(saved["paths"]["figure"]).stat().st_size > 10_000
    assert local_stack.read(Path(saved["paths"]["stacks"]["ours"])) is None  # stopped


def test_every_answer_is_the_models(swept: dict) -> None:
    assert [r["agreement"] for r in swept["results"]] == [1.0, 1.0]


def test_snapstart_cold_starts_are_restores_beside_the_inits(swept: dict) -> None:
    for r in swept["results"]:
        snap = r["snapstart"]
        assert snap["error"] is None and snap["agreement"] == 1.0
        assert snap["restore_ms"] > 0 and snap["cold_start_seconds"] > 0
        assert "emulated" in snap["label"]


def test_peak_memory_is_the_environments(swept: dict) -> None:
    for r in swept["results"]:
        assert r["peak_memory_source"] == "cgroup peak"
        assert 30 < r["peak_memory_mb"] < r["memory_mb"]


def test_recommendation_follows_the_rule(swept: dict) -> None:
    rec = swept["recommendation"]
    assert rec == recommend.recommend(swept["results"])
    assert rec["rule"] == recommend.RULE and rec["memory_mb"] in (885, 1769)


def _ratio(doc: dict) -> tuple[float, list[float], list[float]]:
    half, full = doc["results"]
    ratio = half["warm_p50_seconds"] / full["warm_p50_seconds"]
    return ratio, half["warm_seconds"], full["warm_seconds"]


def test_duration_follows_the_cpu_share(
    swept: dict, tmp_path: Path, small_model_path: Path, unseen_pixels: np.ndarray
) -> None:
    """At 885 MB (half a vCPU) a CPU-bound call takes about twice as long as at 1,769 MB.

    The p50 of calls several CFS periods long. The two settings are measured one after the
    other on a machine other processes share: one that loads a core during only one of the two
    phases skews the ratio, so a sweep out of range is measured once more, and the test fails
    only if both are (the ratio is 1 when the CPU share is not enforced)."""
    first = _ratio(swept)
    if 1.5 < first[0] < 2.6:
        return
    again = tune.tune(
        model_path=small_model_path,
        pixels=unseen_pixels,
        out=tmp_path,
        memory=(885, 1769),
        warm=WARM,
        rows=ROWS,
        progress=False,
    )
    second = _ratio(again)
    assert 1.5 < second[0] < 2.6, (first, second)


def test_cli_sweeps_the_tutorial_too_and_applies(
    tmp_path: Path, small_model_path: Path, mnist_xy, capsys
) -> None:
    """``mnist-lambda tune --run RUN --variant ours,tutorial --apply`` on a template's copy."""
    import shutil

    from repo_paths import TEMPLATE

    from mnist_lambda import cli
    from mnist_lambda.modeling.sampling import Split
    from mnist_lambda.template.reader import load_template

    x, y = mnist_xy
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    shutil.copy(small_model_path, run / "model" / "model.npz")
    Split(x[:2000], y[:2000], x[3000:3500], y[3000:3500]).save(run / "data")
    template = tmp_path / "template.yaml"
    shutil.copy(TEMPLATE, template)
    argv = ["tune", "--run", str(run), "--variant", "ours,tutorial", "--memory", "1024",
            "--warm", "2", "--rows", "300", "--apply", "--template", str(template),
            "-q"]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "recommended MemorySize: 1024 MB" in printed and "applied: MemorySize default" in printed
    )
    saved = json.loads((run / "tune" / "tune.json").read_text())
    assert [r["memory_mb"] for r in saved["results"]] == [1024]
    tutorial = saved["tutorial"]
    assert tutorial["memory_mb"] == [1024, 5000]  # the same list plus its own 5,000 MB
    assert [r["agreement"] for r in saved["results"] + tutorial["results"]] == [1.0] * 3
    assert tutorial["recommendation"]["rule"] == recommend.RULE
    assert load_template(template)["Parameters"]["MemorySize"]["Default"] == 1024
    for state_dir in saved["paths"]["stacks"].values():
        assert local_stack.read(Path(state_dir)) is None
