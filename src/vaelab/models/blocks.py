"""Convolutional building blocks shared by encoders and decoders."""

from __future__ import annotations

from torch import nn


class ResidualBlock(nn.Module):
    """x + conv3×3(act(conv3×3(act(x)))): extra depth at one resolution without changing the shape."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x):
        return x + self.body(x)


def down_stage(in_channels: int, out_channels: int, blocks: int) -> nn.Sequential:
    """Halve the resolution with a stride-2 4×4 conv, then `blocks` residual blocks."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1), nn.ReLU()]
    layers += [ResidualBlock(out_channels) for _ in range(blocks)]
    return nn.Sequential(*layers)


def up_stage(in_channels: int, out_channels: int, blocks: int, last: bool) -> nn.Sequential:
    """`blocks` residual blocks, then double the resolution with a stride-2 4×4 transposed conv."""
    layers: list[nn.Module] = [ResidualBlock(in_channels) for _ in range(blocks)]
    layers.append(nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1))
    if not last:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)
