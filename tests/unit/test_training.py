"""Training and export: the numpy serving model equals scikit-learn's, and loads without pickle."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mnist_lambda.modeling import training
from mnist_lambda.modeling.options import ModelOptions
from mnist_serving import model as serving_model


@pytest.fixture(scope="module")
def split(mnist_xy):
    from mnist_lambda.modeling.sampling import sample_and_split

    x, y = mnist_xy
    return sample_and_split(x, y, n_samples=4000, random_state=0)


def test_exported_model_predicts_exactly_like_sklearn(split, tmp_path: Path) -> None:
    report, model, agreement = training.train_serving(
        split,
        artifact=tmp_path / "model.npz",
        cv_scores=[],
        options=ModelOptions(pca_components=30),
    )
    assert agreement == 1.0
    assert report.test_accuracy > 0.9
    assert report.artifact_bytes == (tmp_path / "model.npz").stat().st_size
    # the prediction does not depend on how rows are batched
    one_by_one = np.concatenate([model.predict(split.X_test[i : i + 1]) for i in range(300)])
    assert np.array_equal(one_by_one, model.predict(split.X_test[:300]))


def test_serving_model_is_at_least_as_accurate_and_much_smaller(split, tmp_path: Path) -> None:
    base = training.train_baseline(
        split,
        artifact=tmp_path / "b.joblib",
        cv_scores=[],
        options=ModelOptions(),
    )
    serve, _, _ = training.train_serving(
        split,
        artifact=tmp_path / "s.npz",
        cv_scores=[],
        options=ModelOptions(pca_components=40),
    )
    assert serve.test_accuracy >= base.test_accuracy
    assert base.artifact_bytes > 10 * serve.artifact_bytes


def test_exact_match_takes_all_the_weight(split) -> None:
    """A query identical to a training digit gets that digit's label, as in scikit-learn."""
    pipe = training.make_serving(ModelOptions(pca_components=20)).fit(
        split.X_train.astype(np.float32), split.y_train
    )
    model = training.export_serving_model(pipe, split.X_train, split.y_train)
    assert np.array_equal(model.predict(split.X_train[:200]), split.y_train[:200])


def test_artifact_has_no_pickle_and_other_formats_are_refused(
    small_model_path: Path, tmp_path: Path
) -> None:
    with zipfile.ZipFile(small_model_path) as zf:
        for name in zf.namelist():
            header = zf.read(name)[:128]
            assert header.startswith(b"\x93NUMPY") and b"'O'" not in header
    buf = io.BytesIO()
    np.savez(buf, format=np.array("something-else"), mean=np.zeros(784))
    (tmp_path / "other.npz").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="model format 'something-else'"):
        serving_model.load(tmp_path / "other.npz")


def test_cross_validate_folds(split) -> None:
    def make():
        return training.make_baseline(ModelOptions())

    scores = training.cross_validate(
        make, split.X_train[:600], split.y_train[:600], folds=3, random_state=42
    )
    assert len(scores) == 3 and all(0.5 < s <= 1 for s in scores)
    no_folds = training.cross_validate(make, split.X_train, split.y_train, folds=0, random_state=0)
    assert no_folds == []


def test_most_confused_pairs() -> None:
    cm = np.diag([50] * 10)
    cm[4, 9], cm[8, 5], cm[3, 5] = 7, 5, 1
    assert training.most_confused_pairs(cm, top=2) == [(4, 9, 7), (8, 5, 5)]
    assert training.most_confused_pairs(np.diag([5] * 10)) == []
