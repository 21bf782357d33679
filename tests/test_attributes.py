"""Attribute measurers on drawings whose true values are known, and on a few real images."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from vaelab.analysis.attributes import attributes_for, measure, measure_batch
from vaelab.data import load_split
from vaelab.data.measurers import (
    bottom_extent,
    height,
    ink_area,
    left_right_symmetry,
    mean_brightness,
    silhouette_area,
    silhouette_height,
    silhouette_width,
    slant,
    stroke_length,
    stroke_thickness,
    top_extent,
    width,
)
from vaelab.errors import VaelabError

SIZE = 28
SUPERSAMPLING = 8


def render(inside: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """A 28×28 image of the region `inside(row, col)` (continuous coordinates, pixel k spans [k, k + 1)), each
    pixel the fraction of it covered: edges on pixel boundaries come out crisp, others anti-aliased."""
    centres = (np.arange(SIZE * SUPERSAMPLING) + 0.5) / SUPERSAMPLING
    rows, cols = np.meshgrid(centres, centres, indexing="ij")
    covered = inside(rows, cols).astype(np.float64)
    return covered.reshape(SIZE, SUPERSAMPLING, SIZE, SUPERSAMPLING).mean(axis=(1, 3))


def vertical_bar(
    thickness: float, length: float = 20, centre_col: float = 14, shear_degrees: float = 0.0
) -> np.ndarray:
    """A bar centred in the image, `thickness` wide across each row, its top shifted right for positive shear."""
    top, bottom = 14 - length / 2, 14 + length / 2
    shift_per_row_up = math.tan(math.radians(shear_degrees))

    def inside(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        row_centre = centre_col + shift_per_row_up * (14 - r)
        return (r >= top) & (r < bottom) & (np.abs(c - row_centre) < thickness / 2)

    return render(inside)


def aligned_bar(thickness: int, length: float = 20) -> np.ndarray:
    """A vertical bar whose long edges fall on pixel boundaries, so every pixel is fully ink or background."""
    return vertical_bar(thickness, length, centre_col=14 + 0.5 * (thickness % 2))


def rectangle(top: int, left: int, rows: int, cols: int, intensity: float = 1.0) -> np.ndarray:
    image = np.zeros((SIZE, SIZE))
    image[top : top + rows, left : left + cols] = intensity
    return image


def test_each_dataset_has_its_fixed_attribute_names_and_unknown_datasets_are_refused():
    assert attributes_for("mnist") == ("ink_area", "stroke_length", "stroke_thickness", "slant", "width", "height")
    assert attributes_for("fashion-mnist") == (
        "silhouette_area", "width", "height", "mean_brightness", "left_right_symmetry", "top_extent", "bottom_extent",
    )
    with pytest.raises(VaelabError, match="unknown dataset 'cifar'; choose one of: mnist, fashion-mnist"):
        attributes_for("cifar")


@pytest.mark.parametrize("thickness", [1, 2, 3, 4, 5])
def test_stroke_thickness_of_a_pixel_aligned_bar_matches_its_drawn_width(thickness):
    # Tolerance 0.25 px: a quarter of a pixel, the resolution of the ×4 upsampled skeleton.
    assert stroke_thickness(aligned_bar(thickness)) == pytest.approx(thickness, abs=0.25)


@pytest.mark.parametrize("thickness", [1.5, 2.0, 2.5, 3.0, 3.5, 4.5])
def test_stroke_thickness_of_an_anti_aliased_bar_matches_its_drawn_width(thickness):
    # Centred on a pixel boundary or centre so the edges cut pixels in half: the 0.5-threshold mask at 28×28
    # is a pixel too narrow or too wide, the upsampled measure should still be within 0.25 px.
    bar = vertical_bar(thickness, centre_col=14.0 if int(thickness) % 2 == 0 else 14.5)
    assert stroke_thickness(bar) == pytest.approx(thickness, abs=0.25)


def test_stroke_thickness_grows_with_the_drawn_width():
    thicknesses = [stroke_thickness(vertical_bar(t, centre_col=14.3)) for t in (1.2, 1.8, 2.4, 3.0, 3.6, 4.2, 5.0)]
    assert all(np.diff(thicknesses) > 0), thicknesses


def test_stroke_thickness_of_a_horizontal_bar_matches_its_drawn_height():
    assert stroke_thickness(aligned_bar(3).T) == pytest.approx(3, abs=0.25)


@pytest.mark.parametrize("thickness", [1, 2, 3, 4])
@pytest.mark.parametrize("length", [8, 14, 20])
def test_stroke_length_of_a_straight_bar_is_its_length_less_its_thickness(thickness, length):
    # The skeleton stops half a stroke width short of each end; tolerance 0.5 px.
    assert stroke_length(aligned_bar(thickness, length)) == pytest.approx(length - thickness, abs=0.5)


def test_stroke_length_grows_with_line_length():
    lengths = [stroke_length(aligned_bar(2, length)) for length in (6, 9, 12, 15, 18, 21, 24)]
    assert all(np.diff(lengths) > 0), lengths


@pytest.mark.parametrize("shear_degrees", [-30, -20, -10, 10, 20, 30])
def test_slant_of_a_sheared_bar_matches_its_shear_angle_and_sign(shear_degrees):
    # Tolerance 1°: the moments of an anti-aliased parallelogram give its shear almost exactly.
    assert slant(vertical_bar(3, shear_degrees=shear_degrees)) == pytest.approx(shear_degrees, abs=1.0)


def test_slant_is_positive_when_the_top_leans_right():
    top_right = np.zeros((SIZE, SIZE))
    for row in range(4, 24):
        col = 14 + (14 - row) // 3  # rows above the middle move right
        top_right[row, col : col + 2] = 1.0
    assert slant(top_right) > 10
    assert slant(top_right[:, ::-1]) < -10
    assert slant(aligned_bar(3)) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize(("rows", "cols"), [(20, 4), (12, 17), (5, 25), (1, 1)])
def test_width_and_height_of_a_rectangle_are_its_drawn_size(rows, cols):
    image = rectangle(2, 1, rows, cols, intensity=0.8)
    assert (width(image), height(image)) == (cols, rows)
    assert (silhouette_width(image), silhouette_height(image)) == (cols, rows)


def test_mnist_width_ignores_faint_pixels_below_half_intensity_but_the_silhouette_includes_them():
    image = rectangle(4, 10, 20, 6) + rectangle(4, 16, 20, 3, intensity=0.3)
    assert width(image) == 6
    assert silhouette_width(image) == 9


@pytest.mark.parametrize("radius", [3, 6, 10])
def test_ink_area_of_a_disc_is_pi_r_squared(radius):
    # Tolerance 1 % relative: anti-aliasing at 8×8 samples per pixel makes the covered area nearly exact.
    disc = render(lambda r, c: (r - 14) ** 2 + (c - 14) ** 2 < radius**2)
    assert ink_area(disc) == pytest.approx(math.pi * radius**2, rel=0.01)


def test_silhouette_area_counts_a_hollow_outline_as_its_filled_shape():
    outline = rectangle(5, 6, 10, 8)
    outline[6:14, 7:13] = 0.0
    assert silhouette_area(outline) == 80


def test_mean_brightness_is_the_intensity_of_a_uniform_shape_and_counts_dark_enclosed_parts():
    assert mean_brightness(rectangle(3, 4, 10, 12, intensity=0.6)) == pytest.approx(0.6, abs=1e-9)
    outline = rectangle(5, 6, 10, 8)
    outline[6:14, 7:13] = 0.0  # 48 dark pixels inside 80
    assert mean_brightness(outline) == pytest.approx(32 / 80, abs=1e-9)


def test_left_right_symmetry_is_one_for_mirror_symmetric_shapes_wherever_they_are():
    off_centre_triangle = render(lambda r, c: (r >= 6) & (r < 22) & (np.abs(c - 9) <= (r - 6) / 2))
    assert left_right_symmetry(off_centre_triangle) == pytest.approx(1.0, abs=1e-9)
    assert left_right_symmetry(rectangle(3, 2, 8, 5)) == pytest.approx(1.0, abs=1e-9)


def test_left_right_symmetry_is_clearly_below_one_for_asymmetric_shapes():
    right_triangle = render(lambda r, c: (r >= 6) & (r < 22) & (c >= 6) & (c - 6 <= r - 6))
    letter_l = rectangle(5, 6, 18, 4) + rectangle(19, 10, 4, 10)
    assert left_right_symmetry(right_triangle) < 0.6
    assert left_right_symmetry(letter_l) < 0.6


def test_top_and_bottom_extent_are_the_mean_row_widths_of_each_half():
    # Eight rows 6 wide over eight rows 14 wide: each half is exactly one of the two blocks.
    narrow_over_wide = rectangle(4, 11, 8, 6) + rectangle(12, 7, 8, 14)
    assert top_extent(narrow_over_wide) == 6
    assert bottom_extent(narrow_over_wide) == 14
    assert top_extent(narrow_over_wide[::-1]) == 14
    assert bottom_extent(narrow_over_wide[::-1]) == 6


def test_a_triangle_standing_on_its_base_is_narrower_at_the_top():
    triangle = render(lambda r, c: (r >= 4) & (r < 24) & (np.abs(c - 14) <= (r - 4) / 2))
    assert top_extent(triangle) < bottom_extent(triangle) / 2


def test_top_and_bottom_extent_span_the_gap_between_two_legs():
    trousers = rectangle(4, 8, 8, 12) + rectangle(12, 8, 10, 4) + rectangle(12, 16, 10, 4)
    assert top_extent(trousers) == 12
    assert bottom_extent(trousers) == 12


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_an_empty_image_gives_zero_amounts_and_nan_averages(dataset):
    nan_when_empty = {"stroke_thickness", "slant", "mean_brightness", "left_right_symmetry"}
    values = measure(np.zeros((SIZE, SIZE)), dataset)
    for name, value in values.items():
        assert math.isnan(value) if name in nan_when_empty else value == 0, (name, value)


@pytest.mark.filterwarnings("error")
def test_a_lone_faint_pixel_has_no_stroke_rather_than_a_warning():
    speck = np.zeros((SIZE, SIZE))
    speck[14, 14] = 0.6  # above the ink threshold at 28×28, below it everywhere once upsampled
    assert stroke_length(speck) == 0
    assert math.isnan(stroke_thickness(speck))


def test_measure_batch_agrees_with_measure_for_tensors_and_arrays_with_or_without_a_channel():
    images = np.stack([aligned_bar(2), vertical_bar(3, shear_degrees=15), rectangle(3, 4, 10, 12, 0.7)])
    for dataset in ("mnist", "fashion-mnist"):
        one_by_one = [measure(image, dataset) for image in images]
        for batch in (images, torch.from_numpy(images).float().unsqueeze(1)):
            values = measure_batch(batch, dataset)
            assert tuple(values) == attributes_for(dataset)
            for name, column in values.items():
                assert column.shape == (3,)
                np.testing.assert_allclose(column, [v[name] for v in one_by_one], rtol=1e-5, atol=1e-5)


def test_images_outside_unit_intensities_or_of_the_wrong_shape_are_refused():
    with pytest.raises(VaelabError, match="divide uint8 images by 255"):
        measure_batch(np.full((2, SIZE, SIZE), 255.0), "mnist")
    with pytest.raises(VaelabError, match="use measure_batch"):
        measure(np.zeros((1, SIZE, SIZE)), "mnist")
    with pytest.raises(VaelabError, match=r"got shape \[2, 3, 28, 28\]"):
        measure_batch(np.zeros((2, 3, SIZE, SIZE)), "mnist")


def test_real_mnist_digits_get_finite_attributes_and_ones_are_narrower_and_shorter_than_zeros():
    test = load_split("mnist", "test")
    images, labels = test.images[:200].float() / 255.0, test.labels[:200].numpy()
    values = measure_batch(images, "mnist")
    for name, column in values.items():
        assert column.shape == (200,) and np.isfinite(column).all(), name
    ones, zeros = labels == 1, labels == 0
    assert ones.sum() >= 10 and zeros.sum() >= 10
    assert values["width"][ones].mean() < values["width"][zeros].mean() / 2
    assert values["stroke_length"][ones].mean() < values["stroke_length"][zeros].mean()
    assert values["ink_area"][ones].mean() < values["ink_area"][zeros].mean()
    # Handwritten strokes are about two pixels thick at 28×28.
    assert 1.5 < np.median(values["stroke_thickness"]) < 3.5


def test_real_fashion_items_get_finite_attributes_and_shoes_are_less_symmetric_than_shirts():
    test = load_split("fashion-mnist", "test")
    images, labels = test.images[:200].float() / 255.0, test.labels[:200].numpy()
    values = measure_batch(images, "fashion-mnist")
    for name, column in values.items():
        assert column.shape == (200,) and np.isfinite(column).all(), name
    t_shirts, trousers, ankle_boots = labels == 0, labels == 1, labels == 9
    assert min(t_shirts.sum(), trousers.sum(), ankle_boots.sum()) >= 10
    symmetry = values["left_right_symmetry"]
    assert symmetry[ankle_boots].mean() < symmetry[t_shirts].mean() - 0.2
    assert values["width"][trousers].mean() < values["width"][t_shirts].mean()
    assert (values["bottom_extent"][ankle_boots] > values["top_extent"][ankle_boots]).mean() > 0.8
