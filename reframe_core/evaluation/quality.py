"""Quality against the native render, shared by the workloads' ``evaluate`` (each workload file holds its own
evaluation against its baseline: SS vs bicubic, FE vs reprojection).

Temporal instability: the mean absolute frame-to-frame change of the tonemapped image that the native render
does not have, ``mean |(o_t - warp(o_{t-1})) - (g_t - warp(g_{t-1}))|``.
"""
from __future__ import annotations

import numpy as np
import torch

from reframe_core.frames.warp import backward_warp, to_image, to_tensor


def temporal_instability(frames: list[np.ndarray], truth: list[np.ndarray], motions: list[torch.Tensor]) -> float:
    values = []
    for t in range(1, len(frames)):
        if motions[t] is None:
            continue
        warp = lambda img: to_image(backward_warp(to_tensor(img), motions[t]))  # noqa: E731
        values.append(np.abs((frames[t] - warp(frames[t - 1])) - (truth[t] - warp(truth[t - 1]))).mean())
    return float(np.mean(values)) if values else float("nan")
