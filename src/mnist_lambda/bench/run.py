"""The benchmark: the tutorial's deployment (A) against ours (B) on the same local stack.

Both configurations are trained on the same 80/20 split of the same MNIST rows, served by two
local stacks (moto S3 + ``aws-lambda-rie`` running ``awslambdaric`` + the API Gateway front)
started by this process, and called alternately A, B, A, B so that drift of the machine (thermal,
other load) hits both alike. Reported: cold start, warm latency per request size, artifact and
S3 object bytes, peak memory of the function process, accuracy on the held-out rows, Lambda
cost per million predictions, how far our predict step is from the machine's float32 matmul
rate, and a 70,000-row batch against 1, 2 and 4 function instances.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests

from mnist_lambda import endpoint, record
from mnist_lambda.paths import project_root

TUTORIAL_APP = Path(__file__).resolve().parent / "tutorial_app" / "app.py"
TUTORIAL_HANDLER = "app.lambda_handler"
TUTORIAL_MEMORY_MB = 5000
"""The SAM machine-learning quick-start templates (``sam init --app-template
ml-apigw-scikit-learn`` and siblings) set ``MemorySize: 5000``; the tutorial's container
deployment starts from one. An assumption, so the cost is also reported at our memory size."""
A, B = "tutorial", "ours"


@dataclass
class Profile:
    """How much to measure."""

    name: str
    sizes: tuple[int, ...]
    repeats: int
    cold_repeats: int
    batch_rows: int
    batch_instances: tuple[int, ...]
    max_request: bool
    batch_repeats: int = 1
    batch_blas_threads: tuple[int, ...] = (0,)
    """0: the machine's default BLAS threads per function; 1: one, like one Lambda vCPU."""
    n_components: int = 40
    n_neighbors: int = 4
    test_share: float = 0.2
    max_samples: int | None = None
    tutorial_memory_mb: int = TUTORIAL_MEMORY_MB

    @classmethod
    def full(cls) -> Profile:
        return cls("full", (1000, 2000, 4000, 10000), 9, 5, 70_000, (1, 2, 4), True, 3, (0, 1))

    @classmethod
    def quick(cls) -> Profile:
        return cls("quick", (500, 1000), 2, 1, 6_000, (1, 2), False, max_samples=3000)


# --- machine and process facts ------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, Python and numpy BLAS, for the report."""
    model = platform.processor() or ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        found = re.search(r"^Model name:\s*(.+)$", out, re.M)
        model = found[1].strip() if found else model
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        text = Path("/proc/meminfo").read_text()
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", text)[1])  # type: ignore[index]
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "kernel": platform.release(),
    }


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid == pid:
                children.append(int(entry.name))
    return sorted(children)


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident set (VmHWM) of ``pid`` in MB, from /proc/<pid>/status."""
    with contextlib.suppress(OSError, TypeError):
        found = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
        return int(found[1]) / 1024 if found else None
    return None


def function_peak_mb(state_dir: Path) -> float | None:
    """VmHWM of the runtime (the awslambdaric python) under each RIE of the stack; the max."""
    from mnist_lambda import local_stack

    info = local_stack.read(state_dir)
    if info is None:
        return None
    peaks = [
        mb
        for rie in info.emulator_pids
        for child in child_pids(rie)
        if (mb := vm_hwm_mb(child)) is not None
    ]
    return max(peaks) if peaks else None


def sgemm_gflops(m: int, k: int, n: int, repeats: int = 5) -> float:
    """Best float32 ``(m, k) @ (k, n)`` rate of numpy's BLAS on this machine, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    a @ b  # warm up (threads, pages)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * m * k * n / best / 1e9


# --- data, models and objects -------------------------------------------------------------


@dataclass
class Prepared:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_all: np.ndarray
    source: str
    tutorial_model: Path
    our_model: Path
    n_components: int
    fit_seconds: dict[str, float] = field(default_factory=dict)


def prepare(profile: Profile, data_source: str, work: Path) -> Prepared:
    """Load, split 80/20 (stratified), train both models, save both artifacts."""
    import joblib
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from mnist_lambda import data, training

    if data_source.startswith("idx:") and not Path(data_source[4:]).is_absolute():
        data_source = "idx:" + str((project_root() / data_source[4:]).resolve())
    dataset = data.load_mnist(data_source)
    x, y = dataset.pixels, dataset.labels
    if profile.max_samples and len(x) > profile.max_samples:
        keep, _ = train_test_split(
            np.arange(len(x)), train_size=profile.max_samples, stratify=y, random_state=42
        )
        x, y = x[np.sort(keep)], y[np.sort(keep)]
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=profile.test_share, stratify=y, random_state=42
    )
    tutorial_model = work / "tutorial_app" / "model.joblib"
    tutorial_model.parent.mkdir(parents=True)
    start = time.perf_counter()
    knn = training.make_baseline(profile.n_neighbors).fit(
        pd.DataFrame(x_train.astype(np.float64)), y_train
    )
    fit = {"tutorial": time.perf_counter() - start}
    joblib.dump(knn, tutorial_model)
    shutil.copy(TUTORIAL_APP, tutorial_model.parent / "app.py")
    our_model = work / "model" / "model.npz"
    start = time.perf_counter()
    training.train_serving(
        x_train,
        y_train,
        x_test[:10],
        y_test[:10],
        our_model,
        cv_scores=[],
        n_components=profile.n_components,
        n_neighbors=profile.n_neighbors,
    )
    fit["ours"] = time.perf_counter() - start
    return Prepared(
        x_train,
        y_train,
        x_test,
        y_test,
        x,
        dataset.source,
        tutorial_model,
        our_model,
        profile.n_components,
        fit,
    )


def tutorial_object(pixels: np.ndarray) -> bytes:
    """The tutorial's request object: a joblib'd pandas DataFrame of float64 pixels."""
    import joblib
    import pandas as pd

    buf = io.BytesIO()
    joblib.dump(pd.DataFrame(pixels.astype(np.float64)), buf)
    return buf.getvalue()


def our_object(pixels: np.ndarray) -> bytes:
    """Our request object: uint8 pixels in a compressed ``.npz`` (array ``X``)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, X=np.ascontiguousarray(pixels, dtype=np.uint8))
    return buf.getvalue()


def npy_size(pixels: np.ndarray) -> int:
    """Bytes of the same rows as plain ``.npy`` (what predict-batch uploads)."""
    from mnist_lambda.s3_data import npy_bytes

    return len(npy_bytes(np.ascontiguousarray(pixels, dtype=np.uint8)))


def rows_for(x_test: np.ndarray, n: int) -> np.ndarray:
    """``n`` held-out rows, repeating them when ``n`` is more than there are."""
    return x_test[np.arange(n) % len(x_test)]


# --- the stacks -----------------------------------------------------------------------------


@dataclass
class Config:
    """One side of the comparison: its stack and how to make its request objects."""

    name: str
    state_dir: Path
    make_object: Callable[[np.ndarray], bytes]
    suffix: str
    memory_mb: int = 0
    info: Any = None
    keys: dict[str, str] = field(default_factory=dict)
    object_bytes: dict[str, int] = field(default_factory=dict)

    def upload(self, label: str, pixels: np.ndarray) -> None:
        from mnist_lambda import local_stack

        body = self.make_object(pixels)
        key = f"bench/{self.name}-{label}{self.suffix}"
        local_stack.s3_client(self.info).put_object(Bucket=self.info.bucket, Key=key, Body=body)
        self.keys[label], self.object_bytes[label] = key, len(body)

    def call(self, label: str, session: requests.Session) -> dict[str, Any]:
        from mnist_lambda import local_stack

        self.info = local_stack.read(self.state_dir) or self.info
        start = time.perf_counter()
        response = session.post(
            self.info.predict_url,
            json={"bucket": self.info.bucket, "key": self.keys[label]},
            timeout=60,
        )
        seconds = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(
                f"{self.name} {label}: HTTP {response.status_code} {response.text[:300]}"
            )
        h = response.headers
        timing = dict(re.findall(r"(\w+);dur=([\d.]+)", h.get("Server-Timing", "")))
        init = h.get("X-Lambda-Emulator-Init-Duration-Ms")
        duration = h.get("X-Lambda-Emulator-Duration-Ms")
        return {
            "seconds": seconds,
            "cold": h.get("X-Lambda-Emulator-Cold-Start") == "true",
            "init_ms": float(init) if init else None,
            "function_ms": (float(duration) - float(init or 0)) if duration else None,
            "predict_ms": float(timing["predict"]) if "predict" in timing else None,
            "labels": np.asarray(response.json(), dtype=np.int64),
        }


@contextlib.contextmanager
def stacks(configs: list[Config], start_kwargs: dict[str, dict[str, Any]]) -> Iterator[None]:
    from mnist_lambda import local_stack

    try:
        for cfg in configs:
            cfg.info = local_stack.start(cfg.state_dir, timeout=120, **start_kwargs[cfg.name])
            cfg.memory_mb = cfg.info.memory_mb
        yield
    finally:
        for cfg in configs:
            with contextlib.suppress(Exception):
                local_stack.stop(cfg.state_dir)


# --- the run --------------------------------------------------------------------------------


def run_bench(
    profile: Profile,
    out: str | Path | None = None,
    data_source: str = "idx:../shared/data/mnist",
    verbose: bool = True,
) -> dict[str, Any]:
    """Run the whole comparison; write ``results.json``, ``results.md`` and the figure."""
    from mnist_lambda import local_stack

    def say(msg: str) -> None:
        if verbose:
            print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    out_dir = (
        Path(out)
        if out
        else (
            project_root() / "outputs" / "bench" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        )
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mnist-bench-"))
    results: dict[str, Any] = {"profile": asdict(profile), "machine": machine()}
    try:
        say("loading data and training both models")
        prep = prepare(profile, data_source, work)
        results["data"] = {
            "source": prep.source,
            "rows": len(prep.x_all),
            "train": len(prep.x_train),
            "held_out": len(prep.x_test),
            "split": "stratified 80/20, random_state=42",
            "fit_seconds": prep.fit_seconds,
        }
        tut = Config(A, work / "stack-tutorial", tutorial_object, ".joblib")
        ours = Config(B, work / "stack-ours", our_object, ".npz")
        configs = [tut, ours]
        start_kwargs = {
            A: {
                "app_dir": prep.tutorial_model.parent,
                "extra_args": [
                    "--handler",
                    TUTORIAL_HANDLER,
                    "-P",
                    f"MemorySize={profile.tutorial_memory_mb}",
                ],
            },
            B: {"model_path": prep.our_model},
        }
        with stacks(configs, start_kwargs):
            say("stacks up; uploading request objects")
            labels = [str(n) for n in profile.sizes] + ["heldout"]
            for cfg in configs:
                for n in profile.sizes:
                    cfg.upload(str(n), rows_for(prep.x_test, n))
                cfg.upload("heldout", prep.x_test)
            session = requests.Session()
            first = str(profile.sizes[0])

            say(f"cold starts x{profile.cold_repeats} (alternating)")
            cold: dict[str, list[dict[str, Any]]] = {A: [], B: []}
            for _ in range(profile.cold_repeats):
                for cfg in configs:
                    t0 = time.perf_counter()
                    local_stack.redeploy(cfg.state_dir)
                    call = cfg.call(first, session)
                    call["first_response_ms"] = (time.perf_counter() - t0) * 1000
                    call.pop("labels")
                    cold[cfg.name].append(call)

            say("warm-up and accuracy on the held-out rows")
            accuracy = {}
            for cfg in configs:
                for label in labels:
                    cfg.call(label, session)  # every size once: warm caches, no timing
                got = cfg.call("heldout", session)["labels"]
                accuracy[cfg.name] = float(np.mean(got == prep.y_test))

            say(f"warm latency: {profile.repeats} alternating pairs per size")
            warm: dict[str, dict[str, list[dict[str, Any]]]] = {
                A: {str(n): [] for n in profile.sizes},
                B: {str(n): [] for n in profile.sizes},
            }
            for rep in range(profile.repeats):
                for n in profile.sizes:
                    for cfg in configs if rep % 2 == 0 else configs[::-1]:
                        call = cfg.call(str(n), session)
                        call.pop("labels")
                        warm[cfg.name][str(n)].append(call)
                say(f"  pair {rep + 1}/{profile.repeats} done")

            peak = {cfg.name: function_peak_mb(cfg.state_dir) for cfg in configs}
            max_request = None
            if profile.max_request:
                rows = (50 * 1024 * 1024 - 128) // 784
                say(f"our largest supported request: {rows:,} rows (50 MiB of .npy)")
                ours.upload("max", rows_for(prep.x_test, rows))
                call = ours.call("max", session)
                call.pop("labels")
                max_request = {
                    "rows": rows,
                    "object_bytes": ours.object_bytes["max"],
                    "seconds": call["seconds"],
                    "function_ms": call["function_ms"],
                    "predict_ms": call["predict_ms"],
                    "peak_mb": function_peak_mb(ours.state_dir),
                }
            results.update(
                memory_mb={A: tut.memory_mb, B: ours.memory_mb},
                cold=cold,
                warm=warm,
                accuracy=accuracy,
                peak_mb=peak,
                max_request=max_request,
                object_bytes={A: tut.object_bytes, B: ours.object_bytes},
                npy_bytes={str(n): npy_size(rows_for(prep.x_test, n)) for n in profile.sizes},
                artifact_bytes={
                    A: prep.tutorial_model.stat().st_size,
                    B: prep.our_model.stat().st_size,
                },
            )
        results["flops"] = flops_report(results, prep, profile)
        if profile.batch_instances:
            say(f"batch of {profile.batch_rows:,} rows, {profile.batch_instances} instances")
            results["batch"] = batch_report(profile, prep, work, say)
        results["summary"] = summary(results, profile)
        results["targets"] = targets(results, profile)
        results["bench_seconds"] = time.perf_counter() - started
        figure = out_dir / "latency_vs_rows.png"
        make_figure(results, profile, figure)
        results["paths"] = {
            "results": str(out_dir / "results.json"),
            "figure": str(figure),
            "table": str(out_dir / "results.md"),
        }
        record.atomic_write_text(out_dir / "results.md", markdown(results, profile))
        record.atomic_write_json(out_dir / "results.json", results)
        say(f"done in {results['bench_seconds']:.0f} s: {out_dir}")
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def flops_report(results: dict[str, Any], prep: Prepared, profile: Profile) -> dict[str, Any]:
    """Our predict step's floating-point rate against this machine's sgemm rate."""
    n = max(profile.sizes)
    n_train = len(prep.x_train)
    c = prep.n_components
    # what model.py computes: PCA projection, then [z, 1] @ [-2 T^T; |t|^2] (c + 1 inner
    # dimension), then one comparison per distance for the per-group minima
    flops = 2.0 * n * 784 * c + n * 784 + 2.0 * n * (c + 1) * n_train + n * n_train
    predict_ms = [w["predict_ms"] for w in results["warm"][B][str(n)] if w["predict_ms"]]
    seconds = float(np.median(predict_ms)) / 1000
    peak = sgemm_gflops(2048, 2048, 2048)
    same_shape = sgemm_gflops(512, c + 1, n_train)  # model.CHUNK_ROWS rows per block
    achieved = flops / seconds / 1e9
    return {
        "rows": n,
        "flops": flops,
        "formula": "2*n*784*c (PCA) + n*784 (centring) + 2*n*(c+1)*n_train (distance matmul) "
        "+ n*n_train (group minima)",
        "predict_ms_p50": seconds * 1000,
        "achieved_gflops": achieved,
        "sgemm_gflops_2048": peak,
        "sgemm_gflops_same_shape": same_shape,
        "share_of_sgemm_peak": achieved / peak,
        "share_of_same_shape_sgemm": achieved / same_shape,
    }


def batch_report(
    profile: Profile, prep: Prepared, work: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """Throughput of a large batch (rows repeat the data) against 1, 2, 4 function instances.

    Each instance count runs ``batch_repeats`` times after one warm-up call per instance (the
    curve is about warm throughput), with the machine's default BLAS threads per function and,
    if asked, with one BLAS thread per function (closer to Lambda's one vCPU at 1,769 MB).
    """
    from mnist_lambda import batch, local_stack
    from mnist_serving.model import load

    pixels = np.ascontiguousarray(prep.x_all[np.arange(profile.batch_rows) % len(prep.x_all)])
    expected = load(prep.our_model).predict(pixels)
    runs = []
    for threads in profile.batch_blas_threads:
        extra: list[str] = []
        if threads:
            extra = ["-e", f"OPENBLAS_NUM_THREADS={threads}", "-e", f"OMP_NUM_THREADS={threads}"]
        for k in profile.batch_instances:
            state = work / f"stack-batch-{threads}-{k}"
            results = []
            try:
                info = local_stack.start(
                    state, instances=k, model_path=prep.our_model, timeout=120, extra_args=extra
                )
                s3 = local_stack.s3_client(info)
                batch.run_batch(
                    pixels[: 500 * k],
                    url=info.predict_url,
                    s3=s3,
                    bucket=info.bucket,
                    rows_per_chunk=500,
                    concurrency=k,
                    progress=False,
                )
                for _ in range(profile.batch_repeats):
                    results.append(
                        batch.run_batch(
                            pixels,
                            url=info.predict_url,
                            s3=s3,
                            bucket=info.bucket,
                            output_prefix="predictions/",
                            concurrency=k,
                            progress=False,
                        )
                    )
            finally:
                local_stack.stop(state)
            for result in results:
                if not np.array_equal(result.labels, expected):
                    raise RuntimeError(
                        f"batch with {k} instance(s): labels differ from the model's"
                    )
            rates = [r.rows_per_second for r in results]
            median = results[int(np.argsort(rates)[len(rates) // 2])]
            runs.append(
                {
                    "instances": k,
                    "blas_threads": threads or "default",
                    "row_order_preserved": True,
                    **median.summary(),
                    "rows_per_second": float(np.median(rates)),
                    "rows_per_second_all": rates,
                }
            )
            say(
                f"  {k} instance(s), BLAS threads {threads or 'default'}: "
                f"{np.median(rates):,.0f} rows/s (runs: {', '.join(f'{r:,.0f}' for r in rates)})"
            )
    return {"rows": profile.batch_rows, "runs": runs}


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
        "peak memory of the function process, VmHWM (MB)",
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
    p = s["price"]
    lines += [
        "",
        f"Prices assumed: ${p['lambda_usd_per_gb_second']} per GB-second, "
        f"${p['lambda_usd_per_million_requests']} per million Lambda requests, "
        f"${p['api_gateway_usd_per_million_requests']} per million API Gateway REST requests "
        f"(us-east-1, x86). Durations are this machine's, not Lambda's.",
    ]
    return "\n".join(lines) + "\n"
