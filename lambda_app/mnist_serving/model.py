"""A numpy-only digit classifier: PCA projection then distance-weighted k-nearest neighbours.

The model is trained with scikit-learn (see ``mnist_lambda.modeling.training``) and exported
to a plain ``.npz`` file of arrays, which loads with ``allow_pickle=False``: loading it runs no
code, and serving needs numpy alone (no scikit-learn, scipy or pandas in the image, a short
cold start).
Predictions follow ``sklearn.neighbors.KNeighborsClassifier(weights="distance")``: weights are
1/distance, an exact match (distance 0) takes all the weight; ``predict_proba`` is the share of
the weight of each class, ``predict`` the class of the largest share (a tie: the smaller label).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_serving.schema import N_PIXELS

FORMAT: str = "mnist-lambda/pca-knn-npz/1"
"""Written into every artifact and checked on load."""

CHUNK_ROWS: int = 512
"""Rows per distance block: bounds memory and keeps results independent of request size."""

GROUP: int = 32
"""Training points per group in the exact two-stage nearest-neighbour search (see
:meth:`DigitModel._nearest`)."""


@dataclass(frozen=True)
class DigitModel:
    """A fitted PCA + k-NN model as plain arrays."""

    mean: np.ndarray  # (784,) float32
    components: np.ndarray  # (n_components, 784) float32
    train_proj: np.ndarray  # (n_train, n_components) float32
    train_labels: np.ndarray  # (n_train,) int64 indices into classes
    classes: np.ndarray  # (n_classes,) int64
    n_neighbors: int

    def __post_init__(self) -> None:
        train_sq = np.einsum("ij,ij->i", self.train_proj, self.train_proj)
        object.__setattr__(self, "_train_sq", train_sq)
        # [-2 T^T; |t|^2]: one matmul of [z, 1] with it gives |t|^2 - 2 z.t, the squared
        # distance minus |z|^2, which is constant along a row and so does not change the order.
        aug = np.vstack([-2.0 * self.train_proj.T, train_sq[None, :]]).astype(np.float32)
        object.__setattr__(self, "_aug_t", np.ascontiguousarray(aug))

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def project(self, pixels: np.ndarray) -> np.ndarray:
        """Project (n, 784) pixels onto the principal components, in float32."""
        return project(pixels, self.mean, self.components)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Predict a label for every row of (n, 784) pixels: the class of the largest
        probability of :meth:`predict_proba` (a tie: the first column, the smaller label)."""
        return self.classes[np.argmax(self.predict_proba(pixels), axis=1)]

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        """(n, n_classes) float32 class probabilities, columns in the order of ``classes``.

        As ``KNeighborsClassifier(weights="distance").predict_proba``: the k nearest training
        points vote with weight 1/distance (an exact match, distance 0, takes all the weight,
        shared with any other exact match), normalised so that every row sums to 1.
        """
        z = self.project(pixels)
        out = np.empty((z.shape[0], self.classes.size), dtype=np.float32)
        for start in range(0, z.shape[0], CHUNK_ROWS):
            out[start : start + CHUNK_ROWS] = self._proba_block(z[start : start + CHUNK_ROWS])
        return out

    def _nearest(self, z: np.ndarray) -> np.ndarray:
        """Indices of the k nearest training points of each row, (n, k).

        Exact, in two stages: the training points are cut into groups of GROUP; the k nearest
        all lie in the k groups with the smallest minimum (any point outside them has at least
        k points, one per chosen group, at most as far), so the full argpartition over
        n_train columns becomes a minimum per group plus an argpartition over k*GROUP.
        Group g holds the columns g, g + groups, g + 2*groups, ...: their minima are an
        elementwise minimum of GROUP contiguous slices, which numpy vectorises (4x faster
        than reducing contiguous runs of columns).
        """
        k, n, n_train = self.n_neighbors, z.shape[0], self.train_proj.shape[0]
        z_aug = np.empty((n, z.shape[1] + 1), dtype=np.float32)
        z_aug[:, :-1], z_aug[:, -1] = z, 1.0
        part = z_aug @ self._aug_t  # type: ignore[attr-defined]
        groups = n_train // GROUP
        if groups > 2 * k:
            group_min = part[:, : groups * GROUP].reshape(n, GROUP, groups).min(axis=1)
            best = np.argpartition(group_min, k - 1, axis=1)[:, :k]
            cols = (best[:, :, None] + groups * np.arange(GROUP)).reshape(n, k * GROUP)
            if groups * GROUP < n_train:
                rest = np.arange(groups * GROUP, n_train)
                cols = np.concatenate([cols, np.broadcast_to(rest, (n, rest.size))], axis=1)
            cand = np.take_along_axis(part, cols, axis=1)
        else:
            cols, cand = np.broadcast_to(np.arange(n_train), (n, n_train)), part
        sel = np.argpartition(cand, k - 1, axis=1)[:, :k]
        return np.take_along_axis(cols, sel, axis=1)

    def _proba_block(self, z: np.ndarray) -> np.ndarray:
        idx = self._nearest(z)
        # The search ranks with float32 |t|^2 - 2 z.t, whose rounding is far larger than the
        # distance of a query to a training point it duplicates; the k found are measured
        # again exactly (float64 differences of the float32 coordinates), so that a duplicate
        # is at distance 0 and weighs as in scikit-learn. k * n_components values a row: cheap.
        diff = z[:, None, :].astype(np.float64) - self.train_proj[idx]
        dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        with np.errstate(divide="ignore"):
            weights = 1.0 / dist
        exact = np.isinf(weights)
        exact_rows = exact.any(axis=1)
        weights[exact_rows] = exact[exact_rows]
        n, n_classes = z.shape[0], self.classes.size
        cells = (np.arange(n)[:, None] * n_classes + self.train_labels[idx]).ravel()
        votes = np.bincount(cells, weights=weights.ravel(), minlength=n * n_classes)
        votes = votes.reshape(n, n_classes)
        return votes / votes.sum(axis=1, keepdims=True)

    def save(self, path: str | Path) -> str:
        """Write the model as an uncompressed ``.npz`` (no pickle); return its sha256."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                format=np.array(FORMAT),
                mean=self.mean,
                components=self.components,
                train_proj=self.train_proj,
                train_labels=self.train_labels.astype(np.uint8),
                classes=self.classes,
                n_neighbors=np.array(self.n_neighbors),
            )
        tmp.replace(path)
        return file_sha256(path)


def project(pixels: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """(pixels - mean) @ components.T in float32: the one projection training and serving use."""
    x = np.asarray(pixels, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != N_PIXELS:
        raise ValueError(f"expected shape (n, {N_PIXELS}), got {x.shape}")
    return (x - mean) @ components.T


def load(path: str | Path) -> DigitModel:
    """Load a model written by :meth:`DigitModel.save`; refuses any other format."""
    with np.load(path, allow_pickle=False) as data:
        fmt = str(data["format"]) if "format" in data.files else "<none>"
        if fmt != FORMAT:
            raise ValueError(f"{path}: model format {fmt!r}, expected {FORMAT!r}")
        return DigitModel(
            mean=data["mean"].astype(np.float32),
            components=data["components"].astype(np.float32),
            train_proj=data["train_proj"].astype(np.float32),
            train_labels=data["train_labels"].astype(np.int64),
            classes=data["classes"].astype(np.int64),
            n_neighbors=int(data["n_neighbors"]),
        )


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
