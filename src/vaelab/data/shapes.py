"""A folder of simple shapes to try `folder:PATH` with: `vaelab data shapes DIR` writes it.

Each image is one filled shape (a circle, a square or a triangle: the class, one subfolder each) on a white
background, in one of six colours, at a random size and position; PNG files, `size`×`size` RGB. It is what a
user's small folder looks like to vaelab (a few hundred images, a few classes, colour), with factors one can
name: colour, size, position and shape. The images depend only on the seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vaelab.errors import VaelabError
from vaelab.io import atomic_write

SHAPES = ("circle", "square", "triangle")
COLOURS = ((220, 40, 40), (40, 160, 60), (40, 80, 220), (240, 180, 20), (150, 60, 190), (20, 170, 190))


def draw_shape(shape: str, colour: tuple[int, int, int], size: int, radius: float, centre: tuple[float, float],
               ) -> Image.Image:
    """One `size`×`size` RGB image: `shape` filled with `colour`, `radius` pixels from `centre` to its corners."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    x, y = centre
    if shape == "circle":
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    elif shape == "square":
        half = radius / np.sqrt(2)
        draw.rectangle((x - half, y - half, x + half, y + half), fill=colour)
    else:
        angles = np.deg2rad([-90, 30, 150])
        draw.polygon([(x + radius * np.cos(a), y + radius * np.sin(a)) for a in angles], fill=colour)
    return image


def write_shapes_folder(folder: Path, count: int = 300, size: int = 64, seed: int = 0) -> Path:
    """`count` shape images in `folder/<shape>/NNNN.png`, the classes in turn; returns the folder."""
    if count < 3:
        raise VaelabError(f"--count {count} is too small: the folder needs at least one image of each of 3 shapes")
    if not 8 <= size <= 1024:
        raise VaelabError(f"--size {size} must be between 8 and 1024 pixels")
    rng = np.random.default_rng(seed)
    for index in range(count):
        shape = SHAPES[index % len(SHAPES)]
        colour = COLOURS[rng.integers(len(COLOURS))]
        radius = size * rng.uniform(0.15, 0.35)
        centre = tuple(rng.uniform(radius, size - radius, 2))
        path = folder / shape / f"{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image = draw_shape(shape, colour, size, radius, centre)
        atomic_write(path, lambda tmp, image=image: image.save(tmp, format="PNG"))
    return folder
