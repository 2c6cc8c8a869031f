"""Candidates a user might name as ``serving_model="user_candidates:..."`` (imported by name: the
tests' folders are on sys.path), good and bad."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

SEEDS: list[int] = []  # the random_state each call of scaled_logistic got
NOT_CALLABLE = 3


def scaled_logistic(random_state: int = 0) -> Pipeline:
    """A convertible classifier: min-max scaling then logistic regression."""
    SEEDS.append(random_state)
    clf = LogisticRegression(max_iter=300, C=0.1, random_state=random_state)
    return Pipeline([("scale", MinMaxScaler()), ("logistic", clf)])


class MajorityClassifier(ClassifierMixin, BaseEstimator):
    """A valid scikit-learn classifier that skl2onnx has no converter for."""

    def fit(self, X, y):
        self.classes_, counts = np.unique(y, return_counts=True)
        self.majority_ = self.classes_[np.argmax(counts)]
        return self

    def predict(self, X):
        return np.full(len(X), self.majority_)

    def predict_proba(self, X):
        proba = np.zeros((len(X), len(self.classes_)))
        proba[:, np.searchsorted(self.classes_, self.majority_)] = 1.0
        return proba


def majority() -> MajorityClassifier:
    return MajorityClassifier()


class NoProba:
    def fit(self, X, y):
        return self

    def predict(self, X):
        return np.zeros(len(X), dtype=np.int64)


def no_proba() -> NoProba:
    return NoProba()


def broken() -> Pipeline:
    raise RuntimeError("this factory is broken")
