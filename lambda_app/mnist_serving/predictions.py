"""What a 200 answer carries, by the request's ``"return"``: labels, or labels with probabilities.

* ``"return": "labels"`` (the default): the bare JSON array of labels, the tutorial's answer.
* ``"return": "probabilities"``: ``{"labels": [...], "probabilities": [[...], ...], "classes":
  [...]}``: row ``i`` of ``probabilities`` holds the probability of each of ``classes`` (the
  model's labels, in column order) for input row ``i``; ``labels[i]`` is the class of the
  largest one (a tie goes to the first column), which is what ``"labels"`` answers.

In JSON the probabilities are rounded to :data:`PROBABILITY_DECIMALS` (4) decimals. A float32
written in full takes ~19 characters (``0.2800000011920929``): ~210 bytes a row of 10, so the
largest object ``MAX_OBJECT_BYTES`` lets in by default (50 MiB of ``.npy``: 66,873 rows) would
answer ~14 MB, over Lambda's 6 MB response limit. At 4 decimals a value takes at most 6
characters (``0.1235``, ``1.0``, ``0.0``): at most ~73 bytes a row with every class nonzero
(4.9 MB for those 66,873 rows), ~54 with the k-NN model's 4 neighbours. Rounding moves a value by
at most 5e-5, so a row sums to 1 within 5e-4; the ``.npz`` of ``output_key`` keeps the float32
values unrounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PROBABILITY_DECIMALS = 4
"""Decimals of a probability in JSON (see the module docstring for why 4)."""

MAX_JSON_BYTES_PER_VALUE = 6
"""The longest a probability gets in JSON at 4 decimals: ``0.1235``."""


@dataclass(frozen=True)
class Predictions:
    """The labels of every row; with ``"return": "probabilities"``, probabilities and classes."""

    labels: np.ndarray
    """(n,) int64."""
    probabilities: np.ndarray | None = None
    """(n, n_classes) float32, columns in the order of ``classes``."""
    classes: np.ndarray | None = None
    """(n_classes,) int64."""

    @classmethod
    def from_probabilities(cls, probabilities: np.ndarray, classes: np.ndarray) -> Predictions:
        """Labels from probabilities: the class of each row's largest (first on a tie)."""
        probabilities = np.asarray(probabilities, dtype=np.float32)
        classes = np.asarray(classes, dtype=np.int64)
        return cls(classes[np.argmax(probabilities, axis=1)], probabilities, classes)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def with_probabilities(self) -> bool:
        return self.probabilities is not None

    def body(self) -> list[int] | dict[str, Any]:
        """The JSON answer: the labels, or the object with probabilities (rounded)."""
        labels = np.asarray(self.labels, dtype=np.int64).tolist()
        if self.probabilities is None or self.classes is None:
            return labels
        rounded = np.round(self.probabilities.astype(np.float64), PROBABILITY_DECIMALS)
        return {
            "labels": labels,
            "probabilities": rounded.tolist(),
            "classes": np.asarray(self.classes, dtype=np.int64).tolist(),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """The ``.npz`` members: ``labels``, ``probabilities`` (unrounded) and ``classes``."""
        if self.probabilities is None or self.classes is None:
            raise ValueError("no probabilities to write")
        return {
            "labels": np.asarray(self.labels, dtype=np.int64),
            "probabilities": np.asarray(self.probabilities, dtype=np.float32),
            "classes": np.asarray(self.classes, dtype=np.int64),
        }
