"""The input schema of the model: one row per digit, 28x28 = 784 pixels, uint8 0-255."""

from typing import Final

import numpy as np

IMAGE_SHAPE: Final = (28, 28)
N_PIXELS: Final = 784
PIXEL_DTYPE: Final = np.dtype(np.uint8)
PIXEL_MIN: Final = 0
PIXEL_MAX: Final = 255
N_CLASSES: Final = 10

INPUT_SCHEMA: Final = {
    "shape": ["n", N_PIXELS],
    "dtype": PIXEL_DTYPE.name,
    "min": PIXEL_MIN,
    "max": PIXEL_MAX,
    "layout": "row-major 28x28 image, flattened",
}
