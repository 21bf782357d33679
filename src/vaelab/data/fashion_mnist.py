"""Fashion-MNIST (Xiao et al. 2017): 70,000 photographs of clothes, 28×28, one grey channel, ten classes; the
file names and format of MNIST.

Offline copy: the Debian package `dataset-fashion-mnist` (gzipped IDX files). Items were resized so that their
longest edge fills the whole 28 pixels: a drawing is prepared the same way.
"""

from __future__ import annotations

from pathlib import Path

from vaelab.data import measurers
from vaelab.data.description import DatasetDescription, Drawing
from vaelab.data.idx import IDX_FILES, idx_reader
from vaelab.data.sources import gzip_folder

DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST = DatasetDescription(
    name="fashion-mnist",
    shape=(1, 28, 28),
    class_names=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    reader=idx_reader,
    split_files=IDX_FILES,
    files={
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
    offline_sources=(gzip_folder(DEBIAN_FOLDER),),
    offline_hint="install the Debian package: `apt-get install dataset-fashion-mnist`",
    default_likelihood="bernoulli",
    # Read off the garment's silhouette (see vaelab.data.measurers).
    attributes={
        "silhouette_area": measurers.silhouette_area,
        "width": measurers.silhouette_width,
        "height": measurers.silhouette_height,
        "mean_brightness": measurers.mean_brightness,
        "left_right_symmetry": measurers.left_right_symmetry,
        "top_extent": measurers.top_extent,
        "bottom_extent": measurers.bottom_extent,
    },
    drawing=Drawing(box=28, centre=(14.0, 14.0)),
)
