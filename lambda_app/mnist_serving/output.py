"""Write the predictions to S3 instead of the response: the ``output_key`` request option.

One response of Lambda is capped at 6 MB and one API Gateway call at 29 s, so a caller with many
rows splits them into chunks and may ask each call to leave its labels in S3 and answer only
where they are: ``{"bucket", "key", "rows", "format"}``.

* Where: the request's bucket (one of ``ALLOWED_BUCKETS``) under the key prefix
  ``OUTPUT_PREFIX`` (e.g. ``predictions/``), matched character for character like the IAM
  resource ``arn:aws:s3:::<DataBucketName>/<OutputKeyPrefix>*`` the template grants
  ``s3:PutObject`` on. Anything else is 403 before S3 is even read; an empty or unset
  ``OUTPUT_PREFIX`` turns the option off (every ``output_key`` is 403).
* Format, by the key's suffix: ``.npy`` (a 1-D int64 array, no pickle) or ``.json`` (the same
  list the 200 answer would carry); any other suffix is 400.
* With ``"return": "probabilities"``: ``.json`` (the same object the 200 answer would carry,
  probabilities rounded) or ``.npz`` (``np.savez``, no pickle: ``labels`` int64,
  ``probabilities`` float32 unrounded, ``classes`` int64); ``.npy`` cannot hold them and is 400.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

from mnist_serving.allowlist import AllowList
from mnist_serving.errors import BadRequest, Forbidden
from mnist_serving.predictions import Predictions

ENV_VAR = "OUTPUT_PREFIX"
FORMATS = {".npy": "application/x-npy", ".json": "application/json", ".npz": "application/zip"}
LABEL_FORMATS = (".npy", ".json")
"""Suffixes of ``output_key`` for labels (the default ``"return"``)."""
PROBABILITY_FORMATS = (".json", ".npz")
"""Suffixes of ``output_key`` with ``"return": "probabilities"``."""


@dataclass(frozen=True)
class OutputTarget:
    """A checked place to write labels to."""

    bucket: str
    key: str

    @property
    def suffix(self) -> str:
        return next(s for s in FORMATS if self.key.lower().endswith(s))

    def encode(self, predictions: Predictions) -> tuple[bytes, str]:
        """The object's bytes and content type."""
        buf = io.BytesIO()
        if self.suffix == ".npy":
            np.save(buf, np.asarray(predictions.labels, dtype=np.int64), allow_pickle=False)
        elif self.suffix == ".npz":
            np.savez(buf, **predictions.arrays())
        else:
            buf.write(json.dumps(predictions.body(), separators=(",", ":")).encode())
        return buf.getvalue(), FORMATS[self.suffix]

    def location(self, rows: int) -> dict[str, object]:
        """The 200 answer: where the labels are."""
        return {"bucket": self.bucket, "key": self.key, "rows": rows, "format": self.suffix[1:]}


def parse_prefix(value: str | None) -> str:
    """``OUTPUT_PREFIX``: a key prefix (no leading ``/``, no ``*``); empty disables the option."""
    prefix = (value or "").strip()
    if prefix.startswith("/") or "*" in prefix or "," in prefix:
        raise ValueError(f"{ENV_VAR}: {prefix!r} must be a key prefix such as 'predictions/'")
    return prefix


def check_target(
    bucket: str, key: str, prefix: str, allowed: AllowList, probabilities: bool = False
) -> OutputTarget:
    """Raise 403 unless ``s3://bucket/key`` is under the output prefix of an allowed bucket;
    400 if the suffix names no format for what is returned (labels, or ``probabilities``)."""
    if not prefix:
        raise Forbidden(f"writing predictions to S3 is not enabled: {ENV_VAR} is empty")
    if bucket not in {b for b, _ in allowed.entries} or not key.startswith(prefix):
        raise Forbidden(
            f"s3://{bucket}/{key} is outside where this function may write predictions "
            f"(keys starting with {prefix!r} in its data bucket)"
        )
    lower = key.lower()
    if probabilities and not lower.endswith(PROBABILITY_FORMATS):
        raise BadRequest(
            'with "return": "probabilities", \'output_key\' must end with .json or .npz '
            "(.npy holds labels only)"
        )
    if not probabilities and not lower.endswith(LABEL_FORMATS):
        hint = ' (.npz is for "return": "probabilities")' if lower.endswith(".npz") else ""
        raise BadRequest(
            f"'output_key' must end with .npy or .json (the format of the labels){hint}"
        )
    return OutputTarget(bucket, key)
