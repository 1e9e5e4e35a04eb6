"""The demo: cached vs uncached inference on one sequence, one row per policy.

Until the trained networks land, the network is the reference U-Net trained for a few seconds to denoise
the synthetic texture (so that its output depends on its deep features, unlike a random-weight net), run on a
synthetic camera pan with a camera cut. Quality columns compare the cached output with the uncached output of
the same network (what caching changes), not with a ground truth. Each policy is timed right after an
uncached pass over the same frames, and its speedup is against that pass.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from reframe_core.caching.cache import cache_model
from reframe_core.evaluation.metrics import flip, psnr
from reframe_core.networks import get_network
from reframe_core.frames.synthetic import panning_sequence

DEFAULT_POLICIES = ("always", "every:2", "every:4", "delta:0.1", "motion", "motion+max-age:4")


@dataclass(frozen=True)
class DemoRow:
    policy: str
    frames: int
    refreshes: int
    hit_rate: float
    ms_per_frame: float
    speedup: float
    flops_removed: float
    psnr_db: float
    flip_mean: float
    flip_max: float


def _image(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).float().cpu().numpy()


def train_denoiser(model: torch.nn.Module, steps: int = 80, size: int = 64, seed: int = 0) -> torch.nn.Module:
    """A few seconds of training on noisy crops of the synthetic texture."""
    generator = torch.Generator().manual_seed(seed + 1)
    clean = torch.cat([image for image, _ in panning_sequence(frames=16, height=size, width=size, speed_px=7.0, seed=seed + 1)])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(steps):
        batch = clean[torch.randint(0, len(clean), (8,), generator=generator)]
        noisy = batch + 0.1 * torch.randn(batch.shape, generator=generator)
        loss = torch.nn.functional.l1_loss(model(noisy), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _uncached_pass(model, sequence) -> tuple[list[torch.Tensor], float]:
    with torch.inference_mode():
        start = time.perf_counter()
        outputs = [model(image) for image, _ in sequence]
        return outputs, time.perf_counter() - start


def run_demo(policies=DEFAULT_POLICIES, frames: int = 32, size: int = 256, seed: int = 0) -> tuple[list[DemoRow], dict]:
    torch.manual_seed(seed)
    model = train_denoiser(get_network("unet").build(), seed=seed)
    sequence = panning_sequence(frames=frames, height=size, width=size, cut_at=frames // 2, seed=seed)
    sequence = [(image + 0.1 * torch.randn(image.shape, generator=torch.Generator().manual_seed(seed + i)), hints)
                for i, (image, hints) in enumerate(sequence)]
    _uncached_pass(model, sequence[:3])  # warm-up
    rows = []
    plan = None
    uncached_total = 0.0
    for spec in policies:
        reference, uncached_s = _uncached_pass(model, sequence)
        uncached_total += uncached_s
        cached = cache_model(model, (sequence[0][0],), cut="auto", policy=spec)
        plan = cached.plan
        cached(sequence[0][0], refresh=True)  # warm-up, then start clean
        cached.reset()
        cached.clear_stats()
        outputs, start = [], time.perf_counter()
        for image, hints in sequence:
            outputs.append(cached(image, hints=hints))
        elapsed = time.perf_counter() - start
        stats = cached.stats
        flips = [flip(_image(r), _image(o)).mean for r, o in zip(reference, outputs)]
        psnrs = [psnr(_image(r), _image(o)) for r, o in zip(reference, outputs)]
        finite = [p for p in psnrs if np.isfinite(p)]
        rows.append(DemoRow(
            policy=spec, frames=stats.frames, refreshes=stats.refreshes, hit_rate=stats.hit_rate,
            ms_per_frame=elapsed * 1e3 / frames, speedup=uncached_s / elapsed, flops_removed=stats.flops_removed,
            psnr_db=float(np.mean(finite)) if finite else float("inf"),
            flip_mean=float(np.mean(flips)), flip_max=float(np.max(flips)),
        ))
    settings = {"network": "unet (80-step denoiser on the synthetic texture)", "size": size, "frames": frames, "seed": seed,
                "cut": plan.name if plan else None, "cached": list(plan.cached_labels) if plan else [],
                "uncached_ms_per_frame": uncached_total * 1e3 / (frames * max(1, len(policies))), "threads": torch.get_num_threads(),
                "torch": torch.__version__}
    return rows, settings


def format_table(rows: list[DemoRow]) -> str:
    header = f"{'policy':<20} {'frames':>6} {'refresh':>7} {'hit rate':>8} {'ms/frame':>9} {'speedup':>8} {'FLOPs cut':>9} {'PSNR dB':>8} {'FLIP mean':>9} {'FLIP max':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.policy:<20} {r.frames:>6} {r.refreshes:>7} {r.hit_rate:>8.0%} {r.ms_per_frame:>9.1f} "
                     f"{r.speedup:>7.2f}x {r.flops_removed:>9.0%} {r.psnr_db:>8.1f} {r.flip_mean:>9.4f} {r.flip_max:>8.4f}")
    return "\n".join(lines)
