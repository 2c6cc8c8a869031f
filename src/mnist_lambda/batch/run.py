"""The batch itself: upload chunks, call the endpoint concurrently, put the labels in row order.

With a ``state_dir`` it is resumable (:mod:`mnist_lambda.batch.progress`): every answered
chunk is kept, and the same batch started again sends only the chunks still missing.

With ``return_probabilities`` every call asks ``"return": "probabilities"``: the probabilities
come back in row order too, from each chunk's ``.npz`` (``output_key``, float32 as the model
computed them) or from the answer (rounded by the endpoint to 4 decimals).

Each chunk's request is logged at INFO (``mnist_lambda.batch.run``; ``predict-batch -v``).
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.contrib.logging import logging_redirect_tqdm

from mnist_lambda.batch.plan import ChunkPlan, plan_chunks
from mnist_lambda.batch.progress import Progress, batch_identity
from mnist_lambda.client import (
    DEFAULT_MAX_ATTEMPTS,
    CallStats,
    Client,
    EndpointAuth,
    EndpointError,
    Result,
)
from mnist_lambda.deploy.s3_data import npy_bytes
from mnist_lambda.progress_bar import progress_bar
from mnist_serving.predictions import Predictions
from mnist_serving.schema import N_PIXELS

log = logging.getLogger(__name__)


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
        """Everything but the arrays, as JSON-ready values (``predict-batch`` prints it)."""
        data = asdict(self)
        for name in ("labels", "probabilities", "classes"):
            data.pop(name)
        data["return"] = "labels" if self.probabilities is None else "probabilities"
        return data


def measure_throughput(
    client: Client, s3: Any, bucket: str, key: str, pixels: np.ndarray, calls: int = 2
) -> float:
    """Rows per second of one warm call of ``pixels`` (end to end: S3 read, predict, answer).

    The probe object is uploaded once and called ``calls`` times; the fastest call counts as the
    warm one (the first may pay a cold start), so a slower, colder call has the safety margin.
    """
    s3.put_object(Bucket=bucket, Key=key, Body=npy_bytes(pixels))
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
    auth: EndpointAuth | None = None,
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
    ``auth``: how the calls authenticate (an authenticated endpoint, template.yaml).
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[1] != N_PIXELS:
        raise ValueError(f"expected (n, {N_PIXELS}) pixels, got shape {pixels.shape}")
    pool_size = max(1, concurrency)
    own_client = client is None
    client = client or Client(url, max_attempts=max_attempts, pool_size=pool_size, auth=auth)
    run_id, record = _open_record(
        pixels, state_dir, rows_per_chunk, output_prefix, destination, return_probabilities
    )
    work = f"{work_prefix}{run_id}/"
    try:
        plan = record.plan if record else None
        if plan is None:
            probe = pixels[: min(probe_rows, len(pixels))]
            plan = _plan(
                len(pixels),
                rows_per_chunk,
                rows_per_second,
                lambda: measure_throughput(client, s3, bucket, f"{work}probe.npy", probe),
                concurrency=concurrency,
                output_to_s3=output_prefix is not None,
                probabilities=return_probabilities,
            )
        attempt = _Attempt(
            client=client,
            s3=s3,
            bucket=bucket,
            work=work,
            run_id=run_id,
            pixels=pixels,
            rows=_Rows(plan, return_probabilities),
            output_prefix=output_prefix,
            probabilities=return_probabilities,
            keep_chunks=keep_chunks,
            record=record,
        )
        todo = attempt.resume(plan)
        seconds = _send_all(
            attempt.send,
            todo,
            pool_size,
            progress=progress,
            total=len(pixels),
            done=attempt.resumed_rows(),
        )
    finally:
        if own_client:
            client.close()
    return attempt.result(plan, todo, seconds, pool_size)


def _open_record(
    pixels: np.ndarray,
    state_dir: str | Path | None,
    rows_per_chunk: int | None,
    output_prefix: str | None,
    destination: str | None,
    probabilities: bool,
) -> tuple[str, Progress | None]:
    """The batch's run id and, with a ``state_dir``, its progress record (resumable)."""
    if state_dir is None:
        run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        return run_id, None
    run_id, identity = batch_identity(
        pixels,
        rows_per_chunk=rows_per_chunk,
        output_prefix=output_prefix,
        destination=destination,
        probabilities=probabilities,
    )
    return run_id, Progress(Path(state_dir) / f".predict-batch-{run_id}", run_id, identity)


def _plan(
    total_rows: int,
    rows_per_chunk: int | None,
    rows_per_second: float | None,
    measure: Callable[[], float],
    **planning: Any,
) -> ChunkPlan:
    """The chunk size given, or planned from the throughput (``measure``-d if not given)."""
    if rows_per_chunk:
        return ChunkPlan.fixed(total_rows, rows_per_chunk, rows_per_second)
    if rows_per_second is None:
        rows_per_second = measure()
        log.info("probe: %.0f rows/s", rows_per_second)
    return plan_chunks(total_rows, rows_per_second, **planning)


class _Rows:
    """The batch's answers put in row order as chunks come back (thread-safe)."""

    def __init__(self, plan: ChunkPlan, probabilities: bool) -> None:
        self.bounds = plan.bounds()
        self.total = plan.total_rows
        self.want_probabilities = probabilities
        self.labels = np.full(self.total, -1, dtype=np.int64)
        self.probabilities: np.ndarray | None = None
        self.classes: np.ndarray | None = None
        self._lock = threading.Lock()

    def size(self, index: int) -> int:
        start, stop = self.bounds[index]
        return stop - start

    def keep(self, index: int, got: Predictions) -> None:
        """Put a chunk's answer in place (checked against its rows and the classes)."""
        start, stop = self.bounds[index]
        if got.labels.shape != (stop - start,):
            raise BatchError(
                f"chunk {index}: {got.labels.shape[0]} labels for {stop - start} rows"
            )
        self.labels[start:stop] = got.labels
        if self.want_probabilities:
            self._keep_probabilities(index, got)

    def _keep_probabilities(self, index: int, got: Predictions) -> None:
        start, stop = self.bounds[index]
        if got.probabilities is None or got.classes is None:
            raise BatchError(f"chunk {index}: the answer has no probabilities")
        if got.probabilities.shape != (stop - start, len(got.classes)):
            raise BatchError(f"chunk {index}: probabilities of shape {got.probabilities.shape}")
        with self._lock:
            if self.classes is None:
                self.classes = np.asarray(got.classes, dtype=np.int64)
                shape = (self.total, len(got.classes))
                self.probabilities = np.full(shape, np.nan, dtype=np.float32)
            elif not np.array_equal(self.classes, got.classes):
                raise BatchError(f"chunk {index}: classes {got.classes.tolist()} differ")
            self.probabilities[start:stop] = got.probabilities

    def check_complete(self) -> None:
        """Every row has its label (and probabilities)."""
        if (self.labels < 0).any():  # pragma: no cover - every chunk filled its rows or raised
            raise BatchError("some rows got no label")
        missing = self.probabilities is None or np.isnan(self.probabilities).any()
        if self.want_probabilities and missing:
            raise BatchError("some rows got no probabilities")  # pragma: no cover - as above


@dataclass
class _Attempt:
    """This run of a batch: the chunks answered before it, sending the others (upload, call,
    fetch an ``output_key`` answer, keep it, clean up), and what it did."""

    client: Client
    s3: Any
    bucket: str
    work: str
    run_id: str
    pixels: np.ndarray
    rows: _Rows
    output_prefix: str | None
    probabilities: bool
    keep_chunks: bool
    record: Progress | None
    model_sha256: str | None = field(init=False)
    resumed: list[int] = field(init=False, default_factory=list)
    """Chunks answered by an earlier attempt (kept in the progress record)."""
    _before: CallStats = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.model_sha256 = self.record.model_sha256 if self.record else None
        stats = self.client.stats
        self._before = CallStats(stats.calls, stats.retries, dict(stats.statuses))

    def resume(self, plan: ChunkPlan) -> list[int]:
        """Put the chunks answered before in place; the chunks still to send."""
        answered = self.record.begin(plan) if self.record else {}
        for index, got in answered.items():
            self.rows.keep(index, got)
        self.resumed = list(answered)
        todo = [i for i in range(plan.n_chunks) if i not in answered]
        log.info(
            "batch %s: %d rows in %d chunks of %d (%s); %d answered before, %d to send",
            self.run_id, plan.total_rows, plan.n_chunks, plan.rows_per_chunk, plan.binding,
            len(answered), len(todo),
        )  # fmt: skip
        return todo

    def resumed_rows(self) -> int:
        return sum(self.rows.size(i) for i in self.resumed)

    def result(
        self, plan: ChunkPlan, todo: Sequence[int], seconds: float, concurrency: int
    ) -> BatchResult:
        """What the batch did, once every chunk is answered."""
        self.rows.check_complete()
        sent_rows = sum(self.rows.size(i) for i in todo)
        stats = self.stats()
        return BatchResult(
            labels=self.rows.labels,
            rows=plan.total_rows,
            chunks=plan.n_chunks,
            rows_per_chunk=plan.rows_per_chunk,
            seconds=seconds,
            rows_per_second=sent_rows / seconds if sent_rows and seconds > 0 else 0.0,
            calls=stats.calls,
            retries=stats.retries,
            statuses=stats.statuses,
            plan=asdict(plan),
            concurrency=concurrency,
            run_id=self.run_id,
            resumed_chunks=len(self.resumed),
            sent_chunks=len(todo),
            state=str(self.record.folder) if self.record else None,
            probabilities=self.rows.probabilities,
            classes=self.rows.classes,
        )

    def stats(self) -> CallStats:
        """This attempt's calls, retries and statuses (the client may have made others)."""
        now, before = self.client.stats, self._before
        statuses = {k: v - before.statuses.get(k, 0) for k, v in now.statuses.items()}
        return CallStats(
            now.calls - before.calls,
            now.retries - before.retries,
            {k: v for k, v in statuses.items() if v},
        )

    def send(self, index: int) -> int:
        """Predict chunk ``index``; the number of its rows."""
        start, stop = self.rows.bounds[index]
        key = f"{self.work}chunk-{index:05d}.npy"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=npy_bytes(self.pixels[start:stop]))
        output_key = None
        if self.output_prefix is not None:
            suffix = ".npz" if self.probabilities else ".npy"
            output_key = f"{self.output_prefix}{self.run_id}/chunk-{index:05d}{suffix}"
        try:
            result = self.client.predict(self.bucket, key, output_key, self.probabilities)
            got = _from_body(result) if output_key is None else None
        except EndpointError as exc:
            raise BatchError(str(exc)) from exc
        log.info(
            "chunk %d/%d: rows %d-%d, HTTP %d in %.3f s, %d retries, request %s",
            index + 1, len(self.rows.bounds), start, stop, result.status, result.seconds,
            result.retries, result.request_id,
        )  # fmt: skip
        self._same_model(result.model_sha256)
        if output_key is not None:
            where = result.body
            raw = self.s3.get_object(Bucket=where["bucket"], Key=where["key"])["Body"].read()
            got = _from_object(raw, self.probabilities)
        self.rows.keep(index, got)
        if self.record is not None:
            stats = self.stats()
            self.record.record(
                index,
                got,
                model_sha256=result.model_sha256,
                request_id=result.request_id,
                calls=stats.calls,
                retries=stats.retries,
            )
        if not self.keep_chunks:
            self.s3.delete_object(Bucket=self.bucket, Key=key)
            if output_key is not None:
                self.s3.delete_object(Bucket=where["bucket"], Key=where["key"])
        return stop - start

    def _same_model(self, sha256: str | None) -> None:
        """Refuse answers from another model than the batch's first ones."""
        with self._lock:
            if sha256 and self.model_sha256 and sha256 != self.model_sha256:
                where = f"; delete {self.record.folder} to start over" if self.record else ""
                raise BatchError(
                    f"the endpoint's model changed during the batch "
                    f"({self.model_sha256[:12]} -> {sha256[:12]}){where}"
                )
            self.model_sha256 = self.model_sha256 or sha256


def _send_all(
    send: Callable[[int], int],
    todo: Sequence[int],
    pool_size: int,
    *,
    progress: bool,
    total: int,
    done: int,
) -> float:
    """``send`` every chunk of ``todo`` on ``pool_size`` threads, with a progress bar of rows;
    the seconds it took. The first failure cancels the chunks not yet started."""
    started = time.perf_counter()
    with (
        ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="batch") as executor,
        progress_bar(
            total=total,
            initial=done,
            unit="row",
            unit_scale=True,
            desc="predict",
            disable=not progress,
        ) as bar,
        logging_redirect_tqdm(),
    ):
        futures = [executor.submit(send, i) for i in todo]
        try:
            for future in as_completed(futures):
                bar.update(future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return time.perf_counter() - started


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
