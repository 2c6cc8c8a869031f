"""The benchmark's data and models: one stratified 80/20 split, both models trained on it, their
artifacts where the stacks serve them from."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from mnist_lambda.bench.profile import Profile
from mnist_lambda.modeling import data, training
from mnist_lambda.modeling.options import ModelOptions
from mnist_lambda.modeling.sampling import Split
from mnist_lambda.tutorial.deployment import MODEL_FILE, tutorial_task_root
from mnist_lambda.tutorial.model import fit_tutorial_model

SEED = 42
SPLIT = f"stratified 80/20, random_state={SEED}"


@dataclass
class Prepared:
    """The split, every row, where the data came from and both trained models' artifacts."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_all: np.ndarray
    source: str
    n_components: int
    tutorial_model: Path
    """``model.joblib`` in the tutorial's task root (its folder is the app dir to serve)."""
    our_model: Path
    fit_seconds: dict[str, float] = field(default_factory=dict)

    def split(self) -> Split:
        """The train and held-out rows as the modeling code takes them."""
        return Split(self.x_train, self.y_train, self.x_test, self.y_test)

    def facts(self) -> dict[str, object]:
        """The data part of ``results.json``."""
        return {
            "source": self.source,
            "rows": len(self.x_all),
            "train": len(self.x_train),
            "held_out": len(self.x_test),
            "split": SPLIT,
            "fit_seconds": self.fit_seconds,
        }


def rows_for(x_test: np.ndarray, n: int) -> np.ndarray:
    """``n`` held-out rows, repeating them when ``n`` is more than there are."""
    return x_test[np.arange(n) % len(x_test)]


def _rows(profile: Profile, data_source: str) -> tuple[np.ndarray, np.ndarray, str]:
    """The digits (at most ``profile.max_samples``, stratified), their labels and source."""
    dataset = data.load_mnist(data_source)  # a relative idx: path is from the project root
    x, y = dataset.pixels, dataset.labels
    if profile.max_samples and len(x) > profile.max_samples:
        keep, _ = train_test_split(
            np.arange(len(x)), train_size=profile.max_samples, stratify=y, random_state=SEED
        )
        x, y = x[np.sort(keep)], y[np.sort(keep)]
    return x, y, dataset.source


def _train_both(profile: Profile, split: Split, work: Path) -> tuple[Path, Path, dict[str, float]]:
    """The tutorial's k-NN and our model trained on ``split``, saved under ``work``: both
    artifacts and how long each fit took."""
    start = time.perf_counter()
    knn = fit_tutorial_model(split.X_train, split.y_train, profile.n_neighbors)
    fit = {"tutorial": time.perf_counter() - start}
    tutorial_model = tutorial_task_root(knn, work / "tutorial_app") / MODEL_FILE
    our_model = work / "model" / "model.npz"
    start = time.perf_counter()
    options = ModelOptions(n_neighbors=profile.n_neighbors, pca_components=profile.n_components)
    training.train_serving(split, our_model, cv_scores=[], options=options)
    fit["ours"] = time.perf_counter() - start
    return tutorial_model, our_model, fit


def prepare(profile: Profile, data_source: str, work: Path) -> Prepared:
    """Load, split 80/20 (stratified), train both models, save both artifacts under ``work``."""
    x, y, source = _rows(profile, data_source)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=profile.test_share, stratify=y, random_state=SEED
    )
    # our model's own report needs a few held-out rows only: the bench measures it on all
    few = Split(x_train, y_train, x_test[:10], y_test[:10])
    models = _train_both(profile, few, work)
    return Prepared(x_train, y_train, x_test, y_test, x, source, profile.n_components, *models)
