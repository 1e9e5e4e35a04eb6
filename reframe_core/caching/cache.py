"""Layer caching added from outside to an unmodified ``nn.Module``.

>>> cached = cache_model(unet, (x,), cut="auto", policy="delta:0.1")   # doctest: +SKIP
>>> out = cached(x)                   # the policy decides       # doctest: +SKIP
>>> out = cached(x, refresh=True)     # or the caller does       # doctest: +SKIP

Refresh frames run the original computation (bit-identical output) and store what the hit path needs; hit
frames run only the hit path. With a graded policy (``FULL/PARTIAL``) a full refresh also stores a deeper cut,
and a *partial* refresh recomputes only the part of the network above it (:meth:`GraphAnalysis.graded`). The cache refreshes by itself when the inputs change shape, dtype or device,
on camera cuts, and after :meth:`CachedModel.reset`.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from reframe_core.errors import SettingsError
from reframe_core.caching.cuts import CutError, CutPlan, GradedPlan, GraphAnalysis
from reframe_core.frames.hints import CameraHints
from reframe_core.frames.reprojection import reproject as reproject_depth
from reframe_core.policies import FrameContext, GradedRefresh, RefreshPolicy, parse_policy


@dataclass(frozen=True)
class Decision:
    """What happened on one frame, and why."""

    index: int
    frame: int | None
    refresh: bool  # the cache was refreshed (fully, or partly with a graded policy)
    reason: str
    network_ms: float | None
    overhead_ms: float | None  # policy decision + bookkeeping, outside the network
    grade: str = "full"  # "full", "partial" (graded refresh) or "hit"


@dataclass(frozen=True)
class CacheStats:
    """Per-run figures of a :class:`CachedModel` (since construction or :meth:`CachedModel.clear_stats`)."""

    frames: int
    refreshes: int  # full and partial
    hits: int
    hit_rate: float
    full_ms: float | None  # median network time of full refresh frames
    hit_ms: float | None  # median network time of hit frames
    overhead_ms: float | None  # median policy + bookkeeping time per frame
    flops_removed: float  # share of the uncached run's FLOPs that the hits removed
    cut: str
    policy: str | None
    partials: int = 0  # partial refreshes (graded policies)
    partial_ms: float | None = None  # their median network time

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _input_key(inputs: tuple) -> tuple:
    """What must stay the same for cached features to be reusable."""
    key = []
    for value in inputs:
        if isinstance(value, torch.Tensor):
            key.append((tuple(value.shape), value.dtype, value.device))
        elif isinstance(value, (int, float, bool, str, type(None))):
            key.append(("value", value))
        else:
            key.append(("type", type(value).__name__))
    return tuple(key)


def _describe_key(key: tuple) -> str:
    parts = []
    for item in key:
        if len(item) == 3:
            shape, dtype, device = item
            parts.append(f"{'x'.join(map(str, shape))} {str(dtype).replace('torch.', '')} {device}")
        else:
            parts.append(repr(item[1]))
    return ", ".join(parts)


class _ManualPasses:
    """The documented path for nets fx cannot trace: the model exposes its own cut."""

    def __init__(self, model: nn.Module, example_inputs: tuple):
        missing = [m for m in ("reframe_deep", "reframe_shallow") if not callable(getattr(model, m, None))]
        if missing:
            raise CutError(f"cut='manual' needs {type(model).__name__} to define {' and '.join(missing)} "
                           "(reframe_deep(*inputs) -> tuple of tensors, reframe_shallow(*inputs, deep) -> output)")
        self.model = model
        from torch.utils.flop_counter import FlopCounterMode

        with torch.no_grad(), FlopCounterMode(display=False) as full_counter:
            deep = self._deep(example_inputs)
            model.reframe_shallow(*example_inputs, deep)
        with torch.no_grad(), FlopCounterMode(display=False) as hit_counter:
            model.reframe_shallow(*example_inputs, deep)
        self.plan = CutPlan(
            name="manual",
            cached=tuple(f"deep_{i}" for i in range(len(deep))),
            cached_shapes=tuple(tuple(t.shape) if isinstance(t, torch.Tensor) else None for t in deep),
            hit_nodes=frozenset(),
            total_flops=int(full_counter.get_total_flops()),
            hit_flops=int(hit_counter.get_total_flops()),
            note="declared by the model (reframe_deep / reframe_shallow)",
        )

    def _deep(self, inputs: tuple) -> tuple:
        deep = self.model.reframe_deep(*inputs)
        return tuple(deep) if isinstance(deep, (tuple, list)) else (deep,)

    def full(self, *inputs):
        deep = self._deep(inputs)
        return self.model.reframe_shallow(*inputs, deep), list(deep)

    def hit(self, *inputs_and_cached):
        n = len(self.plan.cached)
        inputs, deep = inputs_and_cached[:-n], inputs_and_cached[-n:]
        return self.model.reframe_shallow(*inputs, tuple(deep))


class CachedModel(nn.Module):
    """A model with ReFrame layer caching. Build with :func:`cache_model`.

    Call it like the model, plus either ``refresh=True/False`` or a policy (given at build time) that
    decides per call from the inputs and optional :class:`CameraHints`. Runs under ``torch.inference_mode``:
    caching is an inference-time optimisation.
    """

    def __init__(self, model: nn.Module, example_inputs: Sequence, cut: str | Sequence[str] = "auto",
                 policy: str | RefreshPolicy | None = None, record_timing: bool = True, reproject: bool = False,
                 graded_cut: str | None = None):
        super().__init__()
        example_inputs = tuple(example_inputs)
        if not isinstance(model, nn.Module):
            raise TypeError(f"cache_model expects an nn.Module, got {type(model).__name__}")
        # The wrapped, unmodified network: workloads read its attributes (what its inputs mean, how its
        # history is warped) through the cache as they would from the network itself.
        self.network = model
        self._analysis: GraphAnalysis | None = None
        if cut == "manual":
            passes = _ManualPasses(model, example_inputs)
            self.plan = passes.plan
            self._full: Callable = passes.full
            self._hit: Callable = passes.hit
            self.model = model
        else:
            try:
                analysis = GraphAnalysis.of(model, example_inputs)
            except CutError:
                if cut == "auto" and callable(getattr(model, "reframe_deep", None)):
                    # fx failed but the model declares its own cut: use it.
                    passes = _ManualPasses(model, example_inputs)
                    self.plan, self._full, self._hit, self.model = passes.plan, passes.full, passes.hit, model
                    analysis = None
                else:
                    raise
            if analysis is not None:
                self._analysis = analysis
                self.plan = analysis.resolve(cut)
                self.full_pass = analysis.build_full(self.plan)
                self.hit_pass = analysis.build_hit(self.plan)
                self._full, self._hit = self.full_pass, self.hit_pass
        self.policy: RefreshPolicy | None = parse_policy(policy) if policy is not None else None
        self.record_timing = record_timing
        self.reproject = bool(reproject)
        self.graded_cut = graded_cut
        # Passes of graded refresh per deeper cut, built on first need and shared by with_policy twins.
        self._graded_passes: dict = {}
        self._compile_options: dict | None = None  # set by compile(): graded passes built later are compiled too
        self.graded: GradedPlan | None = None
        self._reference: CameraHints | None = None  # the camera of the refresh the cache holds
        self._cached: list | None = None
        self._stored: list | None = None  # the deeper cut's values (graded policies), from the last full refresh
        self._stored_reference: CameraHints | None = None
        self._key: tuple | None = None
        self._index = 0
        self._last_refresh = 0
        self.decisions: list[Decision] = []
        self._setup_grades()

    def _setup_grades(self) -> None:
        """With a graded policy, plan the deeper cut and build the full-with-store and partial passes."""
        if not isinstance(self.policy, GradedRefresh):
            self.graded = None
            return
        if self._analysis is None:
            raise SettingsError(f"graded policy {self.policy.spec!r} needs a traced network (torch.fx): this cache "
                                "uses the model's own reframe_deep/reframe_shallow cut, which has one depth. "
                                "Use a single-grade policy (no '/')")
        cut = self.graded_cut
        key = "auto" if cut is None else (cut if isinstance(cut, str) else tuple(cut))
        if key not in self._graded_passes:
            graded = self._analysis.auto_graded(self.plan) if cut is None else self._analysis.graded(self.plan, cut)
            order = list(self.plan.cached) + [n for n in graded.stored if n not in self.plan.cached]
            full, partial = self._analysis.build_full_graded(self.plan, graded), self._analysis.build_partial(self.plan, graded)
            if self._compile_options is not None:
                full, partial = torch.compile(full, **self._compile_options), torch.compile(partial, **self._compile_options)
            self._graded_passes[key] = (graded, full, partial, [order.index(n) for n in graded.stored])
        self.graded, self._full_graded, self._partial, self._stored_index = self._graded_passes[key]

    # --- state -----------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Drop the cache and the policy's references (camera cut, new sequence, changed weights)."""
        self._cached = None
        self._stored = None
        self._stored_reference = None
        self._key = None
        self._reference = None
        self._index = 0
        self._last_refresh = 0
        if self.policy is not None:
            self.policy.reset()

    def clear_stats(self) -> None:
        self.decisions.clear()

    def with_policy(self, policy: str | RefreshPolicy | None, reproject: bool | None = None,
                    graded_cut: str | None = None) -> "CachedModel":
        """Another cache over the same network and cut (the traced passes are shared, so no new trace), with its
        own policy, state and figures: how the bench and calibration run many policies side by side."""
        twin = copy.copy(self)  # shares the network and the traced passes
        twin._modules = dict(self._modules)  # noqa: SLF001 - its own module table, the same modules
        # A policy object is copied through its spec: twins never share a policy's references.
        twin.policy = parse_policy(policy.spec if isinstance(policy, RefreshPolicy) else policy) if policy is not None else None
        twin.reproject = self.reproject if reproject is None else bool(reproject)
        twin.graded_cut = graded_cut if graded_cut is not None else self.graded_cut
        twin._setup_grades()
        twin.decisions = []
        twin._reference = None
        twin.reset()
        return twin

    @property
    def needs_depth(self) -> bool:
        """Whether a call's ``depth`` is read (reprojection, or a policy that measures with it): callers skip
        building it otherwise."""
        return self.reproject or (self.policy is not None and self.policy.reads_depth)

    def compile(self, **options) -> "CachedModel":
        """``torch.compile`` the refresh and hit passes separately (each is a fixed graph), in place."""
        self._full = torch.compile(self._full, **options)
        self._hit = torch.compile(self._hit, **options)
        self._compile_options = dict(options)
        for key, (graded, full, partial, index) in list(self._graded_passes.items()):  # shared with the twins
            self._graded_passes[key] = (graded, torch.compile(full, **options), torch.compile(partial, **options), index)
        if self.graded is not None:
            self._setup_grades()
        return self

    @property
    def stats(self) -> CacheStats:
        decisions = self.decisions
        refreshes = sum(d.refresh for d in decisions)
        hits = len(decisions) - refreshes
        partials = sum(d.grade == "partial" for d in decisions)
        removed = hits * self.plan.removed_share
        if self.graded is not None:
            removed += partials * (1 - self.graded.partial_share)
        return CacheStats(
            frames=len(decisions),
            refreshes=refreshes,
            hits=hits,
            hit_rate=hits / len(decisions) if decisions else 0.0,
            full_ms=_median([d.network_ms for d in decisions if d.grade == "full" and d.network_ms is not None]),
            hit_ms=_median([d.network_ms for d in decisions if d.grade == "hit" and d.network_ms is not None]),
            overhead_ms=_median([d.overhead_ms for d in decisions if d.overhead_ms is not None]),
            flops_removed=removed / len(decisions) if decisions else 0.0,
            cut=self.plan.name,
            policy=self.policy.spec if self.policy is not None else None,
            partials=partials,
            partial_ms=_median([d.network_ms for d in decisions if d.grade == "partial" and d.network_ms is not None]),
        )

    # --- running ---------------------------------------------------------------------------------------

    def _why_refresh(self, ctx: FrameContext, key: tuple, refresh: bool | None, hints: CameraHints | None) -> str | None:
        if refresh is True:
            return "requested by caller"
        if self._cached is None:
            return "no cache yet"
        if key != self._key:
            return f"inputs changed ({_describe_key(self._key)} -> {_describe_key(key)})"
        if hints is not None and hints.cut:
            return "camera cut"
        if refresh is False:
            return None
        if self.policy is None:
            raise SettingsError("CachedModel needs refresh=True/False on each call, or a policy at build time "
                             "(cache_model(..., policy='delta:0.1'))")
        return self.policy.check(ctx)

    def _reprojected(self, values: list, reference: CameraHints | None, hints: CameraHints | None,
                     depth: torch.Tensor | None) -> tuple[list, bool]:
        """Stored ``values``, feature maps moved from the ``reference`` camera (of the refresh that stored them)
        to this frame's when reprojection is on and the depth and both cameras are known."""
        if not (self.reproject and depth is not None and hints is not None and reference is not None):
            return values, False
        if not (hints.is_perspective and reference.is_perspective):
            return values, False  # reprojection is for perspective cameras: an orthographic view reuses as stored
        moved = reproject_depth(depth, hints, reference)
        return [moved.warp(t) if isinstance(t, torch.Tensor) and t.ndim == 4 and t.is_floating_point() else t
                for t in values], True

    def forward(self, *inputs: Any, refresh: bool | str | None = None, hints: CameraHints | None = None,
                depth: torch.Tensor | None = None):
        """Run one frame. ``hints``: this frame's camera (policies, cuts); ``depth``: its (B, 1, H, W) planar view
        depth, inf on background (``frames.reprojection.depth_tensor``), read by the ``screen`` policy and,
        with ``reproject=True``, used to move cached feature maps to this frame's view on a hit. ``refresh``: True
        (full refresh), False (hit, unless the cache cannot serve one), ``"partial"`` (graded caches only) or
        None (the policy decides)."""
        if refresh is not None and not isinstance(refresh, bool) and refresh != "partial":
            raise TypeError(f"refresh must be True, False, 'partial' or None, got {refresh!r}")
        if refresh == "partial" and self.graded is None:
            raise SettingsError("refresh='partial' needs a graded policy (FULL/PARTIAL, e.g. 'every:8/every:2'): "
                                "this cache has one depth")
        if hints is not None and not isinstance(hints, CameraHints):
            raise TypeError(f"hints must be a CameraHints, got {type(hints).__name__}")
        if depth is not None and (not isinstance(depth, torch.Tensor) or depth.ndim != 4 or depth.shape[1] != 1):
            raise TypeError(f"depth must be a (B, 1, H, W) tensor, got {type(depth).__name__} {tuple(getattr(depth, 'shape', ()))}")
        start = time.perf_counter()
        key = _input_key(inputs)
        if hints is not None and hints.cut:
            self._index = self._last_refresh = 0
            if self.policy is not None:
                self.policy.reset()
        ctx = FrameContext(self._index, self._index - self._last_refresh, inputs, hints, depth)
        reason = self._why_refresh(ctx, key, True if refresh is True else (False if refresh == "partial" else refresh), hints)
        grade = "hit" if reason is None else "full"
        if reason is None and refresh == "partial":
            reason, grade = "requested by caller", "partial"
        elif reason is None and refresh is None and self.graded is not None:
            reason = self.policy.check_partial(ctx)
            grade = "hit" if reason is None else "partial"
        sync = self.record_timing and any(isinstance(t, torch.Tensor) and t.is_cuda for t in inputs)
        if sync:
            torch.cuda.synchronize()
        net_start = time.perf_counter()
        with torch.inference_mode():
            moved = False
            if grade == "full" and self.graded is not None:
                output, values = self._full_graded(*inputs)
                n = len(self.plan.cached)
                self._cached, self._key, self._reference = list(values[:n]), key, hints
                self._stored, self._stored_reference = [values[i] for i in self._stored_index], hints
            elif grade == "full":
                output, cached = self._full(*inputs)
                self._cached, self._key, self._reference = list(cached), key, hints
            elif grade == "partial":
                stored, moved = self._reprojected(self._stored, self._stored_reference, hints, depth)
                output, cached = self._partial(*inputs, *stored)
                self._cached, self._reference = list(cached), hints
            else:
                cached, moved = self._reprojected(self._cached, self._reference, hints, depth)
                output = self._hit(*inputs, *cached)
        if sync:
            torch.cuda.synchronize()
        net_end = time.perf_counter()
        if grade == "full":
            self._last_refresh = self._index
            if self.policy is not None:
                self.policy.observe_refresh(ctx)
        elif grade == "partial":
            self.policy.observe_partial(ctx)
        if self.graded is not None:
            self.policy.advance()
        self._index += 1
        end = time.perf_counter()
        self.decisions.append(Decision(
            index=ctx.index,
            frame=hints.frame if hints is not None else None,
            refresh=reason is not None,
            reason=(f"partial: {reason}" if grade == "partial" else reason) or ("hit (reprojected)" if moved else "hit"),
            network_ms=(net_end - net_start) * 1e3 if self.record_timing else None,
            overhead_ms=((net_start - start) + (end - net_end)) * 1e3 if self.record_timing else None,
            grade=grade,
        ))
        return output


def network_of(model) -> nn.Module:
    """The network itself: ``model`` unchanged, or the network a :class:`CachedModel` wraps. Read by
    attribute, not type, so wrappers that forward attributes (the bench's timers) work too."""
    return getattr(model, "network", model)


def cache_model(model: nn.Module, example_inputs: Sequence, cut: str | Sequence[str] = "auto",
                policy: str | RefreshPolicy | None = None, record_timing: bool = True,
                reproject: bool = False, graded_cut: str | None = None) -> CachedModel:
    """Wrap ``model`` with layer caching, leaving the model itself untouched.

    Args:
        model: any ``nn.Module`` (traced with torch.fx), or one exposing ``reframe_deep``/``reframe_shallow``.
        example_inputs: inputs of one call, used to trace shapes and count FLOPs (not kept).
        cut: ``"auto"`` (best valid candidate by FLOPs removed), ``"level:K"``, a tensor or submodule name,
            a list of names, or ``"manual"``. ``reframe-blender cuts --model NAME`` lists candidates.
        policy: a spec string (``"delta:0.1+max-age:8"``) or :class:`RefreshPolicy`; None to decide per call.
        record_timing: keep per-frame network and overhead times (synchronises CUDA when on).
        reproject: on a hit, move the cached feature maps from the refresh frame's camera to the current one
            (needs ``hints`` and ``depth`` on each call; without them a hit reuses the maps as stored).
        graded_cut: with a graded policy (``FULL/PARTIAL``), the deeper cut a partial refresh starts from
            (``level:K``); default: the shallowest ``level:K`` deeper than ``cut``.

    Returns:
        A :class:`CachedModel`; ``.plan`` says what is cached and what a hit saves.
    """
    return CachedModel(model, example_inputs, cut=cut, policy=policy, record_timing=record_timing, reproject=reproject,
                       graded_cut=graded_cut)
