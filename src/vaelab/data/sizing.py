"""How long and in what batches a run trains by default, from the size of its training set.

The recipe of the MNIST models (batches of 128, 30 epochs) is thousands of steps on 55,000 images, but 30 steps on
the 243 training images of a 300-image folder: too few for a model to learn anything, and it collapses to the
mean image. So a run that does not set its batch size or its length gets them from the number of training images:

- batches of 128, or, below `FULL_BATCH_IMAGES` images, the largest power of two that gives an epoch at least
  `MIN_STEPS_PER_EPOCH` steps (never below `MIN_BATCH`);
- 30 epochs, or more where 30 epochs are fewer than `MIN_STEPS` optimiser steps;
- a learning rate of 1e-3 at batches of 128, and √(batch / 128) times that for smaller batches (the square-root
  rule of Adam: a smaller batch is a noisier gradient). Measured on 300 shape images in batches of 16: at 1e-3 the
  encoder's ReLUs die within the first hundred steps, even with β = 0, and the model collapses to the mean image;
  at 3.5e-4 it does not.

A time budget (`--time-budget`) replaces the length, and a batch size or length given explicitly is kept.
"""

from __future__ import annotations

import math

DEFAULT_BATCH = 128
DEFAULT_EPOCHS = 30
MIN_STEPS_PER_EPOCH = 8
MIN_BATCH = 16
FULL_BATCH_IMAGES = DEFAULT_BATCH * MIN_STEPS_PER_EPOCH
DEFAULT_LR = 1e-3
MIN_STEPS = 3000  # measured on 300 shape images: fewer steps leave the samples blurred towards the mean image


def default_batch_size(train_images: int | None) -> int:
    """The batch size of a run on `train_images` images (None: a large dataset)."""
    if train_images is None or train_images >= FULL_BATCH_IMAGES:
        return DEFAULT_BATCH
    largest = 2 ** int(math.log2(max(train_images // MIN_STEPS_PER_EPOCH, 1)))
    return min(max(largest, MIN_BATCH), DEFAULT_BATCH)


def default_epochs(train_images: int | None, batch_size: int) -> int:
    """The epochs of a run on `train_images` images in batches of `batch_size` (None: a large dataset)."""
    if train_images is None:
        return DEFAULT_EPOCHS
    steps_per_epoch = max(train_images // batch_size, 1)
    return max(DEFAULT_EPOCHS, math.ceil(MIN_STEPS / steps_per_epoch))


def default_lr(batch_size: int) -> float:
    """The peak learning rate of Adam for batches of `batch_size`."""
    return DEFAULT_LR * math.sqrt(min(max(batch_size, 1), DEFAULT_BATCH) / DEFAULT_BATCH)  # validation refuses < 1
