"""Interpretable attributes of small grayscale images (MNIST, Fashion-MNIST), measured from the pixels alone.

Each dataset description lists the measurers of its images (`attributes`); `vaelab.analysis.attributes` measures
batches with them. scipy and scikit-image are imported on first use: describing a dataset stays cheap.

Images are float intensities in [0, 1], shape `[H, W]` (one image) or `[N, H, W]` / `[N, 1, H, W]` (a batch).
Lengths are in pixels of the input image, areas in pixels², angles in degrees.

MNIST attributes follow Morpho-MNIST (Castro et al. 2019): the digit is the set of pixels above 0.5, and the
stroke measures are read off its skeleton after upsampling ×4, which gives them sub-pixel resolution (bilinear
here, where Morpho-MNIST smooths and upsamples bicubically: about a third of the cost, and exact on straight bars).

- `ink_area`: sum of intensities (exact for anti-aliased drawings, and independent of the 0.5 threshold).
- `stroke_length`: skeleton pixels / 4 (Morpho-MNIST's estimate). The skeleton stops about half a stroke width
  short of each free end (a straight bar L long and t thick measures about L − t), and a diagonal run counts
  one per pixel, so diagonal strokes read up to √2 short.
- `stroke_thickness`: 2 × mean of the Euclidean distance transform along the skeleton, / 4 (Morpho-MNIST).
- `slant`: shear angle from intensity-weighted central moments, `atan(-mu11 / mu02)` with x = column and
  y = row (downwards); positive when the top of the digit leans right, as in italics.
- `width`, `height`: bounding-box extent of the pixels above 0.5 (not Morpho-MNIST's slant-corrected extent).

Fashion-MNIST attributes are read off the silhouette: pixels above 0.05 (dark fabric is still garment; any
lower and background specks split one garment into several pieces), with enclosed holes filled.

- `silhouette_area`: silhouette pixel count.
- `width`, `height`: bounding-box extent of the silhouette.
- `mean_brightness`: mean intensity over the silhouette.
- `left_right_symmetry`: 1 − Σ|I − mirror(I)| / (2 ΣI), mirrored about the centre of the silhouette's
  bounding box; 1 for a mirror-symmetric image, 0 when the image and its mirror do not overlap at all.
- `top_extent`, `bottom_extent`: mean over the top (bottom) ceil(h/2) rows of the silhouette's bounding box of
  each row's extent (rightmost − leftmost silhouette pixel + 1, 0 for an empty row); for odd h the middle row
  belongs to both halves.

An image without ink has 0 for the amounts (areas, length, width, height, extents) and nan for the averages and
ratios that are undefined without ink (thickness, slant, brightness, symmetry). Thickness is also nan when no
skeleton survives upsampling (a lone faint pixel), and slant when all ink lies on one row.
"""

from __future__ import annotations

import functools
import math

import numpy as np

INK_THRESHOLD = 0.5
SILHOUETTE_THRESHOLD = 0.05
UPSAMPLING = 4


def ink_mask(image: np.ndarray) -> np.ndarray:
    return image > INK_THRESHOLD


def silhouette_mask(image: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_fill_holes(image > SILHOUETTE_THRESHOLD)


def _extent(mask: np.ndarray, axis: int) -> float:
    """Number of columns (axis=0 collapses rows) or rows (axis=1) from the first to the last occupied one."""
    occupied = np.flatnonzero(mask.any(axis=axis))
    return float(occupied[-1] - occupied[0] + 1) if occupied.size else 0.0


def _upsampled_ink(image: np.ndarray) -> np.ndarray:
    """The ink mask of the image upsampled ×UPSAMPLING, cropped to the ink with a background margin.

    Cropping first makes the upsampling several times cheaper; the one-pixel zero margin keeps the distance
    transform measuring distance to real background rather than to the array edge.
    """
    from scipy import ndimage

    rows, cols = np.nonzero(image > 0)
    crop = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] if rows.size else image[:0, :0]
    # grid_mode aligns pixel edges rather than centres, so the scale factor is exactly UPSAMPLING and a stroke
    # t pixels wide becomes UPSAMPLING·t samples wide.
    upsampled = ndimage.zoom(np.pad(crop, 1), UPSAMPLING, order=1, grid_mode=True, mode="grid-constant")
    return upsampled > INK_THRESHOLD


def ink_area(image: np.ndarray) -> float:
    return float(image.sum())


def _ink_and_skeleton(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upsampled ink mask and its skeleton, computed once for the two stroke measures of the same image."""
    image = np.ascontiguousarray(image, dtype=np.float64)
    return _cached_ink_and_skeleton(image.tobytes(), image.shape)


@functools.lru_cache(maxsize=4)
def _cached_ink_and_skeleton(pixels: bytes, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    from skimage.morphology import skeletonize

    ink = _upsampled_ink(np.frombuffer(pixels, dtype=np.float64).reshape(shape))
    return ink, skeletonize(ink)


def stroke_length(image: np.ndarray) -> float:
    return float(_ink_and_skeleton(image)[1].sum()) / UPSAMPLING


def stroke_thickness(image: np.ndarray) -> float:
    from scipy import ndimage

    ink, skeleton = _ink_and_skeleton(image)
    # Upsampling can erase a lone faint pixel just above the threshold, so test the skeleton, not the input.
    if not skeleton.any():
        return math.nan
    distance_to_background = ndimage.distance_transform_edt(ink)
    return 2.0 * float(distance_to_background[skeleton].mean()) / UPSAMPLING


def slant(image: np.ndarray) -> float:
    total = image.sum()
    if total <= 0:
        return math.nan
    rows, cols = np.indices(image.shape, dtype=np.float64)
    row_offset = rows - (image * rows).sum() / total
    col_offset = cols - (image * cols).sum() / total
    mu11 = (image * row_offset * col_offset).sum()
    mu02 = (image * row_offset**2).sum()
    if mu02 <= 0:  # a single row of ink has no vertical direction to lean from
        return math.nan
    # Rows grow downwards, so a top leaning right gives negative mu11.
    return math.degrees(math.atan(-mu11 / mu02))


def width(image: np.ndarray) -> float:
    return _extent(ink_mask(image), axis=0)


def height(image: np.ndarray) -> float:
    return _extent(ink_mask(image), axis=1)


def silhouette_area(image: np.ndarray) -> float:
    return float(silhouette_mask(image).sum())


def silhouette_width(image: np.ndarray) -> float:
    return _extent(silhouette_mask(image), axis=0)


def silhouette_height(image: np.ndarray) -> float:
    return _extent(silhouette_mask(image), axis=1)


def mean_brightness(image: np.ndarray) -> float:
    silhouette = silhouette_mask(image)
    return float(image[silhouette].mean()) if silhouette.any() else math.nan


def left_right_symmetry(image: np.ndarray) -> float:
    occupied_cols = np.flatnonzero(silhouette_mask(image).any(axis=0))
    if not occupied_cols.size:
        return math.nan
    # Flipping the crop mirrors about the bounding-box centre, so an off-centre symmetric shape still scores 1.
    crop = image[:, occupied_cols[0] : occupied_cols[-1] + 1]
    return 1.0 - float(np.abs(crop - crop[:, ::-1]).sum() / (2.0 * crop.sum()))


def _row_extents(image: np.ndarray) -> np.ndarray:
    """Extent of the silhouette in each row of its bounding box, top to bottom."""
    silhouette = silhouette_mask(image)
    occupied_rows = np.flatnonzero(silhouette.any(axis=1))
    if not occupied_rows.size:
        return np.zeros(0)
    rows = silhouette[occupied_rows[0] : occupied_rows[-1] + 1]
    leftmost = rows.argmax(axis=1)
    rightmost = rows.shape[1] - 1 - rows[:, ::-1].argmax(axis=1)
    return np.where(rows.any(axis=1), rightmost - leftmost + 1, 0).astype(np.float64)


def top_extent(image: np.ndarray) -> float:
    extents = _row_extents(image)
    return float(extents[: math.ceil(len(extents) / 2)].mean()) if extents.size else 0.0


def bottom_extent(image: np.ndarray) -> float:
    extents = _row_extents(image)
    return float(extents[len(extents) // 2 :].mean()) if extents.size else 0.0
