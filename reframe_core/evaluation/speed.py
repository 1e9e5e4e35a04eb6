"""Cache speed benchmark: full pass vs hit pass, and what the policy and bookkeeping cost.

Full and hit passes are interleaved after a warm-up so that both see the same machine state; medians are
reported with their spread (p10-p90). On CUDA every pass is bracketed by ``torch.cuda.synchronize``.
"""
from __future__ import annotations

import platform
from pathlib import Path
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from reframe_core.errors import SettingsError
from reframe_core.caching.cache import cache_model
from reframe_core.networks import get_network
from reframe_core.runtime.pages import huge_pages_state
from reframe_core.runtime.placement import Placement
from reframe_core.frames.synthetic import panning_sequence
from reframe_core.workloads import workload_for_network



def parse_size(text: str | int) -> tuple[int, int]:
    """``"256"`` -> (256, 256); ``"1920x1080"`` -> (1080, 1920) as (height, width)."""
    if isinstance(text, int):
        return text, text
    parts = str(text).lower().split("x")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 16:
        raise SettingsError(f"size {text!r}: give N (square) or WIDTHxHEIGHT, each at least 16, e.g. 256 or 1920x1080")
    return (values[0], values[0]) if len(values) == 1 else (values[1], values[0])


@dataclass(frozen=True)
class SpeedReport:
    model: str
    size: str  # display size WIDTHxHEIGHT
    device: str
    precision: str
    placement: str  # what the precision means on this device (Placement.describe)
    channels_last: bool
    compiled: bool
    weights: str | None
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
    memory_pages: str  # what large CPU tensors get (reframe_core.runtime.pages)

    def as_dict(self) -> dict:
        return asdict(self)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure_cache_speed(model: str = "unet", size: str | int = 256, repeats: int = 30, warmup: int = 5,
                        policies=("delta:0.1", "motion", "delta:0.1+max-age:8"), device: str = "cpu",
                        precision: str = "fp32", channels_last: bool = False, compile_model: bool = False,
                        shipped_weights: bool = True, weights: str | None = None) -> SpeedReport:
    """Median full and hit pass of ``model`` at display size ``size`` (``N`` or ``WIDTHxHEIGHT``)."""
    torch.manual_seed(0)
    height, width = parse_size(size)
    placement = Placement(device=device, precision=precision, channels_last=channels_last)
    entry = get_network(model)
    given, weights = weights, None
    workload = workload_for_network(model) if shipped_weights or given else None
    if given:
        if workload is None:
            raise SettingsError(f"--weights needs a workload's network (ss, extranet), not {model}")
        weights = Path(given)
        net, _ = workload.load(given, workload.timed_scale())
    elif workload is not None and workload.shipped_scales():
        # A workload's network is timed with its shipped weights, so the measured design is the one users run.
        from reframe_core.weights import shipped

        scale = workload.timed_scale()
        weights = shipped(workload.weights_name(scale))
        net, _ = workload.load(None, scale)
    else:
        net = entry.build().eval()
    net = placement.model(net)
    # A loaded network may take another input width than the builder's default (ExtraNet's n_channels).
    extra = {"channels": net.n_channels} if hasattr(net, "n_channels") else {}
    inputs = placement.inputs(entry.example_inputs(height, width, **extra))
    cached = cache_model(net, inputs, cut="auto", record_timing=False)
    if compile_model:
        cached.compile()
    sync = placement.synchronize

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
        sequence = [(placement.inputs([image])[0], hints) for image, hints in panning_sequence(frames=repeats, height=height, width=width)]
        for spec in policies:
            with_policy = cache_model(net, inputs, cut="auto", policy=spec, record_timing=True)
            for image, hints in sequence:
                with_policy(image, hints=hints)
            overhead[spec] = with_policy.stats.overhead_ms
    return SpeedReport(
        model=model, size=f"{width}x{height}", device=device, precision=precision, placement=placement.describe(net),
        channels_last=channels_last,
        compiled=compile_model, weights=weights.name if weights else None, cut=cached.plan.name, cached=list(cached.plan.cached_labels),
        flops_removed_per_hit=cached.plan.removed_share,
        full_ms=full_median, full_ms_p10_p90=(_percentile(full, 0.1), _percentile(full, 0.9)),
        hit_ms=hit_median, hit_ms_p10_p90=(_percentile(hit, 0.1), _percentile(hit, 0.9)),
        hit_over_full=hit_median / full_median,
        overhead_ms=overhead, overhead_over_full={k: v / full_median for k, v in overhead.items()},
        repeats=repeats, threads=torch.get_num_threads(), torch=torch.__version__,
        machine=(torch.cuda.get_device_name(torch.device(device)) if placement.is_cuda
                 else f"{platform.machine()} CPU"),
        memory_pages=huge_pages_state() if not placement.is_cuda else "tensors in GPU memory",
    )


def format_report(r: SpeedReport) -> str:
    lines = [
        f"model {r.model}{f' ({r.weights})' if r.weights else ''} at {r.size} on {r.placement}"
        f"{' compiled' if r.compiled else ''} ({r.machine}; {r.threads} threads, "
        f"torch {r.torch}; {r.memory_pages}); cut {r.cut} caches {', '.join(r.cached)}",
        f"FLOPs removed per hit: {r.flops_removed_per_hit:.1%}",
        f"full pass  median {r.full_ms:8.2f} ms  (p10 {r.full_ms_p10_p90[0]:.2f}, p90 {r.full_ms_p10_p90[1]:.2f}, n={r.repeats})",
        f"hit pass   median {r.hit_ms:8.2f} ms  (p10 {r.hit_ms_p10_p90[0]:.2f}, p90 {r.hit_ms_p10_p90[1]:.2f}, n={r.repeats})",
        f"hit / full: {r.hit_over_full:.1%}",
    ]
    for spec, ms in r.overhead_ms.items():
        lines.append(f"policy {spec:<22} decision + bookkeeping median {ms:.3f} ms = {r.overhead_over_full[spec]:.2%} of a full pass")
    return "\n".join(lines)
