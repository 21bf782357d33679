"""A drawing → an image prepared the way the dataset's were. The preparation lives in `vaelab.images` (the command
line's `vaelab classify` uses it too); the explorer imports it from here."""

from vaelab.images import INK_THRESHOLD, prepare_drawing

__all__ = ["INK_THRESHOLD", "prepare_drawing"]
