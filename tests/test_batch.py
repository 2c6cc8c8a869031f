"""The batch client: chunk arithmetic, retries with backoff, row order, and the S3 output option
end to end through the local stack (API front + Lambda emulator + moto S3)."""

from __future__ import annotations

import http.server
import io
import itertools
import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import pytest
import requests
from botocore.config import Config
from handler_helpers import closed_port

from mnist_lambda import aws_limits, batch, cli
from mnist_lambda.local_stack.cfn_template import function_settings
from mnist_serving.model import load

# --- chunk arithmetic -----------------------------------------------------------------------


def test_time_limit_binds_for_a_slow_endpoint():
    plan = batch.plan_chunks(70_000, rows_per_second=1_000, time_limit_s=25)
    # 1,000 rows/s * min(25 s, 29 s) * 0.25 = 6,250 rows: a quarter of the function's timeout
    assert plan.limits_rows["time"] == 6_250
    assert (plan.rows_per_chunk, plan.binding, plan.n_chunks) == (6_250, "time", 12)
    # by default the template's Timeout, capped by API Gateway's
    timeout = min(function_settings().function.timeout, aws_limits.API_GATEWAY_TIMEOUT_S)
    plan = batch.plan_chunks(70_000, rows_per_second=1_000)
    assert plan.limits_rows["time"] == int(1_000 * timeout * batch.TIME_SAFETY)


def test_size_limits():
    fast = 10_000_000.0
    # a function reading at most 50 MiB: (50 MiB - 128) / 784 = 66,873 rows, used at half
    plan = batch.plan_chunks(10**6, fast, max_rows=None, max_object_bytes=50 * 2**20)
    assert plan.limits_rows["object"] == int((50 * 2**20 - 128) * 0.5 / 784) == 33_436
    assert plan.binding == "object"
    # by default the template's MaxObjectBytes
    limit = function_settings().max_object_bytes
    plan = batch.plan_chunks(10**6, fast, max_rows=None)
    assert plan.limits_rows["object"] == int((limit - 128) * 0.5 / 784)
    # the 6 MB response at 2 bytes per label ("7,"), used at half: 1,572,889 rows
    plan = batch.plan_chunks(10**7, fast, max_rows=None, max_object_bytes=10**10)
    assert plan.limits_rows["response"] == aws_limits.LAMBDA_RESPONSE_BYTES // 2 // 2 == 1_572_889
    assert plan.binding == "response"
    # with output_key the answer is a location: the response no longer limits the rows
    plan = batch.plan_chunks(10**7, fast, max_rows=None, max_object_bytes=10**10,
                             output_to_s3=True)  # fmt: skip
    assert "response" not in plan.limits_rows and plan.binding == "object"
    assert plan.rows_per_chunk == int((10**10 - 128) * 0.5 / 784)
    # the request body names the chunk, never carries pixels: far below 10 MB whatever the rows
    assert batch.REQUEST_BODY_BYTES * 1000 < aws_limits.API_GATEWAY_PAYLOAD_BYTES


def test_parallelism_max_rows_and_small_batches():
    plan = batch.plan_chunks(20_000, 1e6, concurrency=4)
    assert (plan.rows_per_chunk, plan.binding, plan.n_chunks) == (5_000, "parallelism", 4)
    plan = batch.plan_chunks(70_000, 1e6, concurrency=2)
    assert (plan.rows_per_chunk, plan.binding, plan.n_chunks) == (10_000, "max_rows", 7)
    plan = batch.plan_chunks(300, 1e6)
    assert (plan.rows_per_chunk, plan.binding, plan.n_chunks) == (300, "total", 1)
    plan = batch.plan_chunks(10_001, None)  # no measurement: the size limits and max_rows only
    assert plan.rows_per_chunk == 10_000 and plan.n_chunks == 2


@pytest.mark.parametrize("total", [1, 999, 1000, 1001, 70_000])
def test_bounds_cover_every_row_once_in_order(total):
    plan = batch.plan_chunks(total, 3_000.0, concurrency=3)
    bounds = plan.bounds()
    assert bounds[0][0] == 0 and bounds[-1][1] == total and len(bounds) == plan.n_chunks
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert all(stop - start <= plan.rows_per_chunk for start, stop in bounds)


def test_plan_rejects_nonsense():
    with pytest.raises(ValueError):
        batch.plan_chunks(0, 100.0)
    with pytest.raises(ValueError):
        batch.plan_chunks(10, 0.0)


# --- retries against a tiny local server ---------------------------------------------------


class Scripted(http.server.ThreadingHTTPServer):
    """Answers POSTs from a script of statuses, then 200 with ``[1, 2, 3]``."""

    def __init__(self, script: list[int]) -> None:
        self.script = list(script)
        self.seen = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), ScriptedHandler)


class ScriptedHandler(http.server.BaseHTTPRequestHandler):
    server: Scripted

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.seen += 1
            status = self.server.script.pop(0) if self.server.script else 200
        body = b"[1,2,3]" if status == 200 else b'{"message": "no"}'
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[callable]:
    servers = []

    def make(script: list[int]) -> tuple[Scripted, str]:
        server = Scripted(script)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}/predict"

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def policy(max_attempts: int = 6) -> tuple[batch.RetryPolicy, list[float]]:
    sleeps: list[float] = []
    return (
        batch.RetryPolicy(
            max_attempts=max_attempts, sleep=sleeps.append, rng=random.Random(1), timeout_s=5
        ),
        sleeps,
    )


def test_retries_throttling_and_5xx_then_succeeds(scripted):
    server, url = scripted([429, 503, 502, 500, 504])
    pol, sleeps = policy()
    stats = batch.CallStats()
    response = batch.post_json(requests.Session(), url, {"bucket": "b", "key": "k"}, pol, stats)
    assert response.json() == [1, 2, 3]
    assert server.seen == 6 and stats.calls == 6 and stats.retries == 5
    assert stats.statuses == {"429": 1, "503": 1, "502": 1, "500": 1, "504": 1, "200": 1}
    # full jitter: attempt i waits at most min(cap, base * 2**i)
    assert len(sleeps) == 5
    assert all(0 <= s <= min(pol.cap_s, pol.base_s * 2**i) for i, s in enumerate(sleeps))


def test_gives_up_after_bounded_attempts(scripted):
    server, url = scripted([503] * 10)
    pol, sleeps = policy(max_attempts=3)
    with pytest.raises(batch.BatchError, match="gave up after 3 attempts"):
        batch.post_json(requests.Session(), url, {"key": "k"}, pol)
    assert server.seen == 3 and len(sleeps) == 2


@pytest.mark.parametrize("status", [400, 403, 404, 413, 415, 422])
def test_client_errors_are_not_retried(scripted, status):
    server, url = scripted([status])
    pol, sleeps = policy()
    with pytest.raises(batch.BatchError, match=f"HTTP {status}"):
        batch.post_json(requests.Session(), url, {"key": "k"}, pol)
    assert server.seen == 1 and sleeps == []


def test_connection_errors_are_retried():
    url = f"http://127.0.0.1:{closed_port()}/predict"
    pol, sleeps = policy(max_attempts=3)
    stats = batch.CallStats()
    with pytest.raises(batch.BatchError, match="ConnectionError"):
        batch.post_json(requests.Session(), url, {"key": "k"}, pol, stats)
    assert stats.calls == 3 and stats.statuses == {"error": 3} and len(sleeps) == 2


def test_backoff_delay_respects_retry_after_and_cap():
    pol = batch.RetryPolicy(base_s=0.1, cap_s=2.0, rng=random.Random(0))
    assert pol.delay(0, "1.5") >= 1.5
    assert pol.delay(0, "60") <= 2.0  # never longer than the cap
    assert all(pol.delay(10) <= 2.0 for _ in range(50))


# --- row order: chunks finish out of order, labels land in place ----------------------------


@pytest.fixture(scope="module")
def moto_s3(moto_endpoint: str) -> object:
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(proxies={}),
    )
    client.create_bucket(Bucket="batch-bucket")
    return client


def test_row_order_is_preserved_with_out_of_order_completion(moto_s3):
    """A fake endpoint labels each row by its first pixel and answers after a random delay."""
    s3 = moto_s3

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            raw = s3.get_object(Bucket=body["bucket"], Key=body["key"])["Body"].read()
            pixels = np.load(io.BytesIO(raw))
            time.sleep(random.uniform(0, 0.05))
            out = json.dumps((pixels[:, 0].astype(int) % 10).tolist()).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pixels = np.zeros((2_345, 784), dtype=np.uint8)
        pixels[:, 0] = np.arange(2_345) % 256
        result = batch.run_batch(
            pixels,
            url=f"http://127.0.0.1:{server.server_address[1]}/predict",
            s3=s3,
            bucket="batch-bucket",
            rows_per_chunk=100,
            concurrency=6,
            progress=False,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.chunks == 24 and result.calls == 24 and result.retries == 0
    np.testing.assert_array_equal(result.labels, (np.arange(2_345) % 256) % 10)
    assert s3.list_objects_v2(Bucket="batch-bucket", Prefix="batch/").get("KeyCount") == 0


def test_read_source_and_write_predictions(moto_s3, tmp_path):
    s3 = moto_s3
    rows = np.arange(5 * 784, dtype=np.uint8).reshape(5, 784)
    for i in (2, 0, 1):  # listed in key order, whatever the upload order
        buf = io.BytesIO()
        np.save(buf, rows[i : i + 1] if i < 2 else rows[2:])
        s3.put_object(Bucket="batch-bucket", Key=f"in/part-{i}.npy", Body=buf.getvalue())
    s3.put_object(Bucket="batch-bucket", Key="in/readme.txt", Body=b"ignored")
    got, keys = batch.read_source("s3://batch-bucket/in/", s3)
    assert keys == ["in/part-0.npy", "in/part-1.npy", "in/part-2.npy"]
    np.testing.assert_array_equal(got, rows)
    one, _ = batch.read_source("s3://batch-bucket/in/part-2.npy", s3)
    np.testing.assert_array_equal(one, rows[2:])
    labels = np.array([3, 1, 4])
    batch.write_predictions(labels, str(tmp_path / "p.npy"))
    batch.write_predictions(labels, str(tmp_path / "p.json"))
    batch.write_predictions(labels, "s3://batch-bucket/out/p.npy", s3)
    assert np.load(tmp_path / "p.npy").tolist() == [3, 1, 4]
    assert json.loads((tmp_path / "p.json").read_text()) == [3, 1, 4]
    raw = s3.get_object(Bucket="batch-bucket", Key="out/p.npy")["Body"].read()
    assert np.load(io.BytesIO(raw)).tolist() == [3, 1, 4]


# --- end to end on the local stack, with output_key ------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory, small_model_path):
    from mnist_lambda import local_stack

    state = tmp_path_factory.mktemp("batch-stack")
    info = local_stack.start(state, instances=2, model_path=small_model_path, timeout=120)
    try:
        yield state, info
    finally:
        local_stack.stop(state)


@pytest.mark.e2e
def test_batch_with_output_key_through_the_local_stack(stack, mnist_xy, small_model_path):
    from mnist_lambda import local_stack

    _, info = stack
    x, _ = mnist_xy
    pixels = x[:3_000]
    s3 = local_stack.s3_client(info)
    result = batch.run_batch(
        pixels,
        url=info.predict_url,
        s3=s3,
        bucket=info.bucket,
        output_prefix="predictions/",
        concurrency=2,
        probe_rows=500,
        progress=False,
    )
    np.testing.assert_array_equal(result.labels, load(small_model_path).predict(pixels))
    assert result.plan["binding"] in {"parallelism", "time", "max_rows"}
    assert result.retries == 0 and result.statuses == {"200": result.calls}
    leftovers = s3.list_objects_v2(Bucket=info.bucket).get("Contents", [])
    assert not [o["Key"] for o in leftovers if o["Key"].startswith(("batch/", "predictions/"))]


@pytest.mark.e2e
def test_output_key_statuses_through_the_local_stack(stack, mnist_xy):
    from mnist_lambda import local_stack

    _, info = stack
    x, _ = mnist_xy
    s3 = local_stack.s3_client(info)
    buf = io.BytesIO()
    np.save(buf, x[:50])
    s3.put_object(Bucket=info.bucket, Key="inputs/fifty.npy", Body=buf.getvalue())
    base = {"bucket": info.bucket, "key": "inputs/fifty.npy"}
    ok = requests.post(info.predict_url, json={**base, "output_key": "predictions/t/x.json"})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"bucket": info.bucket, "key": "predictions/t/x.json", "rows": 50,
                         "format": "json"}  # fmt: skip
    stored = json.loads(s3.get_object(Bucket=info.bucket, Key="predictions/t/x.json")["Body"]
                        .read())  # fmt: skip
    assert stored == requests.post(info.predict_url, json=base).json()
    outside = requests.post(info.predict_url, json={**base, "output_key": "inputs/x.npy"})
    assert outside.status_code == 403, outside.text
    for bad in ("../x.npy", "predictions/x.csv", ""):
        response = requests.post(info.predict_url, json={**base, "output_key": bad})
        assert response.status_code == 400, (bad, response.text)


@pytest.mark.e2e
def test_predict_batch_cli(stack, mnist_xy, small_model_path, tmp_path, capsys):
    state, _ = stack
    x, _ = mnist_xy
    source = tmp_path / "in.npy"
    np.save(source, x[:1_500])
    out = tmp_path / "labels.npy"
    code = cli.main(
        ["predict-batch", str(source), "--local-stack", str(state), "-o", str(out),
         "--rows-per-chunk", "400", "-c", "2", "-q"]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["chunks"] == 4 and summary["rows"] == 1_500
    np.testing.assert_array_equal(np.load(out), load(small_model_path).predict(x[:1_500]))
    assert Path(summary["output"]) == out


# --- a 429 from the API front's stage throttle --------------------------------------------------


def test_throttling_429_from_the_api_front_is_retried(tmp_path):
    """The real API front, its stage throttled to burst 1 and 1 request/s, over a stub function:
    post_json backs off on the 429 (no Retry-After, as on API Gateway) until a token is back."""
    from stack_helpers import write_throttled_echo_app

    from mnist_lambda.local_stack.api_front import ApiFront
    from mnist_lambda.local_stack.cfn_template import load_stack_spec
    from mnist_lambda.local_stack.lambda_emulator import InvokeResult

    invoked: list[bytes] = []

    class Function:
        def invoke(self, payload: bytes, deadline: float) -> InvokeResult:
            invoked.append(payload)
            return InvokeResult("stub", 200, b'{"statusCode": 200, "body": "[1, 2, 3]"}')

    _, template = write_throttled_echo_app(tmp_path, rate=1, burst=1)
    front = ApiFront(load_stack_spec(template), {"EchoFunction": Function()})
    front.start()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    pol = batch.RetryPolicy(max_attempts=12, sleep=sleep, rng=random.Random(1), timeout_s=5)
    stats = batch.CallStats()
    try:
        session = requests.Session()
        url = front.url + "/dev/predict"
        assert session.post(url, json={}, timeout=5).status_code == 200  # the only token
        response = batch.post_json(session, url, {"bucket": "b", "key": "k"}, pol, stats)
    finally:
        front.stop()
    assert response.json() == [1, 2, 3]
    assert stats.statuses["429"] >= 1 and stats.statuses["200"] == 1 and len(stats.statuses) == 2
    assert len(sleeps) == stats.retries == stats.calls - 1
    assert len(invoked) == 2  # the throttled attempts never reached the function
