"""The colour measurers and the relations of latent dimensions to annotations, on synthetic images and codes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaelab.analysis.factors import auc, binary_annotations, top_annotation
from vaelab.data import colour

SIZE = 64


def square_on_white(rgb, top=24, left=24, side=16):
    image = np.ones((3, SIZE, SIZE))
    image[:, top : top + side, left : left + side] = np.asarray(rgb, dtype=float)[:, None, None]
    return image


def test_a_square_on_white_is_the_object_with_its_area_and_centre():
    image = square_on_white((0.2, 0.4, 0.6), top=8, left=40, side=16)
    assert colour.object_area(image) == pytest.approx(16 * 16 / SIZE**2)
    assert colour.centroid_x(image) == pytest.approx(48 / SIZE)
    assert colour.centroid_y(image) == pytest.approx(16 / SIZE)
    assert colour.brightness(image) == pytest.approx(0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6)


@pytest.mark.parametrize(("rgb", "degrees"), [((1, 0, 0), 0), ((0, 1, 0), 120), ((0, 0, 1), 240), ((1, 1, 0), 60)])
def test_hue_of_primaries_and_secondaries_is_exact(rgb, degrees):
    measured = colour.hue(square_on_white(rgb))
    assert min(abs(measured - degrees), 360 - abs(measured - degrees)) < 1e-6


def test_a_grey_object_has_no_hue_no_saturation_and_no_colourfulness():
    grey = square_on_white((0.3, 0.3, 0.3))
    assert math.isnan(colour.hue(grey)) and colour.saturation(grey) == 0
    assert colour.colourfulness(grey) == pytest.approx(0.0)
    assert colour.colourfulness(square_on_white((1, 0, 0))) == pytest.approx(0.3 * math.hypot(255, 127.5))


def test_symmetry_is_one_for_a_centred_square_and_falls_when_it_moves_aside():
    assert colour.left_right_symmetry(square_on_white((0, 0, 0), left=24)) == pytest.approx(1.0)
    assert colour.left_right_symmetry(square_on_white((0, 0, 0), left=2)) < 0.1


def test_an_empty_image_has_zero_area_and_undefined_averages():
    blank = np.ones((3, SIZE, SIZE))
    assert colour.object_area(blank) == 0
    for measurer in (colour.brightness, colour.hue, colour.colourfulness, colour.centroid_x, colour.skin_lightness):
        assert math.isnan(measurer(blank))


def test_skin_lightness_orders_the_five_tone_swatches_from_light_to_dark():
    values = [colour.skin_lightness(square_on_white(swatch)) for swatch in colour.SKIN_SWATCHES]
    assert (np.diff(values) < 0).all()


def test_auc_is_one_for_a_perfect_split_zero_reversed_and_a_half_for_ties():
    values = np.arange(10.0)
    positive = values >= 5
    assert auc(values, positive) == 1.0 and auc(-values, positive) == 0.0
    assert auc(np.zeros(10), positive) == 0.5
    assert math.isnan(auc(values, np.zeros(10, dtype=bool)))


def test_the_top_annotation_is_the_one_a_dimension_separates_best_with_its_sign():
    rng = np.random.default_rng(0)
    smiling = rng.random(2000) < 0.5
    annotations = {"Smiling": torch.from_numpy(smiling.astype(np.int64)),
                   "Male": torch.from_numpy((rng.random(2000) < 0.5).astype(np.int64)),
                   "skin_tone": torch.from_numpy(rng.integers(0, 6, 2000))}
    binary = binary_annotations(annotations)
    assert set(binary) == {"Smiling", "Male"}  # the five-valued annotation is not binary
    dimension = -2.0 * smiling + rng.normal(size=2000)  # lower values when smiling
    best = top_annotation(dimension, binary)
    assert best["top_annotation"] == "Smiling" and best["top_annotation_sign"] == -1
    assert 0.85 < best["top_annotation_auc"] < 0.95  # Φ(2/√2) ≈ 0.92
