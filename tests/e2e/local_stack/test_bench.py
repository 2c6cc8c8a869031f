"""``mnist-lambda bench --quick``: both configurations on the local stack, results and figure."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from repo_paths import ROOT

from mnist_lambda import cli
from mnist_lambda.bench import probes, run
from mnist_lambda.bench.objects import npy_size, our_object
from mnist_lambda.bench.prepare import rows_for
from mnist_lambda.bench.profile import Profile
from mnist_lambda.bench.readme import README_BEGIN, README_END, update_readme
from mnist_lambda.paths import project_root
from mnist_lambda.template import AUTH_TYPES
from mnist_lambda.template.reader import function_settings
from mnist_lambda.tutorial.deployment import APP_DIR, TUTORIAL_MEMORY_MB
from mnist_lambda.tutorial.model import tutorial_object


def test_proc_helpers_read_this_process():
    assert probes.vm_hwm_mb(os.getpid()) > 10
    assert probes.vm_hwm_mb(2**31 - 1) is None
    assert os.getpid() in probes.child_pids(os.getppid())
    assert probes.sgemm_gflops(128, 128, 128, repeats=2) > 0
    facts = probes.machine()
    assert facts["cores"] == os.cpu_count() and facts["cpu_model"]


def test_tutorial_handler_stays_out_of_the_shipped_app():
    shipped = project_root() / "lambda_app"
    assert not any("joblib.load" in p.read_text() for p in shipped.rglob("*.py"))
    handler = APP_DIR / "app.py"
    assert handler.is_file() and shipped not in handler.parents


def test_objects_and_rows():
    x = np.arange(3 * 784, dtype=np.uint8).reshape(3, 784)
    assert rows_for(x, 7)[6].tolist() == x[0].tolist()
    assert npy_size(x) == 128 + 3 * 784
    assert len(our_object(x)) < npy_size(x) + 400
    assert len(tutorial_object(x)) > 8 * 3 * 784


def test_quick_bench_end_to_end(tmp_path, mnist_source):
    profile = Profile.quick()
    profile.batch_instances = (1, 2)
    results = run.run_bench(
        profile, out=tmp_path, data_source=mnist_source.data_source, verbose=False
    )
    saved = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "latency_vs_rows.png").stat().st_size > 10_000
    table = (tmp_path / "results.md").read_text()
    assert "| cold start" in table and "warm latency 1,000 rows" in table
    s = saved["summary"]
    for name in ("tutorial", "ours"):
        assert s[name]["cold_all_cold"] and s[name]["cold_init_ms_p50"] > 0
        assert 0.8 < s[name]["accuracy"] <= 1.0
        assert s[name]["peak_mb"] > 30
        for n in ("500", "1000"):
            assert s[name]["warm"][n]["latency_ms"]["n"] == profile.repeats
            assert s[name]["warm"][n]["usd_per_million"]["total"] > 0
    assert s["tutorial"]["memory_mb"] == TUTORIAL_MEMORY_MB
    assert s["ours"]["memory_mb"] == function_settings().function.memory_size
    # structural facts that hold whatever the machine's speed
    assert saved["targets"]["model_artifact"]["met"]
    assert saved["targets"]["accuracy"]["met"]
    assert saved["artifact_bytes"]["tutorial"] > 20 * saved["artifact_bytes"]["ours"]
    assert saved["flops"]["achieved_gflops"] > 0 and saved["flops"]["sgemm_gflops_2048"] > 0
    runs = saved["batch"]["runs"]
    assert [r["instances"] for r in runs] == [1, 2]
    assert all(r["row_order_preserved"] and r["rows"] == profile.batch_rows for r in runs)
    assert results["targets"] == saved["targets"]
    models = saved["models"]  # the tutorial's, ours (.npz) and the quick profile's ONNX one
    assert [m["format"] for m in models] == ["joblib", "npz", "onnx"]
    for m in models:
        assert m["all_cold"] and m["cold_init_ms_p50"] > 0 and 0.8 < m["accuracy"] <= 1.0
        assert m["rows"] == profile.model_rows and 0 < m["warm_ms_p50"] <= m["warm_ms_p95"]
    assert [m["agreement_with_the_model"] for m in models[1:]] == [1.0, 1.0]
    shipped = [m["shipped_bytes"] for m in models]
    assert shipped[0]["requirements"] > shipped[2]["requirements"] > shipped[1]["requirements"]
    assert "| logistic (ONNX) |" in table


@pytest.mark.parametrize("auth", ["iam", "api_key"])
def test_quick_bench_with_ours_behind_auth(tmp_path, mnist_source, capsys, auth):
    """``bench --auth``: ours on template.yaml's stack with that auth, every call made as its
    allowed caller (a refused or failed call fails the run), the same accuracy rule as above."""
    out = tmp_path / "bench"
    code = cli.main(
        ["bench", "--quick", "--no-docker", "--no-batch", "--auth", auth, "--out", str(out),
         "--data", mnist_source.data_source, "-q"]
    )  # fmt: skip
    assert code == 0
    assert f"results: {out / 'results.json'}" in capsys.readouterr().out
    saved = json.loads((out / "results.json").read_text())
    assert saved["profile"]["auth"] == auth
    # what the running stacks recorded, not the option echoed: only ours has an authorizer
    assert saved["api_auth"] == {"tutorial": "NONE", "ours": AUTH_TYPES[auth]}
    assert f"ours behind `{AUTH_TYPES[auth]}`" in (out / "results.md").read_text()
    s, profile = saved["summary"], Profile.quick()
    for name in ("tutorial", "ours"):
        assert s[name]["cold_all_cold"] and len(saved["cold"][name]) == profile.cold_repeats
        assert 0.8 < s[name]["accuracy"] <= 1.0
        for n in ("500", "1000"):
            assert s[name]["warm"][n]["latency_ms"]["n"] == profile.repeats
    assert saved["targets"]["accuracy"]["met"]
    assert saved["docker"] == {"skipped": "skipped: not asked for (--no-docker)"}
    assert "batch" not in saved


def test_cli_has_the_new_subcommands():
    parser = cli.build_parser()
    args = parser.parse_args(["bench", "--quick", "--out", "x", "-v"])
    assert args.quick and args.out == Path("x") and args.verbose and args.func is not None
    args = parser.parse_args(["predict-batch", "s3://b/k.npy", "--out", "p.npy", "--url", "u"])
    assert args.source == "s3://b/k.npy" and args.concurrency == 4
    for existing in (["run", "--steps", "sample"], ["params"]):
        assert parser.parse_args(existing).func is not None


@pytest.mark.parametrize("n_train", [7, 96, 500, 4001, 8000])
def test_two_stage_search_finds_the_true_nearest(n_train):
    """model._nearest (group minima, then candidates) against a full sort of the distances."""
    from mnist_serving.model import DigitModel

    rng = np.random.default_rng(n_train)
    train = rng.standard_normal((n_train, 12)).astype(np.float32)
    model = DigitModel(
        mean=np.zeros(784, np.float32),
        components=np.zeros((12, 784), np.float32),
        train_proj=train,
        train_labels=rng.integers(0, 10, n_train),
        classes=np.arange(10),
        n_neighbors=4,
    )
    z = rng.standard_normal((300, 12)).astype(np.float32)
    idx = model._nearest(z)
    full = ((z[:, None, :].astype(np.float64) - train[None, :, :]) ** 2).sum(axis=2)
    want = np.sort(full, axis=1)[:, :4]
    got = np.sort(np.take_along_axis(full, idx, axis=1), axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_update_readme_replaces_only_the_marked_block(tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_BEGIN}\nold table\n{README_END}\nafter\n")
    update_readme(readme, "| new |\n")
    assert readme.read_text() == f"intro\n{README_BEGIN}\n| new |\n{README_END}\nafter\n"
    (tmp_path / "plain.md").write_text("no markers here")
    with pytest.raises(ValueError, match="bench:begin"):
        update_readme(tmp_path / "plain.md", "| t |")
    project_readme = (ROOT / "README.md").read_text()
    assert README_BEGIN in project_readme and README_END in project_readme
