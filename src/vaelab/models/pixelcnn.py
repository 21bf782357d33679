"""An autoregressive decoder: a small gated PixelCNN conditioned on z (`model.decoder: pixelcnn`).

The factorised decoder makes every pixel independent given z, so whatever z does not pin down is averaged into
blur. Here p(x|z) = Π_i p(x_i | x_<i, z) in raster order (van den Oord et al. 2016, "Conditional image generation
with PixelCNN decoders"; PixelVAE, Gulrajani et al. 2017): the VAE's transposed-conv decoder turns z into
conditioning feature maps, and a few gated masked layers read them beside the pixels above and to the left.

- The gated layers have a vertical stack (the rows above, any column) and a horizontal stack (the pixels to the
  left in the row), so the receptive field has no blind spot; the first layer does not see the pixel it predicts.
- The last layer gives the likelihood's planes per pixel (`planes_per_channel`), so the observation models of
  `vaelab.models.likelihoods` read them as they read a factorised decoder's: "bernoulli" for binarized images,
  "logistic" (discretised over the 256 levels) for grayscale ones. One image channel only.
- `log_prob(x)` is one pass over the whole image (teacher forcing). Sampling is sequential: the conditioning maps
  and each layer's 1×1 projection of them are computed once; the vertical stacks run once per row, on the `reach`
  rows above it (fixed by then), and each pixel runs only the horizontal stacks, on the `reach` pixels to its left.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, constraints
from torch.nn import functional as F

KERNEL = 5  # the horizontal and vertical stacks' kernel width; each layer reaches KERNEL // 2 more rows up
MEAN_SEED = 0  # the `.mean` of an autoregressive p(x|z) follows one sampled path; this seeds it


class GatedLayer(nn.Module):
    """One gated layer: tanh ⊙ sigmoid on each stack, the vertical stack feeding the horizontal one shifted down by
    a row (so the horizontal stack never sees its own row's future), and the conditioning maps added to both."""

    def __init__(self, in_channels: int, channels: int, conditioning: int, first: bool) -> None:
        super().__init__()
        self.first = first
        half = KERNEL // 2
        self.vertical = nn.Conv2d(in_channels, 2 * channels, (half + 1, KERNEL))
        self.horizontal = nn.Conv2d(in_channels, 2 * channels, (1, half + 1))
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.condition = nn.Conv2d(conditioning, 4 * channels, 1)
        self.horizontal_out = nn.Conv2d(channels, channels, 1)

    def forward(
        self, vertical: torch.Tensor, horizontal: torch.Tensor, projected: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`projected`: this layer's `condition(conditioning maps)`, which sampling computes once per image."""
        condition_v, condition_h = projected.chunk(2, dim=1)
        v, v_out = self.vertical_pass(vertical, condition_v)
        v_above = F.pad(v, (0, 0, 1, -1))  # row r now holds what the rows above r saw
        return v_out, self.horizontal_pass(horizontal, v_above, condition_h)

    def vertical_pass(self, vertical: torch.Tensor, condition_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The vertical stack: rows r − half … r, every column within half (padding above and on both sides). Gives
        the convolution's output, which the horizontal stack of the row below reads, and the gated output."""
        half = KERNEL // 2
        v = self.vertical(F.pad(vertical, (half, half, half, 0)))
        return v, gate(v + condition_v)

    def horizontal_pass(
        self, horizontal: torch.Tensor, v_above: torch.Tensor, condition_h: torch.Tensor
    ) -> torch.Tensor:
        """The horizontal stack: columns c − half … c of row r (the first layer shifts one more to leave out the pixel
        itself), with `v_above`, the vertical convolution's output one row up."""
        half = KERNEL // 2
        shift = 1 if self.first else 0
        h = self.horizontal(F.pad(horizontal, (half + shift, -shift, 0, 0)))
        h = h + self.vertical_to_horizontal(v_above) + condition_h
        h_out = self.horizontal_out(gate(h))
        return h_out if self.first else horizontal + h_out


def gate(features: torch.Tensor) -> torch.Tensor:
    """tanh of the first half of the channels times the sigmoid of the second."""
    values, gates = features.chunk(2, dim=1)
    return torch.tanh(values) * torch.sigmoid(gates)


class GatedPixelCNN(nn.Module):
    """Images `[N, 1, H, W]` in [0, 1] and conditioning maps `[N, conditioning, H, W]` → the likelihood's planes
    `[N, planes, H, W]`, each pixel's from the pixels before it in raster order and the conditioning maps."""

    def __init__(self, planes: int, channels: int, layers: int, conditioning: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            GatedLayer(1 if i == 0 else channels, channels, conditioning, first=(i == 0)) for i in range(layers)
        )
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, planes, 1))

    @property
    def reach(self) -> int:
        """How far from a pixel its prediction can depend on the image: rows above it (each layer's vertical stack
        adds KERNEL // 2, the shift into the horizontal stack one more), and columns to its left along its row (each
        layer's horizontal stack adds KERNEL // 2, the first layer's shift one more)."""
        return len(self.layers) * (KERNEL // 2) + 1

    def forward(self, x: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        projected = self.project(conditioning)
        vertical = horizontal = centred(x, projected[0])
        for layer, layer_projected in zip(self.layers, projected, strict=True):
            vertical, horizontal = layer(vertical, horizontal, layer_projected)
        return self.out(horizontal).float()

    def project(self, conditioning: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's view of the conditioning maps: per pixel, so a window of them is the window's view."""
        return [layer.condition(conditioning) for layer in self.layers]

    def vertical_above(self, rows: torch.Tensor, conditions_v: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each layer's vertical convolution at the last of `rows` (`[N, 1, R, W]`, R ≥ reach rows or from the image's
        top), with those rows' `conditions_v`: what every horizontal stack of the next row reads from above."""
        above, vertical = [], centred(rows, conditions_v[0])
        for layer, condition_v in zip(self.layers, conditions_v, strict=True):
            v, vertical = layer.vertical_pass(vertical, condition_v)
            above.append(v[:, :, -1:])
        return above

    def last_pixel(
        self, row: torch.Tensor, above: list[torch.Tensor], conditions_h: list[torch.Tensor]
    ) -> torch.Tensor:
        """The likelihood's planes `[N, planes]` of the last pixel of `row` (`[N, 1, 1, C]`, C ≥ reach + 1 columns
        or the image's left edge), from the pixels before it, the row above's `above` and the `conditions_h`."""
        horizontal = centred(row, conditions_h[0])
        for layer, v_above, condition_h in zip(self.layers, above, conditions_h, strict=True):
            horizontal = layer.horizontal_pass(horizontal, v_above, condition_h)
        return self.out(horizontal[:, :, 0, -1:, None]).float()[:, :, 0, 0]


def centred(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] as [−1, 1] in `like`'s dtype: a black pixel is not "no input"."""
    return (2 * x - 1).to(like.dtype)


class AutoregressiveImage(Distribution):
    """p(x|z) = Π_i p(x_i | x_<i, z) over whole images `[N, 1, H, W]`, given the conditioning maps of z.

    `log_prob(x)` is `[N]` nats. `sample(generator=…)` draws images pixel by pixel. `.mean`, which everything that
    shows a decoded image reads, is the conditional mean of each pixel along one sampled path (seeded by
    MEAN_SEED): an image in [0, 1] that shows what the pixels were predicted to be, not a binary sample."""

    arg_constraints: dict = {}
    support = constraints.unit_interval
    has_rsample = False

    def __init__(self, network: GatedPixelCNN, conditioning: torch.Tensor, likelihood: nn.Module) -> None:
        self.network, self.conditioning, self.likelihood = network, conditioning, likelihood
        super().__init__(conditioning.shape[:1], torch.Size((1, *conditioning.shape[2:])), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.likelihood(self.network(value, self.conditioning)).log_prob(value)

    @property
    def mean(self) -> torch.Tensor:
        generator = torch.Generator(self.conditioning.device).manual_seed(MEAN_SEED)
        return self.sample_with_means(generator)[1]

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size = torch.Size(), generator: torch.Generator | None = None) -> torch.Tensor:
        if sample_shape != torch.Size():
            raise ValueError("an autoregressive image draws one sample per image; repeat the codes for more")
        return self.sample_with_means(generator)[0]

    @torch.no_grad()
    def sample_with_means(self, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images drawn pixel by pixel, and each pixel's conditional mean on the way: `[N, 1, H, W]` each.

        The rows above a pixel are fixed once its row begins, so the vertical stacks run once a row (on the `reach`
        rows above it) and each pixel runs only the horizontal stacks, on the `reach` pixels to its left."""
        n, _, height, width = self.conditioning.shape
        device = self.conditioning.device
        uniforms = torch.rand(n, 1, height, width, generator=generator, device=device)
        images = torch.zeros(n, 1, height, width, device=device)
        means = torch.zeros_like(images)
        reach = self.network.reach
        projected = [maps.chunk(2, dim=1) for maps in self.network.project(self.conditioning)]
        conditions_v = [condition_v for condition_v, _ in projected]
        conditions_h = [condition_h for _, condition_h in projected]
        for row in range(height):
            if row == 0:  # nothing above: the zero padding of a teacher-forced pass
                above = [torch.zeros_like(condition[:, :, :1]) for condition in conditions_v]
            else:
                rows = slice(max(0, row - reach), row)
                above = self.network.vertical_above(images[:, :, rows], [c[:, :, rows] for c in conditions_v])
            for column in range(width):
                columns = slice(max(0, column - reach), column + 1)
                pixel = self.network.last_pixel(
                    images[:, :, row : row + 1, columns],
                    [a[:, :, :, columns] for a in above],
                    [c[:, :, row : row + 1, columns] for c in conditions_h],
                )
                images[:, :, row, column] = self.likelihood.pixel_value(pixel, uniforms[:, :, row, column])
                means[:, :, row, column] = self.likelihood.pixel_mean(pixel)
        return images, means
