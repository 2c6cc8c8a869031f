"""The tutorial's model as it was: a k-NN fitted and called on float64 pixels in a pandas
DataFrame, joblib'd, and the joblib'd DataFrame its client put in S3."""

from __future__ import annotations

import io
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.neighbors import KNeighborsClassifier

from mnist_lambda.modeling import training
from mnist_lambda.modeling.options import ModelOptions


def tutorial_frame(pixels: np.ndarray) -> pd.DataFrame:
    """``pixels`` as the tutorial handed them to its model: a DataFrame of float64."""
    return pd.DataFrame(pixels.astype(np.float64))


def fit_tutorial_model(
    x_train: np.ndarray, y_train: np.ndarray, n_neighbors: int = ModelOptions().n_neighbors
) -> KNeighborsClassifier:
    """The tutorial's k-NN, fitted as it was: on a DataFrame of float64 pixels."""
    model = training.make_baseline(ModelOptions(n_neighbors=n_neighbors))
    return model.fit(tutorial_frame(x_train), y_train)


def tutorial_labels(model: KNeighborsClassifier | Path, pixels: np.ndarray) -> np.ndarray:
    """The labels the tutorial's k-NN (fitted, or joblib'd at a path) gives ``pixels``
    in-process, on what its handler gets."""
    knn = joblib.load(model) if isinstance(model, Path) else model
    return np.asarray(knn.predict(tutorial_frame(pixels)))


def tutorial_object(pixels: np.ndarray) -> bytes:
    """The tutorial's request object: a joblib'd DataFrame of float64 pixels."""
    buf = io.BytesIO()
    joblib.dump(tutorial_frame(pixels), buf)
    return buf.getvalue()
