"""The frame-extrapolation workload (ExtraNet): render every k-th frame in full, the frames between in a
cheap G-buffer mode, and extrapolate their shading from the warped history.

Inputs of one extrapolated frame t, built from what the cheap pass gives (depth, normal, albedo, motion)
and the frames already shown:

* ``x`` (6): the last shown frame warped to t, and the same with disoccluded pixels zeroed;
* ``mask`` (6): the disocclusion mask (1 where frame t-1 saw the surface), repeated;
* ``feature`` (7): normal, normalised depth, albedo (our shipped net; the published one takes roughness and
  metallic instead of albedo, 6 channels: :class:`ExtraNet` takes either through ``n_channels``);
* ``his_buffer`` (3, 4): frames t-3, t-2, t-1 warped to t by chaining each frame's motion, with masks.

What the colour channels hold depends on the network's ``inputs`` (:class:`ExtraNet`): linear colour
(``"color"``, the published setup), or ``"shading"``: ``log1p(colour / (albedo + ALBEDO_FLOOR))``, each frame
divided by its own albedo before it is warped and the output multiplied by the current frame's albedo. The
cheap pass renders the current albedo exactly, so texture detail and disoccluded surfaces come from it
rather than from a resampled, smeared old frame; only the slowly varying shading is carried over. On the
held-out ``emissive_transparent`` frames this alone (the network's residual at zero) takes plain
reprojection's FLIP from 0.0181 to 0.0110. The current albedo must then be anti-aliased: from a 1-sample
cheap pass the result is worse than plain reprojection (see the FE model card). Shading-space histories are
warped bicubically (less blur over chained warps than bilinear).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

from pathlib import Path

import numpy as np
import torch

from reframe_core.errors import SettingsError
from reframe_core.frames.buffers import FrameBuffers
from reframe_core.frames.hints import CameraHints
from reframe_core.frames.reprojection import depth_tensor
from reframe_core.runtime.placement import Placement
from reframe_core.caching.cache import network_of
from reframe_core.workloads.supersampling import gbuffer, history_warp_mode
from reframe_core.frames.warp import backward_warp, disocclusion_mask, in_frame_mask, to_image, to_tensor
from reframe_core.workloads.base import RenderRequest, StepResult, Workload, reference_lines

FEATURE_CHANNELS = 7
N_CHANNELS = 12 + FEATURE_CHANNELS
# Added to albedo before dividing: keeps black and emissive surfaces (albedo 0) finite, and there the
# division and the multiplication by the current albedo cancel to plain reprojection.
ALBEDO_FLOOR = 0.05
FEATURE_ALBEDO = slice(4, 7)  # albedo's channels in feature_tensor: normal 3, depth 1, albedo 3
# Added to both passes' colours before their ratio (relighting): keeps pixels black in either finite. Small,
# because the ratio must carry dark shadows: with 0.01, emissive_transparent's relit frames scored FLIP 0.0124
# against 0.0118 with 0.001.
RELIGHT_FLOOR = 1e-3
# What a relighting network takes beyond N_CHANNELS: the warped effects (effects_ratio: where they are large, the
# cheap pass renders the pixel very differently and relighting fails) and the relit frame, last (the head blends to it).
RELIGHT_CHANNELS = 6
NOT_RELIT = " (not relit: the last rendered frame came without its cheap pass)"


def relights(model) -> bool:
    """Whether the network takes the relit frame (ExtraNet ``residual="relight"``): it then needs the cheap pass's
    colour of every rendered frame as well (``FrameBuffers.cheap_color``)."""
    return getattr(network_of(model), "residual", None) == "relight"


def effects_ratio(color: torch.Tensor, cheap_color: torch.Tensor) -> torch.Tensor:
    """log of a rendered frame's colour over its cheap pass's: what shadows and raytracing (all the cheap pass
    leaves out) do to each pixel. It changes far less with the view than shading does, so it warps well."""
    return torch.log((color.clamp(min=0) + RELIGHT_FLOOR) / (cheap_color.clamp(min=0) + RELIGHT_FLOOR))


def relight(effects: torch.Tensor, cheap_color: torch.Tensor) -> torch.Tensor:
    """This frame's cheap pass with the last rendered frame's effects (:func:`effects_ratio`, warped here) put
    back: edges, texture and view-dependent light come from this frame's own render."""
    return (torch.exp(effects.clamp(max=20)) * (cheap_color.clamp(min=0) + RELIGHT_FLOOR) - RELIGHT_FLOOR).clamp(min=0)


def gated_relight(effects: torch.Tensor, relit: torch.Tensor, reprojected: torch.Tensor, limit: float = 0.5) -> torch.Tensor:
    """A hand-made choice between the two predictions, the non-learned peer of the ``relight`` network: the relit
    frame where the effects change a pixel by less than ``limit`` in log (e^0.5: 1.6x), else ``reprojected``.
    Where they change it more, the cheap pass renders the pixel very differently (tinted glass, with raytracing
    off), and the ratio of two noisy renders is unreliable."""
    near = (effects.abs().mean(1, keepdim=True) < limit).float()
    return near * relit + (1 - near) * reprojected


def input_space(model) -> str:
    """``"color"`` or ``"shading"``: what an ExtraNet (or a CachedModel of one) takes and returns."""
    return getattr(network_of(model), "inputs", "color")


def encode(color: torch.Tensor, albedo: torch.Tensor, space: str) -> torch.Tensor:
    """Linear colour -> the network's colour space (see the module docstring)."""
    if space == "shading":
        return torch.log1p(color.clamp(min=0) / (albedo.clamp(min=0) + ALBEDO_FLOOR))
    return color


def decode(signal: torch.Tensor, albedo: torch.Tensor, space: str) -> torch.Tensor:
    """The network's colour space -> linear colour (clamped at 0)."""
    if space == "shading":
        return torch.expm1(signal.clamp(min=0, max=20)) * (albedo.clamp(min=0) + ALBEDO_FLOOR)
    return signal.clamp(min=0)


@dataclass
class _Shown:
    """A frame already shown (rendered or extrapolated), kept warped to the current frame."""

    signal: torch.Tensor  # (1, 3, H, W) colour in the network's space (encode), warped to the latest frame
    mask: torch.Tensor  # (1, 1, H, W)
    motion_next: torch.Tensor  # (1, 2, H, W) of the frame itself, for disocclusion tests


def feature_tensor(frame: FrameBuffers) -> torch.Tensor:
    """(1, 7, H, W): normal, normalised depth, albedo."""
    g = to_tensor(gbuffer(frame))  # albedo, normal, depth
    return torch.cat([g[:, 3:6], g[:, 6:7], g[:, 0:3]], 1)


def warp_history(colors: list[torch.Tensor], masks: list[torch.Tensor], motion: torch.Tensor, mode: str = "bilinear"):
    """Bring frames (and their validity masks) one frame forward with that frame's motion_prev."""
    inside = in_frame_mask(motion)
    return ([backward_warp(c, motion, mode=mode) for c in colors],
            [backward_warp(m, motion, mode="nearest") * inside for m in masks])


def fe_inputs(history: list[torch.Tensor], masks: list[torch.Tensor], motion: torch.Tensor,
              previous_motion_next: torch.Tensor | None, feature: torch.Tensor,
              depth: torch.Tensor | None = None, previous_depth: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """(x, feature, mask, his_buffer) for ExtraNet.

    Args:
        history / masks: the three previous frames already warped to this frame, oldest first, (B, 3|1, H, W).
        motion: this frame's motion_prev (B, 2, H, W); previous_motion_next: the last frame's motion_next.
        feature: (B, 7, H, W) from :func:`feature_tensor`.
        depth / previous_depth: this and the last frame's depth (:func:`depth_tensor`): where given, pixels the
            motion round trip rejects but whose depth agrees are not holes (see :func:`disocclusion_mask`).
    """
    previous = history[-1]
    if previous_motion_next is not None:
        mask = disocclusion_mask(motion, previous_motion_next, depth=depth, previous_depth=previous_depth) * masks[-1]
    else:
        mask = masks[-1]
    x = torch.cat([previous, previous * mask], 1)
    his = torch.stack([torch.cat([c, m], 1) for c, m in zip(history, masks)], dim=1)
    return x, feature, mask.repeat(1, 6, 1, 1), his


SIZE_MULTIPLE = 8  # ExtraNet down-samples three times: it takes sides that are multiples of 8


def padded_size(size: tuple[int, int]) -> tuple[int, int]:
    return tuple(-(-int(side) // SIZE_MULTIPLE) * SIZE_MULTIPLE for side in size)


def pad_inputs(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The network's inputs padded (edge pixels repeated) to sides that are multiples of 8, so that any frame
    size runs (1366x768, say); the caller crops the output back."""
    h, w = inputs[0].shape[-2:]
    ph, pw = (p - s for p, s in zip(padded_size((h, w)), (h, w)))
    if not ph and not pw:
        return inputs
    out = []
    for t in inputs:
        flat = t.reshape(-1, *t.shape[-3:]) if t.ndim == 5 else t  # replicate padding takes 4-D tensors
        flat = torch.nn.functional.pad(flat, (0, pw, 0, ph), mode="replicate")
        out.append(flat.reshape(*t.shape[:-2], h + ph, w + pw))
    return tuple(out)


class Extrapolator:
    """Shows a sequence where every ``k``-th frame is rendered and the others are extrapolated.

    Call :meth:`step` with each frame's buffers in order; frames where ``is_full_frame`` is True must carry a
    real colour; the others only need G-buffers and motion (the cheap pass). Returns the colour shown.
    ``placement``: device, precision and layout of the network call (default: CPU float32).
    """

    def __init__(self, model, k: int = 2, placement: Placement | None = None):
        if k < 1:
            raise SettingsError(f"k (every k-th frame rendered in full) must be >= 1, got {k}")
        channels = getattr(network_of(model), "n_channels", N_CHANNELS)
        self.relights = relights(model)
        if self.relights and channels != N_CHANNELS + RELIGHT_CHANNELS:
            raise SettingsError(f"this relighting ExtraNet takes {channels} input channels; the FE workload builds "
                                f"{N_CHANNELS + RELIGHT_CHANNELS} (normal, depth, albedo, effects, relit frame): train it with "
                                "'reframe-blender train --workload fe --fe-residual relight'")
        if not self.relights and channels != N_CHANNELS:
            raise SettingsError(
                f"this ExtraNet takes {channels} input channels ({channels - 12} of G-buffer), but the FE workload "
                f"builds {N_CHANNELS} (normal, depth, albedo). The published ExtraNet's 6 (normal, depth, roughness, "
                "metallic) need roughness and metallic passes, which capture does not record yet: such checkpoints "
                "load (load_network) but cannot run in this workload; use the shipped weights or train with "
                "'reframe-blender train --workload fe'")
        self.model, self.k = model, k
        self.space = input_space(model)
        self._warp_mode = history_warp_mode(model)
        self.placement = placement or Placement()
        self._history: deque[_Shown] = deque(maxlen=3)
        self._index = 0
        self._cut_pending = False
        self._previous_depth: torch.Tensor | None = None
        self._effects: torch.Tensor | None = None  # relighting: the last rendered frame's effects, warped here

    def reset(self) -> None:
        self._effects = None
        self._history.clear()
        self._index = 0
        self._cut_pending = False
        self._previous_depth = None
        if hasattr(self.model, "reset"):
            self.model.reset()

    def is_full_frame(self, hints: CameraHints | None = None) -> bool:
        """Whether the next frame must be rendered in full (every k-th, and after a cut or at the start)."""
        return (hints is not None and hints.cut) or len(self._history) == 0 or self._index % self.k == 0

    def step(self, frame: FrameBuffers, hints: CameraHints | None = None) -> StepResult:
        """The colour shown: the frame as rendered (``network_ran`` False) or extrapolated."""
        full = self.is_full_frame(hints)
        if hints is not None and hints.cut:
            self._history.clear()
            self._effects = None
            self._index = 0
            # A cut is always a rendered frame, where the network does not run: carry the cut to the network's
            # next call, so that it never reuses deep features cached from the old shot.
            self._cut_pending = True
        device = self.placement.device
        motion = to_tensor(frame.motion_prev).to(device)
        depth = depth_tensor(frame).to(device)  # for the hole test (and the cache's reprojection)
        previous_depth, self._previous_depth = self._previous_depth, depth
        albedo = to_tensor(frame.albedo).to(device) if self.space == "shading" else None
        if self._history:  # bring the history to this frame
            colors, masks = warp_history([h.signal for h in self._history], [h.mask for h in self._history], motion,
                                         mode=self._warp_mode)
            for item, color, mask in zip(self._history, colors, masks):
                item.signal, item.mask = color, mask
            if self._effects is not None:
                self._effects = backward_warp(self._effects, motion, mode=self._warp_mode)
        if full:
            shown = to_tensor(frame.color).to(device)
            signal = encode(shown, albedo, self.space)
            if self.relights:
                # Without the cheap pass (a frame source that cannot render it: synthetic frames, a caller of the
                # API) the frames up to the next rendered one are not relit; their reason says so.
                self._effects = (effects_ratio(shown, to_tensor(frame.cheap_color).to(device))
                                 if frame.cheap_color is not None else None)
        else:
            history = [h.signal for h in self._history]
            masks = [h.mask for h in self._history]
            while len(history) < 3:  # fewer than three frames since the start or a cut: repeat the oldest
                history.insert(0, history[0])
                masks.insert(0, masks[0])
            feature = feature_tensor(frame).to(device)
            if self.relights:  # the effects and the relit frame (network's colour space) as the last features
                if self._effects is not None:
                    # An extrapolated frame is the cheap pass; a caller may also hand a full render with its cheap
                    # pass beside it, whose own colour must not reach the network.
                    cheap = frame.cheap_color if frame.cheap_color is not None else frame.color
                    effects = self._effects
                    relit = encode(relight(effects, to_tensor(cheap).to(device)), albedo, self.space)
                else:  # nothing to relight with: both predictions are the warped history, which is then shown
                    effects, relit = torch.zeros_like(history[-1]), history[-1]
                feature = torch.cat([feature, effects, relit], 1)
            inputs = self.placement.inputs(pad_inputs(fe_inputs(history, masks, motion, self._history[-1].motion_next,
                                                                feature, depth, previous_depth)))
            call_hints = hints
            if self._cut_pending:  # set only by a cut, so hints exist here
                self._cut_pending = False
                call_hints = replace(hints, cut=True)
            with torch.inference_mode():
                if hasattr(self.model, "plan"):
                    # The depth is not padded like the inputs: a cached map padded by a few pixels is warped
                    # with the grid stretched over the padding (sizes that are multiples of 8 need none).
                    signal = self.model(*inputs, hints=call_hints,
                                        depth=depth if getattr(self.model, "needs_depth", True) else None)
                else:
                    signal = self.model(*inputs)
                signal = signal[..., :motion.shape[-2], :motion.shape[-1]].float().clamp(min=0)
            shown = decode(signal, albedo, self.space)
        self._history.append(_Shown(signal, torch.ones_like(signal[:, :1]), to_tensor(frame.motion_next).to(device)))
        self._index += 1
        if full:
            return StepResult(to_image(shown), False, None, "rendered")
        decision = self.model.decisions[-1] if hasattr(self.model, "plan") else None
        reason = decision.reason if decision else "uncached"
        if self.relights and self._effects is None:
            reason += NOT_RELIT
        return StepResult(to_image(shown), True, decision.refresh if decision else None, reason)


def evaluate_extrapolation(model, root: str, k: int = 2, cheap_root: str | None = None, frames=None,
                           reference: str | None = None) -> dict:
    """Every k-th frame rendered, the rest extrapolated by ``model``; extrapolated frames are compared with
    their native render, against plain reprojection (the last rendered frame warped by motion).

    ``cheap_root``: a dataset of the same frames written with ``reframe-blender dataset --cheap``; the
    extrapolated frames then get their G-buffers and motion from that cheap pass (1 sample: aliased), as
    they would in Blender, instead of from the full render's (anti-aliased) passes. ``reference``: a dataset of
    the same frames rendered with more samples (:func:`reference_for`) that the extrapolated frames, and their
    native render itself (``native``: the floor its noise sets), are scored against instead.

    With ``cheap_root``, each rendered frame also gets its cheap pass's colour (``FrameBuffers.cheap_color``),
    which a relighting network needs, and two more non-learned peers are scored: ``relight`` (the last rendered
    frame's effects over its cheap pass, warped, times this frame's cheap pass: :func:`relight`) and
    ``gated_relight`` (:func:`gated_relight` between that and the head at zero).
    """
    from reframe_core.evaluation.metrics import flip, psnr, summarize, tonemap_ldr
    from reframe_core.frames.dataset import Dataset, cheap_pass_for, reference_fields, reference_for, selected_frames

    data = Dataset.open(root)
    chosen = selected_frames(data, 1.0, frames)  # ``frames``: only these (a range); the first is rendered in full
    ref = reference_for(data, reference, chosen) if reference else None
    cheap = cheap_pass_for(root, cheap_root, chosen) if cheap_root else None
    if cheap is None and relights(model):
        raise SettingsError(f"this FE network relights with the cheap pass's colour, which {root} does not hold: render "
                            f"the same frames with 'reframe-blender dataset --cheap --samples N' (N: the full render's "
                            f"samples) and give it as --cheap-data")
    from reframe_core.frames.holefill import push_pull_fill
    from reframe_core.networks.extranet import head_at_zero, hole_region

    runner = Extrapolator(model, k)
    # The ablation the trained head must beat: the same network with its head at zero, run on the same frames.
    ablation = Extrapolator(head_at_zero(model), k)
    peers = (("network", "head_at_zero", "reprojection", "fill") + (("relight", "gated_relight") if cheap else ())
             + (("native",) if ref else ()))
    rows = {name: [] for name in peers}
    in_holes = {name: [] for name in peers}  # (FLIP summed over hole pixels, hole pixels)
    hole_share = []
    previous = previous_motion_next = previous_depth = None
    last_full = None
    for frame in chosen:
        fb = data.load(frame, 1.0)
        hints = fb.hints(previous)
        full = runner.is_full_frame(hints)
        given = fb if cheap is None else replace(fb, cheap_color=cheap.load(frame, 1.0).color) if full else cheap.load(frame, 1.0)
        result = runner.step(given, hints)
        shown, rendered = result.image, not result.network_ran
        ablated = ablation.step(given, hints).image
        motion, depth = to_tensor(given.motion_prev), depth_tensor(given)
        if rendered:
            last_full = to_tensor(fb.color)
            reprojected, valid = last_full, torch.ones_like(last_full[:, :1])
            shading = encode(last_full, to_tensor(fb.albedo), "shading")
            effects = effects_ratio(last_full, to_tensor(given.cheap_color)) if cheap else None
        else:
            # Chain the motions since the last rendered frame; what the chain did not see is a hole.
            reprojected = backward_warp(reprojected, motion)
            shading = backward_warp(shading, motion)
            effects = backward_warp(effects, motion, mode="bicubic") if cheap else None
            valid = backward_warp(valid, motion, mode="nearest") * disocclusion_mask(
                motion, previous_motion_next, depth=depth, previous_depth=previous_depth)
            holes = hole_region(valid)  # the region the network's residual may change
            # The non-learned peer of the shipped net: demodulated reprojection (its head at zero) with the same
            # holes filled by push-pull of the shading around them, re-lit by this frame's albedo.
            filled = decode(push_pull_fill(shading, 1 - holes), to_tensor(given.albedo), "shading")
            mask = holes[0, 0].numpy() > 0.5
            hole_share.append(float(mask.mean()))
            truth = ref.load(frame, 1.0).color if ref else fb.color
            scored = (("network", shown), ("head_at_zero", ablated), ("reprojection", to_image(reprojected)),
                      ("fill", to_image(filled))) + ((("native", fb.color),) if ref else ())
            if cheap:
                relit = relight(effects, to_tensor(given.color))
                scored += (("relight", to_image(relit)),
                           ("gated_relight", to_image(gated_relight(effects, relit, to_tensor(ablated)))))
            for name, image in scored:
                result_flip = flip(truth, image)
                rows[name].append((result_flip.mean, psnr(tonemap_ldr(truth), tonemap_ldr(image))))
                in_holes[name].append((float(result_flip.error_map[mask].sum()), int(mask.sum())))
        previous, previous_motion_next, previous_depth = fb, to_tensor(given.motion_next), depth
    report = {"dataset": str(root), "k": k, "extrapolated_frames": len(rows["network"]),
              "gbuffers": "cheap pass" if cheap is not None else "full render", "cheap_dataset": cheap_root,
              **reference_fields(ref, reference)}
    for name, values in rows.items():
        report[name] = summarize([v[0] for v in values], [v[1] for v in values])
    report["flip_reduction_vs_reprojection"] = 1 - report["network"]["flip_mean"] / report["reprojection"]["flip_mean"]
    report["flip_reduction_vs_head_at_zero"] = 1 - report["network"]["flip_mean"] / report["head_at_zero"]["flip_mean"]
    if cheap:
        report["flip_reduction_vs_gated_relight"] = 1 - report["network"]["flip_mean"] / report["gated_relight"]["flip_mean"]
    # Inside the holes: FLIP averaged over every hole pixel of every extrapolated frame (None without holes).
    pixels = sum(n for _, n in in_holes["network"])
    report["holes"] = {"share_mean": float(np.mean(hole_share)) if hole_share else 0.0, "pixels": pixels,
                       **{f"flip_{name}": (sum(v for v, _ in values) / pixels if pixels else None)
                          for name, values in in_holes.items()}}
    return report


# --- the workload unit ------------------------------------------------------------------------------------

@dataclass
class _TrainingFrame:
    color: torch.Tensor  # (3, H, W)
    motion_prev: torch.Tensor  # (2, H, W)
    motion_next: torch.Tensor
    feature: torch.Tensor  # (7, H, W)
    cheap_color: torch.Tensor  # (3, H, W): the frame's cheap pass (relighting), or colour where none is used


class ExtrapolationWorkload(Workload):
    """Frame extrapolation: every k-th frame rendered in full, the frames between in a cheap G-buffer pass and
    extrapolated by ExtraNet from the warped history."""

    name, arch, title, baseline_name = "fe", "extranet", "frame extrapolation", "reprojection"
    fallback_name = "cheap pass"
    cheap_pass = True
    paper_delta = 0.2  # ExtraNet's threshold in the reference code

    def __init__(self, k: int = 2):
        if k < 1:
            raise SettingsError(f"k (every k-th frame rendered in full) must be >= 1, got {k}")
        self.k = k

    def shipped_scales(self) -> list[float]:
        from reframe_core.weights import shipped

        return [1.0] if shipped("fe_extranet").is_file() else []

    def check_scale(self, scale: float) -> None:
        """Frame extrapolation runs at the render's own resolution: the scale setting does not apply."""

    def card_scale(self, scale: float) -> float:
        return 1.0

    def render_request(self, scale: float, full: bool) -> RenderRequest:
        return RenderRequest(scale=1.0, jitter=False, cheap=not full)

    def runner(self, model, display_size, placement=None) -> "Extrapolator":
        return Extrapolator(model, self.k, placement)

    def example_inputs(self, model, display_size, frame: FrameBuffers | None = None, scale: float = 1.0) -> tuple:
        from reframe_core.networks import get_network

        h, w = padded_size(display_size)  # what the runner calls the network with (pad_inputs)
        return get_network(self.arch).example_inputs(h, w, channels=network_of(model).n_channels)

    def baseline(self, frame: FrameBuffers, display_size) -> np.ndarray:
        """The frame's own colour: for an extrapolated frame that is the cheap G-buffer pass's render (no
        shadows or raytracing), a real picture of this frame that needs no history."""
        return np.asarray(frame.color, np.float32)

    def without_cheap_pass(self, model) -> str | None:
        if relights(model):
            return ("this FE network relights with each rendered frame's cheap pass, which the datasets lack: its "
                    "extrapolated frames show demodulated reprojection (its ablation)")
        return None

    def evaluate(self, model, root, scale: float = 1.0, cheap_root=None, frames=None, crops=None, reference=None,
                 **options) -> dict:
        if crops:
            raise SettingsError("--crops is for supersampling (bicubic | network | native); drop it for frame extrapolation")
        return evaluate_extrapolation(model, root, self.k, cheap_root, frames, reference)

    def format_evaluation(self, reports: list[dict]) -> str:
        lines = [f"{'dataset':<22} {'G-buffers':<28} {'extrapolated':>12} {'FLIP net':>9} {'FLIP reproj':>11} "
                 f"{'reduction':>9} {'PSNR net':>9} {'PSNR reproj':>11} {'FLIP fill':>9} {'FLIP head 0':>11} {'vs head 0':>9} "
                 f"{'holes':>6} {'in holes: net':>13} {'reproj':>7} {'fill':>7} {'head 0':>7}"]
        relit = any("relight" in r for r in reports)  # with --cheap-data: the two relighting peers
        if relit:
            lines[0] += f" {'FLIP relight':>12} {'gated':>7} {'vs gated':>8} {'in holes: relight':>17} {'gated':>7}"
        for r in reports:
            n, b, f, z, h = r["network"], r["reprojection"], r["fill"], r["head_at_zero"], r["holes"]
            source = Path(r["cheap_dataset"]).name if r.get("cheap_dataset") else "full"
            inside = [f"{h[f'flip_{key}']:.4f}" if h[f"flip_{key}"] is not None else "-"
                      for key in ("network", "reprojection", "fill", "head_at_zero")]
            lines.append(f"{Path(r['dataset']).name:<22} {source:<28} {r['extrapolated_frames']:>12} {n['flip_mean']:>9.4f} "
                         f"{b['flip_mean']:>11.4f} {r['flip_reduction_vs_reprojection']:>9.1%} {n['psnr_mean']:>9.2f} "
                         f"{b['psnr_mean']:>11.2f} {f['flip_mean']:>9.4f} {z['flip_mean']:>11.4f} "
                         f"{r['flip_reduction_vs_head_at_zero']:>9.1%} {h['share_mean']:>6.1%} "
                         f"{inside[0]:>13} {inside[1]:>7} {inside[2]:>7} {inside[3]:>7}")
            if relit and "relight" in r:
                inside = [f"{h[f'flip_{key}']:.4f}" if h[f"flip_{key}"] is not None else "-" for key in ("relight", "gated_relight")]
                lines[-1] += (f" {r['relight']['flip_mean']:>12.4f} {r['gated_relight']['flip_mean']:>7.4f} "
                              f"{r['flip_reduction_vs_gated_relight']:>8.1%} {inside[0]:>17} {inside[1]:>7}")
        return "\n".join(lines + reference_lines(reports))

    def training_network(self, config):
        from reframe_core.networks import get_network
        from reframe_core.networks.extranet import head_at_zero

        extra = RELIGHT_CHANNELS if config.fe_residual == "relight" else 0
        arch_config = {"n_channels": N_CHANNELS + extra, "inputs": config.fe_inputs, "residual": config.fe_residual}
        # The head adds a residual to the warped history: starting it at zero starts training from
        # (demodulated) reprojection, a strong baseline, instead of from noise added to it.
        return arch_config, head_at_zero(get_network(self.arch).build(**arch_config))

    def training_sequences(self, roots, config) -> list[list[_TrainingFrame]]:
        """Every dataset's scale-1 frames, split into runs at camera cuts."""
        from reframe_core.frames.dataset import Dataset, cheap_pass_for, runs_between_cuts
        from reframe_core.frames.ranges import parse_frames

        relit = config.fe_residual == "relight"
        if relit and len(config.cheap_data) != len(roots):
            raise SettingsError(f"--fe-residual relight needs the cheap pass of every --data folder: {len(roots)} --data, "
                                f"{len(config.cheap_data)} --cheap-data; render each with 'reframe-blender dataset --cheap "
                                "--samples N' (N: its full render's samples) and list them in the same order")
        if config.cheap_data and not relit:
            raise SettingsError("--cheap-data is for --fe-residual relight (the other networks take no cheap-pass colour): drop it")
        frames = parse_frames(config.frames) if config.frames else None
        runs = []
        for index, root in enumerate(roots):
            cheap = (cheap_pass_for(root, config.cheap_data[index], Dataset.open(root).frames(1.0)) if relit
                     else None)

            def item(fb, frame, cheap=cheap):
                color = to_tensor(fb.color)[0]
                return _TrainingFrame(color, to_tensor(fb.motion_prev)[0], to_tensor(fb.motion_next)[0], feature_tensor(fb)[0],
                                      to_tensor(cheap.load(frame, 1.0).color)[0] if cheap is not None else color)

            runs += runs_between_cuts(Dataset.open(root), 1.0, item, frames=frames)
        return runs

    def training_batch(self, sequences, config, generator) -> dict:
        """Windows of 4 frames (t-3 .. t) and a crop, as (T, B, C, H, W) tensors."""
        if config.history_burn_in:
            raise SettingsError("--history-burn-in is for SS training (ExtraNet's windows have no fed-back output): drop it")
        usable = [s for s in sequences if len(s) >= 4]
        if not usable:
            raise SettingsError("no run of 4 frames without a camera cut in the data; capture longer sequences")
        crop = config.crop
        fields = ("color", "motion_prev", "motion_next", "feature", "cheap_color")
        batch = {k: [] for k in fields}
        for _ in range(config.batch):
            seq = usable[int(torch.randint(len(usable), (1,), generator=generator))]
            start = int(torch.randint(len(seq) - 3, (1,), generator=generator))
            height, width = seq[0].color.shape[-2:]
            x = int(torch.randint(width - crop + 1, (1,), generator=generator))
            y = int(torch.randint(height - crop + 1, (1,), generator=generator))
            for k in fields:
                batch[k].append(torch.stack([getattr(f, k)[:, y:y + crop, x:x + crop] for f in seq[start:start + 4]]))
        return {k: torch.stack(v, dim=1) for k, v in batch.items()}

    def training_loss(self, model, batch, device, kind: str = "log1p") -> torch.Tensor:
        """Extrapolate frame t from rendered frames t-3..t-1; the image loss against the rendered frame t."""
        from reframe_core.training import image_loss

        b = {k: v.to(device) for k, v in batch.items()}
        space, mode = input_space(model), history_warp_mode(model)
        albedo = [f[:, FEATURE_ALBEDO] for f in b["feature"]]
        colors, masks = [encode(b["color"][0], albedo[0], space)], [torch.ones_like(b["color"][0][:, :1])]
        for t in (1, 2):
            colors, masks = warp_history(colors, masks, b["motion_prev"][t], mode=mode)
            colors.append(encode(b["color"][t], albedo[t], space))
            masks.append(torch.ones_like(masks[0]))
        colors, masks = warp_history(colors, masks, b["motion_prev"][3], mode=mode)
        feature = b["feature"][3]
        if relights(model):  # frame t-1's effects warped to t (as at k=2), times t's cheap pass
            effects = backward_warp(effects_ratio(b["color"][2], b["cheap_color"][2]), b["motion_prev"][3], mode=mode)
            feature = torch.cat([feature, effects, encode(relight(effects, b["cheap_color"][3]), albedo[3], space)], 1)
        inputs = fe_inputs(colors, masks, b["motion_prev"][3], b["motion_next"][2], feature)
        out = decode(model(*inputs), albedo[3], space)
        return image_loss(out, b["color"][3], kind)

    def card_fields(self, config) -> dict:
        return {"scale": 1.0, "fe_inputs": config.fe_inputs, "fe_residual": config.fe_residual,
                **({"cheap_data": list(config.cheap_data)} if config.cheap_data else {})}
