"""The runtime session: what a render loop calls once per frame, whatever runs it (the ``render`` command,
the add-on's operators, a farm chunk; through the bridge, from another process).

Small and data-only on purpose, so that the bridge can serve exactly this interface: numpy
:class:`~reframe_core.frames.buffers.FrameBuffers` and :class:`~reframe_core.frames.hints.CameraHints` in, a
:class:`FrameResult` of numpy arrays and plain fields out, :class:`SessionStats` for the report.

    session = open_session("ss", scale=2.0, policy="motion", display_size=(1080, 1920))
    for buffers, hints in frames:
        result = session.step(buffers, hints)   # result.image: (1080, 1920, 3) linear float32
    print(session.stats())
    session.close()
"""
from __future__ import annotations

import gc
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from reframe_core.errors import SettingsError
from reframe_core.frames.buffers import FrameBuffers, FrameError
from reframe_core.frames.hints import CameraHints
from reframe_core.workloads.base import RenderRequest


# Frames a render loop steps (not written) before the first frame it writes, so that history and cache are as
# warm as in an uninterrupted run: the chunk seam this leaves is measured in README ("Resume and farm chunks").
DEFAULT_WARMUP = 3
MIN_INPUT = 8  # pixels per side of a rendered frame: the networks' down-sampling needs at least this


@dataclass(frozen=True)
class SessionSettings:
    """Everything that decides what a session computes (echoed in reports)."""

    workload: str = "ss"
    display_size: tuple[int, int] = (1080, 1920)  # (height, width) of the frames shown
    scale: float = 2.0  # SS: display / rendered size per axis
    policy: str | None = "motion"  # refresh policy spec; None runs the network uncached
    k: int = 2  # FE: every k-th frame rendered in full
    device: str = "cpu"
    precision: str = "mixed"  # float32, the SS resolve in bf16 where the processor has bf16 arithmetic (runtime.placement)
    channels_last: bool = False
    weights: str | None = None  # None: the shipped weights for the workload and scale
    cut: str = "auto"
    reproject: bool = False  # on a cache hit, move the cached feature maps to the current camera (depth + cameras)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class FrameResult:
    """What the session shows for one frame."""

    image: np.ndarray  # (H, W, 3) float32 linear colour at display size
    network_ran: bool  # False: FE showed the frame as rendered
    refreshed: bool | None  # the cache's decision (None: uncached, or the network did not run)
    reason: str  # why (policy reason, "camera cut", "rendered", "uncached")
    network_ms: float | None  # the workload step (warp, inputs, network), None when it did not run
    fallback: bool = False  # the network's output was not finite: the baseline was shown instead


@dataclass
class SessionStats:
    frames: int = 0
    network_frames: int = 0
    refreshes: int = 0
    hits: int = 0
    fallbacks: int = 0
    network_ms: list = field(default_factory=list)

    def as_dict(self) -> dict:
        ms = self.network_ms
        return {"frames": self.frames, "network_frames": self.network_frames, "refreshes": self.refreshes,
                "hits": self.hits, "hit_rate": self.hits / self.network_frames if self.network_frames else 0.0,
                "fallbacks": self.fallbacks, "network_ms_median": statistics.median(ms) if ms else None,
                "network_ms_total": float(sum(ms))}


class Session:
    """One render loop's network state: the workload's runner, its cache and policy (see the module docstring)."""

    def __init__(self, settings: SessionSettings):
        from reframe_core.caching.cache import cache_model
        from reframe_core.policies import parse_policy
        from reframe_core.runtime.placement import Placement
        from reframe_core.workloads import get_workload

        if len(settings.display_size) != 2 or min(settings.display_size) < 8:
            raise SettingsError(f"display_size must be (height, width), each at least 8, got {settings.display_size}")
        if settings.policy is not None:
            parse_policy(settings.policy)  # a bad spec fails before the weights load
        self.settings = settings
        self.workload = get_workload(settings.workload, k=settings.k)
        # The frame sizes step() accepts: what next_render() asks for, full or not.
        self.input_sizes = {self.workload.render_request(settings.scale, full).input_size(settings.display_size)
                            for full in (False, True)}
        if min(min(size) for size in self.input_sizes) < MIN_INPUT:
            raise SettingsError(f"display {settings.display_size[1]}x{settings.display_size[0]} at scale "
                                f"{settings.scale:g} renders frames of "
                                f"{' or '.join(f'{w}x{h}' for h, w in sorted(self.input_sizes))}: the network needs "
                                f"at least {MIN_INPUT} pixels per side (a lower scale or a larger display)")
        self.placement = Placement(settings.device, settings.precision, settings.channels_last)
        model, self.payload = self.workload.load(settings.weights, settings.scale)
        model = self.placement.model(model)
        if settings.policy is not None:
            example = self.placement.inputs(self.workload.example_inputs(model, settings.display_size, scale=settings.scale))
            model = cache_model(model, example, cut=settings.cut, policy=settings.policy,
                                reproject=settings.reproject)
        self.model = model
        self.runner = self.workload.runner(model, settings.display_size, self.placement)
        self._stats = SessionStats()
        self._closed = False

    def needs_full_render(self, hints: CameraHints | None = None) -> bool:
        """Whether the next frame must be rendered in full (FE: every k-th frame and at cuts); else the loop
        renders what the workload takes (SS: the low-res jittered frame; FE: the cheap G-buffer pass)."""
        return bool(getattr(self.runner, "is_full_frame", lambda h: False)(hints))

    def next_render(self, hints: CameraHints | None = None) -> RenderRequest:
        """What the loop must render for the next frame (size, jitter, full or cheap pass, or both)."""
        full = self.needs_full_render(hints)
        request = self.workload.render_request(self.settings.scale, full)
        if full and getattr(self.runner, "relights", False):
            return replace(request, cheap_too=True)
        return request

    def fallback_request(self) -> RenderRequest:
        """What to render while the network cannot run (runtime down): the frame the baseline shows best, SS
        the low-res frame unjittered (bicubic), FE the full frame (shown as rendered)."""
        request = self.workload.render_request(self.settings.scale, False)
        return RenderRequest(request.scale, jitter=False, cheap=False)

    def step(self, buffers: FrameBuffers, hints: CameraHints | None = None) -> FrameResult:
        if self._closed:
            raise SettingsError("this session is closed: open a new one with open_session(...)")
        buffers.check()
        if tuple(buffers.size) not in self.input_sizes:
            h, w = buffers.size
            wanted = " or ".join(f"{x}x{y}" for y, x in sorted(self.input_sizes))
            raise FrameError(f"frame {buffers.camera.frame}: the buffers are {w}x{h}, but this session takes {wanted} "
                             f"(display {self.settings.display_size[1]}x{self.settings.display_size[0]} at scale "
                             f"{self.settings.scale:g}): render each frame as next_render() asks")
        start = time.perf_counter()
        shown = self.runner.step(buffers, hints)
        self.placement.synchronize()
        ms = (time.perf_counter() - start) * 1e3 if shown.network_ran else None
        image = np.ascontiguousarray(shown.image, dtype=np.float32)
        fallback = False
        if shown.network_ran and not np.isfinite(image).all():
            # A broken output must not reach the file or the history: show the baseline, start over.
            baseline = np.asarray(self.workload.baseline(buffers, self.settings.display_size), np.float32)
            image = np.nan_to_num(baseline, nan=0.0, posinf=0.0, neginf=0.0)  # never write NaN
            self.runner.reset()
            fallback = True
        stats = self._stats
        stats.frames += 1
        if shown.network_ran:
            stats.network_frames += 1
            stats.network_ms.append(ms)
            stats.refreshes += shown.refreshed is True
            stats.hits += shown.refreshed is False
            stats.fallbacks += fallback
        return FrameResult(image, shown.network_ran, shown.refreshed, shown.reason, ms, fallback)

    def reset(self) -> None:
        """Forget history and cache (a new shot or a jump in the frame range)."""
        self.runner.reset()

    def stats(self) -> dict:
        return {**self._stats.as_dict(), "settings": self.settings.as_dict(),
                "placement": self.placement.describe(self.model),  # what the precision means here, for this network
                "cut": getattr(getattr(self.model, "plan", None), "name", None)}

    def close(self) -> None:
        """Free the network and its cache (GPU memory too)."""
        if self._closed:
            return
        self._closed = True
        self.runner = self.model = None
        if self.placement.is_cuda:
            release_device_memory()


def release_device_memory() -> int | None:
    """Give torch's cached CUDA memory back to the device (call after closing sessions); the bytes freed, or None
    without CUDA. Never imports torch: where it was never loaded there is nothing to free."""
    gc.collect()  # a closed session's tensors may still sit in reference cycles
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    before = torch.cuda.memory_reserved()
    torch.cuda.empty_cache()
    return before - torch.cuda.memory_reserved()


def open_session(workload: str = "ss", **settings) -> Session:
    """A session for ``workload`` with :class:`SessionSettings` fields as keywords."""
    unknown = set(settings) - set(SessionSettings.__dataclass_fields__)
    if unknown:
        raise SettingsError(f"unknown session settings {', '.join(sorted(unknown))}; known: "
                            f"{', '.join(SessionSettings.__dataclass_fields__)}")
    if "display_size" in settings:
        settings["display_size"] = tuple(int(v) for v in settings["display_size"])
    return Session(SessionSettings(workload=workload, **settings))
