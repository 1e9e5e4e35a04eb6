"""The supersampling workload: from captured low-res frames to display-resolution frames, with temporal
feedback, camera-cut resets and (optionally) layer caching.

One entry point per job: :class:`Supersampler` runs a sequence frame by frame; :func:`ss_inputs` builds
the network's tensors from :class:`FrameBuffers`; :func:`bicubic_upscale` is the baseline to beat.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reframe_core.errors import SettingsError
from reframe_core.frames.buffers import FrameBuffers
from reframe_core.caching.cache import network_of
from reframe_core.networks.supersampling import local_range, upsample_unjittered
from reframe_core.frames.hints import CameraHints
from reframe_core.frames.reprojection import depth_tensor
from reframe_core.runtime.placement import Placement
from reframe_core.frames.warp import backward_warp, history_seen, surface_depth, to_image, to_tensor, upscale_motion  # noqa: F401 (re-exported)
from reframe_core.workloads.base import RenderRequest, StepResult, Workload, reference_lines


def gbuffer(buffers: FrameBuffers) -> np.ndarray:
    """(h, w, 7): albedo, normal, depth as ``m / (m + d)`` (m: median visible depth; background -> 0)."""
    median = buffers.scene_depth() or 1.0
    depth = np.where(buffers.alpha > 0, median / (median + np.maximum(buffers.depth, 0)), 0.0)
    return np.concatenate([buffers.albedo, buffers.normal, depth[..., None]], axis=-1).astype(np.float32)


def bicubic_upscale(color_lr: torch.Tensor, size: tuple[int, int], jitter: torch.Tensor | None = None) -> torch.Tensor:
    """The baseline: bicubic up-sampling of a (jittered) low-res frame, sampled where the display pixels
    really are (see :func:`upsample_unjittered`)."""
    if jitter is None:
        jitter = torch.zeros(color_lr.shape[0], 2, dtype=color_lr.dtype)
    return upsample_unjittered(color_lr, jitter, size).clamp(min=0)


def history_warp_mode(model) -> str:
    """How a network (or a CachedModel of one) wants its history warped: its ``history_warp`` attribute,
    "bilinear" or "bicubic" (SupersamplingNet and ExtraNet declare it; others get "bilinear")."""
    return getattr(network_of(model), "history_warp", "bilinear")


def frame_tensors(low: FrameBuffers, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One low-res frame's (color, gbuffer, jitter) network inputs, on ``device``."""
    jitter = torch.from_numpy(np.asarray(low.jitter, np.float32))[None]
    return to_tensor(low.color).to(device), to_tensor(gbuffer(low)).to(device), jitter.to(device)


def ss_inputs(low: FrameBuffers, history: torch.Tensor | None, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Network inputs for one frame: (color, gbuffer, jitter, history); a None history is a reset."""
    color, buffers, jitter = frame_tensors(low)
    if history is None:
        history = bicubic_upscale(color, size, jitter)
    return color, buffers, jitter, history


def checked_history(history: torch.Tensor, flow: torch.Tensor, fallback: torch.Tensor, jitter: torch.Tensor,
                    depth: torch.Tensor, previous_depth: torch.Tensor | None) -> torch.Tensor:
    """The warped ``history`` where it shows the surface this frame sees (:func:`history_seen`), and elsewhere
    ``fallback``, the bicubic up-sampling of the current frame that a reset feeds the network. ``depth``: (B, 1, h,
    w) low-res, 0 where no surface; ``previous_depth``: the last frame's, as :func:`display_depth` gives it.

    The network cannot tell, from colours alone, history of another surface (uncovered behind a moving chair
    spindle, or entering the frame) from good history; at 640x360 the real-asset furnished_room scored 0.0191
    instead of 0.0192 with this test and weights trained without it."""
    near, far = local_range(depth, jitter, history.shape[-2:])
    return torch.where(history_seen(flow, previous_depth, near, far) > 0, history, fallback)


def display_depth(depth: torch.Tensor, jitter: torch.Tensor, size) -> torch.Tensor:
    """A low-res depth (B, 1, h, w) at the display pixels (nearest sample): the next frame's ``previous_depth``."""
    return upsample_unjittered(depth, jitter, size, mode="nearest")


class Supersampler:
    """Runs the SS network over a sequence: warps the previous output by the frame's motion, resets the
    history on camera cuts, and asks the cache (if any) whether to refresh.

    Args:
        model: a SupersamplingNet, or a CachedModel wrapping one, already on ``placement``'s device/dtype.
        size: display (height, width).
        placement: device, precision and layout of the network call (default: CPU float32).
    """

    def __init__(self, model, size: tuple[int, int], placement: Placement | None = None):
        self.model = model
        self.size = size
        self.placement = placement or Placement()
        self._previous: torch.Tensor | None = None
        self._depth: torch.Tensor | None = None  # the previous frame's depth at display resolution
        self._warp_mode = history_warp_mode(model)

    def reset(self) -> None:
        self._previous = self._depth = None
        if hasattr(self.model, "reset"):
            self.model.reset()

    def step(self, low: FrameBuffers, hints: CameraHints | None = None) -> StepResult:
        if hints is not None and hints.cut:
            self._previous = None
        device = self.placement.device
        color, buffers, jitter = frame_tensors(low, device)
        depth = surface_depth(low.depth, low.alpha).to(device)
        history = bicubic_upscale(color, self.size, jitter)  # a reset's history, and the test's fallback
        if self._previous is not None:
            flow = upscale_motion(to_tensor(low.motion_prev).to(device), self.size)
            warped = backward_warp(self._previous, flow, mode=self._warp_mode)
            history = checked_history(warped, flow, history, jitter, depth, self._depth)
        self._depth = display_depth(depth, jitter, self.size)
        inputs = self.placement.inputs((color, buffers, jitter, history))
        with torch.inference_mode():
            if hasattr(self.model, "plan"):  # a CachedModel: the policy decides (the depth: screen policy, reprojection)
                depth = depth_tensor(low).to(device) if getattr(self.model, "needs_depth", True) else None
                out = self.model(*inputs, hints=hints, depth=depth)
                decision = self.model.decisions[-1]
                refreshed, reason = decision.refresh, decision.reason
            else:
                out, refreshed, reason = self.model(*inputs), None, "uncached"
        out = out.float().clamp(min=0)
        self._previous = out
        return StepResult(to_image(out), True, refreshed, reason)


CROP = 96  # display pixels per side of a comparison crop
CROP_ZOOM = 3  # each crop pixel drawn this many times wider and higher (nearest): the detail stays visible


def save_comparison_crops(path: Path, images: dict, flip_map: np.ndarray) -> dict:
    """A PNG of one frame's crops side by side (``images``: label -> (H, W, 3) linear), cut where the first
    image's FLIP map (``flip_map``, against the native render) is worst over a window; labels drawn above."""
    from PIL import Image, ImageDraw

    from reframe_core.evaluation.metrics import tonemap_ldr
    from reframe_core.frames.buffers import atomic_write

    h, w = flip_map.shape
    side = min(CROP, h, w)
    windows = torch.nn.functional.avg_pool2d(torch.from_numpy(flip_map)[None, None].float(), side, stride=4)
    y, x = divmod(int(windows.flatten().argmax()), windows.shape[-1])
    top, left = y * 4, x * 4
    tiles = []
    for label, image in images.items():
        crop = (np.clip(tonemap_ldr(image[top:top + side, left:left + side]), 0, 1) * 255 + 0.5).astype(np.uint8)
        tile = Image.fromarray(crop).resize((side * CROP_ZOOM, side * CROP_ZOOM), Image.NEAREST)
        framed = Image.new("RGB", (tile.width, tile.height + 16), "white")
        framed.paste(tile, (0, 16))
        ImageDraw.Draw(framed).text((4, 2), label, fill="black")
        tiles.append(framed)
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height), "white")
    for i, tile in enumerate(tiles):
        strip.paste(tile, (i * (tile.width + 4), 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: strip.save(tmp, format="PNG"))
    return {"png": str(path), "top": top, "left": left, "side": side}


def evaluate_supersampling(model, root: str, scale: float = 2.0, frames=None, crops: str | Path | None = None,
                           reset_history: bool = False, reference: str | Path | None = None) -> dict:
    """Run ``model`` (a SupersamplingNet or a CachedModel of one) over a dataset; the network's display-resolution
    output, the bicubic up-sampling of the same jittered low-res frame and the non-neural temporal upscaler
    (:class:`TemporalUpscaler`, what a user gets without a network) fed the same frames, all against the native
    scale-1 render: FLIP (LDR), PSNR of the tonemapped images and temporal instability. ``frames``: only these (a
    range). ``crops``: a folder for side-by-side crops (bicubic | temporal | network | native) of the middle and
    the last frame. ``reset_history``: the network starts afresh on every frame (no fed-back output), which
    measures what its temporal feedback is worth; the baselines are unchanged. ``reference``: a dataset of the same
    frames rendered with more samples (:func:`reference_for`) that every output, and the native render itself
    (``native``: the floor its noise sets), is scored against instead."""
    from reframe_core.evaluation.metrics import flip, psnr, summarize, tonemap_ldr
    from reframe_core.evaluation.quality import temporal_instability
    from reframe_core.frames.dataset import Dataset, reference_fields, reference_for, selected_frames
    from reframe_core.frames.temporal_upscaler import TemporalUpscaler

    data = Dataset.open(root)
    frames = selected_frames(data, scale, frames)
    ref = reference_for(data, reference, frames) if reference else None
    per_method = {"network": [], "bicubic": [], "temporal": [], **({"native": []} if ref else {})}
    truth_tm, motions = [], []
    runner = temporal_upscaler = None
    previous = None
    shown_frames = {frames[len(frames) // 2], frames[-1]} if crops is not None else set()
    written = []
    for frame in frames:
        low, high = data.load(frame, scale), data.load(frame, 1.0)
        size = high.color.shape[:2]
        if runner is None:
            runner, temporal_upscaler = Supersampler(model, size), TemporalUpscaler(size)
            runner.reset()
        hints = low.hints(previous)
        if reset_history:
            runner.reset()
        out = runner.step(low, hints).image
        temporal = temporal_upscaler.step(low, hints)
        jitter = torch.from_numpy(np.asarray(low.jitter, np.float32))[None]
        bicubic = to_image(bicubic_upscale(to_tensor(low.color), size, jitter))
        truth = ref.load(frame, 1.0).color if ref else high.color
        truth_tm.append(tonemap_ldr(truth))
        motions.append(None if hints.cut else upscale_motion(to_tensor(low.motion_prev), size))
        scored = (("network", out), ("bicubic", bicubic), ("temporal", temporal)) + ((("native", high.color),) if ref else ())
        for name, image in scored:
            per_method[name].append((flip(truth, image).mean, psnr(tonemap_ldr(truth), tonemap_ldr(image)), tonemap_ldr(image)))
        if frame in shown_frames:
            path = Path(crops) / f"{Path(root).name}_frame{frame:04d}.png"
            written.append({"frame": frame, **save_comparison_crops(
                path, {"bicubic": bicubic, "temporal": temporal, "network": out, "native": high.color},
                flip(high.color, bicubic).error_map)})
        previous = low
    report = {"dataset": str(root), "frames": len(frames), "scale": scale, **({"history": "reset"} if reset_history else {}),
              **reference_fields(ref, reference)}
    if written:
        report["crops"] = written
    for name, rows in per_method.items():
        report[name] = {**summarize([r[0] for r in rows], [r[1] for r in rows]),
                        "instability": temporal_instability([r[2] for r in rows], truth_tm, motions),
                        "flip_per_frame": {frame: round(float(r[0]), 6) for frame, r in zip(frames, rows)}}
    report["flip_reduction_vs_bicubic"] = 1 - report["network"]["flip_mean"] / report["bicubic"]["flip_mean"]
    report["flip_reduction_vs_temporal"] = 1 - report["network"]["flip_mean"] / report["temporal"]["flip_mean"]
    return report


# --- the workload unit ------------------------------------------------------------------------------------

class _Replay(torch.nn.Module):
    """Stands in for the slow branch on a simulated cache hit in training: returns the stored features."""

    def __init__(self, features: torch.Tensor):
        super().__init__()
        self.features = features

    def forward(self, *args) -> torch.Tensor:
        return self.features


def _correction(config) -> str:
    """The resolve's correction setting where the design has one (v2, v3, v4); v1 and split add theirs freely."""
    from reframe_core.networks.supersampling import SupersamplingNet

    return config.correction if config.design in SupersamplingNet.RESOLVING_DESIGNS else "free"


def crop_sizes(crop: int, scale: float) -> tuple[int, int]:
    """(low-res, display) sides of a training crop near ``crop`` display pixels whose ratio is the scale exactly
    (1.5: 42 low-res pixels to 63, not 43 to 64, which would shift the samples by up to 0.4 pixel across it)."""
    first = max(1, int(round(crop / scale)))
    low = min(range(first, max(0, first - 4), -1), key=lambda n: abs(n * scale - round(n * scale)))
    return low, int(round(low * scale))


@dataclass
class _TrainingFrame:
    color: torch.Tensor  # (3, h, w)
    gbuffer: torch.Tensor  # (7, h, w)
    jitter: torch.Tensor  # (2,)
    motion: torch.Tensor  # (2, H, W) display pixels
    target: torch.Tensor  # (3, H, W)
    depth: torch.Tensor  # (1, h, w), 0 where no surface (the history test, as at inference)


class SupersamplingWorkload(Workload):
    """Temporal supersampling: each frame rendered at 1/scale with Halton jitter, brought to display size."""

    name, arch, title, baseline_name, fallback_name = "ss", "ss", "supersampling", "bicubic", "bicubic"
    paper_delta = 0.25  # FBSR's threshold in the reference code

    def shipped_scales(self) -> list[float]:
        from reframe_core.weights import SHIPPED

        return sorted(float(p.stem[len("ss_x"):]) for p in SHIPPED.glob("ss_x*.pt"))

    def check_scale(self, scale: float) -> None:
        if not 1.0 < scale <= 4.0:
            raise SettingsError(f"supersampling scale {scale:g} is out of range: use 1.5, 2 or 3 (per axis)")

    def render_request(self, scale: float, full: bool) -> RenderRequest:
        return RenderRequest(scale=scale, jitter=True, cheap=False)

    def runner(self, model, display_size, placement=None) -> "Supersampler":
        return Supersampler(model, tuple(display_size), placement)

    def example_inputs(self, model, display_size, frame: FrameBuffers | None = None, scale: float = 2.0) -> tuple:
        if frame is None:
            from reframe_core.networks import get_network

            return get_network(self.arch).example_inputs(*display_size, scale=scale)
        return ss_inputs(frame, None, tuple(display_size))

    def baseline(self, frame: FrameBuffers, display_size) -> np.ndarray:
        jitter = torch.from_numpy(np.asarray(frame.jitter, np.float32))[None]
        return to_image(bicubic_upscale(to_tensor(frame.color), tuple(display_size), jitter))

    def evaluate(self, model, root, scale: float = 2.0, frames=None, crops=None, reset_history: bool = False,
                 reference=None, **options) -> dict:
        return evaluate_supersampling(model, root, scale, frames, crops, reset_history, reference)

    def format_evaluation(self, reports: list[dict]) -> str:
        # "temporal" is the non-neural accumulating upscaler; "vs bic" / "vs temp" are the network's FLIP reductions.
        lines = [f"{'dataset':<22} {'frames':>6} {'FLIP net':>9} {'FLIP bicubic':>12} {'FLIP temporal':>13} {'vs bic':>7} "
                 f"{'vs temp':>7} {'PSNR net':>9} {'PSNR bic':>9} {'instab net':>10} {'instab bic':>10} {'instab temp':>11}"]
        for r in reports:
            n, b, t = r["network"], r["bicubic"], r["temporal"]
            lines.append(f"{Path(r['dataset']).name:<22} {r['frames']:>6} {n['flip_mean']:>9.4f} {b['flip_mean']:>12.4f} "
                         f"{t['flip_mean']:>13.4f} {r['flip_reduction_vs_bicubic']:>7.1%} {r['flip_reduction_vs_temporal']:>7.1%} "
                         f"{n['psnr_mean']:>9.2f} {b['psnr_mean']:>9.2f} {n['instability']:>10.4f} {b['instability']:>10.4f} "
                         f"{t['instability']:>11.4f}")
        if any(r.get("history") == "reset" for r in reports):
            lines.append("net: history reset on every frame (--reset-history)")
        return "\n".join(lines + reference_lines(reports))

    # Training: random crops of short sequences; the network's own previous output, warped by motion, is fed
    # back as history (truncated back-propagation through the sequence), so training sees what inference sees.
    def training_network(self, config):
        from reframe_core.networks import get_network

        arch_config = {"width": config.width, "design": config.design}
        if config.resolve_kernel != 1:  # v3 only; older weights files do not carry it
            arch_config["resolve_kernel"] = config.resolve_kernel
        if _correction(config) != "free":  # older weights files do not carry it
            arch_config["correction"] = _correction(config)
        if config.design == "v4":
            arch_config["slow_width"] = config.slow_width or config.width
        return arch_config, get_network(self.arch).build(**arch_config)

    def grown_network(self, model, stored: dict, arch_config: dict, added_from=None):
        """The network ``arch_config`` describes, computing exactly what ``model`` (built from ``stored``) does,
        where one can be made: design v4 from v2 with the same width and correction. None otherwise."""
        from reframe_core.networks.supersampling import v4_from_v2

        others = lambda config: {k: v for k, v in config.items() if k not in ("design", "slow_width")}  # noqa: E731
        if stored.get("design", "v2") != "v2" or arch_config.get("design") != "v4" or others(stored) != others(arch_config):
            return None
        return v4_from_v2(model, arch_config["slow_width"], added_from=added_from).train()

    def training_sequences(self, roots, config) -> list[list[_TrainingFrame]]:
        from reframe_core.frames.dataset import Dataset, runs_between_cuts
        from reframe_core.frames.ranges import parse_frames

        scale = config.scale
        length = config.history_burn_in + config.sequence
        sequences: list[list[_TrainingFrame]] = []
        too_short = []
        for root in roots:
            data = Dataset.open(root)
            if scale not in data.scales or 1.0 not in data.scales:
                raise SettingsError(f"{root} lacks scale {scale:g} or scale 1 (has {data.scales}); capture with --scales 1,{scale:g}")

            def item(low, frame, data=data):
                high = data.load(frame, 1.0)
                return _TrainingFrame(to_tensor(low.color)[0], to_tensor(gbuffer(low))[0], torch.tensor(low.jitter),
                                      upscale_motion(to_tensor(low.motion_prev), high.color.shape[:2])[0], to_tensor(high.color)[0],
                                      surface_depth(low.depth, low.alpha)[0])

            runs = runs_between_cuts(data, scale, item, frames=parse_frames(config.frames) if config.frames else None)
            longest = max((len(r) for r in runs), default=0)
            if runs and longest < length:
                too_short.append(f"{root} ({longest})")
            sequences += runs
        # Training samples only runs of the full length, so a dataset without one would silently drop out of the mix
        # (or, when none has one, leave nothing to train on): name each such dataset with its longest run.
        if too_short:
            raise SettingsError(f"no run of {length} frames without a camera cut ({config.history_burn_in} burn-in + "
                                f"{config.sequence} trained) in {', '.join(too_short)}; the longest run of each in "
                                "brackets: lower --sequence / --history-burn-in, capture more frames, or leave it out of --data")
        return sequences

    def training_batch(self, sequences, config, generator) -> dict:
        """Tensors shaped (T, B, C, H, W) for random sequence windows and crops; T counts the burn-in frames
        (``config.history_burn_in``) first, then the trained ones (``config.sequence``)."""
        length = config.history_burn_in + config.sequence
        usable = [s for s in sequences if len(s) >= length]
        if not usable:
            longest = max((len(s) for s in sequences), default=0)
            raise SettingsError(f"no run of {length} frames without a camera cut in the data ({config.history_burn_in} burn-in + "
                                f"{config.sequence} trained; the longest run has {longest}): capture longer sequences or "
                                "lower --sequence / --history-burn-in")
        low_crop, crop = crop_sizes(config.crop, config.scale)
        batch = {k: [] for k in ("color", "gbuffer", "jitter", "motion", "target", "depth")}
        for _ in range(config.batch):
            seq = usable[int(torch.randint(len(usable), (1,), generator=generator))]
            start = int(torch.randint(len(seq) - length + 1, (1,), generator=generator))
            height, width = seq[0].target.shape[-2:]
            low_height, low_width = seq[0].color.shape[-2:]
            lx = int(torch.randint(low_width - low_crop + 1, (1,), generator=generator))
            ly = int(torch.randint(low_height - low_crop + 1, (1,), generator=generator))
            # Where a side does not divide by the scale (256 / 1.5 renders 171 pixels), the display pixel a
            # low-res crop starts at is fractional: the crop starts at the nearest one, and the jitter takes the
            # rest, so that the network reads each sample where it was rendered at the crop's centre (0 where the
            # scale divides; the frame's ratio, 256 / 171, differs from the crop's, 1.5, by 0.06 pixel at its edges).
            hx = min(int(round(lx * width / low_width)), width - crop)
            hy = min(int(round(ly * height / low_height)), height - crop)
            shift = torch.tensor([(hx + crop / 2) * low_width / width - lx - low_crop / 2,
                                  (hy + crop / 2) * low_height / height - ly - low_crop / 2])
            window = seq[start:start + length]
            batch["color"].append(torch.stack([f.color[:, ly:ly + low_crop, lx:lx + low_crop] for f in window]))
            batch["gbuffer"].append(torch.stack([f.gbuffer[:, ly:ly + low_crop, lx:lx + low_crop] for f in window]))
            batch["depth"].append(torch.stack([f.depth[:, ly:ly + low_crop, lx:lx + low_crop] for f in window]))
            batch["jitter"].append(torch.stack([f.jitter - shift for f in window]))
            batch["motion"].append(torch.stack([f.motion[:, hy:hy + crop, hx:hx + crop] for f in window]))
            batch["target"].append(torch.stack([f.target[:, hy:hy + crop, hx:hx + crop] for f in window]))
        out = {k: torch.stack(v, dim=1) for k, v in batch.items()}
        out["burn_in"] = config.history_burn_in
        if config.cache_in_loop > 0:
            # Per frame of the window, for the whole batch: True = a cache hit (the first frame always computes).
            reuse = torch.rand(length, generator=generator) < config.cache_in_loop
            reuse[0] = False
            out["reuse"] = reuse
        return out

    def training_loss(self, model, batch, device, kind: str = "log1p") -> torch.Tensor:
        """:func:`reframe_core.training.image_loss` over every trained frame of the unrolled sequence (the
        burn-in frames before them only age the history, without gradient)."""
        from reframe_core.training import image_loss

        frames = batch["color"].shape[0]
        burn_in = batch.get("burn_in", 0)
        size = batch["target"].shape[-2:]
        previous = previous_depth = None
        loss = 0.0
        warp_mode = history_warp_mode(model)
        reuse = batch.get("reuse")
        slow = model.slow
        cached: list[torch.Tensor] = []
        keep = slow.register_forward_hook(lambda module, args, output: cached.__setitem__(slice(None), [output]))
        try:
            for t in range(frames):
                color = batch["color"][t].to(device)
                jitter = batch["jitter"][t].to(device)
                depth = batch["depth"][t].to(device)
                history = bicubic_upscale(color, size, jitter)
                if previous is not None:
                    flow = batch["motion"][t].to(device)
                    history = checked_history(backward_warp(previous, flow, mode=warp_mode), flow, history, jitter, depth,
                                              previous_depth)
                previous_depth = display_depth(depth, jitter, size)
                if reuse is not None and bool(reuse[t]):
                    model.slow = _Replay(cached[0])  # a hit: the slow branch's features of an earlier frame
                with torch.set_grad_enabled(t >= burn_in and torch.is_grad_enabled()):
                    out = model(color, batch["gbuffer"][t].to(device), jitter, history)
                model.slow = slow
                if t >= burn_in:
                    loss = loss + image_loss(out, batch["target"][t].to(device), kind)
                previous = out
        finally:
            model.slow = slow
            keep.remove()
        return loss / (frames - burn_in)

    def card_fields(self, config) -> dict:
        return {"scale": config.scale, "design": config.design, "correction": _correction(config), "cache_in_loop": config.cache_in_loop,
                "history_burn_in": config.history_burn_in}
