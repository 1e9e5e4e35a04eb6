"""Push-pull hole filling: the non-learned way to fill what a reprojected frame does not know.

Each pixel without a value takes a smooth blend of the valid pixels around it, at whatever distance they are:
the valid pixels are averaged down a pyramid (push, weighted by validity), and the coarse averages are brought
back up where the finer level had too little weight (pull). Valid pixels keep their value exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def push_pull_fill(image: torch.Tensor, valid: torch.Tensor, levels: int = 12) -> torch.Tensor:
    """``image`` (B, C, H, W) with holes where ``valid`` (B, 1, H, W) is 0 -> the same with the holes filled."""
    weight = valid.to(image.dtype).clamp(0, 1)
    stack = [(image * weight, weight)]
    for _ in range(levels):  # push: premultiplied colour and weight, averaged 2x2
        colour, weight = stack[-1]
        if min(colour.shape[-2:]) <= 1:
            break
        stack.append((F.avg_pool2d(colour, 2, ceil_mode=True), F.avg_pool2d(weight, 2, ceil_mode=True)))
    colour, weight = stack[-1]
    filled = colour / weight.clamp(min=1e-8)
    for colour, weight in reversed(stack[:-1]):  # pull: the coarser estimate where this level has little weight
        coarse = F.interpolate(filled, size=colour.shape[-2:], mode="bilinear", align_corners=False)
        known = weight.clamp(max=1)
        filled = colour / weight.clamp(min=1e-8) * known + coarse * (1 - known)
    return torch.where(valid > 0.5, image, filled)
