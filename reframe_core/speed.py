"""Cache speed benchmark: full pass vs hit pass, and what the policy and bookkeeping cost.

Full and hit passes are interleaved after a warm-up so that both see the same machine state; medians are
reported with their spread (p10-p90). On CUDA every pass is bracketed by ``torch.cuda.synchronize``.
"""
from __future__ import annotations

import platform
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from .cache import cache_model
from .networks import get_network
from .synthetic import panning_sequence


@dataclass(frozen=True)
class SpeedReport:
    model: str
    size: int
    device: str
    cut: str
    cached: list
    flops_removed_per_hit: float
    full_ms: float
    full_ms_p10_p90: tuple[float, float]
    hit_ms: float
    hit_ms_p10_p90: tuple[float, float]
    hit_over_full: float
    overhead_ms: dict  # policy spec -> median decision + bookkeeping ms per frame
    overhead_over_full: dict
    repeats: int
    threads: int
    torch: str
    machine: str

    def as_dict(self) -> dict:
        return asdict(self)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure_cache_speed(model: str = "unet", size: int = 256, repeats: int = 30, warmup: int = 5,
                        policies=("delta:0.1", "motion", "delta:0.1+max-age:8"), device: str = "cpu") -> SpeedReport:
    torch.manual_seed(0)
    entry = get_network(model)
    net = entry.build().eval().to(device)
    inputs = tuple(t.to(device) for t in entry.example_inputs(size, size))
    cached = cache_model(net, inputs, cut="auto", record_timing=False)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def timed(refresh: bool) -> float:
        sync()
        start = time.perf_counter()
        cached(*inputs, refresh=refresh)
        sync()
        return (time.perf_counter() - start) * 1e3

    for _ in range(warmup):
        timed(True)
        timed(False)
    full, hit = [], []
    for _ in range(repeats):
        full.append(timed(True))
        hit.append(timed(False))
    full_median, hit_median = statistics.median(full), statistics.median(hit)

    overhead = {}
    if model == "unet":  # policies read input 0 and camera hints: a synthetic pan provides both
        sequence = [(image.to(device), hints) for image, hints in panning_sequence(frames=repeats, height=size, width=size)]
        for spec in policies:
            with_policy = cache_model(net, inputs, cut="auto", policy=spec, record_timing=True)
            for image, hints in sequence:
                with_policy(image, hints=hints)
            overhead[spec] = with_policy.stats.overhead_ms
    return SpeedReport(
        model=model, size=size, device=device, cut=cached.plan.name, cached=list(cached.plan.cached_labels),
        flops_removed_per_hit=cached.plan.removed_share,
        full_ms=full_median, full_ms_p10_p90=(_percentile(full, 0.1), _percentile(full, 0.9)),
        hit_ms=hit_median, hit_ms_p10_p90=(_percentile(hit, 0.1), _percentile(hit, 0.9)),
        hit_over_full=hit_median / full_median,
        overhead_ms=overhead, overhead_over_full={k: v / full_median for k, v in overhead.items()},
        repeats=repeats, threads=torch.get_num_threads(), torch=torch.__version__,
        machine=f"{platform.machine()} {platform.processor() or ''} {torch.cuda.get_device_name() if device.startswith('cuda') else 'cpu'}".strip(),
    )


def format_report(r: SpeedReport) -> str:
    lines = [
        f"model {r.model} at {r.size}x{r.size} on {r.device} ({r.threads} threads, torch {r.torch}); cut {r.cut} caches {', '.join(r.cached)}",
        f"FLOPs removed per hit: {r.flops_removed_per_hit:.1%}",
        f"full pass  median {r.full_ms:8.2f} ms  (p10 {r.full_ms_p10_p90[0]:.2f}, p90 {r.full_ms_p10_p90[1]:.2f}, n={r.repeats})",
        f"hit pass   median {r.hit_ms:8.2f} ms  (p10 {r.hit_ms_p10_p90[0]:.2f}, p90 {r.hit_ms_p10_p90[1]:.2f}, n={r.repeats})",
        f"hit / full: {r.hit_over_full:.1%}",
    ]
    for spec, ms in r.overhead_ms.items():
        lines.append(f"policy {spec:<22} decision + bookkeeping median {ms:.3f} ms = {r.overhead_over_full[spec]:.2%} of a full pass")
    return "\n".join(lines)
