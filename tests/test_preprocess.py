"""Preprocess computes the public code's arithmetic, (x / 255 - mean) / std in float32, bit for bit."""

import numpy as np
import pytest
from PIL import Image

from glimpse.preprocess import Preprocess


@pytest.mark.parametrize(
    "spec",
    [
        Preprocess(),  # sat: exact resize to 256
        Preprocess((256, 256), "shorter", (224, 224), interpolation="lanczos"),  # nic: resize, centre crop
        Preprocess((448, 448), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    ],
)
def test_matches_the_public_formula(spec):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 200, 3), np.uint8))
    got = spec(image)
    x = np.asarray(spec.resized(image), dtype=np.float32) / 255.0  # (H, W, 3)
    want = ((x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)).transpose(2, 0, 1)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (3, *spec.output_size)
    assert np.array_equal(got, want)
