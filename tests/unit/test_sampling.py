"""Sampling and splitting: reproducible, stratified, capped, saved as uint8 .npy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mnist_lambda.modeling.sampling import Split, sample_and_split


def test_split_sizes_dtypes_and_reproducibility(mnist_xy) -> None:
    x, y = mnist_xy
    a = sample_and_split(x, y, n_samples=2000, test_size=0.25, random_state=7)
    b = sample_and_split(x, y, n_samples=2000, test_size=0.25, random_state=7)
    c = sample_and_split(x, y, n_samples=2000, test_size=0.25, random_state=8)
    assert (len(a.y_train), len(a.y_test)) == (1500, 500)
    assert a.X_train.dtype == np.uint8 and a.X_train.shape[1] == 784
    assert np.array_equal(a.X_test, b.X_test) and np.array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.y_test, c.y_test)


def test_no_digit_is_drawn_twice(mnist_xy) -> None:
    x, y = mnist_xy
    assert len(np.unique(x, axis=0)) == len(x)  # the source has no duplicate images
    s = sample_and_split(x, y, n_samples=3000, random_state=1)
    rows = np.concatenate([s.X_train, s.X_test])
    source = {r.tobytes() for r in x}
    assert all(r.tobytes() in source for r in rows)
    assert len(np.unique(rows, axis=0)) == 3000


def test_stratified_split_keeps_proportions(mnist_xy) -> None:
    x, y = mnist_xy
    s = sample_and_split(x, y, n_samples=5000, test_size=0.2, stratify=True, random_state=3)
    train_share = np.bincount(s.y_train, minlength=10) / len(s.y_train)
    test_share = np.bincount(s.y_test, minlength=10) / len(s.y_test)
    assert np.abs(train_share - test_share).max() < 0.002


def test_n_samples_is_capped_at_what_the_source_has(mnist_xy) -> None:
    """The cap is what n_samples means, not a warning (the data fallback warns once, itself)."""
    x, y = mnist_xy
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sample_and_split(x, y, n_samples=len(y) + 1, random_state=0)
    assert len(s.y_train) + len(s.y_test) == len(y)


@pytest.mark.parametrize(("n", "test_size"), [(5, 0.2), (100, 0.0), (100, 1.5)])
def test_bad_arguments(mnist_xy, n: int, test_size: float) -> None:
    x, y = mnist_xy
    with pytest.raises(ValueError):
        sample_and_split(x, y, n_samples=n, test_size=test_size)


def test_save_and_load_round_trip(tmp_path, mnist_xy) -> None:
    x, y = mnist_xy
    s = sample_and_split(x, y, n_samples=500, random_state=0)
    s.save(tmp_path)
    back = Split.load(tmp_path)
    for name in ("X_train", "y_train", "X_test", "y_test"):
        assert np.array_equal(getattr(s, name), getattr(back, name))
    assert back.X_train.dtype == np.uint8
    assert not list(tmp_path.glob("*.tmp"))
    (tmp_path / "y_test.npy").unlink()
    with pytest.raises(FileNotFoundError, match="run 01_sample_data first"):
        Split.load(tmp_path)
