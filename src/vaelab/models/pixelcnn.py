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
- `log_prob(x)` is one pass over the whole image (teacher forcing). Sampling is sequential, one pass per pixel;
  the conditioning maps and each layer's 1×1 projection of them are computed once, and each pass runs on the
  window that the predicted pixel can see (`reach` rows above it and columns to each side), not on the whole image.
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
        half = KERNEL // 2
        # Vertical: rows r − half … r, every column within half (padding above and on both sides).
        v = self.vertical(F.pad(vertical, (half, half, half, 0)))
        # Horizontal: columns c − half … c of row r; the first layer shifts one more to leave out the pixel itself.
        shift = 1 if self.first else 0
        h = self.horizontal(F.pad(horizontal, (half + shift, -shift, 0, 0)))
        v_down = F.pad(v, (0, 0, 1, -1))  # row r now holds what the rows above r saw
        condition_v, condition_h = projected.chunk(2, dim=1)
        v = v + condition_v
        h = h + self.vertical_to_horizontal(v_down) + condition_h
        v_out = torch.tanh(v.chunk(2, 1)[0]) * torch.sigmoid(v.chunk(2, 1)[1])
        h_gated = torch.tanh(h.chunk(2, 1)[0]) * torch.sigmoid(h.chunk(2, 1)[1])
        h_out = self.horizontal_out(h_gated)
        return v_out, h_out if self.first else horizontal + h_out


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
        adds KERNEL // 2, the shift into the horizontal stack one more), and columns to either side (each layer adds
        KERNEL // 2; the first layer's shift one more on the left)."""
        return len(self.layers) * (KERNEL // 2) + 1

    def forward(self, x: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        return self.forward_projected(x, self.project(conditioning))

    def project(self, conditioning: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's view of the conditioning maps: per pixel, so a window of them is the window's view."""
        return [layer.condition(conditioning) for layer in self.layers]

    def forward_projected(self, x: torch.Tensor, projected: list[torch.Tensor]) -> torch.Tensor:
        x = (2 * x - 1).to(projected[0].dtype)  # centred: a black pixel is not "no input"
        vertical, horizontal = x, x
        for layer, layer_projected in zip(self.layers, projected, strict=True):
            vertical, horizontal = layer(vertical, horizontal, layer_projected)
        return self.out(horizontal).float()


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
        """Images drawn pixel by pixel, and each pixel's conditional mean on the way: `[N, 1, H, W]` each."""
        n, _, height, width = self.conditioning.shape
        device = self.conditioning.device
        uniforms = torch.rand(n, 1, height, width, generator=generator, device=device)
        images = torch.zeros(n, 1, height, width, device=device)
        means = torch.zeros_like(images)
        reach = self.network.reach
        projected = self.network.project(self.conditioning)  # 1×1 convolutions: computed once, read by window
        for row in range(height):
            top = max(0, row - reach)
            for column in range(width):
                left = max(0, column - reach)
                window = (slice(None), slice(None), slice(top, row + 1), slice(left, column + reach + 1))
                planes = self.network.forward_projected(images[window], [maps[window] for maps in projected])
                pixel = planes[:, :, row - top, column - left]
                images[:, :, row, column] = self.likelihood.pixel_value(pixel, uniforms[:, :, row, column])
                means[:, :, row, column] = self.likelihood.pixel_mean(pixel)
        return images, means
