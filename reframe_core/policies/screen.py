"""``screen``: refresh from how much the image moved since the last refresh, in pixels, and how much of it
the refresh frame did not see.

The ``motion`` policy's limits are in world terms (share of the scene depth, degrees), so one setting means
different things on a wide street and in a corridor, or at another resolution. This policy reprojects the
current frame's depth into the camera of the last refresh (camera motion only, as ``motion``) and measures
what the cached features actually miss: the mean displacement of the image in output pixels, and the share
of pixels the refresh frame did not see (outside its view, or hidden behind something nearer). Without a depth
map it assumes a plane at the scene depth (then only pixels entering the frame count as unseen).

With feature reprojection on (``--reproject``), displacement is mostly undone by the cache, and the share of
unseen pixels is what still costs quality: set ``px`` high and let ``holes`` decide.
"""
from __future__ import annotations

import torch

from reframe_core.errors import SettingsError
from reframe_core.frames.hints import CameraHints
from reframe_core.frames.reprojection import reproject
from reframe_core.policies.base import FrameContext, RefreshPolicy, fmt_number

DEFAULTS = {"px": 4.0, "holes": 0.03}
MEASURE_WIDTH = 48  # the depth map is read at most this wide: the policy costs about a millisecond


def _output_size(inputs: tuple) -> tuple[int, int] | None:
    """The largest image among the network's inputs (for SS, the display-size history; for FE, the frame)."""
    sizes = [tuple(t.shape[-2:]) for t in inputs if isinstance(t, torch.Tensor) and t.ndim >= 4]
    return max(sizes, key=lambda s: s[0] * s[1]) if sizes else None


def _measured_depth(ctx: FrameContext) -> tuple[torch.Tensor, bool]:
    """A small depth map for the measurement, and whether it is real (else a plane at the scene depth)."""
    if ctx.depth is not None:
        step = -(-ctx.depth.shape[-1] // MEASURE_WIDTH)
        return ctx.depth[:1, :, step // 2::step, step // 2::step].float().cpu(), True
    hints = ctx.hints
    aspect = hints.projection[1][1] / hints.projection[0][0]  # width / height of the image
    width = MEASURE_WIDTH
    height = max(1, round(width / aspect))
    plane = hints.scene_depth if hints.scene_depth is not None else float("inf")
    return torch.full((1, 1, height, width), plane), False


class ScreenMotion(RefreshPolicy):
    name = "screen"
    usage = "screen[:px=P,holes=F]   (defaults px=4 output pixels of mean motion, holes=0.03 of the frame unseen)"
    summary = "refresh when the image moved more than P pixels on average, or more than F of it was unseen, since the last refresh"
    reads_depth = True  # (the default, said here because it is the point)

    def __init__(self, px: float = DEFAULTS["px"], holes: float = DEFAULTS["holes"]):
        if not px > 0:
            raise SettingsError(f"screen px limit must be > 0 (pixels of mean image motion), got {px}")
        if not 0 < holes <= 1:
            raise SettingsError(f"screen holes limit must be in (0, 1] (share of the frame), got {holes}")
        self.px, self.holes = float(px), float(holes)
        self._reference: CameraHints | None = None
        self._reference_depth: torch.Tensor | None = None
        self.last: dict | None = None  # the last measurement (pixels, holes), for reports and tests

    @classmethod
    def from_spec(cls, positional, options):
        if positional or set(options) - set(DEFAULTS):
            raise SettingsError("screen takes only px= and holes=, e.g. screen:px=4,holes=0.03")
        return cls(**{k: float(v) for k, v in options.items()})

    def measure(self, ctx: FrameContext) -> dict:
        """Mean image motion (output pixels) and unseen share of this frame against the last refresh's camera."""
        depth, real = _measured_depth(ctx)
        moved = reproject(depth, ctx.hints, self._reference)
        output = _output_size(ctx.inputs) or (tuple(ctx.depth.shape[-2:]) if ctx.depth is not None else None)
        scale = output[-1] / depth.shape[-1] if output else 1.0
        pixels = float((moved.motion[:, 0] ** 2 + moved.motion[:, 1] ** 2).sqrt().mean()) * scale
        reference = self._reference_depth if (real and self._reference_depth is not None
                                              and self._reference_depth.shape == depth.shape) else None
        unseen = moved.disoccluded(reference) if reference is not None else ~moved.inside
        return {"pixels": pixels, "holes": float(unseen.float().mean())}

    def check(self, ctx: FrameContext) -> str | None:
        if ctx.hints is None:
            return "screen: no camera hints given"
        if self._reference is None:
            return "screen: no reference camera"
        if not (ctx.hints.is_perspective and self._reference.is_perspective):
            # Not measured for orthographic views: any change of the view is a refresh, a still view reuses.
            same = (ctx.hints.world_matrix, ctx.hints.projection) == (self._reference.world_matrix, self._reference.projection)
            return None if same else "screen: orthographic view changed"
        self.last = self.measure(ctx)
        if self.last["pixels"] > self.px:
            return f"screen: image moved {self.last['pixels']:.1f} px > {fmt_number(self.px)}"
        if self.last["holes"] > self.holes:
            return f"screen: {self.last['holes']:.1%} of the frame unseen > {fmt_number(self.holes)}"
        return None

    def observe_refresh(self, ctx: FrameContext) -> None:
        self._reference = ctx.hints
        self._reference_depth = _measured_depth(ctx)[0] if ctx.hints is not None and ctx.depth is not None else None

    def reset(self) -> None:
        self._reference = None
        self._reference_depth = None

    @property
    def spec(self) -> str:
        parts = [f"{k}={fmt_number(getattr(self, k))}" for k in DEFAULTS if getattr(self, k) != DEFAULTS[k]]
        return "screen" + (":" + ",".join(parts) if parts else "")
