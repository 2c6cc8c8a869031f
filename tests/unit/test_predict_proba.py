"""DigitModel.predict_proba: scikit-learn's KNeighborsClassifier(weights="distance") on the
PCA-projected float32 digits, rows summing to 1, and the argmax predict answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from mnist_serving.model import DigitModel, load, project

ATOL = 1e-6


def sklearn_proba(model: DigitModel, pixels: np.ndarray) -> np.ndarray:
    """The reference: scikit-learn fitted on the model's own projected training digits."""
    knn = KNeighborsClassifier(n_neighbors=model.n_neighbors, weights="distance")
    knn.fit(model.train_proj, model.train_labels)
    assert knn.classes_.tolist() == list(range(model.classes.size))
    return knn.predict_proba(model.project(pixels))


def assert_like_sklearn(model: DigitModel, pixels: np.ndarray) -> np.ndarray:
    p = model.predict_proba(pixels)
    assert p.shape == (len(pixels), model.classes.size) and p.dtype == np.float32
    np.testing.assert_allclose(p, sklearn_proba(model, pixels), rtol=0, atol=ATOL)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=ATOL)
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_array_equal(model.predict(pixels), model.classes[np.argmax(p, axis=1)])
    return p


@pytest.fixture(scope="module")
def model(small_model_path) -> DigitModel:
    return load(small_model_path)


def fit(pixels: np.ndarray, labels: np.ndarray, n_components: int = 30, k: int = 4) -> DigitModel:
    """A PCA + k-NN model of ``pixels``, its training digits projected in one batch."""
    x = pixels.astype(np.float32)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    components = vt[:n_components].astype(np.float32)
    return DigitModel(
        mean=mean,
        components=components,
        train_proj=project(pixels, mean, components),
        train_labels=labels.astype(np.int64),
        classes=np.arange(10, dtype=np.int64),
        n_neighbors=k,
    )


def test_unseen_digits_match_sklearn(model, unseen_pixels) -> None:
    p = assert_like_sklearn(model, unseen_pixels[:2000])
    assert (p.max(axis=1) < 1).any() and (p == 0).any()  # real mixtures, real zeros


def test_training_digits_match_sklearn(model, mnist_xy) -> None:
    """Queries that duplicate training digits (projected in another batch than the training
    set, so within float32 rounding of them): their own label takes (nearly) all the weight."""
    x, y = mnist_xy
    p = assert_like_sklearn(model, x[:1000])
    own = p[np.arange(1000), y[:1000]]
    assert (own > 1 - ATOL).mean() > 0.99  # bar digits that are duplicated with another label


def test_an_exact_match_takes_all_the_weight(mnist_xy) -> None:
    """Queried in the batch the training digits were projected in: bit for bit the same
    coordinates, distance 0, and the probability of the digit's own label is exactly 1."""
    x, y = mnist_xy
    model = fit(x[:1500], y[:1500])
    p = assert_like_sklearn(model, x[:1500])
    np.testing.assert_array_equal(p[np.arange(1500), y[:1500]], 1.0)
    np.testing.assert_array_equal(model.predict(x[:1500]), y[:1500])


def test_duplicates_with_different_labels_share_the_weight(mnist_xy) -> None:
    """A training digit copied into the training set with other labels: every copy at the
    same distance, equal weights (all of it when the query is the digit itself); a tie goes to
    the smaller label, as scikit-learn's predict resolves it."""
    x, y = mnist_xy
    base = fit(x[:1000], y[:1000])
    labels = y[:1000].copy()
    labels[0] = 8

    def with_copies(copy_labels: list[int]) -> DigitModel:
        copies = [base.train_proj[:1]] * len(copy_labels)
        return DigitModel(
            mean=base.mean,
            components=base.components,
            train_proj=np.concatenate([base.train_proj, *copies]),
            train_labels=np.concatenate([labels, copy_labels]),
            classes=base.classes,
            n_neighbors=4,
        )

    model = with_copies([8, 3])  # the digit three times: 8, 8, 3
    p = assert_like_sklearn(model, x[:1000])  # row 0: bit for bit the training coordinates
    np.testing.assert_array_equal(p[0, [3, 8]], np.float32([1 / 3, 2 / 3]))
    # projected alone, the digit is within float32 rounding (~1e-5) of its copies, not on
    # them: the copies are measured exactly, so they still weigh the same (scikit-learn's
    # |x|^2 - 2 x.y + |y|^2 is noise at that distance and splits the weight 0.333/0.667).
    p = model.predict_proba(x[:1])
    np.testing.assert_allclose(p[0, [3, 8]], [1 / 3, 2 / 3], rtol=0, atol=ATOL)
    model = with_copies([3])  # twice: 8 and 3
    p = assert_like_sklearn(model, x[:1000])
    np.testing.assert_array_equal(p[0, [3, 8]], [0.5, 0.5])
    assert model.predict(x[:1]).tolist() == [3] == model.predict(x[:1000])[:1].tolist()
    knn = KNeighborsClassifier(n_neighbors=4, weights="distance")
    knn.fit(model.train_proj, model.train_labels)
    assert knn.predict(model.project(x[:1000]))[0] == 3


def test_a_tie_goes_to_the_smaller_label_of_the_classes() -> None:
    """Two training points at the same distance with labels 7 and 3: half each, predict 3."""
    components = np.zeros((1, 784), dtype=np.float32)
    components[0, 0] = 1.0
    model = DigitModel(
        mean=np.zeros(784, dtype=np.float32),
        components=components,
        train_proj=np.array([[0.0], [2.0], [40.0]], dtype=np.float32),
        train_labels=np.array([1, 0, 1]),  # indices into classes: 7, 3, 7
        classes=np.array([3, 7]),
        n_neighbors=2,
    )
    pixels = np.zeros((3, 784), dtype=np.uint8)
    pixels[:, 0] = [1, 0, 2]  # halfway; on the 7; on the 3
    p = model.predict_proba(pixels)
    np.testing.assert_array_equal(p, [[0.5, 0.5], [0.0, 1.0], [1.0, 0.0]])
    assert model.predict(pixels).tolist() == [3, 7, 3]


def test_batching_does_not_change_the_probabilities(model, unseen_pixels) -> None:
    rows = unseen_pixels[:200]
    whole = model.predict_proba(rows)
    one_by_one = np.concatenate([model.predict_proba(rows[i : i + 1]) for i in range(200)])
    np.testing.assert_allclose(one_by_one, whole, rtol=0, atol=ATOL)
    blocks = np.concatenate([model.predict_proba(rows[i : i + 64]) for i in range(0, 200, 64)])
    np.testing.assert_allclose(blocks, whole, rtol=0, atol=ATOL)


def test_the_shipped_predict_is_unchanged(model, unseen_pixels) -> None:
    """predict is argmax of predict_proba, and agrees with scikit-learn's predict."""
    knn = KNeighborsClassifier(n_neighbors=model.n_neighbors, weights="distance")
    knn.fit(model.train_proj, model.train_labels)
    rows = unseen_pixels[:2000]
    expected = model.classes[knn.predict(model.project(rows))]
    np.testing.assert_array_equal(model.predict(rows), expected)
