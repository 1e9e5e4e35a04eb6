"""A plain 4-level U-Net, written as any user would: no caching code in it.

ReFrame's U-Net cut (reframe_core/README.md, "The method") is the output of ``up1``, the last up-sampling before
``cat([up1, skip1])``; ``cache_model(UNet(), (x,), cut="level:0")`` (or ``"auto"``) finds exactly it.
"""
from __future__ import annotations

import torch
from torch import nn


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with levels at 1, 1/2, 1/4 and 1/8 resolution.

    Args:
        in_channels / out_channels: image channels in and out.
        width: channels of the first level; each level below doubles it.

    Shape: (B, in_channels, H, W) -> (B, out_channels, H, W), H and W multiples of 8.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 32):
        super().__init__()
        w = width
        self.enc1 = double_conv(in_channels, w)
        self.enc2 = double_conv(w, 2 * w)
        self.enc3 = double_conv(2 * w, 4 * w)
        self.bottleneck = double_conv(4 * w, 8 * w)
        self.pool = nn.MaxPool2d(2)
        self.up3 = nn.ConvTranspose2d(8 * w, 4 * w, 2, stride=2)
        self.dec3 = double_conv(8 * w, 4 * w)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = double_conv(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = double_conv(2 * w, w)
        self.head = nn.Conv2d(w, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip1 = self.enc1(x)
        skip2 = self.enc2(self.pool(skip1))
        skip3 = self.enc3(self.pool(skip2))
        deep = self.bottleneck(self.pool(skip3))
        d3 = self.dec3(torch.cat([self.up3(deep), skip3], dim=1))
        d2 = self.dec2(torch.cat([self.up2(d3), skip2], dim=1))
        return self.head(self.dec1(torch.cat([self.up1(d2), skip1], dim=1)))


def build(**kwargs) -> UNet:
    return UNet(**kwargs)


def example_inputs(height: int = 256, width: int = 256, batch: int = 1) -> tuple[torch.Tensor]:
    return (torch.rand(batch, 3, height, width),)
