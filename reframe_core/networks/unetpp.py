"""U-Net++ (nested U-Net, Zhou et al. 2018) with four levels.

Node ``X[i][j]`` sits at level i (resolution 1/2^i) and column j; the top row X[0][j] takes every earlier
top-row node plus the up-sampled X[1][j-1]. ReFrame caches those up-sampled tensors (three for depth 4) and
recomputes only the top row on a hit; ``cut="level:0"`` finds them.
"""
from __future__ import annotations

import torch
from torch import nn

from reframe_core.networks.unet import double_conv


class UNetPlusPlus(nn.Module):
    """Shape: (B, in_channels, H, W) -> (B, out_channels, H, W), H and W multiples of 8."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 16, depth: int = 4):
        super().__init__()
        self.depth = depth
        channels = [width * 2 ** i for i in range(depth)]
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.nodes = nn.ModuleDict()
        for j in range(depth):
            for i in range(depth - j):
                if j == 0:
                    cin = in_channels if i == 0 else channels[i - 1]
                else:
                    cin = channels[i] * j + channels[i + 1]
                self.nodes[f"x{i}_{j}"] = double_conv(cin, channels[i])
        self.head = nn.Conv2d(channels[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid: dict[tuple[int, int], torch.Tensor] = {}
        for i in range(self.depth):
            source = x if i == 0 else self.pool(grid[(i - 1, 0)])
            grid[(i, 0)] = self.nodes[f"x{i}_0"](source)
        for j in range(1, self.depth):
            for i in range(self.depth - j):
                same_level = [grid[(i, k)] for k in range(j)]
                grid[(i, j)] = self.nodes[f"x{i}_{j}"](torch.cat(same_level + [self.up(grid[(i + 1, j - 1)])], dim=1))
        return self.head(grid[(0, self.depth - 1)])


def build(**kwargs) -> UNetPlusPlus:
    return UNetPlusPlus(**kwargs)


def example_inputs(height: int = 256, width: int = 256, batch: int = 1) -> tuple[torch.Tensor]:
    return (torch.rand(batch, 3, height, width),)
