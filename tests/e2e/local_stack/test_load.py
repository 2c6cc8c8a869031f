"""A bounded load test of the running local stack (4 function instances): concurrency 1, 4 and
8, a fixed number of requests each (it stops by itself), zero errors allowed, every answer
identical to the model's own predictions; latency percentiles and throughput are printed and
written to tmp/outputs/load.json.

``FUZZ_PROFILE=ci`` (default): 360 requests; ``FUZZ_PROFILE=long``: 3,600.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from real_stack import PREFIX, npy_bytes, real_stack
from reliability_run import LONG, PROFILE, write_figures

from mnist_lambda import local_stack
from mnist_lambda.client import Client, EndpointError

pytestmark = pytest.mark.timeout(900 if LONG else 240)

INSTANCES = 4
LEVELS = {1: 60, 4: 150, 8: 150}
"""Concurrency -> requests (x10 in the long profile)."""
ROWS_PER_REQUEST = 100


@pytest.fixture(scope="module")
def rows(mnist_xy) -> np.ndarray:
    return np.ascontiguousarray(mnist_xy[0][:ROWS_PER_REQUEST], dtype=np.uint8)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, small_model_path: Path, rows
) -> Iterator[local_stack.StackInfo]:
    with real_stack(
        tmp_path_factory.mktemp("load-stack"), small_model_path, instances=INSTANCES
    ) as info:
        local_stack.s3_client(info).put_object(
            Bucket=info.bucket, Key=PREFIX + "digits.npy", Body=npy_bytes(rows)
        )
        yield info


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 1)


def run_level(info: local_stack.StackInfo, concurrency: int, total: int) -> dict[str, Any]:
    """``total`` requests from ``concurrency`` threads (one keep-alive session each)."""
    body = {"bucket": info.bucket, "key": PREFIX + "digits.npy"}
    local = threading.local()
    results: list[tuple[int, float, str]] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        client = getattr(local, "client", None)
        if client is None:  # no retries: every failure counts
            client = local.client = Client(info.predict_url, max_attempts=1, timeout_s=60)
        started = time.perf_counter()
        try:
            result = client.post(body)
            outcome = (result.status, result.seconds, result.response.text)
        except EndpointError as exc:
            outcome = (0, time.perf_counter() - started, repr(exc))
        with lock:
            results.append(outcome)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(total)))
    wall = time.perf_counter() - started
    latencies = [r[1] for r in results]
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "errors": sum(1 for r in results if r[0] != 200),
        "statuses": sorted({r[0] for r in results}),
        "bodies": {r[2] for r in results},
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(results) / wall, 1),
        "rows_per_s": round(len(results) * ROWS_PER_REQUEST / wall),
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "max": round(max(latencies) * 1000, 1),
            "mean": round(float(np.mean(latencies)) * 1000, 1),
        },
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def test_load_holds_with_zero_errors_and_identical_answers(stack, rows, small_model_path) -> None:
    from mnist_serving.model import load

    expected = load(small_model_path).predict(rows).tolist()
    expected_body = json.dumps(expected, separators=(",", ":"))
    # warm every instance first (cold starts are not part of the steady-state figures)
    warm = run_level(stack, INSTANCES, INSTANCES * 2)
    assert warm["errors"] == 0, warm
    scale = 10 if LONG else 1
    levels = []
    for concurrency, total in LEVELS.items():
        result = run_level(stack, concurrency, total * scale)
        bodies = result.pop("bodies")
        assert result["errors"] == 0, result
        assert bodies == {expected_body}, f"answers differ: {list(bodies)[:3]}"
        levels.append(result)
        print(
            f"c={concurrency}: {result['requests']} requests, {result['throughput_rps']} req/s, "
            f"p50 {result['latency_ms']['p50']} ms, p99 {result['latency_ms']['p99']} ms"
        )
    figures = {
        "profile": PROFILE,
        "instances": INSTANCES,
        "rows_per_request": ROWS_PER_REQUEST,
        "total_requests": sum(r["requests"] for r in levels),
        "errors": sum(r["errors"] for r in levels),
        "levels": levels,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "note": "local stack: moto S3 + aws-lambda-rie + API front on one machine; "
        "API Gateway throttling (10 rps / burst 20 by default) is not emulated",
    }
    write_figures("load", figures)
    assert figures["errors"] == 0
