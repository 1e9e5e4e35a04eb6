"""Image quality metrics: FLIP (through NVIDIA's ``flip_evaluator``) and PSNR, on numpy images.

Images are (H, W, 3) float arrays. Linear HDR colour is shown to FLIP after one documented tonemap
(:func:`tonemap_ldr`: Reinhard ``c / (1 + c)`` then the sRGB transfer curve), so every report compares the
same display-referred pictures.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from reframe_core.errors import SettingsError


def _check_image(name: str, image) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] != 3:
        raise SettingsError(f"{name} must be an (H, W, 3) image, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise SettingsError(f"{name} contains NaN or infinite values")
    return array


def tonemap_ldr(linear: np.ndarray) -> np.ndarray:
    """Linear scene colour (>= 0) -> display sRGB in [0, 1]: Reinhard, then the sRGB curve."""
    c = np.clip(np.asarray(linear, dtype=np.float32), 0.0, None)
    c = c / (1.0 + c)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055).astype(np.float32)


@dataclass(frozen=True)
class FlipResult:
    mean: float
    error_map: np.ndarray  # (H, W) per-pixel FLIP in [0, 1]
    parameters: dict


def flip(reference, test, linear: bool = True) -> FlipResult:
    """FLIP (LDR) between two images.

    Args:
        reference, test: (H, W, 3) images; linear colour when ``linear`` (tonemapped with
            :func:`tonemap_ldr` first), else display sRGB values in [0, 1] (clipped).
    """
    import flip_evaluator

    ref = _check_image("reference", reference)
    tst = _check_image("test", test)
    if ref.shape != tst.shape:
        raise SettingsError(f"reference and test differ in shape: {ref.shape} vs {tst.shape}")
    if linear:
        ref, tst = tonemap_ldr(ref), tonemap_ldr(tst)
    else:
        ref, tst = np.clip(ref, 0, 1), np.clip(tst, 0, 1)
    error_map, mean, parameters = flip_evaluator.evaluate(
        np.ascontiguousarray(ref), np.ascontiguousarray(tst), "LDR", applyMagma=False)
    return FlipResult(float(mean), np.asarray(error_map).reshape(ref.shape[:2]), dict(parameters))


def read_display_image(path) -> np.ndarray:
    """An 8-bit image file as written (PNG, JPEG, TIFF ...): (H, W, 3) display-referred floats in [0, 1]."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), np.float32) / 255.0
    except OSError as exc:
        raise SettingsError(f"cannot read {path} as an 8-bit image ({exc}): compare PNG, JPEG or TIFF frames (the "
                            "scene's output format)") from None


def psnr(reference, test, peak: float = 1.0) -> float:
    """PSNR in dB (inf for identical images)."""
    ref = np.asarray(reference, dtype=np.float64)
    tst = np.asarray(test, dtype=np.float64)
    if ref.shape != tst.shape:
        raise SettingsError(f"reference and test differ in shape: {ref.shape} vs {tst.shape}")
    mse = float(np.mean((ref - tst) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak ** 2 / mse)


def summarize(flips: list[float], psnrs: list[float]) -> dict:
    """Per-frame FLIP and PSNR of one method over a sequence: mean and 95th-percentile FLIP, mean PSNR (NaN for
    no frames)."""
    if not flips:
        return {"flip_mean": float("nan"), "flip_p95": float("nan"), "psnr_mean": float("nan")}
    return {"flip_mean": float(np.mean(flips)), "flip_p95": float(np.percentile(flips, 95)),
            "psnr_mean": float(np.mean(psnrs))}
