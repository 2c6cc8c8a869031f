"""``mnist-lambda tune`` without a stack: prices, the recommendation rule, ``--apply``'s text
edit, the run lookup and the shape of tune.json (the sweep itself faked)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from repo_paths import AUTH_TEMPLATE, TEMPLATE

from mnist_lambda import cli, pricing
from mnist_lambda.bench import head_to_head
from mnist_lambda.bench.prepare import Prepared
from mnist_lambda.bench.profile import Profile
from mnist_lambda.commands import bench as bench_command
from mnist_lambda.commands import tune as command
from mnist_lambda.local_stack import auth_start_kwargs
from mnist_lambda.template import edit as template
from mnist_lambda.template.reader import load_template
from mnist_lambda.tuning import recommend, report, sweep, tune, variants
from mnist_lambda.tuning.traffic import report as traffic_report
from mnist_lambda.tuning.traffic import run as traffic_run

# --- prices -------------------------------------------------------------------------------


def test_one_price_table_with_its_date_and_region() -> None:
    p = pricing.PRICES
    assert (p.region, p.checked) == ("us-east-1", "2026-11")
    assert p.lambda_usd_per_gb_second == {"x86_64": 0.0000166667, "arm64": 0.0000133334}
    assert (p.lambda_usd_per_million_requests, p.api_gateway_rest_usd_per_million_requests) == (
        0.20,
        3.50,
    )
    assert json.loads(json.dumps(p.as_dict()))["lambda_usd_per_gb_second"]["arm64"] == 0.0000133334
    assert p.api_gateway_rest_usd_per_million_requests == 3.50


def test_duration_is_billed_rounded_up_to_the_millisecond() -> None:
    assert pricing.billed_seconds(0.57) == 0.57  # 0.57 * 1000 is 570.0000000000001
    assert pricing.billed_seconds(0.1001) == 0.101
    assert pricing.billed_seconds(0.0004) == 0.001
    assert pricing.billed_seconds(0.0) == 0.0


def test_request_and_million_predictions_arithmetic() -> None:
    # 100 ms at 1,024 MB is 0.1 GB-s; plus $0.20 per million requests
    assert pricing.lambda_usd_per_request(0.1, 1024) == pytest.approx(0.1 * 0.0000166667 + 0.2e-6)
    assert pricing.lambda_usd_per_request(0.1, 1024, "arm64") == pytest.approx(
        0.1 * 0.0000133334 + 0.2e-6
    )
    # one second at 1,769 MB is 1769/1024 GB-s
    assert pricing.lambda_usd_per_request(1.0, 1769) == pytest.approx(
        1769 / 1024 * 0.0000166667 + 0.2e-6
    )
    # 2,000 rows per request: 500 requests per million predictions
    cost = pricing.usd_per_million_predictions(0.1, 1024, 2000, arch="arm64")
    assert cost["lambda"] == pytest.approx(500 * (0.1 * 0.0000133334 + 0.2e-6))
    assert cost["api_gateway"] == pytest.approx(500 * 3.5e-6)
    assert cost["total"] == pytest.approx(cost["lambda"] + cost["api_gateway"])
    assert pricing.usd_per_million_predictions(0.1, 1024, 2000, api_gateway=False)[
        "api_gateway"
    ] == (0.0)
    with pytest.raises(ValueError, match="unknown architecture"):
        pricing.lambda_usd_per_request(0.1, 1024, "mips")


def test_endpoint_keeps_its_signature_and_gains_arch() -> None:
    x86 = pricing.usd_per_million_predictions(0.1, 1024, 2000)
    assert x86 == pricing.usd_per_million_predictions(0.1, 1024, 2000)
    arm = pricing.usd_per_million_predictions(0.1, 1024, 2000, arch="arm64")
    assert arm["lambda"] < x86["lambda"] and arm["api_gateway"] == x86["api_gateway"]
    assert set(sweep.usd_per_million(0.1, 1024, 2000)) == {"x86_64", "arm64"}


# --- the recommendation rule --------------------------------------------------------------


def result(memory_mb: int, p50: float, rows: int = 1000, error: str | None = None) -> dict:
    """A hand-made sweep result."""
    return {
        "memory_mb": memory_mb,
        "warm_p50_seconds": None if error else p50,
        "usd_per_million": None if error else sweep.usd_per_million(p50, memory_mb, rows),
        "error": error,
    }


def test_cheapest_within_ten_percent_of_the_fastest() -> None:
    results = [
        result(512, 0.350),
        result(1024, 0.180),
        result(1769, 0.110),  # exactly 10 % slower than the fastest: still a candidate
        result(2048, 0.105),
        result(3008, 0.100),
    ]
    rec = recommend.recommend(results)
    assert rec["memory_mb"] == 1769 and rec["rule"] == recommend.RULE
    assert rec["fastest_memory_mb"] == 3008 and rec["candidates_mb"] == [1769, 2048, 3008]
    assert rec["usd_per_million"] == results[2]["usd_per_million"]["x86_64"]
    # 512 and 1024 MB are cheaper, but too slow: the rule never trades more than 10 %
    assert max(map(recommend.lambda_cost, results[:2])) < recommend.lambda_cost(results[2])
    assert "within 10 % of the fastest" in rec["rule"]


def test_just_over_ten_percent_is_out() -> None:
    rec = recommend.recommend([result(1769, 0.1101), result(3008, 0.100)])
    assert rec["memory_mb"] == 3008 and rec["candidates_mb"] == [3008]


def test_a_single_setting_is_recommended() -> None:
    rec = recommend.recommend([result(1024, 0.3)])
    assert rec["memory_mb"] == rec["fastest_memory_mb"] == 1024


def test_all_equal_durations_pick_the_smallest_memory() -> None:
    rec = recommend.recommend([result(m, 0.2) for m in (3008, 1024, 2048, 512)])
    assert rec["memory_mb"] == 512 and rec["candidates_mb"] == [512, 1024, 2048, 3008]


def test_a_cost_tie_goes_to_the_faster() -> None:
    # 1,000 MB x 110 ms and 1,100 MB x 100 ms: the same GB-seconds, the same bill
    slow, fast = result(1000, 0.110), result(1100, 0.100)
    assert recommend.lambda_cost(slow) == pytest.approx(recommend.lambda_cost(fast))
    assert recommend.recommend([slow, fast])["memory_mb"] == 1100
    assert recommend.recommend([fast, slow])["memory_mb"] == 1100


def test_failed_settings_are_never_recommended() -> None:
    rec = recommend.recommend([result(128, 0.01, error="HTTP 502 out of memory"), result(512, 1)])
    assert rec["memory_mb"] == 512
    with pytest.raises(ValueError, match="nothing to recommend"):
        recommend.recommend([result(128, 0, error="HTTP 502")])
    with pytest.raises(ValueError):
        recommend.recommend([])


def test_another_tolerance_or_arch_says_so_in_the_rule() -> None:
    rec = recommend.recommend([result(1769, 0.13), result(3008, 0.1)], tolerance=0.3, arch="arm64")
    assert rec["memory_mb"] == 1769 and "30 %" in rec["rule"] and "arm64" in rec["rule"]


# --- --apply: one line of the template ----------------------------------------------------


def memory_default(path: Path) -> Any:
    return load_template(path)["Parameters"]["MemorySize"]["Default"]


def test_apply_edits_only_the_memory_size_default(tmp_path: Path) -> None:
    copy = tmp_path / "template.yaml"
    shutil.copy(TEMPLATE, copy)
    before = copy.read_text().splitlines(keepends=True)
    was = memory_default(copy)
    new = 1024 if was != 1024 else 2048
    assert template.set_memory_default(copy, new) == was
    after = copy.read_text().splitlines(keepends=True)
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [(f"    Default: {was}\n", f"    Default: {new}\n")]
    assert memory_default(copy) == new
    parameters = load_template(copy)["Parameters"]
    assert parameters["Stage"]["Default"] == "dev"  # other defaults untouched
    assert "# 1769 MB is one full vCPU" in copy.read_text()  # comments kept
    assert TEMPLATE.read_text() == "".join(before)  # the real one untouched


def test_apply_keeps_comments_quotes_and_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    text = (
        "# head\r\n"
        "Parameters:\r\n"
        "  Other:\r\n"
        "    Type: Number\r\n"
        "    Default: 7\r\n"
        "  MemorySize:  # the function's memory\r\n"
        "    Type: Number\r\n"
        "    # Default: 128 (a comment, not the line)\r\n"
        '    Default: "1769"   # one vCPU\r\n'
        "Resources:\r\n"
        "  Fn:\r\n"
        "    Properties:\r\n"
        "      MemorySize: !Ref MemorySize\r\n"
        "      Default: 1\r\n"
    )
    path.write_bytes(text.encode())
    assert template.set_memory_default(path, 3008) == 1769
    assert path.read_bytes().decode() == text.replace('"1769"', '"3008"')


def test_apply_refuses_what_it_cannot_edit(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("Parameters:\n  Stage:\n    Default: dev\nResources:\n  MemorySize: 1\n")
    with pytest.raises(template.TemplateEditError, match="no Parameters: MemorySize: Default"):
        template.set_memory_default(path, 1024)
    with pytest.raises(ValueError, match="must be 128-10240 MB"):
        template.set_memory_default(path, 64)


# --- runs, parameters and the CLI ----------------------------------------------------------


def make_run(folder: Path, model: Path, x: np.ndarray, y: np.ndarray) -> Path:
    from mnist_lambda.modeling.sampling import Split

    (folder / "model").mkdir(parents=True)
    shutil.copy(model, folder / "model" / "model.npz")
    Split(x[:300], y[:300], x[300:400], y[300:400]).save(folder / "data")
    return folder


def test_latest_run_is_the_last_trained(tmp_path: Path, small_model_path, mnist_xy) -> None:
    with pytest.raises(tune.TuneError, match="mnist-lambda run --steps sample,train"):
        tune.latest_run(tmp_path)
    old = make_run(tmp_path / "old", small_model_path, *mnist_xy)
    new = make_run(tmp_path / "new", small_model_path, *mnist_xy)
    (tmp_path / "bench").mkdir()  # no model: not a run
    (tmp_path / "half" / "model").mkdir(parents=True)
    shutil.copy(small_model_path, tmp_path / "half" / "model" / "model.npz")  # no data
    os.utime(old / "model" / "model.npz", (1e9, 1e9))
    assert tune.latest_run(tmp_path) == new
    os.utime(new / "model" / "model.npz", (1e8, 1e8))
    assert tune.latest_run(tmp_path) == old


def test_memory_lists() -> None:
    assert tune.parse_memory("512, 1024,512") == (512, 1024)
    assert tune.parse_memory([1769]) == (1769,)
    for bad in ("", "12", "512,x", "20000"):
        with pytest.raises(ValueError):
            tune.parse_memory(bad)


def test_cli_options() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["tune"])
    assert args.memory == tune.DEFAULT_MEMORY and args.warm == 10 and args.rows == 1000
    assert args.variant == ("ours", "tutorial") and not args.apply and args.traffic is None
    args = parser.parse_args(
        ["tune", "--memory", "885,1769", "--variant", "ours", "--traffic", "2,8", "--duration",
         "5", "--warm", "3", "--rows", "50", "--apply", "--template", "t.yaml"]
    )  # fmt: skip
    assert args.memory == (885, 1769) and args.variant == ("ours",)
    assert args.traffic == (2.0, 8.0) and args.duration == 5.0 and args.template == Path("t.yaml")
    for bad in (["--variant", "theirs"], ["--memory", "64"], ["--warm", "0"], ["--traffic", "-1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["tune", *bad])


# --- ours behind auth: how tune and bench start its stack ------------------------------------

THROTTLE = ["-P", "ThrottleRateLimit=10000", "-P", "ThrottleBurstLimit=5000"]
EXPECTED_START = {
    "none": (TEMPLATE, THROTTLE),
    "iam": (AUTH_TEMPLATE, [*THROTTLE, "-P", "AuthType=AWS_IAM"]),
    "api_key": (
        AUTH_TEMPLATE,
        [*THROTTLE, "-P", "AuthType=API_KEY", "-P", "UsagePlanRateLimit=10000",
         "-P", "UsagePlanBurstLimit=5000"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("auth", list(EXPECTED_START))
def test_ours_starts_behind_the_auth_for_tune_and_bench(
    auth: str, tmp_path: Path, small_model_path: Path, mnist_xy
) -> None:
    """One function (local_stack.auth_start_kwargs) gives tune's variant and bench's side B the
    template and parameters of ``auth``: the stage's throttle lifted, and an API key's plan."""
    template, extra_args = EXPECTED_START[auth]
    expected = {"model_path": small_model_path, "template": template, "extra_args": extra_args}
    x, y = mnist_xy
    assert variants.ours(small_model_path, x[:5], auth).start_kwargs == expected
    profile = Profile.quick()
    profile.auth = auth
    tutorial_model = tmp_path / "tutorial" / "model.joblib"
    prep = Prepared(x, y, x, y, x, "sample", 30, tutorial_model, small_model_path)
    both = head_to_head.start_kwargs(profile, prep)
    assert both["ours"] == expected
    assert both["tutorial"]["app_dir"] == tutorial_model.parent
    assert "template" not in both["tutorial"]  # the tutorial's side stays public
    assert not any("AuthType" in a for a in both["tutorial"]["extra_args"])


def test_auth_start_kwargs_lifts_the_plan_only_when_asked() -> None:
    assert auth_start_kwargs("api_key") == {
        "template": AUTH_TEMPLATE,
        "extra_args": ["-P", "AuthType=API_KEY"],
    }
    assert auth_start_kwargs("iam", ("--x",), unlimited_plan=True)["extra_args"] == [
        "--x", "-P", "AuthType=AWS_IAM",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="auth must be one of"):
        auth_start_kwargs("oauth")


def test_bench_auth_option() -> None:
    parser = cli.build_parser()
    assert bench_command.profile_of(parser.parse_args(["bench", "--quick"])).auth == "none"
    args = parser.parse_args(["bench", "--quick", "--auth", "api_key"])
    assert bench_command.profile_of(args).auth == "api_key"
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--auth", "AWS_IAM"])


# --- tune.json, with the stack faked -------------------------------------------------------


@pytest.fixture
def fake_stack(monkeypatch) -> list[tuple[str, tuple[int, ...]]]:
    """sweep.deployed and sweep.sweep replaced: durations halve as memory doubles."""
    calls: list[tuple[str, tuple[int, ...]]] = []

    @contextlib.contextmanager
    def deployed(deployment, state_dir, memory_mb, timeout=180):
        state_dir.mkdir(parents=True, exist_ok=True)
        yield type("Info", (), {"raw": {"sandbox": {"limits": "enforced (fake)"}}})()

    def fake_sweep(deployment, state_dir, info, memory, warm, bar=None, snapstart=False):
        calls.append((deployment.name, tuple(memory)))
        slow = 5.0 if deployment.name == variants.TUTORIAL else 1.0
        return [
            result(m, slow * 0.2 * 1769 / min(m, 1769), rows=len(deployment.expected))
            | {"cold_start_seconds": 1.0, "init_ms": 500.0, "peak_memory_mb": 80.0,
               "agreement": 1.0, "vcpus": m / 1769, "warm_p95_seconds": 0.3}
            for m in memory
        ]  # fmt: skip

    monkeypatch.setattr(sweep, "deployed", deployed)
    monkeypatch.setattr(sweep, "sweep", fake_sweep)
    return calls


def test_tune_json_shape(tmp_path, small_model_path, mnist_xy, fake_stack) -> None:
    run = make_run(tmp_path / "run", small_model_path, *mnist_xy)
    doc = tune.tune(
        run, memory=(512, 1769, 3008), warm=2, rows=150, progress=False,
        variant_names=("ours", "tutorial"),
    )  # fmt: skip
    out = run / "tune"
    saved = json.loads((out / "tune.json").read_text())
    assert saved == json.loads(json.dumps(doc))
    assert {"machine", "settings", "results", "recommendation", "tutorial", "paths"} <= set(saved)
    assert saved["machine"]["cores"] and saved["machine"]["limits"] == "enforced (fake)"
    settings = saved["settings"]
    assert (settings["rows"], settings["warm_calls"], settings["memory_mb"]) == (
        150,
        2,
        [512, 1769, 3008],
    )
    assert settings["variants"] == ["ours", "tutorial"] and settings["prices"]["region"]
    assert [r["memory_mb"] for r in saved["results"]] == [512, 1769, 3008]
    for r in saved["results"]:
        assert set(r["usd_per_million"]) == {"x86_64", "arm64"}
        assert set(r["usd_per_million"]["arm64"]) == {"lambda", "api_gateway", "total"}
    rec = saved["recommendation"]
    assert rec["memory_mb"] == 1769 and rec["rule"] == recommend.RULE  # 3008 is no faster
    assert rec == json.loads(json.dumps(recommend.recommend(saved["results"])))
    tutorial = saved["tutorial"]
    assert tutorial["memory_mb"] == [512, 1769, 3008, 5000]  # plus its own 5,000 MB
    assert tutorial["recommendation"]["memory_mb"] == 1769 and "k-NN" in tutorial["description"]
    assert fake_stack == [("ours", (512, 1769, 3008)), ("tutorial", (512, 1769, 3008, 5000))]
    assert Path(saved["paths"]["figure"]) == out / "tune.png"
    assert (out / "tune.png").stat().st_size > 10_000
    assert "traffic" not in saved
    text = report.table_text(saved)
    assert text.count(" *") == 2 and "tutorial" in text
    assert "recommended MemorySize: 1769 MB" in report.recommendation_text(saved)
    rows = report.table(saved)
    assert len(rows) == 7 and sum(r["recommended"] for r in rows) == 2


def test_tutorial_needs_a_run(tmp_path, small_model_path, mnist_xy, fake_stack) -> None:
    with pytest.raises(tune.TuneError, match="give --run"):
        tune.tune(
            model_path=small_model_path, pixels=mnist_xy[0][:10], out=tmp_path, progress=False,
            variant_names=("tutorial",),
        )  # fmt: skip
    doc = tune.tune(
        model_path=small_model_path, pixels=mnist_xy[0][:10], out=tmp_path, progress=False,
        memory=(1024,), rows=25,
    )  # fmt: skip
    assert doc["settings"]["run"] is None and doc["results"][0]["memory_mb"] == 1024
    assert "tutorial" not in doc and (tmp_path / "tune.json").is_file()


def test_command_applies_the_recommendation(tmp_path, monkeypatch, capsys) -> None:
    doc = {
        "settings": {"rows": 1000},
        "results": [result(1024, 0.2) | {"vcpus": 0.58, "cold_start_seconds": 1.0,
                                         "init_ms": 1, "warm_p95_seconds": 0.3,
                                         "peak_memory_mb": 70.0, "agreement": 1.0}],
        "paths": {"tune_json": "x/tune.json", "figure": "x/tune.png"},
    }  # fmt: skip
    doc["recommendation"] = recommend.recommend(doc["results"])
    monkeypatch.setattr(tune, "tune", lambda *a, **k: doc)
    copy = tmp_path / "template.yaml"
    shutil.copy(TEMPLATE, copy)
    args = cli.build_parser().parse_args(
        ["tune", "--variant", "ours", "--apply", "--template", str(copy)]
    )
    assert command.main(args) == 0
    assert memory_default(copy) == 1024
    out = capsys.readouterr().out
    assert "recommended MemorySize: 1024 MB" in out and f"-> 1024 MB in {copy}" in out
    args = cli.build_parser().parse_args(["tune", "--apply", "--template", str(tmp_path / "no")])
    assert command.main(args) == 2


def test_traffic_runs_after_the_sweep_at_the_recommended_memory(
    tmp_path, small_model_path, mnist_xy, fake_stack, monkeypatch
) -> None:
    from mnist_lambda import local_stack

    asked: dict[str, Any] = {}
    info = type("Info", (), {"bucket": "b", "memory_mb": 0})()

    def redeploy(state_dir, **settings):
        asked["redeploy"] = (state_dir, settings)
        return info

    def what_if(**kwargs):
        asked["what_if"] = kwargs
        return {"rates": [{"rate": r} for r in kwargs["rates"]]}

    monkeypatch.setattr(local_stack, "redeploy", redeploy)
    monkeypatch.setattr(traffic_run, "what_if", what_if)
    drawn: list[dict] = []

    def figure(result):
        from matplotlib.figure import Figure

        drawn.append(result)
        return Figure()

    monkeypatch.setattr(traffic_report, "figure", figure)
    doc = tune.tune(
        model_path=small_model_path, pixels=mnist_xy[0][:10], out=tmp_path, progress=False,
        memory=(512, 1769), rows=20, traffic_rates=(2, 8), traffic_duration_s=5,
    )  # fmt: skip
    assert asked["redeploy"] == (tmp_path / "stack", {"parameters": {"MemorySize": "1769"}})
    call = asked["what_if"]
    assert (call["state_dir"], call["info"], call["bucket"]) == (tmp_path / "stack", info, "b")
    assert call["key"] == "tune/rows-20.npy" and call["rates"] == [2.0, 8.0]
    assert (call["duration_s"], call["environments"], call["seed"]) == (5, None, 0)
    saved = json.loads((tmp_path / "tune.json").read_text())
    assert saved["traffic"] == {"rates": [{"rate": 2.0}, {"rate": 8.0}]} == doc["traffic"]
    assert drawn == [doc["traffic"]] and (tmp_path / "traffic.png").is_file()
    assert saved["paths"]["traffic_figure"] == str(tmp_path / "traffic.png")
