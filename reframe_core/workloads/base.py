"""What a workload is: the one unit every front end (render, bench, eval, train, demo) calls.

A workload knows its network, its shipped weights per scale (and checks the model card against the scale
asked for), how to build the network's inputs from :class:`~reframe_core.frames.buffers.FrameBuffers`, its
runner (``reset()``, ``step(buffers, hints) -> StepResult``), its baseline, and the hooks evaluation and
training need. Nothing outside ``reframe_core/workloads/`` branches on a workload's name.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reframe_core.errors import SettingsError


@dataclass
class StepResult:
    """What a runner shows for one frame."""

    image: np.ndarray  # (H, W, 3) linear colour at display resolution
    network_ran: bool  # False where the frame was shown as rendered (FE's full frames)
    refreshed: bool | None  # the cache's decision; None when uncached or the network did not run
    reason: str


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``size`` divided by ``scale``, each side rounded and at least 1: the one rounding the capture renders
    with and the session checks frames against."""
    return tuple(max(1, round(side / scale)) for side in size)


@dataclass(frozen=True)
class RenderRequest:
    """What the render loop must render for the next frame (the session asks the workload)."""

    scale: float  # the render's size is the display size divided by this
    jitter: bool  # offset the samples by the frame's Halton jitter (camera shift)
    cheap: bool  # the cheap G-buffer pass (no shadows, no raytracing) instead of a full render
    # A full render and, beside it, the cheap pass, whose colour goes in FrameBuffers.cheap_color: a relighting FE
    # network carries the ratio of the two to the frames it extrapolates.
    cheap_too: bool = False

    def input_size(self, display_size: tuple[int, int]) -> tuple[int, int]:
        """(height, width) of the frame to render for a display of ``display_size``."""
        return scaled_size(display_size, self.scale)

    def describe(self) -> str:
        kind = "cheap G-buffer pass" if self.cheap else "full render and cheap pass" if self.cheap_too else "full render"
        size = f" at 1/{self.scale:g}" if self.scale != 1 else ""
        return f"{kind}{size}{', jittered' if self.jitter else ''}"


@dataclass(frozen=True)
class WorkloadFacts:
    """What a front end without torch (Blender's side of the add-on and the render loop) needs to know of a
    workload, declared with its registry line (``reframe_core.workloads.WORKLOADS``); the workload classes answer
    from it too, so the two cannot disagree."""

    weights: str  # the shipped weights file's stem, formatted with the scale: "ss_x{scale:g}"
    renders_scaled: bool  # the render is at 1/scale of the display (SS), else at full resolution (FE)
    period_is_k: bool  # the pattern repeats every k frames (FE renders in full every k-th frame), else every frame

    def weights_name(self, scale: float) -> str:
        return self.weights.format(scale=scale)

    def input_scale(self, scale: float) -> float:
        return scale if self.renders_scaled else 1.0

    def period(self, k: int) -> int:
        return k if self.period_is_k else 1


def reference_lines(reports: list[dict]) -> list[str]:
    """The lines an evaluation table ends with for reports scored against a reference (``eval --reference``):
    what the reference is, and the native render's own FLIP against it, the floor its noise sets."""
    lines = []
    for r in reports:
        if r.get("reference"):
            samples = r.get("reference_samples")
            native = r["native"]
            lines.append(f"{Path(r['dataset']).name}: scored against {r['reference']}"
                         f"{f' ({samples} samples)' if samples else ''}; the native render itself: FLIP "
                         f"{native['flip_mean']:.4f}, PSNR {native['psnr_mean']:.2f}")
    return lines


class Workload:
    """Base of the SS and FE workloads (see the module docstring); subclasses fill in every method."""

    name: str  # the CLI name: "ss", "fe"
    arch: str  # the network's name in reframe_core.networks.NETWORKS
    title: str
    baseline_name: str  # what the network must beat: "bicubic", "reprojection"
    fallback_name: str  # what baseline() shows (a non-finite output's replacement): "bicubic", "cheap pass"
    paper_delta: float  # the paper reference code's delta threshold for this kind of network
    scales: tuple[float, ...] = (1.0,)  # display / input size ratios the workload runs at
    # Renders a cheap G-buffer pass between full frames (FE): datasets of it (dataset --cheap) apply to bench,
    # calibrate and eval, which then hand each frame what Blender renders.
    cheap_pass: bool = False

    # --- weights --------------------------------------------------------------------------------------
    @property
    def facts(self) -> WorkloadFacts:
        from reframe_core.workloads import workload_facts

        return workload_facts(self.name)

    def weights_name(self, scale: float) -> str:
        return self.facts.weights_name(scale)

    def load(self, weights: str | Path | None = None, scale: float = 2.0):
        """(model in eval mode, payload): ``weights`` or the shipped file for ``scale``; the file's model card
        must be for this workload and scale."""
        from reframe_core.weights import WeightsError, load_network, shipped

        self.check_scale(scale)
        path = Path(weights) if weights else shipped(self.weights_name(scale))
        if not weights and not path.is_file():
            raise WeightsError(f"no shipped {self.title} weights for scale {scale:g} ({path.name}); shipped: "
                               f"{', '.join(f'{v:g}' for v in self.shipped_scales()) or 'none'}. Train some with 'reframe-blender train "
                               f"--workload {self.name} --scale {scale:g}' and pass them with --weights")
        model, payload = load_network(path, expected_arch=self.arch)
        card = payload.get("card") or {}
        if card.get("scale") is not None and float(card["scale"]) != float(self.card_scale(scale)):
            raise WeightsError(f"{path} was trained for scale {float(card['scale']):g}, not {scale:g}: pass weights "
                               f"trained with --scale {scale:g}, or run at --scale {float(card['scale']):g}")
        return model, payload

    def card_scale(self, scale: float) -> float:
        return scale

    def shipped_scales(self) -> list[float]:
        """Scales with shipped weights."""
        raise NotImplementedError

    def timed_scale(self) -> float:
        """The scale whose weights a speed measurement times: 2x, which the networks' example inputs are sized
        for, where it is shipped (not merely the first of the shipped ones: ss_x1.5 sorts before ss_x2)."""
        scales = self.shipped_scales()
        return 2.0 if 2.0 in scales or not scales else scales[0]

    def check_scale(self, scale: float) -> None:
        if scale <= 0:
            raise SettingsError(f"scale must be positive, got {scale:g}")

    def input_scale(self, scale: float) -> float:
        """The scale of the frames this workload reads (SS: the low-res frames; FE: full resolution)."""
        return self.facts.input_scale(scale)

    # --- running --------------------------------------------------------------------------------------
    def render_request(self, scale: float, full: bool) -> RenderRequest:
        """What to render for a frame; ``full``: the runner needs a full render of it (FE's k-th frames)."""
        raise NotImplementedError

    @property
    def period(self) -> int:
        """Frames after which the runner's pattern repeats within a shot (FE: k); a warm-up starts on it."""
        return self.facts.period(getattr(self, "k", 1))

    def runner(self, model, display_size: tuple[int, int], placement=None):
        raise NotImplementedError

    def example_inputs(self, model, display_size: tuple[int, int], frame=None, scale: float = 2.0) -> tuple:
        """Network inputs for ``display_size`` (from ``frame``'s buffers when given, else random ones of the
        right shapes; ``scale``: SS's display / rendered size), for tracing the cut."""
        raise NotImplementedError

    def baseline(self, frame, display_size: tuple[int, int]) -> np.ndarray:
        """What is shown without the network (and where its output is unusable): (H, W, 3) linear."""
        raise NotImplementedError

    def without_cheap_pass(self, model) -> str | None:
        """What ``model`` loses on frames that come without their cheap pass (datasets that lack it), or None
        where it needs none."""
        return None

    # --- evaluation and training hooks ----------------------------------------------------------------
    def evaluate(self, model, root: str | Path, scale: float = 2.0, **options) -> dict:
        raise NotImplementedError

    def format_evaluation(self, reports: list[dict]) -> str:
        raise NotImplementedError

    def training_network(self, config) -> tuple[dict, object]:
        """(constructor config, freshly built network) for ``config`` (a TrainConfig)."""
        raise NotImplementedError

    def grown_network(self, model, stored: dict, arch_config: dict, added_from=None):
        """For ``train --init`` and ``interpolate-weights``: the network ``arch_config`` describes, computing exactly
        what ``model`` (built from ``stored``, another configuration) does, or None where this workload has no such
        conversion. ``added_from``: a network of ``arch_config`` whose weights the conversion's added, unread parts
        take (instead of a fresh initialisation)."""
        return None

    def training_sequences(self, roots: list[str], config) -> list[list]:
        raise NotImplementedError

    def training_batch(self, sequences, config, generator) -> dict:
        raise NotImplementedError

    def training_loss(self, model, batch, device, kind: str):
        raise NotImplementedError

    def card_fields(self, config) -> dict:
        """What the model card records of this workload's settings."""
        raise NotImplementedError
