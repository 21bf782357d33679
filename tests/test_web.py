"""The latent explorer, tested as a person and a client would use it."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vaelab.data import load_split
from vaelab.web.drawing import prepare_drawing


def moved_and_enlarged(digit: np.ndarray, scale: int = 4, top: int = 17, left: int = 61) -> np.ndarray:
    """A real digit as a person might draw it: bigger and off-centre on a larger canvas."""
    size = digit.shape[0] * scale
    enlarged = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR))
    canvas = np.zeros((200, 240), dtype=np.float32)
    canvas[top : top + size, left : left + size] = enlarged
    return canvas


# --- preparing drawings the way MNIST was prepared ----------------------------------------------------------------


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_a_real_digit_is_left_as_it_is_and_a_moved_enlarged_copy_comes_back_close_to_it():
    digits = load_split("mnist", "test").images[:100].numpy().astype(np.float32) / 255.0
    unshifted = []
    for digit in digits:
        assert np.abs(prepare_drawing(digit) - digit).mean() < 1e-3  # already in a 20×20 box, centred by mass
        restored = prepare_drawing(moved_and_enlarged(digit))
        unshifted.append(correlation(restored, digit))
        # The centre of mass is rounded to whole pixels (in MNIST as here): a copy may land one pixel off.
        nearby = [np.roll(restored, (dy, dx), axis=(0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        assert max(correlation(shifted, digit) for shifted in nearby) > 0.8
    assert np.median(unshifted) > 0.9


def test_a_drawing_is_scaled_into_a_20_pixel_box_and_centred_by_mass():
    stroke = np.zeros((300, 120), dtype=np.float32)
    stroke[40:260, 50:70] = 1.0  # a tall bar, far from centred
    prepared = prepare_drawing(stroke)
    rows, cols = np.nonzero(prepared > 0.05)
    assert rows.max() - rows.min() + 1 == 20 and prepared.shape == (28, 28)
    mass = prepared.sum()
    centre = ((prepared.sum(1) * np.arange(28)).sum() / mass, (prepared.sum(0) * np.arange(28)).sum() / mass)
    assert abs(centre[0] - 14) <= 0.5 and abs(centre[1] - 14) <= 0.5
    assert prepare_drawing(np.zeros((50, 50))).sum() == 0  # an empty canvas stays empty
