"""Milliseconds per image of a PixelCNN decoder's sequential sampling: vaelab's row-cached sampler against a
per-pixel pass of the whole network over the window the pixel can see.

    python benchmarks/pixelcnn_sampling.py runs/pixelcnn-45 [--images 64] [--threads 1]

vaelab (`AutoregressiveImage.sample_with_means`) runs the vertical stacks once a row and only the horizontal stacks
per pixel. The reference runs every layer per pixel on the `reach` rows above it and `reach` columns to each side.
Both draw from the same codes and uniforms; the script prints whether they drew the same images and the largest
difference of their conditional means. Prints lines for docs/results/.
"""

from __future__ import annotations

import argparse
import time

import torch
from machine import run_header

from vaelab.models.pixelcnn import AutoregressiveImage
from vaelab.rundir import load_model

SEED = 0


@torch.no_grad()
def windowed_sample(image: AutoregressiveImage, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: each pixel from a full pass of the network over its window."""
    network, conditioning, likelihood = image.network, image.conditioning, image.likelihood
    n, _, height, width = conditioning.shape
    uniforms = torch.rand(n, 1, height, width, generator=generator)
    images, means = torch.zeros(n, 1, height, width), torch.zeros(n, 1, height, width)
    reach = network.reach
    for row in range(height):
        top = max(0, row - reach)
        for column in range(width):
            left = max(0, column - reach)
            window = (slice(None), slice(None), slice(top, row + 1), slice(left, column + reach + 1))
            pixel = network(images[window], conditioning[window])[:, :, row - top, column - left]
            images[:, :, row, column] = likelihood.pixel_value(pixel, uniforms[:, :, row, column])
            means[:, :, row, column] = likelihood.pixel_mean(pixel)
    return images, means


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(run_header(f"{args.run}, {args.images} prior samples at once"))
    model = load_model(args.run, torch.device("cpu")).eval()
    if model.config.decoder != "pixelcnn":
        raise SystemExit(f"{args.run} has a {model.config.decoder} decoder; give a run with --decoder pixelcnn")
    z = torch.randn(args.images, model.latent_dim, generator=torch.Generator().manual_seed(SEED))
    classes = model.config.classes
    labels = None if classes is None else torch.arange(args.images) % classes
    with torch.no_grad():
        image = model.decode_dist(z, labels)
    drawn = {}
    for name, sample in (("vaelab, row-cached", AutoregressiveImage.sample_with_means),
                         ("whole window per pixel", windowed_sample)):
        started = time.perf_counter()
        drawn[name] = sample(image, torch.Generator().manual_seed(SEED))
        milliseconds = 1000 * (time.perf_counter() - started) / args.images
        print(f"{name:>24}: {milliseconds:7.1f} ms per image")
    (images, means), (reference_images, reference_means) = drawn.values()
    print(f"same images: {torch.equal(images, reference_images)}; "
          f"largest difference of the conditional means: {(means - reference_means).abs().max().item():.1e}")


if __name__ == "__main__":
    main()
