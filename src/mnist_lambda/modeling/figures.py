"""Figures the notebooks show and save: digit grids and confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from mnist_lambda.storage import atomic_path
from mnist_serving.schema import IMAGE_SHAPE


def digit_grid(
    pixels: np.ndarray,
    titles: Sequence[str],
    ncols: int = 10,
    title: str = "",
    size: float = 1.1,
) -> Figure:
    """A grid of 28x28 digits with a caption under each."""
    n = len(pixels)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * size, nrows * (size + 0.25)), squeeze=False
    )
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, img, caption in zip(axes.ravel(), pixels, titles, strict=False):
        ax.imshow(np.asarray(img).reshape(IMAGE_SHAPE), cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(caption, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def examples_per_digit(
    pixels: np.ndarray, labels: np.ndarray, per_digit: int = 8, random_state: int = 42
) -> Figure:
    """``per_digit`` random examples of every digit, one column per digit."""
    rng = np.random.default_rng(random_state)
    chosen, captions = [], []
    for row in range(per_digit):
        for digit in range(10):
            idx = np.flatnonzero(labels == digit)
            if idx.size > row:
                pick = rng.choice(idx)
                chosen.append(pixels[pick])
                captions.append(str(digit))
            else:
                chosen.append(np.zeros(pixels.shape[1], dtype=pixels.dtype))
                captions.append("")
    return digit_grid(np.array(chosen), captions, ncols=10, title="Example digits by label")


def confusion_matrix_figure(cm: np.ndarray, title: str, ax: plt.Axes | None = None) -> Figure:
    """A confusion matrix with counts in every cell and accuracy in the title."""
    cm = np.asarray(cm)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.2, 5.4))
    else:
        fig = ax.figure
    shown = np.log1p(cm)
    im = ax.imshow(shown, cmap="Blues")
    threshold = shown.max() / 2 if shown.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if shown[i, j] > threshold else "black",
                )
    accuracy = np.trace(cm) / cm.sum() if cm.sum() else float("nan")
    ax.set(
        xticks=range(10),
        yticks=range(10),
        xlabel="predicted digit",
        ylabel="true digit",
        title=f"{title}\naccuracy {accuracy:.4f} on {cm.sum()} digits",
    )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="log(1 + count)")
    fig.tight_layout()
    return fig


def misclassified_grid(
    pixels: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, limit: int = 30
) -> Figure:
    """The first ``limit`` misclassified digits, captioned ``true→predicted``."""
    wrong = np.flatnonzero(y_true != y_pred)[:limit]
    captions = [f"{y_true[i]}→{y_pred[i]}" for i in wrong]
    total = int((y_true != y_pred).sum())
    title = f"Misclassified digits (true→predicted), {len(wrong)} of {total}"
    return digit_grid(pixels[wrong], captions, ncols=10, title=title)


def save_figure(fig: Figure, run_dir: str | Path, name: str) -> Path:
    """Save ``fig`` as ``run_dir/figures/<name>.png`` (atomically)."""
    path = Path(run_dir) / "figures" / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path
