"""The batch itself: upload chunks, call the endpoint concurrently, put the labels in row order.

With a ``state_dir`` it is resumable (:mod:`mnist_lambda.batch.progress`): every answered
chunk is kept, and the same batch started again sends only the chunks still missing.

With ``return_probabilities`` every call asks ``"return": "probabilities"``: the probabilities
come back in row order too, from each chunk's ``.npz`` (``output_key``, float32 as the model
computed them) or from the answer (rounded by the endpoint to 4 decimals).
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda.batch.plan import ChunkPlan, plan_chunks
from mnist_lambda.batch.progress import Progress, batch_identity
from mnist_lambda.client import DEFAULT_MAX_ATTEMPTS, Client, EndpointError, Result
from mnist_serving.predictions import Predictions
from mnist_serving.schema import N_PIXELS


class BatchError(RuntimeError):
    """A chunk failed for good (a 4xx, or retries exhausted); the message says which."""


@dataclass
class BatchResult:
    """What a batch did: rows, chunks, time, throughput, retries and the plan.

    ``calls``, ``retries``, ``statuses``, ``seconds`` and ``rows_per_second`` are this
    attempt's; ``resumed_chunks`` were answered by an earlier one, ``sent_chunks`` by this one.
    """

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
    resumed_chunks: int = 0
    sent_chunks: int = 0
    state: str | None = None
    """The progress record's folder (None when the batch is not resumable)."""
    probabilities: np.ndarray | None = field(default=None, repr=False)
    """With ``return_probabilities``: (rows, n_classes) float32, row ``i`` of the input's."""
    classes: np.ndarray | None = field(default=None, repr=False)
    """With ``return_probabilities``: the model's classes, the columns of ``probabilities``."""

    @property
    def predictions(self) -> Predictions:
        """Labels (and probabilities, classes) as one value, what the output file holds."""
        return Predictions(self.labels, self.probabilities, self.classes)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("labels", "probabilities", "classes"):
            data.pop(name)
        data["return"] = "labels" if self.probabilities is None else "probabilities"
        return data


def _npy(pixels: np.ndarray) -> bytes:
    from mnist_lambda.deploy.s3_data import npy_bytes

    return npy_bytes(pixels)


def measure_throughput(
    client: Client, s3: Any, bucket: str, key: str, pixels: np.ndarray, calls: int = 2
) -> float:
    """Rows per second of one warm call of ``pixels`` (end to end: S3 read, predict, answer).

    The probe object is uploaded once and called ``calls`` times; the fastest call counts as the
    warm one (the first may pay a cold start), so a slower, colder call has the safety margin.
    """
    s3.put_object(Bucket=bucket, Key=key, Body=_npy(pixels))
    try:
        best = min(client.predict(bucket, key).seconds for _ in range(calls))
    except EndpointError as exc:
        raise BatchError(f"probe call failed: {exc}") from exc
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
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    progress: bool = True,
    keep_chunks: bool = False,
    client: Client | None = None,
    state_dir: str | Path | None = None,
    destination: str | None = None,
    return_probabilities: bool = False,
) -> BatchResult:
    """Predict every row of ``pixels`` through the endpoint; labels come back in row order.

    ``rows_per_chunk`` fixes the chunk size; otherwise it is planned from ``rows_per_second``,
    measured first with a ``probe_rows`` call when not given. With ``output_prefix`` each call
    writes its labels to S3 (``output_key``) and answers only their location. With
    ``state_dir`` the batch is resumable: its record is ``state_dir/.predict-batch-<run id>``
    (the run id is derived from the rows, the chunk size asked for, ``output_prefix`` and
    ``destination``), and an interrupted batch started again sends only its missing chunks.
    With ``return_probabilities`` the result also has ``probabilities`` and ``classes`` (each
    call asks ``"return": "probabilities"``; with ``output_prefix`` each chunk is an ``.npz``).
    """
    from tqdm.auto import tqdm

    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[1] != N_PIXELS:
        raise ValueError(f"expected (n, {N_PIXELS}) pixels, got shape {pixels.shape}")
    pool_size = max(1, concurrency)
    own_client = client is None
    client = client or Client(url, max_attempts=max_attempts, pool_size=pool_size)
    record: Progress | None = None
    if state_dir is not None:
        run_id, identity = batch_identity(
            pixels,
            rows_per_chunk=rows_per_chunk,
            output_prefix=output_prefix,
            destination=destination,
            probabilities=return_probabilities,
        )
        record = Progress(Path(state_dir) / f".predict-batch-{run_id}", run_id, identity)
    else:
        run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    work = f"{work_prefix}{run_id}/"
    try:
        plan = record.plan if record else None
        if plan is None and rows_per_chunk:
            plan = ChunkPlan.fixed(len(pixels), rows_per_chunk, rows_per_second)
        elif plan is None:
            if rows_per_second is None:
                probe = pixels[: min(probe_rows, len(pixels))]
                rows_per_second = measure_throughput(client, s3, bucket, f"{work}probe.npy", probe)
            plan = plan_chunks(
                len(pixels),
                rows_per_second,
                concurrency=concurrency,
                output_to_s3=output_prefix is not None,
                probabilities=return_probabilities,
            )
        bounds = plan.bounds()
        labels = np.full(len(pixels), -1, dtype=np.int64)
        lock = threading.Lock()
        collected: dict[str, np.ndarray] = {}  # probabilities and classes, once known

        def keep(index: int, got: Predictions) -> None:
            """Put a chunk's answer in place (checked against its rows and the classes)."""
            start, stop = bounds[index]
            if got.labels.shape != (stop - start,):
                raise BatchError(
                    f"chunk {index}: {got.labels.shape[0]} labels for {stop - start} rows"
                )
            labels[start:stop] = got.labels
            if not return_probabilities:
                return
            if got.probabilities is None or got.classes is None:
                raise BatchError(f"chunk {index}: the answer has no probabilities")
            if got.probabilities.shape != (stop - start, len(got.classes)):
                raise BatchError(
                    f"chunk {index}: probabilities of shape {got.probabilities.shape}"
                )
            with lock:
                if "classes" not in collected:
                    collected["classes"] = np.asarray(got.classes, dtype=np.int64)
                    shape = (len(pixels), len(got.classes))
                    collected["probabilities"] = np.full(shape, np.nan, dtype=np.float32)
                elif not np.array_equal(collected["classes"], got.classes):
                    raise BatchError(f"chunk {index}: classes {got.classes.tolist()} differ")
                collected["probabilities"][start:stop] = got.probabilities

        answered = record.begin(plan) if record else {}
        for index, got in answered.items():
            keep(index, got)
        todo = [i for i in range(len(bounds)) if i not in answered]
        base = (client.stats.calls, client.stats.retries, dict(client.stats.statuses))
        model = {"sha256": record.model_sha256 if record else None}

        def same_model(sha256: str | None) -> None:
            with lock:
                if sha256 and model["sha256"] and sha256 != model["sha256"]:
                    where = f"; delete {record.folder} to start over" if record else ""
                    raise BatchError(
                        f"the endpoint's model changed during the batch "
                        f"({model['sha256'][:12]} -> {sha256[:12]}){where}"
                    )
                model["sha256"] = model["sha256"] or sha256

        def one(index: int) -> int:
            start, stop = bounds[index]
            key = f"{work}chunk-{index:05d}.npy"
            s3.put_object(Bucket=bucket, Key=key, Body=_npy(pixels[start:stop]))
            output_key = None
            if output_prefix is not None:
                suffix = ".npz" if return_probabilities else ".npy"
                output_key = f"{output_prefix}{run_id}/chunk-{index:05d}{suffix}"
            try:
                result = client.predict(bucket, key, output_key, return_probabilities)
                got = _from_body(result) if output_key is None else None
            except EndpointError as exc:
                raise BatchError(str(exc)) from exc
            same_model(result.model_sha256)
            if output_key is not None:
                where = result.body
                raw = s3.get_object(Bucket=where["bucket"], Key=where["key"])["Body"].read()
                got = _from_object(raw, return_probabilities)
            keep(index, got)
            if record is not None:
                record.record(
                    index,
                    got,
                    model_sha256=result.model_sha256,
                    request_id=result.request_id,
                    calls=client.stats.calls - base[0],
                    retries=client.stats.retries - base[1],
                )
            if not keep_chunks:
                s3.delete_object(Bucket=bucket, Key=key)
                if output_key is not None:
                    s3.delete_object(Bucket=where["bucket"], Key=where["key"])
            return stop - start

        started = time.perf_counter()
        with (
            ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="batch") as executor,
            tqdm(
                total=len(pixels),
                initial=int(sum(len(v) for v in answered.values())),
                unit="row",
                unit_scale=True,
                desc="predict",
                disable=not progress,
            ) as bar,
        ):
            futures = [executor.submit(one, i) for i in todo]
            try:
                for future in as_completed(futures):
                    bar.update(future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        seconds = time.perf_counter() - started
    finally:
        if own_client:
            client.close()
    if (labels < 0).any():  # pragma: no cover - every chunk either filled its rows or raised
        raise BatchError("some rows got no label")
    probabilities = collected.get("probabilities")
    if return_probabilities and (probabilities is None or np.isnan(probabilities).any()):
        raise BatchError("some rows got no probabilities")  # pragma: no cover - as above
    sent_rows = sum(bounds[i][1] - bounds[i][0] for i in todo)
    statuses = {
        k: v - base[2].get(k, 0) for k, v in client.stats.statuses.items() if v - base[2].get(k, 0)
    }
    return BatchResult(
        labels=labels,
        rows=len(pixels),
        chunks=len(bounds),
        rows_per_chunk=plan.rows_per_chunk,
        seconds=seconds,
        rows_per_second=sent_rows / seconds if sent_rows and seconds > 0 else 0.0,
        calls=client.stats.calls - base[0],
        retries=client.stats.retries - base[1],
        statuses=statuses,
        plan=asdict(plan),
        concurrency=pool_size,
        run_id=run_id,
        resumed_chunks=len(answered),
        sent_chunks=len(todo),
        state=str(record.folder) if record else None,
        probabilities=probabilities,
        classes=collected.get("classes"),
    )


def _from_body(result: Result) -> Predictions:
    """A chunk's answer from the response body (labels, or the probabilities object)."""
    return Predictions(result.labels, result.probabilities, result.classes)


def _from_object(raw: bytes, probabilities: bool) -> Predictions:
    """A chunk's answer from the object ``output_key`` wrote: ``.npy`` labels, or ``.npz``."""
    if not probabilities:
        return Predictions(np.load(io.BytesIO(raw), allow_pickle=False).astype(np.int64))
    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
        return Predictions(
            data["labels"].astype(np.int64),
            data["probabilities"].astype(np.float32),
            data["classes"].astype(np.int64),
        )
