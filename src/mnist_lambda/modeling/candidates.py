"""The serving model candidates: the built-in ones and yours (``module:function``).

Notebook 02's ``serving_model`` names the model the function serves, and ``compare_models`` the
candidates compared with it. A name is one of :data:`BUILTIN`, or ``"module:function"``: a
function of yours returning an unfitted scikit-learn style classifier (it gets
``random_state=...`` if it takes that argument; its module must be importable: the notebooks run
in ``notebooks/``, so a module there, an installed one, or one on ``PYTHONPATH``). Every candidate
takes the raw pixels as float32 0-255 and carries its own preprocessing, so the exported model
does too.

:mod:`mnist_lambda.modeling.fit_export` fits and exports a candidate (``pca_knn``, the default,
to numpy ``.npz``, every other one to ONNX) and :mod:`mnist_lambda.modeling.comparison` compares
them.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mnist_lambda.modeling import onnx_export, training
from mnist_lambda.modeling.options import ModelOptions

PCA_KNN = "pca_knn"
BUILTIN: dict[str, str] = {
    PCA_KNN: "PCA + distance-weighted k-NN (numpy .npz)",
    "logistic": "PCA 50 + standard scaling + multinomial logistic regression",
    "hist_gradient_boosting": "histogram gradient boosting on raw pixels, 40 rounds",
    "mlp": "PCA 50 + standard scaling + MLP (one hidden layer of 64, early stopping)",
}
"""The built-in candidates and what they are."""
DEFAULT_SERVING_MODEL = PCA_KNN
DEFAULT_COMPARE = "pca_knn,logistic"
PCA_FEATURES = 50
"""Components the logistic and MLP candidates keep (PCA makes them fast and well conditioned)."""
REQUIRED_METHODS = ("fit", "predict", "predict_proba")
_USER_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class CandidateError(ValueError):
    """A candidate name that does not give a usable estimator."""


def make_estimator(name: str, options: ModelOptions) -> Any:
    """A new, unfitted built-in candidate (a scikit-learn Pipeline, or HGB on raw pixels)."""
    random_state = options.random_state

    def pca() -> PCA:
        return PCA(n_components=PCA_FEATURES, random_state=random_state)

    if name == PCA_KNN:
        return training.make_serving(options)
    if name == "logistic":
        clf = LogisticRegression(max_iter=500, random_state=random_state)
        return Pipeline([("pca", pca()), ("scale", StandardScaler()), ("logistic", clf)])
    if name == "mlp":
        clf = MLPClassifier(
            hidden_layer_sizes=(64,), early_stopping=True, max_iter=200, random_state=random_state
        )
        return Pipeline([("pca", pca()), ("scale", StandardScaler()), ("mlp", clf)])
    if name == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(
            max_iter=40, early_stopping=False, random_state=random_state
        )
    raise CandidateError(_unknown(name))


def _unknown(name: str) -> str:
    return (
        f"unknown model {name!r}: choose one of {', '.join(BUILTIN)}, or 'module:function' "
        "(a function returning an unfitted classifier with fit, predict and predict_proba)"
    )


def check_estimator(estimator: Any, name: str) -> Any:
    """``estimator`` if it has callable fit, predict and predict_proba; else CandidateError."""
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(estimator, m, None))]
    if missing:
        raise CandidateError(
            f"{name!r} gave {type(estimator).__name__}, which has no {', '.join(missing)}: a "
            f"candidate needs {', '.join(REQUIRED_METHODS)}"
        )
    return estimator


def load_user_factory(spec: str, random_state: int) -> Callable[[], Any]:
    """Import ``module:function`` and return a no-argument factory calling it.

    The function gets ``random_state`` when its signature has that parameter (or ``**kwargs``).
    """
    if not _USER_SPEC.match(spec):
        raise CandidateError(_unknown(spec))
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise CandidateError(
            f"cannot import module {module_name!r} of {spec!r}: {type(exc).__name__}: {exc} "
            "(notebooks run in notebooks/: put the module there, install it, or add its folder "
            "to PYTHONPATH)"
        ) from exc
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise CandidateError(f"{spec!r}: {module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise CandidateError(f"{spec!r} is a {type(target).__name__}, not a function")
    kwargs = {"random_state": random_state} if _takes_random_state(target) else {}

    def factory() -> Any:
        try:
            estimator = target(**kwargs)
        except Exception as exc:
            raise CandidateError(f"calling {spec}() raised {type(exc).__name__}: {exc}") from exc
        return check_estimator(estimator, spec)

    return factory


def _takes_random_state(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "random_state" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


@dataclass(frozen=True)
class Candidate:
    """A named way to make an unfitted estimator."""

    name: str
    description: str
    factory: Callable[[], Any] = field(repr=False)
    options: ModelOptions

    def make(self) -> Any:
        """A new unfitted estimator (checked for fit, predict and predict_proba)."""
        return check_estimator(self.factory(), self.name)

    @property
    def exports_onnx(self) -> bool:
        return self.name != PCA_KNN

    @property
    def artifact_name(self) -> str:
        return onnx_export.ONNX_MODEL_FILE if self.exports_onnx else onnx_export.NPZ_MODEL_FILE

    @property
    def slug(self) -> str:
        """The name as a folder name."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name)


def get_candidate(name: str, options: ModelOptions) -> Candidate:
    """The candidate called ``name`` (built-in or ``module:function``), constructed once now so
    that a bad name fails before any training."""
    name = name.strip()
    if name in BUILTIN:
        description = BUILTIN[name]
        if name == PCA_KNN:
            description = (
                f"PCA {options.pca_components} + distance-weighted {options.n_neighbors}-NN "
                "(numpy .npz)"
            )

        def factory() -> Any:
            return make_estimator(name, options)

    elif ":" in name:
        factory = load_user_factory(name, options.random_state)
        description = ""
    else:
        raise CandidateError(_unknown(name))
    probe = check_estimator(factory(), name)
    description = description or f"{name} ({onnx_export.describe_estimator(probe)})"
    return Candidate(name, description, factory, options)


def parse_names(text: str) -> list[str]:
    """``"pca_knn, logistic"`` -> ``["pca_knn", "logistic"]`` (blanks and repeats dropped)."""
    names: list[str] = []
    for part in text.split(","):
        if (name := part.strip()) and name not in names:
            names.append(name)
    return names
