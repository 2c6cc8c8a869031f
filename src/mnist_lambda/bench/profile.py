"""What a benchmark run measures: the two configurations and how much of each to measure."""

from __future__ import annotations

from dataclasses import dataclass

from mnist_lambda.modeling.options import ModelOptions
from mnist_lambda.tutorial.deployment import TUTORIAL_MEMORY_MB

A, B = "tutorial", "ours"


@dataclass
class Profile:
    """How much to measure."""

    name: str
    sizes: tuple[int, ...]
    repeats: int
    cold_repeats: int
    batch_rows: int
    batch_instances: tuple[int, ...]
    max_request: bool
    batch_repeats: int = 1
    batch_blas_threads: tuple[int, ...] = (0,)
    """0: the machine's default BLAS threads per function; 1: one, like one Lambda vCPU."""
    n_components: int = ModelOptions().pca_components
    n_neighbors: int = ModelOptions().n_neighbors
    test_share: float = 0.2
    max_samples: int | None = None
    tutorial_memory_mb: int = TUTORIAL_MEMORY_MB
    onnx_models: tuple[str, ...] = ("logistic", "mlp")
    """ONNX candidates the model comparison adds to the tutorial's k-NN and our .npz one."""
    model_rows: int = 2000
    """Rows per request in the model comparison."""
    model_memory_mb: int | None = None
    """MemorySize of every model in the comparison (None: the template's default)."""
    auth: str = "none"
    """The API auth ours is deployed behind in the head-to-head (a key of
    :data:`mnist_lambda.template.AUTH_TYPES`); the tutorial's side, the model comparison, the
    Docker rows and the batch stay public."""

    @classmethod
    def full(cls) -> Profile:
        """The profile of the published tables (2-3 minutes)."""
        return cls("full", (1000, 2000, 4000, 10000), 9, 5, 70_000, (1, 2, 4), True, 3, (0, 1))

    @classmethod
    def quick(cls) -> Profile:
        """Few repeats and small sizes, for the tests."""
        return cls(
            "quick", (500, 1000), 2, 1, 6_000, (1, 2), False, max_samples=3000,
            onnx_models=("logistic",), model_rows=500,
        )  # fmt: skip
