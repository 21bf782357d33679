"""A drawing → a 28×28 image prepared the way the dataset's were. The preparation lives in `vaelab.images` (the
command line's `vaelab classify` uses it too); the explorer imports it from here."""

from vaelab.images import CENTRE, DRAWING_BOX, IMAGE_SIZE, INK_THRESHOLD, prepare_drawing

__all__ = ["CENTRE", "DRAWING_BOX", "IMAGE_SIZE", "INK_THRESHOLD", "prepare_drawing"]
