"""Up-sampling a jittered low-res image by a whole-number factor, as shifted weighted sums instead of a gather.

At a whole-number scale ``s``, display pixel ``s * i + p`` of one axis reads the low-res samples around position
``i + (p + 0.5) / s - 0.5 - jitter`` (pixel centres at whole numbers): for every ``i`` the same taps, at the same
offsets, with the same weights. So each of the ``s`` phases of an axis is a weighted sum of ``s``-fold fewer
shifted views of the image, and the axes are done one after the other (bilinear and bicubic interpolation are
separable). Border handling is replicate padding, which is ``grid_sample``'s ``padding_mode="border"``: it clamps
each bicubic tap's index, and clamping a bilinear read's coordinate gives the same value as clamping its taps.

Why: on a CPU, ``grid_sample`` gathers through a per-pixel grid; at 1920x1080 it was the largest part of a cached
SS frame after the convolutions. Shifted views are plain strided arithmetic, and the result can be written
straight into a slice of the tensor its reader wants (``out=``), so it is not copied again.

Values equal ``grid_sample``'s to float rounding (its per-pixel coordinates go through a normalised grid and
back, ours are computed once per phase). Nearest sampling is not done here: at a tie (a display pixel exactly
between two samples, which whole-number scales and quarter-pixel jitters produce) ``grid_sample`` rounds half
to even on the per-pixel coordinate, which a per-phase rule cannot reproduce.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CUBIC_A = -0.75  # grid_sample's (Keys') cubic convolution coefficient
PHASE_MODES = ("bilinear", "bicubic")


def _taps(offset: float, mode: str) -> list[tuple[int, float]]:
    """(sample index relative to i, weight) of the samples read at ``i + offset``, as grid_sample weighs them."""
    base = math.floor(offset)
    t = offset - base
    if mode == "bilinear":
        return [(base, 1 - t), (base + 1, t)]
    a = CUBIC_A
    near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # noqa: E731  |x| <= 1
    far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # noqa: E731  1 < |x| < 2
    return [(base - 1, far(t + 1)), (base, near(t)), (base + 1, near(1 - t)), (base + 2, far(2 - t))]


def _upsample_axis(image: torch.Tensor, shift: float, scale: int, mode: str, dim: int,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """Up-sample ``image`` (B, C, H, W) ``scale`` times along ``dim`` (2: rows, 3: columns)."""
    n = image.shape[dim]
    phases = [_taps((p + 0.5) / scale - 0.5 - shift, mode) for p in range(scale)]
    low = min(o for taps in phases for o, _ in taps)
    high = max(o for taps in phases for o, _ in taps)
    pad = (-low, high, 0, 0) if dim == 3 else (0, 0, -low, high)
    padded = F.pad(image, pad, mode="replicate")
    shape = list(image.shape)
    shape[dim] *= scale
    if out is None:
        out = image.new_empty(shape)
    # Display index s * i + p along dim -> (i, p): phase p is one strided view of the output.
    split = out.unflatten(dim, (n, scale))
    for p, taps in enumerate(phases):
        dst = split.select(dim + 1, p)
        (first, weight), *rest = taps
        torch.mul(padded.narrow(dim, first - low, n), weight, out=dst)
        for offset, weight in rest:
            dst.add_(padded.narrow(dim, offset - low, n), alpha=weight)
    return out


def is_channels_last(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is laid out channels-last and not channels-first: a tensor both describe (one channel, or
    1x1 images) counts as channels-first."""
    return tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()


def whole_scale(low_size, size) -> int | None:
    """The up-sampling factor from ``low_size`` to ``size`` when it is the same whole number on both axes."""
    h, w = int(low_size[0]), int(low_size[1])
    height, width = int(size[0]), int(size[1])
    if height % h or width % w or height // h != width // w or height // h < 2:
        return None
    return height // h


def upsample_by_phases(image: torch.Tensor, jitter: torch.Tensor, scale: int, mode: str,
                       out: torch.Tensor | None = None) -> torch.Tensor:
    """``upsample_unjittered(image, jitter, size, mode)`` for ``size`` = ``scale`` x the image's size, mode
    ``"bilinear"`` or ``"bicubic"``; written into ``out`` (any memory layout) when given."""
    if mode not in PHASE_MODES:
        raise ValueError(f"phase up-sampling does {' and '.join(PHASE_MODES)}, not {mode!r}")
    b, c, h, w = image.shape
    if out is None:
        out = image.new_empty((b, c, h * scale, w * scale))
    # The intermediate keeps the image's layout: the columns pass streams through it, and the rows pass reads
    # it in the order it was written (a channels-last image through a channels-first intermediate into a
    # channels-last slice: 132 against 62 ms for 16 channels to 1920x1080 on this project's CPU).
    layout = torch.channels_last if is_channels_last(image) else torch.contiguous_format
    shifts = jitter.detach().double().cpu().tolist()
    for k, (shift_x, shift_y) in enumerate(shifts):
        # Columns first, on the small image; then rows, whose phases are whole rows of the output.
        columns = torch.empty((1, c, h, w * scale), dtype=image.dtype, device=image.device, memory_format=layout)
        _upsample_axis(image[k:k + 1], shift_x, scale, mode, 3, out=columns)
        _upsample_axis(columns, shift_y, scale, mode, 2, out=out[k:k + 1])
    return out
