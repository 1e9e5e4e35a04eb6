"""ExtraNet (Guo et al., SIGGRAPH Asia 2021): frame extrapolation from warped history and G-buffers.

Module names, parameter names and shapes follow the published network so that its original checkpoints
(``state_dict`` key, 195 entries, 262,141 parameters for 18 input channels; see
``tests/data/extranet_state_dict.tsv``) load unchanged. Structure:

* a history encoder (``convHis1..3``, stride-2 plain convs) over the 3 previous warped frames, joined at
  1/8 resolution by a gated conv (``lowlevelGated``);
* a gated-conv U-Net trunk (``conv1/conv2`` at full resolution, ``down1..3``, ``up1..3``) over
  ``cat([x, x * mask, feature])``;
* a 1x1 head and a residual add of the warped colour.

ReFrame caches the (up-sampled) output of ``up2``: on a hit only conv1/conv2, up3 and the head run.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from reframe_core.errors import SettingsError
from reframe_core.networks.windows import window_max, window_min


def hole_region(valid: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) 1 where the history is invalid: holes of ``valid`` (B, 1, H, W) opened by a 3x3 erosion
    and dilation, then grown by two pixels. The opening drops isolated invalid pixels: dithered transparency
    makes motion disagree on random pixels of a glass pane, which are not disocclusions."""
    holes = window_min(1 - valid, 1)  # erode
    return window_max(holes, 3)  # dilate back, and two pixels more


class GatedConv2d(nn.Module):
    """Light-weight gated convolution: features times a one-channel sigmoid gate."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv_feature = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding)
        self.conv_mask = nn.Sequential(nn.Conv2d(cin, 1, kernel_size, stride=stride, padding=padding), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_feature(x) * self.conv_mask(x)


class GatedDown(nn.Module):
    """Stride-2 gated conv, then two gated conv + BN + ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.downsample = GatedConv2d(cin, cin, stride=2)
        self.conv1 = GatedConv2d(cin, cout)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = GatedConv2d(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(self.downsample(x))))
        return self.relu2(self.bn2(self.conv2(x)))


class DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int, mid: int):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, mid, 3, padding=1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Up(nn.Module):
    """Bilinear x2, concatenate with the skip (skip first), double conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConv(cin, cout, cin // 2)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(deep)], dim=1))


def _history_stage(cin: int, cout: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(3):
        layers += [nn.Conv2d(cin if k == 0 else cout, cout, 3, stride=2 if k == 0 else 1, padding=1),
                   nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ExtraNet(nn.Module):
    """Frame extrapolation network.

    Args:
        n_channels: channels of ``cat([x, x * mask, feature])`` (18 in the published setup).
        n_classes: output channels (3).
        skip: add ``x[:, :3]`` (the warped colour) to the output.
        inputs: what the colour inputs and the output hold. ``"color"``: linear colour, as published.
            ``"shading"``: ``log1p`` of colour demodulated by albedo (see :mod:`reframe_core.workloads.extrapolation`);
            the layers are the same, the workload converts on the way in and out.
        residual: where the head's output is added to the warped colour. ``"full"``: everywhere, as
            published. ``"holes"``: only where the history is invalid (``mask`` 0: disoccluded or entering
            the frame; see :func:`hole_region`); elsewhere the warped history passes through unchanged.
            ``"relight"``: the head chooses, per pixel, how far to move from the warped history to a second
            prediction given as ``feature``'s last 3 channels (the workload's relit frame: the last rendered
            frame's ratio to its cheap pass, warped, times this frame's cheap pass), clamped to the segment
            between the two, so it can pick but never shift a colour past either. The workload puts the warped
            effects and then the relit frame after the G-buffer: ``n_channels`` 25.

    Inputs of ``forward(x, feature, mask, his_buffer)``:
        x: (B, 6, H, W) warped colour and occlusion-warped colour; mask: (B, 6, H, W) hole mask;
        feature: (B, n_channels - 12, H, W) G-buffer (normal 3, depth 1, roughness 1, metallic 1);
        his_buffer: (B, 3, 4, H, W) three previous warped frames (colour + mask), oldest first.
        H and W must be multiples of 8.
    Returns: (B, n_classes, H, W).
    """

    INPUTS = ("color", "shading")
    RESIDUALS = ("full", "holes", "relight")

    def __init__(self, n_channels: int = 18, n_classes: int = 3, skip: bool = True, inputs: str = "color",
                 residual: str = "full"):
        super().__init__()
        if inputs not in self.INPUTS:
            raise SettingsError(f"unknown ExtraNet inputs {inputs!r}: one of {', '.join(self.INPUTS)}")
        if residual not in self.RESIDUALS:
            raise SettingsError(f"unknown ExtraNet residual {residual!r}: one of {', '.join(self.RESIDUALS)}")
        self.n_channels, self.n_classes, self.skip, self.inputs = n_channels, n_classes, skip, inputs
        if residual == "relight" and not skip:
            raise SettingsError("ExtraNet residual 'relight' blends the warped history with the relit frame: it needs skip=True")
        self.residual = residual
        # How the workload warps the history (Extrapolator and training read this): bicubic keeps shading
        # sharper over chained warps; the published colour network was trained with bilinear warps.
        self.history_warp = "bicubic" if inputs == "shading" else "bilinear"
        self.convHis1 = _history_stage(4, 24)
        self.convHis2 = _history_stage(24, 32)
        self.convHis3 = _history_stage(32, 32)
        self.lowlevelGated = GatedConv2d(32 * 3, 32)
        self.conv1 = GatedConv2d(n_channels, 24)
        self.bn1 = nn.BatchNorm2d(24)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = GatedConv2d(24, 24)
        self.bn2 = nn.BatchNorm2d(24)
        self.relu2 = nn.ReLU(inplace=True)
        self.down1 = GatedDown(24, 24)
        self.down2 = GatedDown(24, 32)
        self.down3 = GatedDown(32, 32)
        self.up1 = Up(96, 32)
        self.up2 = Up(56, 24)
        self.up3 = Up(48, 24)
        self.outc = nn.Conv2d(24, n_classes, 1)
        # Lower levels channels-first, full resolution channels-last (see forward); Placement turns this off when
        # it runs the whole network channels-last (--channels-last, as on a GPU).
        self.mixed_memory_format = True

    def forward(self, x: torch.Tensor, feature: torch.Tensor, mask: torch.Tensor, his_buffer: torch.Tensor) -> torch.Tensor:
        height, width = his_buffer.shape[-2], his_buffer.shape[-1]
        # The three history frames share the encoder: fold them into the batch, unfold into channels.
        history = self.convHis3(self.convHis2(self.convHis1(his_buffer.reshape(-1, 4, height, width))))
        motion = self.lowlevelGated(history.reshape(-1, 3 * 32, history.shape[-2], history.shape[-1]))

        # The full-resolution layers (conv1, conv2, up3: most of a cache hit) run on channels-last tensors, on
        # which oneDNN's 3x3 convolutions on a CPU are faster (a cache hit at 256x256 on 2 cores: 127 against 172 ms
        # in one interleaved comparison); the lower levels run channels-first, where they are faster (channels-last
        # everywhere made a full pass slower: 380 against 306 ms). Same values either way.
        channels_last = torch.channels_last
        x1 = self.relu1(self.bn1(self.conv1(torch.cat([x, x * mask, feature], dim=1).contiguous(memory_format=channels_last))))
        x1 = self.relu2(self.bn2(self.conv2(x1)))
        x2 = self.down1(x1.contiguous() if self.mixed_memory_format else x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        res = self.up1(torch.cat([x4, motion], dim=1), x3)
        res = self.up2(res, x2)
        # Up's forward, with its input made channels-last (the cut at up3.up keeps the cached tensor as it is).
        res = self.up3.conv(torch.cat([x1, self.up3.up(res).contiguous(memory_format=channels_last)], dim=1))
        out = self.outc(res)
        out = out.contiguous() if self.mixed_memory_format else out
        if self.residual == "holes":
            out = out * hole_region(mask[:, :1])
        elif self.residual == "relight":
            # One weight per pixel (the channels' mean), so the choice cannot tint; at a head of zero it is 0:
            # the ablation is the warped history alone, as with the other residuals.
            weight = out.mean(1, keepdim=True).clamp(0, 1)
            return x[:, 0:3] + weight * (feature[:, -3:] - x[:, 0:3])
        return out + x[:, 0:3] if self.skip else out


def head_at_zero(net: ExtraNet) -> ExtraNet:
    """A copy of ``net`` whose head adds nothing: it outputs the warped history (``skip``), which with the shading
    inputs is demodulated reprojection. Training starts from it; the eval measures the trained head against it."""
    zero = copy.deepcopy(net)
    with torch.no_grad():
        zero.outc.weight.zero_()
        zero.outc.bias.zero_()
    return zero


def build(**kwargs) -> ExtraNet:
    return ExtraNet(**kwargs)


def example_inputs(height: int = 256, width: int = 256, batch: int = 1, channels: int = 18) -> tuple[torch.Tensor, ...]:
    return (
        torch.rand(batch, 6, height, width),
        torch.rand(batch, channels - 12, height, width),
        (torch.rand(batch, 6, height, width) > 0.1).float(),
        torch.rand(batch, 3, 4, height, width),
    )
