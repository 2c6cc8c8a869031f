"""Sample and split digits reproducibly, and keep the split on disk as uint8 ``.npy`` files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from mnist_lambda.storage import atomic_save_npy

SPLIT_FILES = ("X_train", "y_train", "X_test", "y_test")


@dataclass(frozen=True)
class Split:
    """A train/test split of (n, 784) uint8 pixels and int64 labels."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write the four arrays as ``.npy`` (atomically); return their paths."""
        folder = Path(folder)
        paths = {}
        for name in SPLIT_FILES:
            paths[name] = atomic_save_npy(folder / f"{name}.npy", getattr(self, name))
        return paths

    @classmethod
    def load(cls, folder: str | Path) -> Split:
        """Read a split written by :meth:`save` (no pickle)."""
        folder = Path(folder)
        missing = [n for n in SPLIT_FILES if not (folder / f"{n}.npy").exists()]
        if missing:
            raise FileNotFoundError(
                f"no split in {folder} (missing {', '.join(missing)}): run 01_sample_data first"
            )
        arrays = {n: np.load(folder / f"{n}.npy", allow_pickle=False) for n in SPLIT_FILES}
        return cls(**arrays)


def sample_and_split(
    pixels: np.ndarray,
    labels: np.ndarray,
    n_samples: int,
    test_size: float = 0.2,
    stratify: bool = True,
    random_state: int = 42,
) -> Split:
    """Draw ``n_samples`` digits without replacement (capped at what there is) and split them.

    The cap is the parameter's documented meaning, not a warning: a source smaller than asked
    for is either chosen or, with ``data_source=auto``, already warned about by the loader."""
    if n_samples < 10:
        raise ValueError(f"n_samples={n_samples}: need at least 10 digits")
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size={test_size}: must be between 0 and 1")
    n_available = len(labels)
    n_samples = min(n_samples, n_available)
    rng = np.random.default_rng(random_state)
    chosen = np.sort(rng.choice(n_available, size=n_samples, replace=False))
    x, y = pixels[chosen], labels[chosen]
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_size, random_state=random_state, stratify=y if stratify else None
    )
    return Split(
        np.ascontiguousarray(x_tr, dtype=np.uint8),
        y_tr.astype(np.int64),
        np.ascontiguousarray(x_te, dtype=np.uint8),
        y_te.astype(np.int64),
    )
