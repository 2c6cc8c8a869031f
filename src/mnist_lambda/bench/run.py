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
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda import storage
from mnist_lambda.batch import NPY_HEADER_BYTES
from mnist_lambda.bench.probes import function_peak_mb, machine, sgemm_gflops
from mnist_lambda.bench.profile import A, B, Profile
from mnist_lambda.bench.report import make_figure, markdown, summary, targets
from mnist_lambda.client import Client, EndpointError
from mnist_lambda.modeling.sampling import Split
from mnist_lambda.paths import project_root
from mnist_serving.schema import N_PIXELS

# --- data, models and objects -------------------------------------------------------------

TUTORIAL_APP = Path(__file__).resolve().parent / "tutorial_app" / "app.py"
NO_STAGE_THROTTLE = ("-P", "ThrottleRateLimit=10000", "-P", "ThrottleBurstLimit=5000")
"""The benchmark measures the functions, not the stage's 10 requests/s: both stages get this."""
TUTORIAL_HANDLER = "app.lambda_handler"


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
    from sklearn.model_selection import train_test_split

    from mnist_lambda.modeling import data, training
    from mnist_lambda.modeling.options import ModelOptions

    dataset = data.load_mnist(data_source)  # a relative idx: path is from the project root
    x, y = dataset.pixels, dataset.labels
    if profile.max_samples and len(x) > profile.max_samples:
        keep, _ = train_test_split(
            np.arange(len(x)), train_size=profile.max_samples, stratify=y, random_state=42
        )
        x, y = x[np.sort(keep)], y[np.sort(keep)]
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=profile.test_share, stratify=y, random_state=42
    )
    start = time.perf_counter()
    knn = fit_tutorial_model(x_train, y_train, profile.n_neighbors)
    fit = {"tutorial": time.perf_counter() - start}
    tutorial_model = tutorial_task_root(knn, work / "tutorial_app") / "model.joblib"
    our_model = work / "model" / "model.npz"
    start = time.perf_counter()
    training.train_serving(
        Split(x_train, y_train, x_test[:10], y_test[:10]),
        our_model,
        cv_scores=[],
        options=ModelOptions(n_neighbors=profile.n_neighbors, pca_components=profile.n_components),
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


def fit_tutorial_model(x_train: np.ndarray, y_train: np.ndarray, n_neighbors: int = 4) -> Any:
    """The tutorial's k-NN, fitted as it was: on a pandas DataFrame of float64 pixels."""
    import pandas as pd

    from mnist_lambda.modeling import training
    from mnist_lambda.modeling.options import ModelOptions

    return training.make_baseline(ModelOptions(n_neighbors=n_neighbors)).fit(
        pd.DataFrame(x_train.astype(np.float64)), y_train
    )


def tutorial_task_root(knn: Any, dest: Path) -> Path:
    """``dest`` made the tutorial's own image-like task root: its handler, its requirements and
    ``knn`` joblib'd as ``model.joblib``."""
    import joblib

    dest.mkdir(parents=True)
    joblib.dump(knn, dest / "model.joblib")
    for name in ("app.py", "requirements.txt"):
        shutil.copy(TUTORIAL_APP.with_name(name), dest / name)
    return dest


def tutorial_start_args(memory_mb: int) -> list[str]:
    """``mnist-lambda serve`` arguments of the tutorial's deployment at ``memory_mb``."""
    return ["--handler", TUTORIAL_HANDLER, "-P", f"MemorySize={memory_mb}", *NO_STAGE_THROTTLE]


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
    from mnist_lambda.deploy.s3_data import npy_bytes

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
    max_memory_mb: float | None = None
    """The largest ``Max Memory Used`` the emulator reported (the environment's cgroup)."""
    client: Client | None = None

    def peak_mb(self) -> float | None:
        """Max Memory Used as Lambda counts it; without enforced limits, the runtime's VmHWM."""
        return self.max_memory_mb or function_peak_mb(self.state_dir)

    def upload(self, label: str, pixels: np.ndarray) -> None:
        from mnist_lambda import local_stack

        body = self.make_object(pixels)
        key = f"bench/{self.name}-{label}{self.suffix}"
        local_stack.s3_client(self.info).put_object(Bucket=self.info.bucket, Key=key, Body=body)
        self.keys[label], self.object_bytes[label] = key, len(body)

    def call(self, label: str) -> dict[str, Any]:
        """One call on this side's keep-alive client (no retries: a benchmark counts failures,
        never hides them)."""
        from mnist_lambda import local_stack

        self.info = local_stack.read(self.state_dir) or self.info
        if self.client is None or self.client.url != self.info.predict_url:
            self.client = Client(self.info.predict_url, max_attempts=1, timeout_s=60)
        try:
            result = self.client.predict(self.info.bucket, self.keys[label])
        except EndpointError as exc:
            raise RuntimeError(f"{self.name} {label}: {exc}") from exc
        if result.max_memory_mb is not None:
            self.max_memory_mb = max(self.max_memory_mb or 0.0, result.max_memory_mb)
        return {**result.timings(), "labels": result.labels}


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
            if cfg.client is not None:
                cfg.client.close()
            with contextlib.suppress(Exception):
                local_stack.stop(cfg.state_dir)


# --- the run --------------------------------------------------------------------------------


def run_bench(
    profile: Profile,
    out: str | Path | None = None,
    data_source: str = "idx:../shared/data/mnist",
    verbose: bool = True,
    docker: bool | None = False,
) -> dict[str, Any]:
    """Run the whole comparison; write ``results.json``, ``results.md`` and the figure.
    ``docker``: add the images built and served with Docker (None: when an engine answers)."""
    from mnist_lambda import local_stack
    from mnist_lambda.bench import docker_rows

    docker_skipped = docker_rows.skip_reason(docker)  # --docker without an engine fails here

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
                "extra_args": tutorial_start_args(profile.tutorial_memory_mb),
            },
            B: {"model_path": prep.our_model, "extra_args": list(NO_STAGE_THROTTLE)},
        }
        with stacks(configs, start_kwargs):
            say("stacks up; uploading request objects")
            labels = [str(n) for n in profile.sizes] + ["heldout"]
            for cfg in configs:
                for n in profile.sizes:
                    cfg.upload(str(n), rows_for(prep.x_test, n))
                cfg.upload("heldout", prep.x_test)
            first = str(profile.sizes[0])

            say(f"cold starts x{profile.cold_repeats} (alternating)")
            cold: dict[str, list[dict[str, Any]]] = {A: [], B: []}
            for _ in range(profile.cold_repeats):
                for cfg in configs:
                    t0 = time.perf_counter()
                    local_stack.redeploy(cfg.state_dir)
                    call = cfg.call(first)
                    call["first_response_ms"] = (time.perf_counter() - t0) * 1000
                    call.pop("labels")
                    cold[cfg.name].append(call)

            say("warm-up and accuracy on the held-out rows")
            accuracy = {}
            for cfg in configs:
                for label in labels:
                    cfg.call(label)  # every size once: warm caches, no timing
                got = cfg.call("heldout")["labels"]
                accuracy[cfg.name] = float(np.mean(got == prep.y_test))

            say(f"warm latency: {profile.repeats} alternating pairs per size")
            warm: dict[str, dict[str, list[dict[str, Any]]]] = {
                A: {str(n): [] for n in profile.sizes},
                B: {str(n): [] for n in profile.sizes},
            }
            for rep in range(profile.repeats):
                for n in profile.sizes:
                    for cfg in configs if rep % 2 == 0 else configs[::-1]:
                        call = cfg.call(str(n))
                        call.pop("labels")
                        warm[cfg.name][str(n)].append(call)
                say(f"  pair {rep + 1}/{profile.repeats} done")

            peak = {cfg.name: cfg.peak_mb() for cfg in configs}
            max_request = None
            if profile.max_request:
                from mnist_lambda.template.reader import function_settings

                limit = function_settings().max_object_bytes  # the template's MaxObjectBytes
                rows = (limit - NPY_HEADER_BYTES) // N_PIXELS
                say(f"our largest supported request: {rows:,} rows ({limit:,} bytes of .npy)")
                ours.upload("max", rows_for(prep.x_test, rows))
                call = ours.call("max")
                call.pop("labels")
                max_request = {
                    "rows": rows,
                    "object_bytes": ours.object_bytes["max"],
                    "seconds": call["seconds"],
                    "function_ms": call["function_ms"],
                    "predict_ms": call["predict_ms"],
                    "peak_mb": ours.peak_mb(),
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
        if profile.onnx_models:
            from mnist_lambda.bench.models import compare_models

            say(f"models: the tutorial's, ours and {', '.join(profile.onnx_models)} (ONNX)")
            results["models"] = compare_models(profile, prep, work, say)
        if docker_skipped is None:
            results["docker"] = docker_rows.measure(profile, prep, work, say)
        else:
            say(f"docker rows {docker_skipped}")
            results["docker"] = {"skipped": docker_skipped}
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
        storage.atomic_write_text(out_dir / "results.md", markdown(results, profile))
        storage.atomic_write_json(out_dir / "results.json", results)
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
        extra = list(NO_STAGE_THROTTLE)
        if threads:
            extra += ["-e", f"OPENBLAS_NUM_THREADS={threads}", "-e", f"OMP_NUM_THREADS={threads}"]
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
