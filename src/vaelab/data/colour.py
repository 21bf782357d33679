"""Attributes of colour images `[3, H, W]` (intensities in [0, 1]), measured from the pixels alone.

The object is told from the background by colour: the background colour is the median of the image's border
pixels, and the object is every pixel farther than BACKGROUND_DISTANCE from it (largest channel difference).
For the emoji, composited onto white, that is the drawing; for a photograph it is what differs from its edges.

- `brightness`: mean luma (Rec. 601: 0.299 R + 0.587 G + 0.114 B) over the object.
- `saturation`: mean HSV saturation (max − min) / max over the object.
- `hue`: circular mean of the HSV hue over the object, each pixel weighted by its saturation, in degrees
  [0, 360); nan for a grey object. Circular: 359° is next to 0°.
- `colourfulness`: Hasler & Süsstrunk (2003), √(σ_rg² + σ_yb²) + 0.3 √(μ_rg² + μ_yb²) with rg = R − G and
  yb = (R + G)/2 − B, over the object, on the 0–255 scale of the paper.
- `object_area`: the object's share of the image, in [0, 1].
- `centroid_x`, `centroid_y`: the object's centre of mass, in [0, 1] of the width (from the left) and height
  (from the top).
- `left_right_symmetry`: 1 − Σ|D − mirror(D)| / (2 ΣD) over the image, where D is each pixel's distance from the
  background colour; 1 for a mirror-symmetric image.
- `skin_lightness` (emoji): mean luma of the skin-coloured pixels, those whose colour is within SKIN_DISTANCE
  of one of the five skin-tone swatches of the emoji standard's modifiers (as drawn by Twemoji); nan when there
  are none. Darker tones give lower values.

An image without an object has 0 for the amounts (area) and nan for the averages.
"""

from __future__ import annotations

import numpy as np

BACKGROUND_DISTANCE = 0.1
SKIN_DISTANCE = 0.12
# Twemoji's fills for the light, medium-light, medium, medium-dark and dark modifiers.
SKIN_SWATCHES = np.array([
    [0xF7, 0xDE, 0xCE], [0xF3, 0xD2, 0xA2], [0xD5, 0xAB, 0x88], [0xAF, 0x7E, 0x57], [0x7C, 0x53, 0x3E],
]) / 255.0
LUMA = np.array([0.299, 0.587, 0.114])


def background_colour(image: np.ndarray) -> np.ndarray:
    border = np.concatenate([image[:, 0, :], image[:, -1, :], image[:, :, 0], image[:, :, -1]], axis=1)
    return np.median(border, axis=1)


def background_distance(image: np.ndarray) -> np.ndarray:
    """Each pixel's largest channel difference from the background colour, `[H, W]`."""
    return np.abs(image - background_colour(image)[:, None, None]).max(axis=0)


def object_mask(image: np.ndarray) -> np.ndarray:
    return background_distance(image) > BACKGROUND_DISTANCE


def _over_object(values: np.ndarray, image: np.ndarray) -> float:
    mask = object_mask(image)
    return float(values[mask].mean()) if mask.any() else float("nan")


def luma(image: np.ndarray) -> np.ndarray:
    return np.tensordot(LUMA, image, axes=1)


def _saturation(image: np.ndarray) -> np.ndarray:
    high, low = image.max(axis=0), image.min(axis=0)
    return np.where(high > 0, (high - low) / np.maximum(high, 1e-12), 0.0)


def _hue_radians(image: np.ndarray) -> np.ndarray:
    red, green, blue = image
    # atan2 form of the HSV hue (Hanbury's): exact at the primaries and secondaries, smooth elsewhere
    return np.arctan2(np.sqrt(3.0) * (green - blue), 2.0 * red - green - blue)


def brightness(image: np.ndarray) -> float:
    return _over_object(luma(image), image)


def saturation(image: np.ndarray) -> float:
    return _over_object(_saturation(image), image)


def hue(image: np.ndarray) -> float:
    mask = object_mask(image)
    weights = _saturation(image)[mask]
    if weights.sum() <= 1e-9:
        return float("nan")
    angles = _hue_radians(image)[mask]
    mean = np.arctan2((weights * np.sin(angles)).sum(), (weights * np.cos(angles)).sum())
    return float(np.degrees(mean) % 360.0)


def colourfulness(image: np.ndarray) -> float:
    mask = object_mask(image)
    if not mask.any():
        return float("nan")
    red, green, blue = (channel[mask] * 255.0 for channel in image)
    rg, yb = red - green, 0.5 * (red + green) - blue
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def object_area(image: np.ndarray) -> float:
    return float(object_mask(image).mean())


def _centroid(image: np.ndarray, axis: int) -> float:
    mask = object_mask(image)
    if not mask.any():
        return float("nan")
    positions = np.nonzero(mask)[axis] + 0.5
    return float(positions.mean() / mask.shape[axis])


def centroid_x(image: np.ndarray) -> float:
    return _centroid(image, 1)


def centroid_y(image: np.ndarray) -> float:
    return _centroid(image, 0)


def left_right_symmetry(image: np.ndarray) -> float:
    distance = background_distance(image)
    total = distance.sum()
    if total <= 1e-9:
        return float("nan")
    return float(1.0 - np.abs(distance - distance[:, ::-1]).sum() / (2.0 * total))


def skin_lightness(image: np.ndarray) -> float:
    pixels = image.reshape(3, -1).T
    distances = np.abs(pixels[:, None, :] - SKIN_SWATCHES[None]).max(axis=2).min(axis=1)
    skin = distances < SKIN_DISTANCE
    return float((pixels[skin] @ LUMA).mean()) if skin.any() else float("nan")


MEASURERS = {
    "brightness": brightness,
    "saturation": saturation,
    "hue": hue,
    "colourfulness": colourfulness,
    "object_area": object_area,
    "centroid_x": centroid_x,
    "centroid_y": centroid_y,
    "left_right_symmetry": left_right_symmetry,
}


def _on_grey(measurer):
    """A colour measurer applied to a grey `[H, W]` image, read as three equal channels."""
    def measure(image: np.ndarray) -> float:
        return measurer(np.broadcast_to(image, (3, *image.shape)))
    measure.__name__ = measurer.__name__
    return measure


GREY_MEASURERS = {name: _on_grey(MEASURERS[name])
                  for name in ("brightness", "object_area", "centroid_x", "centroid_y", "left_right_symmetry")}
