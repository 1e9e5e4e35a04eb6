"""What the client shows when the runtime cannot answer (server dead or hung, frame refused), without torch.

The frame's own colour resampled to the display size with the same bicubic kernel, border handling and jitter
correction as the SS workload's baseline (:func:`reframe_core.networks.supersampling.upsample_unjittered`:
PyTorch's ``grid_sample`` bicubic, A = -0.75): SS shows the bicubic upscale, FE (rendered in full when the
runtime is down) shows the frame itself.
"""
from __future__ import annotations

import numpy as np

_A = -0.75  # PyTorch's (and Keys') cubic convolution coefficient


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """(N, 4) weights of the taps at floor-1 .. floor+2 for fractional positions ``t``."""
    def near(x):  # |x| <= 1
        return ((_A + 2) * x - (_A + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((_A * x - 5 * _A) * x + 8 * _A) * x - 4 * _A

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)


def _resample_axis(image: np.ndarray, axis: int, positions: np.ndarray) -> np.ndarray:
    """Sample ``image`` along ``axis`` at pixel-centre ``positions`` (pixel k's centre is k + 0.5)."""
    u = positions - 0.5
    base = np.floor(u)
    weights = _cubic_weights((u - base).astype(np.float64))
    n = image.shape[axis]
    out = 0
    for tap in range(4):
        index = np.clip(base.astype(np.int64) - 1 + tap, 0, n - 1)  # border padding: each tap clamps
        shape = [1] * image.ndim
        shape[axis] = len(positions)
        out = out + np.take(image, index, axis=axis) * weights[:, tap].reshape(shape)
    return out


def upscale(color: np.ndarray, size: tuple[int, int], jitter=(0.0, 0.0)) -> np.ndarray:
    """(H, W, 3) float32 at ``size`` = (H, W) from a (h, w, 3) frame whose samples sit ``jitter`` pixels off."""
    color = np.asarray(color, np.float64)
    h, w = color.shape[:2]
    height, width = size
    jx, jy = float(jitter[0]), float(jitter[1])
    if (h, w) == (height, width) and jx == 0 and jy == 0:
        return np.maximum(np.asarray(color, np.float32), 0)
    xs = (np.arange(width) + 0.5) * (w / width) - jx
    ys = (np.arange(height) + 0.5) * (h / height) - jy
    out = _resample_axis(_resample_axis(color, 1, xs), 0, ys)
    return np.maximum(np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0), 0).astype(np.float32)
