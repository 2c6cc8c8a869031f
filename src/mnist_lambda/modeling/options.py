"""The model's options, with their defaults stated once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelOptions:
    """What the candidates are built with: notebook 02's parameters of the same names.

    The notebooks' parameter cells repeat these defaults as literals (papermill reads them);
    a unit test proves them equal.
    """

    n_neighbors: int = 4
    """Neighbours voted, distance-weighted (the tutorial's k)."""
    pca_components: int = 40
    """Principal components the ``pca_knn`` serving model keeps."""
    random_state: int = 42
    """Seed of the folds, the PCA solver and every estimator that takes one."""
