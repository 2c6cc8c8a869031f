"""Chunk planning: how many rows one ``POST /predict`` may carry (pure arithmetic)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mnist_lambda.aws_limits import (
    API_GATEWAY_PAYLOAD_BYTES,
    API_GATEWAY_TIMEOUT_S,
    LAMBDA_RESPONSE_BYTES,
)
from mnist_lambda.template.reader import function_settings
from mnist_serving.predictions import MAX_JSON_BYTES_PER_VALUE
from mnist_serving.schema import N_CLASSES, N_PIXELS

NPY_HEADER_BYTES = 128
JSON_BYTES_PER_LABEL = 2
"""A label in the 200 answer is one digit and a comma: ``[7,2,1,...]``."""
JSON_BYTES_PER_PROBABILITY_ROW = (
    JSON_BYTES_PER_LABEL + N_CLASSES * (MAX_JSON_BYTES_PER_VALUE + 1) + 2
)
"""A row of ``"return": "probabilities"`` at most: its label, and ``[0.1235,...],`` (10 values
of at most 6 characters, rounded to 4 decimals, and their commas): 74 bytes."""
REQUEST_BODY_BYTES = 1024 + 2 * 1024
"""Upper bound of ``{"bucket", "key", "output_key"}``: two keys of at most 1,024 bytes each."""
TIME_SAFETY = 0.25
"""Use a quarter of the time limit: room for a cold start, a busy S3 and a slower instance."""
SIZE_SAFETY = 0.5
"""Use half of a size limit."""
DEFAULT_MAX_ROWS = 10_000
"""Chunks larger than this gain little per request and lose parallelism and retry granularity."""


@dataclass(frozen=True)
class ChunkPlan:
    """How many rows go in each request, and which limit decided it."""

    total_rows: int
    rows_per_chunk: int
    n_chunks: int
    binding: str
    limits_rows: dict[str, int]
    rows_per_second: float | None

    @classmethod
    def fixed(
        cls, total_rows: int, rows_per_chunk: int, rows_per_second: float | None = None
    ) -> ChunkPlan:
        """A plan with the chunk size given by the caller."""
        if total_rows < 1 or rows_per_chunk < 1:
            raise ValueError(f"no chunks of {rows_per_chunk} rows in {total_rows} rows")
        return cls(
            total_rows,
            rows_per_chunk,
            math.ceil(total_rows / rows_per_chunk),
            "fixed",
            {"fixed": rows_per_chunk},
            rows_per_second,
        )

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
    probabilities: bool = False,
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
    * response (Lambda's 6 MB): 2 bytes per label in the JSON list (74 per row with
      ``probabilities``), times ``size_safety``; with ``output_to_s3`` the answer is a
      ~100-byte location whatever the rows, so no limit;
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
        per_row = JSON_BYTES_PER_PROBABILITY_ROW if probabilities else JSON_BYTES_PER_LABEL
        limits["response"] = int(LAMBDA_RESPONSE_BYTES * size_safety / per_row)
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
