"""Training of the shipped networks on datasets written by ``reframe-blender dataset``.

CPU by default (a GPU is used when present), deterministic for a seed, resumable from the last checkpoint
(``OUT.ckpt``, written atomically every ``checkpoint_every`` steps), loss logged to ``OUT.log.jsonl``.

What is trained on what (network, sequences, batches, loss, model-card fields) is each workload's business
(:mod:`reframe_core.workloads`); this module is the loop, the losses, checkpoints and the log.
"""
from __future__ import annotations

import inspect
import json
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F

from reframe_core.errors import SettingsError
from reframe_core.frames.buffers import atomic_write
from reframe_core.frames.dataset import Dataset
from reframe_core.weights import load_network, save_weights, shipped
from reframe_core.workloads import get_workload


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
    design: str = "v2"  # SS network design (networks.supersampling: "v1", "v2", "split", "v3" or "v4")
    # SS: chance that a later frame of a training sequence reuses the slow (cached) branch's features of the
    # last frame that computed them, as a cache hit does at inference: the net learns to work with them stale.
    cache_in_loop: float = 0.0
    # SS: frames run before each training sequence, without gradient or loss, so that the history fed back into
    # its first trained frame has aged as it does at inference (a 16-frame shot feeds back 15 outputs; a network
    # trained on 4-frame windows only met fresh history, and on two held-out sets did better with its history reset).
    history_burn_in: int = 0
    slow_width: int = 0  # SS v4: channels of the cached branch's first level (0: width)
    resolve_kernel: int = 1  # SS v3: kernel of the first display-resolution layer (1 or 3)
    correction: str = "range"  # SS v2/v3 resolve (networks.supersampling): "free", "range" (shipped) or "bounded"
    fe_inputs: str = "shading"  # FE colour space (networks.extranet: "shading" or "color")
    fe_residual: str = "holes"  # FE: where the head's residual applies (networks.extranet: "full", "holes" or "relight")
    # FE relight: the cheap-pass dataset (dataset --cheap) of each --data folder, same frames, in the same order
    cheap_data: list[str] = field(default_factory=list)
    checkpoint_every: int = 100
    stop_after: int | None = None  # steps to run in this invocation (then checkpoint and stop); None: all
    held_out: list[str] = field(default_factory=list)  # recorded in the model card
    loss: str = "log1p"  # "log1p": L1 of log(1 + colour); "tonemap": L1 after the metrics' display tonemap;
    # "flip": the reports' FLIP itself (differentiable, after the same tonemap) plus the log1p L1
    frames: str = ""  # "A-B": train on these frames of each dataset only (per-shot fine-tuning); "": all
    init: str = ""  # start from these weights ("shipped": the workload's shipped file; or a path); "": from scratch


LOSSES = ("log1p", "tonemap", "tonemap-grad", "flip")
# What a checkpoint written before a setting existed used, where that differs from the setting's default now.
SETTINGS_BEFORE_THEIR_OPTION = {"correction": "free"}


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
    point features do (a plain L1 is lowest for a blurred guess where the answer is uncertain); ``flip`` is the
    mean LDR-FLIP the reports print (:mod:`reframe_core.evaluation.flip_torch`) plus the log1p L1, which keeps
    the linear colour right where the tonemap flattens it (the output is fed back as the next frame's history).
    ``out`` and ``target`` are (..., 3, H, W)."""
    if kind == "flip":
        from reframe_core.evaluation.flip_torch import flip_mean

        shape = (-1, 3) + tuple(out.shape[-2:])
        flip = flip_mean(tonemap_torch(target).reshape(shape), tonemap_torch(out).reshape(shape), eps=1e-6)
        return flip + F.l1_loss(torch.log1p(out), torch.log1p(target))
    if kind in ("tonemap", "tonemap-grad"):
        a, b = tonemap_torch(out), tonemap_torch(target)
        loss = F.l1_loss(a, b)
        if kind == "tonemap-grad":
            for da, db in zip(_gradients(a), _gradients(b)):
                loss = loss + F.l1_loss(da, db)
        return loss
    return F.l1_loss(torch.log1p(out), torch.log1p(target))


def _checkpoint_path(config: TrainConfig) -> Path:
    return Path(config.out).with_suffix(".ckpt")


def init_weights_path(workload, init: str, scale: float) -> Path:
    """The weights file ``train --init`` names: ``"shipped"`` (the shipped file for ``scale``) or a path."""
    return shipped(workload.weights_name(scale)) if init == "shipped" else Path(init)


def _differing_settings(model: torch.nn.Module, mine: dict, theirs: dict) -> dict:
    """{setting: (mine, theirs)} where two constructor configurations of ``model``'s class differ; a key one side
    leaves out has the constructor's default."""
    defaults = {name: p.default for name, p in inspect.signature(type(model).__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    mine, theirs = {**defaults, **mine}, {**defaults, **theirs}
    return {k: (mine.get(k), theirs.get(k)) for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)}


def _initial_weights(workload, config: TrainConfig, arch_config: dict) -> tuple[dict, torch.nn.Module, dict]:
    """The network of ``config.init`` (fine-tuning): it must be the architecture this command would build."""
    path = init_weights_path(workload, config.init, config.scale)
    model, payload = load_network(path, expected_arch=workload.arch)
    stored = dict(payload.get("config", {}))
    differing = _differing_settings(model, arch_config, stored)
    grown = workload.grown_network(model, stored, arch_config) if differing else None
    if grown is not None:  # a network this one can start from exactly (SS v4 from v2)
        model, stored, differing = grown, arch_config, {}
    if differing:
        said = ", ".join(f"{k} {mine!r} here, {theirs!r} in {path.name}" for k, (mine, theirs) in differing.items())
        raise SettingsError(f"--init {config.init}: {path} is another network configuration ({said}); pass the options "
                            "that match it (--design, --width, --slow-width, --fe-inputs, --fe-residual) or drop --init")
    card = payload.get("card") or {}
    # Named as given, not resolved: a card must not carry this machine's paths, and "shipped" names the file of
    # the shipped weights at the time (the next shipped file may be the network this trains).
    file = f"shipped {path.name}" if config.init == "shipped" else str(config.init)
    return stored, model.train(), {"file": file, "config": dict(payload.get("config", {})), "steps": card.get("steps"),
                                   "train_data": card.get("train_data")}


def train(config: TrainConfig, show_progress: bool = True) -> dict:
    """Train (resuming if a checkpoint of the same config exists) and write the weights to ``config.out``."""
    from tqdm import tqdm

    workload = get_workload(config.workload)
    if config.loss not in LOSSES:
        raise SettingsError(f"unknown loss {config.loss!r}: one of {', '.join(LOSSES)}")
    if not 0 <= config.cache_in_loop < 1:
        raise SettingsError(f"--cache-in-loop must be in [0, 1) (the chance of a simulated cache hit per frame), got {config.cache_in_loop}")
    if config.history_burn_in < 0:
        raise SettingsError(f"--history-burn-in must be 0 or more frames, got {config.history_burn_in}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(config.seed)
    arch_config, model = workload.training_network(config)
    init_card = None
    if config.init:
        arch_config, model, init_card = _initial_weights(workload, config, arch_config)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=config.lr * 0.05)
    generator = torch.Generator().manual_seed(config.seed)
    step = 0
    try:  # the weights, checkpoint and log go beside --out: make its folder, as the dataset command does
        Path(config.out).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"cannot create the folder of --out {config.out}: {exc.strerror or exc}; choose a writable --out") from None
    log_path = Path(config.out).with_suffix(".log.jsonl")
    ckpt = _checkpoint_path(config)
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        # Settings added after a checkpoint was written take their defaults (which is what that run used).
        defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
        defaults.update(SETTINGS_BEFORE_THEIR_OPTION)
        before, now = {**defaults, **state["config"], "stop_after": None}, {**asdict(config), "stop_after": None}
        if before != now:
            changed = ", ".join(f"{k} {before.get(k)!r} then, {now.get(k)!r} now" for k in sorted(set(before) | set(now))
                                if before.get(k) != now.get(k))
            raise SettingsError(f"{ckpt} was written by another training configuration ({changed}); run the same "
                                "command again to continue it, or delete it or use another --out to start anew")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        running = state.get("running")
    sequences = workload.training_sequences(config.data, config)
    sample, loss_of = workload.training_batch, workload.training_loss
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
                "train_data": [Dataset.open(d).label for d in config.data], "seconds_this_run": round(time.perf_counter() - started, 1),
                "device": device}
    card = {"workload": config.workload, **workload.card_fields(config), "steps": config.steps, "batch": config.batch,
            "sequence": config.sequence, "crop": config.crop, "seed": config.seed, "loss": config.loss, "lr": config.lr,
            "train_data": [Dataset.open(d).label for d in config.data], "held_out": config.held_out,
            "train_frames": frames, "frames": config.frames or "all", "init": init_card,
            "final_loss_ema": running, "device": device,
            "seconds_this_run": round(time.perf_counter() - started, 1)}
    save_weights(config.out, workload.arch, arch_config, model.cpu().eval(), card)
    return card


def interpolate_weights(workload_name: str, start: str, end: str, alpha: float, out: str, scale: float = 2.0) -> dict:
    """Write ``(1 - alpha) * start + alpha * end``, parameter by parameter, to ``out``; return its model card.

    ``end`` is a network trained on from ``start`` (``train --init``); the weights between them are WiSE-FT's
    (Wortsman et al., 2022, "Robust fine-tuning of zero-shot models"): a fine-tuned network mixed back towards
    its start often keeps most of what fine-tuning gained while losing less of what the start did well on
    other data. ``start`` of another design that ``end`` grew from (SS v2 under a v4) is first grown into
    ``end``'s design, computing what it computed, with the added parts nothing reads taken from ``end``; so
    the line moves only weights both ends use. Either may be ``shipped``.
    """
    workload = get_workload(workload_name)
    if not 0 <= alpha <= 1:
        raise SettingsError(f"--alpha must be between 0 (the start's weights) and 1 (the end's), got {alpha:g}")
    start_path, end_path = init_weights_path(workload, start, scale), init_weights_path(workload, end, scale)
    first, first_payload = load_network(start_path, expected_arch=workload.arch)
    last, last_payload = load_network(end_path, expected_arch=workload.arch)
    first_config, last_config = dict(first_payload.get("config", {})), dict(last_payload.get("config", {}))
    differing = _differing_settings(last, last_config, first_config)
    if differing:
        grown = workload.grown_network(first, first_config, last_config, added_from=last)
        if grown is None:
            said = ", ".join(f"{k} {b!r} in {start_path.name}, {a!r} in {end_path.name}" for k, (a, b) in differing.items())
            raise SettingsError(f"{start_path} and {end_path} are different networks ({said}), and the first cannot be grown "
                                "into the second: interpolate between a network and one trained on from it")
        first = grown
    ends = first.state_dict(), last.state_dict()
    mixed = {k: torch.lerp(ends[0][k], v, alpha) if v.is_floating_point() else v for k, v in ends[1].items()}
    last.load_state_dict(mixed)
    card = dict(last_payload.get("card") or {})
    named = lambda given, path: f"shipped {path.name}" if given == "shipped" else str(given)  # noqa: E731  as train --init
    card["interpolated"] = {"start": named(start, start_path), "start_config": first_config,
                            "start_steps": (first_payload.get("card") or {}).get("steps"),
                            "end": named(end, end_path), "alpha": alpha}
    save_weights(out, last_payload.get("arch", workload.arch), last_config, last, card)
    return card
