"""Predict more rows than one request can carry: chunk, upload, invoke concurrently, reassemble.

One ``POST /predict`` has hard ceilings: the platform's (API Gateway's integration timeout and
request size, Lambda's response size: :mod:`mnist_lambda.aws_limits`) and the function's own
``Timeout`` and ``MAX_OBJECT_BYTES`` (read from the SAM template). The batch client keeps every
call well inside all of them:

1. read the input (one ``.npy`` object, every ``.npy`` under an S3 prefix in key order, or a
   local ``.npy``) as ``(n, 784)`` uint8 rows;
2. size chunks from the endpoint's measured throughput (:func:`plan_chunks`; the arithmetic is
   in its docstring and in ``docs/performance.md``);
3. upload each chunk as ``.npy`` under a work prefix the function may read;
4. invoke the endpoint for every chunk with a bounded thread pool, retrying throttling (429) and
   5xx with exponential backoff and full jitter, a bounded number of times (:func:`post_json`);
5. write one predictions file whose row ``i`` is the label of input row ``i``.

Lambda's own concurrency is the scale-out engine: each concurrent call gets its own execution
environment. Locally, ``mnist-lambda serve --instances N`` stands in for it.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests

from mnist_lambda.aws_limits import (
    API_GATEWAY_PAYLOAD_BYTES,
    API_GATEWAY_TIMEOUT_S,
    LAMBDA_RESPONSE_BYTES,
)
from mnist_serving.schema import N_PIXELS

NPY_HEADER_BYTES = 128
JSON_BYTES_PER_LABEL = 2
"""A label in the 200 answer is one digit and a comma: ``[7,2,1,...]``."""
REQUEST_BODY_BYTES = 1024 + 2 * 1024
"""Upper bound of ``{"bucket", "key", "output_key"}``: two keys of at most 1,024 bytes each."""
TIME_SAFETY = 0.25
"""Use a quarter of the time limit: room for a cold start, a busy S3 and a slower instance."""
SIZE_SAFETY = 0.5
"""Use half of a size limit."""
DEFAULT_MAX_ROWS = 10_000
"""Chunks larger than this gain little per request and lose parallelism and retry granularity."""
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class BatchError(RuntimeError):
    """A chunk failed for good (a 4xx, or retries exhausted); the message says which."""


@dataclass(frozen=True)
class ChunkPlan:
    """How many rows go in each request, and which limit decided it."""

    total_rows: int
    rows_per_chunk: int
    n_chunks: int
    binding: str
    limits_rows: dict[str, int]
    rows_per_second: float | None

    def bounds(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of every chunk, in row order."""
        return [
            (start, min(start + self.rows_per_chunk, self.total_rows))
            for start in range(0, self.total_rows, self.rows_per_chunk)
        ]


def plan_chunks(
    total_rows: int,
    rows_per_second: float | None,
    *,
    concurrency: int = 1,
    output_to_s3: bool = False,
    time_limit_s: float | None = None,
    max_object_bytes: int | None = None,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    time_safety: float = TIME_SAFETY,
    size_safety: float = SIZE_SAFETY,
) -> ChunkPlan:
    """Rows per request that stay well inside every limit of one call.

    ``time_limit_s`` and ``max_object_bytes`` default to the function's ``Timeout`` and
    ``MAX_OBJECT_BYTES`` in the project's SAM template.

    * time: ``rows_per_second * min(function timeout, API Gateway timeout) * time_safety``
      (rows_per_second is measured end to end, S3 read included);
    * response (Lambda's 6 MB): 2 bytes per label in the JSON list, times ``size_safety``;
      with ``output_to_s3`` the answer is a ~100-byte location whatever the rows, so no limit;
    * request (API Gateway's 10 MB): the body names the chunk (at most ~3 KB) and never carries
      pixels, so it never limits the rows; it is checked, not solved for;
    * object: the function reads at most ``max_object_bytes``: ``(limit - 128) / 784`` rows of
      ``.npy`` uint8, times ``size_safety``;
    * ``max_rows`` (default 10,000) and, for parallelism, at most ``ceil(total / concurrency)``.
    """
    if total_rows < 1:
        raise ValueError("nothing to predict: 0 rows")
    if REQUEST_BODY_BYTES * 2 > API_GATEWAY_PAYLOAD_BYTES:  # pragma: no cover - constants
        raise AssertionError("request body bound exceeds the request limit")
    if time_limit_s is None or max_object_bytes is None:
        from mnist_lambda.local_stack.cfn_template import function_settings

        settings = function_settings()
        time_limit_s = settings.function.timeout if time_limit_s is None else time_limit_s
        max_object_bytes = max_object_bytes or settings.max_object_bytes
    limits: dict[str, int] = {}
    if rows_per_second is not None:
        if rows_per_second <= 0:
            raise ValueError(f"rows_per_second must be positive, got {rows_per_second}")
        seconds = min(time_limit_s, API_GATEWAY_TIMEOUT_S) * time_safety
        limits["time"] = max(1, int(rows_per_second * seconds))
    if not output_to_s3:
        limits["response"] = int(LAMBDA_RESPONSE_BYTES * size_safety / JSON_BYTES_PER_LABEL)
    limits["object"] = max(1, int((max_object_bytes - NPY_HEADER_BYTES) * size_safety / N_PIXELS))
    if max_rows:
        limits["max_rows"] = max_rows
    if concurrency > 1:
        limits["parallelism"] = max(1, math.ceil(total_rows / concurrency))
    binding = min(limits, key=lambda name: limits[name])
    rows = max(1, min(limits[binding], total_rows))
    if rows == total_rows and limits[binding] > total_rows:
        binding = "total"
    return ChunkPlan(
        total_rows=total_rows,
        rows_per_chunk=rows,
        n_chunks=math.ceil(total_rows / rows),
        binding=binding,
        limits_rows=limits,
        rows_per_second=rows_per_second,
    )


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter: attempt ``i`` waits ``U(0, min(cap, base * 2**i))``
    (or the server's ``Retry-After`` if longer), at most ``max_attempts`` calls in all."""

    max_attempts: int = 6
    base_s: float = 0.25
    cap_s: float = 8.0
    timeout_s: float = API_GATEWAY_TIMEOUT_S + 6
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        wait = self.rng.uniform(0, min(self.cap_s, self.base_s * 2**attempt))
        if retry_after:
            with contextlib.suppress(ValueError):
                wait = max(wait, min(self.cap_s, float(retry_after)))
        return wait


@dataclass
class CallStats:
    """Counters shared by the worker threads (ints updated under the GIL)."""

    calls: int = 0
    retries: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


def post_json(
    session: requests.Session,
    url: str,
    body: dict[str, Any],
    policy: RetryPolicy,
    stats: CallStats | None = None,
) -> requests.Response:
    """POST ``body``; retry 429, 5xx and connection errors with backoff; return the 200.

    Any other status (400, 403, 404, 413, 415, 422) is the caller's fault and is not retried.
    """
    stats = stats if stats is not None else CallStats()
    last = ""
    for attempt in range(policy.max_attempts):
        if attempt:
            stats.retries += 1
        stats.calls += 1
        try:
            response = session.post(url, json=body, timeout=policy.timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            stats.statuses["error"] = stats.statuses.get("error", 0) + 1
            last = f"{type(exc).__name__}"
            if attempt + 1 < policy.max_attempts:
                policy.sleep(policy.delay(attempt))
            continue
        status = response.status_code
        stats.statuses[str(status)] = stats.statuses.get(str(status), 0) + 1
        if status == 200:
            return response
        last = f"HTTP {status}: {response.text[:300]}"
        if status not in RETRY_STATUSES:
            raise BatchError(f"POST {url} {body.get('key')}: {last}")
        if attempt + 1 < policy.max_attempts:
            policy.sleep(policy.delay(attempt, response.headers.get("Retry-After")))
    raise BatchError(
        f"POST {url} {body.get('key')}: gave up after {policy.max_attempts} attempts ({last})"
    )


# --- input and output ---------------------------------------------------------------------


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key-or-prefix`` -> (bucket, key)."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    return bucket, key


def load_npy(data: bytes) -> np.ndarray:
    pixels = np.load(io.BytesIO(data), allow_pickle=False)
    if pixels.ndim != 2 or pixels.shape[1] != N_PIXELS:
        raise ValueError(f"expected (n, {N_PIXELS}) pixels, got shape {pixels.shape}")
    return pixels


def read_source(source: str, s3: Any = None) -> tuple[np.ndarray, list[str]]:
    """Rows from a local ``.npy``, one ``s3://`` ``.npy`` object, or every ``.npy`` under an
    ``s3://`` prefix (ending in ``/``) concatenated in key order; also the keys read."""
    if not source.startswith("s3://"):
        return load_npy(Path(source).read_bytes()), [source]
    bucket, key = parse_s3_url(source)
    if key and not key.endswith("/"):
        return load_npy(s3.get_object(Bucket=bucket, Key=key)["Body"].read()), [key]
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".npy")]
    if not keys:
        raise ValueError(f"no .npy objects under {source}")
    keys.sort()
    parts = [load_npy(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys]
    return np.concatenate(parts), keys


def write_predictions(labels: np.ndarray, destination: str, s3: Any = None) -> str:
    """Write the labels as ``.npy`` (int64) or ``.json`` to a local path or ``s3://`` URL."""
    labels = np.asarray(labels, dtype=np.int64)
    if destination.endswith(".json"):
        data = json.dumps(labels.tolist(), separators=(",", ":")).encode()
    else:
        buf = io.BytesIO()
        np.save(buf, labels, allow_pickle=False)
        data = buf.getvalue()
    if destination.startswith("s3://"):
        bucket, key = parse_s3_url(destination)
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    else:
        path = Path(destination)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return destination


# --- the batch ------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """What a batch did: rows, chunks, time, throughput, retries and the plan."""

    labels: np.ndarray = field(repr=False)
    rows: int
    chunks: int
    rows_per_chunk: int
    seconds: float
    rows_per_second: float
    calls: int
    retries: int
    statuses: dict[str, int]
    plan: dict[str, Any]
    concurrency: int
    output: str | None = None
    run_id: str = ""

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("labels")
        return data


def measure_throughput(
    session: requests.Session,
    url: str,
    s3: Any,
    bucket: str,
    key: str,
    pixels: np.ndarray,
    policy: RetryPolicy,
    calls: int = 2,
) -> float:
    """Rows per second of one warm call of ``pixels`` (end to end: S3 read, predict, answer).

    The probe object is uploaded once and called ``calls`` times; the fastest call counts as the
    warm one (the first may pay a cold start), so a slower, colder call has the safety margin.
    """
    from mnist_lambda.s3_data import npy_bytes

    s3.put_object(Bucket=bucket, Key=key, Body=npy_bytes(pixels))
    best = math.inf
    for _ in range(calls):
        start = time.perf_counter()
        post_json(session, url, {"bucket": bucket, "key": key}, policy)
        best = min(best, time.perf_counter() - start)
    s3.delete_object(Bucket=bucket, Key=key)
    return len(pixels) / best


def run_batch(
    pixels: np.ndarray,
    *,
    url: str,
    s3: Any,
    bucket: str,
    work_prefix: str = "batch/",
    output_prefix: str | None = None,
    concurrency: int = 4,
    rows_per_chunk: int | None = None,
    rows_per_second: float | None = None,
    probe_rows: int = 1000,
    policy: RetryPolicy | None = None,
    progress: bool = True,
    keep_chunks: bool = False,
    session: requests.Session | None = None,
) -> BatchResult:
    """Predict every row of ``pixels`` through the endpoint; labels come back in row order.

    ``rows_per_chunk`` fixes the chunk size; otherwise it is planned from ``rows_per_second``,
    measured first with a ``probe_rows`` call when not given. With ``output_prefix`` each call
    writes its labels to S3 (``output_key``) and answers only their location.
    """
    from tqdm.auto import tqdm

    from mnist_lambda.s3_data import npy_bytes

    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[1] != N_PIXELS:
        raise ValueError(f"expected (n, {N_PIXELS}) pixels, got shape {pixels.shape}")
    policy = policy or RetryPolicy()
    session = session or requests.Session()
    pool_size = max(1, concurrency)
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    work = f"{work_prefix}{run_id}/"
    if rows_per_chunk:
        plan = ChunkPlan(
            len(pixels),
            rows_per_chunk,
            math.ceil(len(pixels) / rows_per_chunk),
            "fixed",
            {"fixed": rows_per_chunk},
            rows_per_second,
        )
    else:
        if rows_per_second is None:
            probe = pixels[: min(probe_rows, len(pixels))]
            rows_per_second = measure_throughput(
                session, url, s3, bucket, f"{work}probe.npy", probe, policy
            )
        plan = plan_chunks(
            len(pixels),
            rows_per_second,
            concurrency=concurrency,
            output_to_s3=output_prefix is not None,
        )
    bounds = plan.bounds()
    labels = np.full(len(pixels), -1, dtype=np.int64)
    stats = CallStats()
    chunk_keys = [f"{work}chunk-{i:05d}.npy" for i in range(len(bounds))]

    def one(index: int) -> int:
        start, stop = bounds[index]
        key = chunk_keys[index]
        s3.put_object(Bucket=bucket, Key=key, Body=npy_bytes(pixels[start:stop]))
        body: dict[str, Any] = {"bucket": bucket, "key": key}
        if output_prefix is not None:
            body["output_key"] = f"{output_prefix}{run_id}/chunk-{index:05d}.npy"
        response = post_json(session, url, body, policy, stats)
        if output_prefix is not None:
            where = response.json()
            raw = s3.get_object(Bucket=where["bucket"], Key=where["key"])["Body"].read()
            got = np.load(io.BytesIO(raw), allow_pickle=False)
            if not keep_chunks:
                s3.delete_object(Bucket=where["bucket"], Key=where["key"])
        else:
            got = np.asarray(response.json(), dtype=np.int64)
        if got.shape != (stop - start,):
            raise BatchError(f"{key}: {got.shape[0]} labels for {stop - start} rows")
        labels[start:stop] = got
        if not keep_chunks:
            s3.delete_object(Bucket=bucket, Key=key)
        return stop - start

    started = time.perf_counter()
    with (
        ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="batch") as executor,
        tqdm(
            total=len(pixels), unit="row", unit_scale=True, desc="predict", disable=not progress
        ) as bar,
    ):
        futures = [executor.submit(one, i) for i in range(len(bounds))]
        try:
            for future in as_completed(futures):
                bar.update(future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    seconds = time.perf_counter() - started
    if (labels < 0).any():  # pragma: no cover - every chunk either filled its rows or raised
        raise BatchError("some rows got no label")
    return BatchResult(
        labels=labels,
        rows=len(pixels),
        chunks=len(bounds),
        rows_per_chunk=plan.rows_per_chunk,
        seconds=seconds,
        rows_per_second=len(pixels) / seconds,
        calls=stats.calls,
        retries=stats.retries,
        statuses=dict(stats.statuses),
        plan=asdict(plan),
        concurrency=pool_size,
        run_id=run_id,
    )


# --- command line ---------------------------------------------------------------------------


def add_arguments(p: Any) -> None:
    """The ``mnist-lambda predict-batch`` options."""
    p.add_argument(
        "source",
        help="s3://bucket/key.npy, s3://bucket/prefix/ (every .npy under it, in key order) "
        "or a local .npy of (n, 784) uint8 pixels",
    )
    p.add_argument(
        "--output",
        "-o",
        required=True,
        help="predictions file (.npy or .json; local path or s3://)",
    )
    p.add_argument("--url", help="the POST /predict URL (default: the local stack's)")
    p.add_argument(
        "--local-stack",
        type=Path,
        metavar="STATE_DIR",
        help="use the local stack recorded in STATE_DIR (its URL, S3 and bucket)",
    )
    p.add_argument("--bucket", help="bucket for the chunks (default: the source's bucket)")
    p.add_argument(
        "--work-prefix",
        default=None,
        help="key prefix for the chunks; must be readable by the function (default: batch/ "
        "in the folder of an s3:// source, which the function reads already; else batch/)",
    )
    p.add_argument(
        "--output-prefix",
        default=None,
        help="ask the function to write each chunk's labels under this prefix (output_key; "
        "the template's OutputKeyPrefix, e.g. predictions/) instead of answering them",
    )
    p.add_argument("--concurrency", "-c", type=int, default=4, help="parallel calls (default 4)")
    p.add_argument("--rows-per-chunk", type=int, default=None, help="fix the chunk size")
    p.add_argument(
        "--rows-per-second",
        type=float,
        default=None,
        help="the endpoint's throughput per call (default: measured with a probe call)",
    )
    p.add_argument("--max-attempts", type=int, default=6, help="calls per chunk (default 6)")
    p.add_argument("--keep-chunks", action="store_true", help="leave the chunks in S3")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def main(args: Any) -> int:
    """Run ``predict-batch`` from parsed arguments; print a JSON summary."""
    import sys

    import boto3

    url = args.url
    if args.local_stack is not None:
        from mnist_lambda import local_stack

        info = local_stack.read(args.local_stack)
        if info is None:
            print(f"error: no local stack running in {args.local_stack}", file=sys.stderr)
            return 2
        s3 = local_stack.s3_client(info)
        url = url or info.predict_url
        default_bucket = info.bucket
    else:
        s3 = boto3.client("s3")
        default_bucket = None
    if not url:
        print("error: give --url or --local-stack", file=sys.stderr)
        return 2
    pixels, keys = read_source(args.source, s3)
    bucket = args.bucket or (
        parse_s3_url(args.source)[0] if args.source.startswith("s3://") else default_bucket
    )
    if not bucket:
        print("error: give --bucket for a local source", file=sys.stderr)
        return 2
    work_prefix = args.work_prefix
    if work_prefix is None:
        folder = parse_s3_url(args.source)[1] if args.source.startswith("s3://") else ""
        work_prefix = folder.rsplit("/", 1)[0] + "/batch/" if "/" in folder else "batch/"
    try:
        result = run_batch(
            pixels,
            url=url,
            s3=s3,
            bucket=bucket,
            work_prefix=work_prefix,
            output_prefix=args.output_prefix,
            concurrency=args.concurrency,
            rows_per_chunk=args.rows_per_chunk,
            rows_per_second=args.rows_per_second,
            policy=RetryPolicy(max_attempts=args.max_attempts),
            progress=not args.quiet,
            keep_chunks=args.keep_chunks,
        )
    except BatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result.output = write_predictions(result.labels, args.output, s3)
    summary = result.summary()
    summary["inputs"] = keys[:5] + (["..."] if len(keys) > 5 else [])
    print(json.dumps(summary, indent=2))
    return 0
