"""Training of the shipped networks on datasets written by ``reframe-blender dataset``.

CPU by default (a GPU is used when present), deterministic for a seed, resumable from the last checkpoint
(``OUT.ckpt``, written atomically every ``checkpoint_every`` steps), loss logged to ``OUT.log.jsonl``.

SS: random crops of short sequences; the network's own previous output, warped by motion, is fed back as
history (truncated back-propagation through the sequence), so training sees what inference sees.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reframe_core.frames.buffers import atomic_write
from reframe_core.frames.dataset import Dataset
from reframe_core.networks import get_network
from reframe_core.workloads.extrapolation import FEATURE_ALBEDO, N_CHANNELS, decode, encode, feature_tensor, fe_inputs, input_space, warp_history
from reframe_core.workloads.supersampling import bicubic_upscale, gbuffer, history_warp_mode, upscale_motion
from reframe_core.frames.warp import backward_warp, to_tensor
from reframe_core.weights import save_weights


@dataclass
class TrainConfig:
    workload: str
    data: list[str]
    out: str
    steps: int = 3000
    batch: int = 4
    sequence: int = 4
    crop: int = 96  # display-resolution crop side
    lr: float = 2e-3
    seed: int = 0
    scale: float = 2.0
    width: int = 24
    design: str = "v2"  # SS network design (networks.supersampling: "v1", "v2" or "split")
    fe_inputs: str = "shading"  # FE colour space (networks.extranet: "shading" or "color")
    fe_residual: str = "holes"  # FE: where the head's residual applies (networks.extranet: "full" or "holes")
    checkpoint_every: int = 100
    stop_after: int | None = None  # steps to run in this invocation (then checkpoint and stop); None: all
    held_out: list[str] = field(default_factory=list)  # recorded in the model card
    loss: str = "log1p"  # "log1p": L1 of log(1 + colour); "tonemap": L1 after the metrics' display tonemap


LOSSES = ("log1p", "tonemap", "tonemap-grad")


def tonemap_torch(linear: torch.Tensor) -> torch.Tensor:
    """:func:`metrics.tonemap_ldr` in torch (Reinhard, then sRGB), with finite gradients at 0."""
    c = linear.clamp(min=0)
    c = c / (1 + c)
    return torch.where(c <= 0.0031308, 12.92 * c, 1.055 * c.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def _gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return image[..., :, 1:] - image[..., :, :-1], image[..., 1:, :] - image[..., :-1, :]


def image_loss(out: torch.Tensor, target: torch.Tensor, kind: str = "log1p") -> torch.Tensor:
    """L1 in log space, or in the display space FLIP is computed in (``tonemap``); ``tonemap-grad`` adds the
    L1 of the display images' pixel differences, which punishes blur and added texture as FLIP's edge and
    point features do (a plain L1 is lowest for a blurred guess where the answer is uncertain)."""
    if kind in ("tonemap", "tonemap-grad"):
        a, b = tonemap_torch(out), tonemap_torch(target)
        loss = F.l1_loss(a, b)
        if kind == "tonemap-grad":
            for da, db in zip(_gradients(a), _gradients(b)):
                loss = loss + F.l1_loss(da, db)
        return loss
    return F.l1_loss(torch.log1p(out), torch.log1p(target))


@dataclass
class _Frame:
    color: torch.Tensor  # (3, h, w)
    gbuffer: torch.Tensor  # (7, h, w)
    jitter: torch.Tensor  # (2,)
    motion: torch.Tensor  # (2, H, W) display pixels
    target: torch.Tensor  # (3, H, W)


def _runs_between_cuts(data: Dataset, scale: float, make_item) -> list[list]:
    """``make_item(buffers, frame)`` for every frame at ``scale``, split into runs at camera cuts."""
    runs: list[list] = []
    previous = None
    for frame in data.frames(scale):
        buffers = data.load(frame, scale)
        if buffers.camera.hints(previous.camera if previous else None).cut or not runs:
            runs.append([])
        runs[-1].append(make_item(buffers, frame))
        previous = buffers
    return runs


def load_ss_sequences(roots: list[str], scale: float) -> list[list[_Frame]]:
    """Every dataset's frames at ``scale`` with their scale-1 targets, split into runs at camera cuts."""
    sequences: list[list[_Frame]] = []
    for root in roots:
        data = Dataset.open(root)
        if scale not in data.scales or 1.0 not in data.scales:
            raise ValueError(f"{root} lacks scale {scale:g} or scale 1 (has {data.scales}); capture with --scales 1,{scale:g}")

        def item(low, frame):
            high = data.load(frame, 1.0)
            return _Frame(to_tensor(low.color)[0], to_tensor(gbuffer(low))[0], torch.tensor(low.jitter),
                          upscale_motion(to_tensor(low.motion_prev), high.color.shape[:2])[0], to_tensor(high.color)[0])

        sequences += _runs_between_cuts(data, scale, item)
    return sequences


def _sample_ss(sequences, config: TrainConfig, generator: torch.Generator):
    """A batch: tensors shaped (T, B, C, H, W) for a random sequence window and crop."""
    usable = [s for s in sequences if len(s) >= config.sequence]
    if not usable:
        raise ValueError(f"no run of {config.sequence} frames without a camera cut in the data; capture longer sequences")
    crop = config.crop
    low_crop = int(round(crop / config.scale))
    batch = {k: [] for k in ("color", "gbuffer", "jitter", "motion", "target")}
    for _ in range(config.batch):
        seq = usable[int(torch.randint(len(usable), (1,), generator=generator))]
        start = int(torch.randint(len(seq) - config.sequence + 1, (1,), generator=generator))
        height, width = seq[0].target.shape[-2:]
        lx = int(torch.randint(int(width / config.scale) - low_crop + 1, (1,), generator=generator))
        ly = int(torch.randint(int(height / config.scale) - low_crop + 1, (1,), generator=generator))
        hx, hy = int(round(lx * config.scale)), int(round(ly * config.scale))
        window = seq[start:start + config.sequence]
        batch["color"].append(torch.stack([f.color[:, ly:ly + low_crop, lx:lx + low_crop] for f in window]))
        batch["gbuffer"].append(torch.stack([f.gbuffer[:, ly:ly + low_crop, lx:lx + low_crop] for f in window]))
        batch["jitter"].append(torch.stack([f.jitter for f in window]))
        batch["motion"].append(torch.stack([f.motion[:, hy:hy + crop, hx:hx + crop] for f in window]))
        batch["target"].append(torch.stack([f.target[:, hy:hy + crop, hx:hx + crop] for f in window]))
    return {k: torch.stack(v, dim=1) for k, v in batch.items()}


def ss_sequence_loss(model, batch, device, kind: str = "log1p") -> torch.Tensor:
    """:func:`image_loss` over every frame of the unrolled sequence."""
    frames = batch["color"].shape[0]
    size = batch["target"].shape[-2:]
    previous = None
    loss = 0.0
    warp_mode = history_warp_mode(model)
    for t in range(frames):
        color = batch["color"][t].to(device)
        jitter = batch["jitter"][t].to(device)
        history = bicubic_upscale(color, size, jitter) if previous is None else backward_warp(previous, batch["motion"][t].to(device), mode=warp_mode)
        out = model(color, batch["gbuffer"][t].to(device), jitter, history)
        loss = loss + image_loss(out, batch["target"][t].to(device), kind)
        previous = out
    return loss / frames


@dataclass
class _FEFrame:
    color: torch.Tensor  # (3, H, W)
    motion_prev: torch.Tensor  # (2, H, W)
    motion_next: torch.Tensor
    feature: torch.Tensor  # (7, H, W)


def load_fe_sequences(roots: list[str]) -> list[list[_FEFrame]]:
    """Every dataset's scale-1 frames, split into runs at camera cuts."""
    def item(fb, frame):
        return _FEFrame(to_tensor(fb.color)[0], to_tensor(fb.motion_prev)[0], to_tensor(fb.motion_next)[0],
                        feature_tensor(fb)[0])

    return [run for root in roots for run in _runs_between_cuts(Dataset.open(root), 1.0, item)]


def _sample_fe(sequences, config: TrainConfig, generator: torch.Generator):
    """Windows of 4 frames (t-3 .. t) and a crop, as (T, B, C, H, W) tensors."""
    usable = [s for s in sequences if len(s) >= 4]
    if not usable:
        raise ValueError("no run of 4 frames without a camera cut in the data; capture longer sequences")
    crop = config.crop
    fields = ("color", "motion_prev", "motion_next", "feature")
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


def fe_loss(model, batch, device, kind: str = "log1p") -> torch.Tensor:
    """Extrapolate frame t from rendered frames t-3..t-1; :func:`image_loss` against the rendered frame t."""
    b = {k: v.to(device) for k, v in batch.items()}
    space, mode = input_space(model), history_warp_mode(model)
    albedo = [f[:, FEATURE_ALBEDO] for f in b["feature"]]
    colors, masks = [encode(b["color"][0], albedo[0], space)], [torch.ones_like(b["color"][0][:, :1])]
    for t in (1, 2):
        colors, masks = warp_history(colors, masks, b["motion_prev"][t], mode=mode)
        colors.append(encode(b["color"][t], albedo[t], space))
        masks.append(torch.ones_like(masks[0]))
    colors, masks = warp_history(colors, masks, b["motion_prev"][3], mode=mode)
    inputs = fe_inputs(colors, masks, b["motion_prev"][3], b["motion_next"][2], b["feature"][3])
    out = decode(model(*inputs), albedo[3], space)
    return image_loss(out, b["color"][3], kind)


def _checkpoint_path(config: TrainConfig) -> Path:
    return Path(config.out).with_suffix(".ckpt")


def train(config: TrainConfig, show_progress: bool = True) -> dict:
    """Train (resuming if a checkpoint of the same config exists) and write the weights to ``config.out``."""
    from tqdm import tqdm

    if config.workload not in ("ss", "fe"):
        raise ValueError(f"unknown workload {config.workload!r}: 'ss' or 'fe'")
    if config.loss not in LOSSES:
        raise ValueError(f"unknown loss {config.loss!r}: one of {', '.join(LOSSES)}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(config.seed)
    if config.workload == "ss":
        arch, arch_config = "ss", {"width": config.width, "design": config.design}
    else:
        arch, arch_config = "extranet", {"n_channels": N_CHANNELS, "inputs": config.fe_inputs, "residual": config.fe_residual}
    model = get_network(arch).build(**arch_config).to(device)
    if config.workload == "fe":
        # The head adds a residual to the warped history: starting it at zero starts training from
        # (demodulated) reprojection, a strong baseline, instead of from noise added to it.
        torch.nn.init.zeros_(model.outc.weight)
        torch.nn.init.zeros_(model.outc.bias)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=config.lr * 0.05)
    generator = torch.Generator().manual_seed(config.seed)
    step = 0
    try:  # the weights, checkpoint and log go beside --out: make its folder, as the dataset command does
        Path(config.out).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the folder of --out {config.out}: {exc.strerror or exc}; choose a writable --out") from None
    log_path = Path(config.out).with_suffix(".log.jsonl")
    ckpt = _checkpoint_path(config)
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        if {**state["config"], "stop_after": None} != {**asdict(config), "stop_after": None}:
            raise ValueError(f"{ckpt} was written by another training configuration; delete it or use another --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        running = state.get("running")
    if config.workload == "ss":
        sequences = load_ss_sequences(config.data, config.scale)
        sample, loss_of = _sample_ss, ss_sequence_loss
    else:
        sequences = load_fe_sequences(config.data)
        sample, loss_of = _sample_fe, fe_loss
    frames = sum(len(s) for s in sequences)
    bar = tqdm(total=config.steps, initial=step, desc=f"train {config.workload}", unit="step", disable=not show_progress)
    started = time.perf_counter()
    model.train()
    if not ckpt.exists():
        running = None
    last = config.steps if config.stop_after is None else min(config.steps, step + config.stop_after)
    while step < last:
        batch = sample(sequences, config, generator)
        loss = loss_of(model, batch, device, config.loss)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        value = float(loss.detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        with open(log_path, "a") as log:
            log.write(json.dumps({"step": step, "loss": value, "lr": scheduler.get_last_lr()[0]}) + "\n")
        if step % config.checkpoint_every == 0 or step == last:
            state = {"config": asdict(config), "running": running, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                     "torch_rng": torch.get_rng_state(), "step": step}
            atomic_write(ckpt, lambda tmp: torch.save(state, tmp))
    bar.close()
    if step < config.steps:
        return {"stopped_at": step, "steps": config.steps, "train_frames": frames, "final_loss_ema": running,
                "train_data": [Path(d).name for d in config.data], "seconds_this_run": round(time.perf_counter() - started, 1),
                "device": device}
    card = {"workload": config.workload, "scale": config.scale if config.workload == "ss" else 1.0, "steps": config.steps, "batch": config.batch,
            "sequence": config.sequence, "crop": config.crop, "seed": config.seed, "loss": config.loss, "design": config.design if config.workload == "ss" else None,
            "fe_inputs": config.fe_inputs if config.workload == "fe" else None,
            "fe_residual": config.fe_residual if config.workload == "fe" else None, "lr": config.lr,
            "train_data": [Path(d).name for d in config.data], "held_out": config.held_out,
            "train_frames": frames, "final_loss_ema": running, "device": device,
            "seconds_this_run": round(time.perf_counter() - started, 1)}
    save_weights(config.out, arch, arch_config, model.cpu().eval(), card)
    return card
