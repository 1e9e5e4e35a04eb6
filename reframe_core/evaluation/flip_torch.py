"""LDR-FLIP in PyTorch, differentiable, so that a network can be trained on the metric its reports use.

Written from the FLIP paper (Andersson et al., "FLIP: A Difference Evaluator for Alternating Images", HPG 2020)
and checked against NVIDIA's ``flip_evaluator`` (``tests/test_flip_torch.py``), which stays the one source of
every reported figure. The pipeline, per pixel of two display-sRGB images:

- colour: both images into YyCxCz opponent space, each channel blurred by its contrast sensitivity filter,
  back to linear RGB clamped to the unit cube, to L*a*b* with the Hunt adjustment, then the HyAB distance,
  raised to ``qc`` and remapped so that small errors fill [0, pt] and large ones (pt, 1];
- features: edges (first Gaussian derivative) and points (second) of the achromatic channel; the larger of the
  two feature differences, scaled by 1/sqrt(2) and raised to ``qf``;
- FLIP = colour ** (1 - features).

Gradients: the metric has infinite slopes where an error is exactly zero (powers below one, the norm of a zero
vector), so the loss form adds ``eps`` inside those; with ``eps=0`` it is the metric itself.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

# The monitor ``flip_evaluator`` assumes by default: 0.7 m wide, 3840 pixels across, viewed from 0.7 m.
DEFAULT_PIXELS_PER_DEGREE = 0.7 * (3840 / 0.7) * (math.pi / 180)
QC, QF, PC, PT = 0.7, 0.5, 0.4, 0.95

# Linear sRGB (D65) <-> CIE XYZ.
_RGB2XYZ = torch.tensor([[10135552 / 24577794, 8788810 / 24577794, 4435075 / 24577794],
                         [2613072 / 12288897, 8788810 / 12288897, 887015 / 12288897],
                         [1425312 / 73733382, 8788810 / 73733382, 70074185 / 73733382]], dtype=torch.float64)
_XYZ2RGB = torch.linalg.inv(_RGB2XYZ)
_WHITE = _RGB2XYZ.sum(dim=1)  # XYZ of linear RGB (1, 1, 1)

# Contrast sensitivity functions as sums of two Gaussians (a1, b1, a2, b2) per opponent channel.
_CSF = {"A": (1.0, 0.0047, 0.0, 1e-5), "RG": (1.0, 0.0053, 0.0, 1e-5), "BY": (34.1, 0.04, 13.5, 0.025)}


def _matmul3(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", matrix.to(image), image)


def _srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c <= 0.04045, c / 12.92, ((c.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def _xyz_to_ycxcz(xyz: torch.Tensor) -> torch.Tensor:
    x, y, z = (xyz / _WHITE.to(xyz).view(1, 3, 1, 1)).unbind(1)
    return torch.stack((116 * y - 16, 500 * (x - y), 200 * (y - z)), 1)


def _ycxcz_to_xyz(ycxcz: torch.Tensor) -> torch.Tensor:
    big_y, cx, cz = ycxcz.unbind(1)
    y = (big_y + 16) / 116
    return torch.stack((cx / 500 + y, y, y - cz / 200), 1) * _WHITE.to(ycxcz).view(1, 3, 1, 1)


def _hunt_lab(linear_rgb: torch.Tensor) -> torch.Tensor:
    """Linear RGB -> CIE L*a*b* with the Hunt adjustment (chroma scaled by 0.01 L*)."""
    t = _matmul3(_RGB2XYZ, linear_rgb) / _WHITE.to(linear_rgb).view(1, 3, 1, 1)
    delta = 6 / 29
    f = torch.where(t > delta ** 3, t.clamp(min=delta ** 3) ** (1 / 3), t / (3 * delta ** 2) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    lightness = 116 * fy - 16
    return torch.stack((lightness, 0.01 * lightness * 500 * (fx - fy), 0.01 * lightness * 200 * (fy - fz)), 1)


def _hyab(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    d = a - b
    return torch.sqrt(d[:, 0] ** 2 + eps) + torch.sqrt(d[:, 1] ** 2 + d[:, 2] ** 2 + eps)


@lru_cache(maxsize=8)
def _csf_kernels(ppd: float) -> torch.Tensor:
    """The three channels' spatial filters, (3, 1, 2r+1, 2r+1), on one support wide enough for all three."""
    widest = max(max(b1, b2) for _, b1, _, b2 in _CSF.values())
    r = int(math.ceil(3 * math.sqrt(widest / (2 * math.pi ** 2)) * ppd))
    ax = torch.arange(-r, r + 1, dtype=torch.float64) / ppd
    z = ax.view(1, -1) ** 2 + ax.view(-1, 1) ** 2
    kernels = []
    for a1, b1, a2, b2 in _CSF.values():
        g = (a1 * math.sqrt(math.pi / b1) * torch.exp(-math.pi ** 2 * z / b1)
             + a2 * math.sqrt(math.pi / b2) * torch.exp(-math.pi ** 2 * z / b2))
        kernels.append(g / g.sum())
    return torch.stack(kernels).unsqueeze(1).float()


@lru_cache(maxsize=8)
def _feature_kernels(ppd: float) -> torch.Tensor:
    """Edge (first derivative) and point (second derivative) filters in x then y, (4, 1, 2r+1, 2r+1); each
    normalised so that its positive weights sum to 1 and its negative ones to -1."""
    sd = 0.5 * 0.082 * ppd  # half the peak-to-trough width of the human edge detector, in pixels
    r = int(math.ceil(3 * sd))
    ax = torch.arange(-r, r + 1, dtype=torch.float64)
    x, y = ax.view(1, -1).expand(2 * r + 1, -1), ax.view(-1, 1).expand(-1, 2 * r + 1)
    g = torch.exp(-(x ** 2 + y ** 2) / (2 * sd * sd))

    def normalised(k):
        return torch.where(k < 0, k / -k[k < 0].sum(), k / k[k > 0].sum())

    edge = normalised(-x * g)
    point = normalised((x ** 2 / (sd * sd) - 1) * g)
    return torch.stack((edge, edge.T, point, point.T)).unsqueeze(1).float()


@lru_cache(maxsize=1)
def _largest_colour_error() -> float:
    """The powered HyAB distance between pure green and pure blue, the largest in the RGB cube: the scale that
    maps colour errors to [0, 1]; a constant, computed once rather than on every training step."""
    green, blue = (_hunt_lab(torch.tensor(c, dtype=torch.float64).view(1, 3, 1, 1)) for c in ((0., 1., 0.), (0., 0., 1.)))
    return float(_hyab(green, blue, 0.0).item() ** QC)


def _filter(image: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Edge-replicated 'same' convolution: one kernel per channel when there are as many kernels as channels (the
    three CSF filters), else every kernel over the one channel (the four feature filters on luminance)."""
    r = kernels.shape[-1] // 2
    padded = F.pad(image, (r, r, r, r), mode="replicate")
    return F.conv2d(padded, kernels.to(image), groups=image.shape[1] if kernels.shape[0] == image.shape[1] else 1)


def flip_map(reference: torch.Tensor, test: torch.Tensor, pixels_per_degree: float = DEFAULT_PIXELS_PER_DEGREE,
             eps: float = 0.0) -> torch.Tensor:
    """Per-pixel LDR-FLIP of two display-sRGB batches (N, 3, H, W) in [0, 1] -> (N, H, W) in [0, 1].

    ``eps`` > 0 makes the gradient finite where the two images agree (use 1e-6 or so as a loss);
    0 gives the metric as ``flip_evaluator`` computes it."""
    ppd = float(pixels_per_degree)
    ref = _xyz_to_ycxcz(_matmul3(_RGB2XYZ, _srgb_to_linear(reference.clamp(0, 1))))
    tst = _xyz_to_ycxcz(_matmul3(_RGB2XYZ, _srgb_to_linear(test.clamp(0, 1))))

    # Colour: what the eye resolves of each image's colour at this viewing distance, compared in HyAB.
    csf = _csf_kernels(ppd)
    lab = [_hunt_lab(_matmul3(_XYZ2RGB, _ycxcz_to_xyz(_filter(img, csf))).clamp(0, 1)) for img in (ref, tst)]
    power_hyab = (_hyab(lab[0], lab[1], eps) + eps) ** QC
    cmax = _largest_colour_error()
    pccmax = PC * cmax
    colour = torch.where(power_hyab < pccmax, (PT / pccmax) * power_hyab,
                         PT + (power_hyab - pccmax) / (cmax - pccmax) * (1 - PT))

    # Features: edges and points of the achromatic channel, normalised to [0, 1].
    feats = _feature_kernels(ppd)
    f_ref, f_tst = (_filter((img[:, :1] + 16) / 116, feats) for img in (ref, tst))

    def magnitude(f, i):
        return torch.sqrt(f[:, i] ** 2 + f[:, i + 1] ** 2 + eps)

    feature = torch.maximum((magnitude(f_ref, 0) - magnitude(f_tst, 0)).abs(),
                            (magnitude(f_ref, 2) - magnitude(f_tst, 2)).abs())
    feature = (feature / math.sqrt(2) + eps) ** QF
    return (colour + eps) ** (1 - feature)


def flip_mean(reference: torch.Tensor, test: torch.Tensor, pixels_per_degree: float = DEFAULT_PIXELS_PER_DEGREE,
              eps: float = 0.0) -> torch.Tensor:
    """Mean LDR-FLIP over every pixel of the batch (what ``flip_evaluator`` reports per image, averaged)."""
    return flip_map(reference, test, pixels_per_degree, eps).mean()
