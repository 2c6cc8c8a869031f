"""The serving model candidates: build them, fit and export them, and compare them.

Notebook 02's ``serving_model`` names the model the function serves, and ``compare_models`` the
candidates compared with it. A name is one of :data:`BUILTIN`, or ``"module:function"``: a
function of yours returning an unfitted scikit-learn style classifier (it gets
``random_state=...`` if it takes that argument; its module must be importable: the notebooks run
in ``notebooks/``, so a module there, an installed one, or one on ``PYTHONPATH``). Every candidate
takes the raw pixels as float32 0-255 and carries its own preprocessing, so the exported model
does too.

- ``pca_knn`` (the default) is exported to numpy ``.npz`` (:mod:`mnist_lambda.modeling.training`);
- every other candidate to ONNX (:mod:`mnist_lambda.modeling.onnx_export`), shipped only after its
  labels equal scikit-learn's on the whole test split through the serving runtime.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mnist_lambda.modeling import onnx_export, training
from mnist_lambda.modeling.sampling import Split
from mnist_serving import loading

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
COMPARISON_MAX_FOLDS = 3
"""Cross-validation folds of the compared candidates at most (the serving model keeps
``cv_folds``): enough to rank them, quick enough for the default run."""
PREDICT_ROWS = 1000
"""Rows of the in-process prediction timing."""
REQUIRED_METHODS = ("fit", "predict", "predict_proba")
_USER_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class CandidateError(ValueError):
    """A candidate name that does not give a usable estimator."""


def make_estimator(
    name: str, *, n_neighbors: int = 4, pca_components: int = 40, random_state: int = 42
) -> Any:
    """A new, unfitted built-in candidate (a scikit-learn Pipeline, or HGB on raw pixels)."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    def pca() -> PCA:
        return PCA(n_components=PCA_FEATURES, random_state=random_state)

    if name == PCA_KNN:
        return training.make_serving(pca_components, n_neighbors, random_state)
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


def load_user_factory(spec: str, random_state: int = 42) -> Callable[[], Any]:
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
    options: dict[str, int] = field(default_factory=dict)  # n_neighbors, pca_components, seed

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


def get_candidate(
    name: str, *, n_neighbors: int = 4, pca_components: int = 40, random_state: int = 42
) -> Candidate:
    """The candidate called ``name`` (built-in or ``module:function``), constructed once now so
    that a bad name fails before any training."""
    name = name.strip()
    options = {
        "n_neighbors": n_neighbors,
        "pca_components": pca_components,
        "random_state": random_state,
    }
    if name in BUILTIN:
        description = BUILTIN[name]
        if name == PCA_KNN:
            description = f"PCA {pca_components} + distance-weighted {n_neighbors}-NN (numpy .npz)"

        def factory() -> Any:
            return make_estimator(name, **options)

    elif ":" in name:
        factory = load_user_factory(name, random_state)
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


@dataclass
class CandidateResult:
    """A fitted, exported and reloaded candidate, measured."""

    candidate: Candidate
    report: training.ModelReport
    model: loading.ServingModel = field(repr=False)  # as the serving runtime loaded it
    artifact: Path
    manifest: dict[str, Any] = field(repr=False)
    parity: dict[str, Any]
    predict_1k_seconds: float

    @property
    def name(self) -> str:
        return self.candidate.name

    @property
    def files(self) -> list[Path]:
        """The files shipped in the model folder."""
        folder = self.artifact.parent
        names = [self.artifact.name, "manifest.json"]
        if self.candidate.exports_onnx:
            names.append(onnx_export.REQUIREMENTS_FILE)
        return [folder / n for n in names]

    def parity_text(self) -> str:
        p = self.parity
        labels = f"{p['labels_equal']:,}/{p['rows_checked']:,} labels"
        if p.get("max_probability_difference") is None:
            return f"{labels} (numpy k-NN, not enforced)"
        verdict = "ok" if p["passed"] else "FAILED"
        return (
            f"{verdict}: {labels}, max |Δp| {p['max_probability_difference']:.1e} "
            f"(tol {p['tolerance']:g})"
        )

    def row(self) -> dict[str, Any]:
        """The comparison table's row."""
        r = self.report
        return {
            "model": self.name,
            "format": self.artifact.suffix.lstrip("."),
            "cv folds": len(r.cv_scores),
            "cv accuracy": round(r.cv_mean, 4) if r.cv_scores else "-",
            "test accuracy": round(r.test_accuracy, 4),
            "artifact bytes": r.artifact_bytes,
            "fit s": round(r.fit_seconds, 2),
            f"predict s ({PREDICT_ROWS:,} rows)": round(self.predict_1k_seconds, 4),
            "parity": self.parity_text(),
        }

    def metrics(self) -> dict[str, Any]:
        """The ``metrics.json`` entry (``model_comparison`` list item)."""
        r = self.report
        return {
            "model": self.name,
            "description": self.candidate.description,
            "format": self.manifest.get("format"),
            "cv_folds": len(r.cv_scores),
            "cv_mean": r.cv_mean,
            "cv_std": r.cv_std,
            "cv_scores": r.cv_scores,
            "test_accuracy": r.test_accuracy,
            "artifact": str(self.artifact),
            "artifact_bytes": r.artifact_bytes,
            "sha256": self.manifest.get("sha256"),
            "fit_seconds": r.fit_seconds,
            "load_seconds": r.load_seconds,
            "predict_seconds_test_set": r.predict_seconds,
            "predict_seconds_1000_rows": self.predict_1k_seconds,
            "parity": self.parity,
        }


def time_predict(
    model: Any, pixels: np.ndarray, rows: int = PREDICT_ROWS, repeats: int = 3
) -> float:
    """Median seconds of ``model.predict`` on ``rows`` rows (``pixels`` repeated if fewer),
    after one warm-up call."""
    x = np.resize(np.asarray(pixels), (rows, np.asarray(pixels).shape[1]))
    model.predict(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fit_and_export(
    candidate: Candidate,
    split: Split,
    model_dir: str | Path,
    *,
    cv_scores: list[float],
    run_id: str,
    data_source: str,
    report_name: str | None = None,
    tolerance: float = onnx_export.PROBA_TOLERANCE,
) -> CandidateResult:
    """Fit ``candidate`` on the training split, export it into ``model_dir`` (which then holds
    exactly this one model), load it back through the serving runtime and measure it.

    ``pca_knn`` takes today's path (:func:`training.train_serving`, ``.npz``); the others go to
    ONNX with the parity proof (:func:`onnx_export.export_onnx`, raises
    :class:`onnx_export.ExportError`).
    """
    model_dir = Path(model_dir)
    report_name = report_name or candidate.name
    n_test = len(split.y_test)
    if not candidate.exports_onnx:
        opts = candidate.options
        artifact = model_dir / onnx_export.NPZ_MODEL_FILE
        report, loaded, agreement = training.train_serving(
            split,
            artifact=artifact,
            cv_scores=cv_scores,
            n_components=opts["pca_components"],
            n_neighbors=opts["n_neighbors"],
            random_state=opts["random_state"],
        )
        manifest = training.write_manifest(
            model_dir / "manifest.json",
            artifact,
            report,
            loaded,
            run_id=run_id,
            n_train=len(split.y_train),
            data_source=data_source,
        )
        onnx_export.remove_other_models(model_dir, keep=artifact.name)
        parity = {
            "rows_checked": n_test,
            "labels_equal": round(agreement * n_test),
            "max_probability_difference": None,
            "tolerance": None,
            "passed": None,  # not enforced: see training.train_serving
        }
        report = dataclasses.replace(report, name=report_name)
    else:
        from sklearn.metrics import accuracy_score

        estimator = candidate.make()
        x_train = split.X_train.astype(np.float32)
        start = time.perf_counter()
        estimator.fit(x_train, split.y_train)
        fit_seconds = time.perf_counter() - start
        sklearn_labels = estimator.predict(split.X_test.astype(np.float32))
        exported = onnx_export.export_onnx(
            estimator,
            split.X_test,
            model_dir,
            name=candidate.name,
            model_type=candidate.description,
            run_id=run_id,
            data_source=data_source,
            n_train=len(split.y_train),
            metrics={
                "test_accuracy": float(accuracy_score(split.y_test, sklearn_labels)),
                "cv_mean": float(np.mean(cv_scores)) if cv_scores else float("nan"),
                "cv_std": float(np.std(cv_scores)) if cv_scores else float("nan"),
            },
            tolerance=tolerance,
        )
        report, loaded = training.reload_and_evaluate(
            report_name,
            exported.path,
            loading.load_model,
            split.X_test,
            split.y_test,
            cv_scores,
            fit_seconds,
        )
        artifact, manifest, parity = exported.path, exported.manifest, exported.parity.as_dict()
    return CandidateResult(
        candidate=candidate,
        report=report,
        model=loaded,
        artifact=artifact,
        manifest=manifest,
        parity=parity,
        predict_1k_seconds=time_predict(loaded, split.X_test),
    )


def comparison_rows(results: Iterable[CandidateResult]) -> list[dict[str, Any]]:
    """Rows of the candidate comparison table."""
    return [r.row() for r in results]


def comparison_verdict(
    results: Iterable[CandidateResult], serving: str, baseline_accuracy: float | None = None
) -> str:
    """One paragraph: the serving model's accuracy against the baseline and the best candidate."""
    results = list(results)
    by_name = {r.name: r for r in results}
    chosen = by_name[serving].report.test_accuracy
    best = max(results, key=lambda r: r.report.test_accuracy)
    lines = [f"serving model {serving!r}: test accuracy {chosen:.4f}"]
    if baseline_accuracy is not None:
        if chosen < baseline_accuracy:
            lines.append(
                f"WARNING: {serving!r} is less accurate than the baseline (tutorial k-NN, "
                f"{baseline_accuracy:.4f}) on this split"
            )
        else:
            lines.append(f"at least as accurate as the baseline ({baseline_accuracy:.4f})")
    if best.name != serving and best.report.test_accuracy > chosen:
        lines.append(
            f"most accurate candidate compared: {best.name!r} ({best.report.test_accuracy:.4f})"
        )
    return "; ".join(lines)


def comparison_figure(
    results: Iterable[CandidateResult],
    baseline_accuracy: float | None = None,
    serving: str | None = None,
) -> Figure:
    """Test accuracy against in-process predict time for 1,000 rows; marker area follows the
    artifact's size; the baseline's accuracy as a dashed line."""
    import matplotlib.pyplot as plt

    results = list(results)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    sizes = np.array([r.report.artifact_bytes for r in results], dtype=float)
    areas = 60 + 1500 * sizes / sizes.max() if sizes.size else sizes
    for r, area in zip(results, areas, strict=True):
        is_serving = r.name == serving
        x, y = r.predict_1k_seconds * 1000, r.report.test_accuracy
        ax.scatter(
            x,
            y,
            s=area,
            alpha=0.55,
            edgecolors="black" if is_serving else "none",
            linewidths=2 if is_serving else 0,
        )
        name = f"{r.name} (serving)" if is_serving else r.name
        ax.annotate(
            f"{name}, {_human_bytes(r.report.artifact_bytes)}",
            (x, y),
            textcoords="offset points",
            xytext=(np.sqrt(area) / 2 + 4, 0),  # just right of the marker's edge
            va="center",
            fontsize=9,
        )
    if baseline_accuracy is not None:
        ax.axhline(baseline_accuracy, ls="--", color="grey", lw=1)
        ax.annotate(
            f"baseline (k-NN, raw pixels) {baseline_accuracy:.4f}",
            (0.01, baseline_accuracy),
            xycoords=("axes fraction", "data"),
            textcoords="offset points",
            xytext=(0, 4),
            fontsize=8,
            color="grey",
        )
    ax.set_xscale("log")
    ax.set(
        xlabel=f"predict time for {PREDICT_ROWS:,} rows, in process (ms, log scale)",
        ylabel="test accuracy",
        title="Serving candidates: accuracy, speed and artifact size (marker area)",
    )
    ax.margins(x=0.6, y=0.15)
    fig.tight_layout()
    return fig


def _human_bytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"
