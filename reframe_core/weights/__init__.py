"""Shipped network weights and their safe loading.

A weights file is ``torch.save`` of a plain dict: ``format``, ``arch`` (a name in ``networks.NETWORKS``),
``config`` (constructor keyword arguments), ``state_dict`` and ``card`` (training facts). It is always
loaded with ``torch.load(..., weights_only=True)``. The model card of each shipped file sits beside it (``.md``).

Checkpoints of the original ExtraNet code (github.com/fuxihao66/ExtraNet, ``Model/train.py``) load too, when
the caller expects ``"extranet"``: its final ``torch.save(model.state_dict(), path)``, its periodic
``torch.save({'epoch': ..., 'state_dict': ..., 'optimizer': ...}, path)`` (as the published
``medieval.pth.tar``), and either with the ``module.`` prefix ``nn.DataParallel`` adds. They build the published
configuration (:data:`PUBLISHED`): 18 input channels, linear colour, the residual added everywhere.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from reframe_core.networks import NETWORKS
from reframe_core.errors import ReframeError

FORMAT = "reframe-weights/1"
SHIPPED = Path(__file__).resolve().parent
# Architectures whose original (untagged) state dicts load, and the constructor arguments of their published
# configuration: ExtraNet(18, 3) of the original code.
PUBLISHED = {"extranet": {"n_channels": 18, "n_classes": 3, "skip": True, "inputs": "color", "residual": "full"}}
PLAIN_FORMAT = "plain-state-dict"  # the ``format`` of the payload load_network returns for such a file


class WeightsError(ReframeError, ValueError):
    """A weights file is missing, unreadable or for another architecture; the message names file and network."""


def shipped(name: str) -> Path:
    """Path of a shipped weights file by name (``ss_x2``), without checking it exists."""
    return SHIPPED / f"{name}.pt"


def save_weights(path: str | Path, arch: str, config: dict, model: nn.Module, card: dict) -> None:
    from reframe_core.frames.buffers import atomic_write

    payload = {"format": FORMAT, "arch": arch, "config": dict(config),
               "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, "card": card}
    atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items())


def _plain_state_dict(payload) -> tuple[dict | None, str]:
    """The state dict in an untagged checkpoint, and how it was stored; (None, "") when it holds none."""
    if _is_state_dict(payload):
        stored, how = dict(payload), "a plain state dict"
    elif isinstance(payload, dict) and _is_state_dict(payload.get("state_dict")):
        stored, how = dict(payload["state_dict"]), "a checkpoint with a 'state_dict' entry"
    else:
        return None, ""
    if all(k.startswith("module.") for k in stored):  # saved from nn.DataParallel / DistributedDataParallel
        stored, how = {k[len("module."):]: v for k, v in stored.items()}, how + " ('module.' prefix removed)"
    return stored, how


def _mismatch(own: dict, stored: dict) -> str:
    """'' when ``stored`` has exactly the keys and shapes of ``own``, else a short account of the differences."""
    missing = [k for k in own if k not in stored]
    unexpected = [k for k in stored if k not in own]
    wrong = [k for k in own if k in stored and own[k].shape != stored[k].shape]

    def few(keys: list[str]) -> str:
        return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

    return "; ".join(part for part in (
        f"missing {len(missing)}: {few(missing)}" if missing else "",
        f"unexpected {len(unexpected)}: {few(unexpected)}" if unexpected else "",
        "shape mismatch " + ", ".join(f"{k} {tuple(stored[k].shape)} in the file, {tuple(own[k].shape)} expected"
                                      for k in wrong[:5])
        + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else "") if wrong else "",
    ) if part)


def _load_plain(path: Path, payload, expected_arch: str | None) -> tuple[nn.Module, dict]:
    """An untagged file: an original checkpoint of a network in PUBLISHED, or a WeightsError."""
    expected = f" (expected architecture {expected_arch!r})" if expected_arch else ""
    stored, how = _plain_state_dict(payload)
    if stored is None or expected_arch not in PUBLISHED:
        hint = ("; it is a plain state dict: original checkpoints load only when the expected architecture is "
                + " or ".join(repr(a) for a in PUBLISHED) if stored is not None else "")
        raise WeightsError(f"{path} is not a ReFrame weights file (no '{FORMAT}' format tag){expected}{hint}")
    config = dict(PUBLISHED[expected_arch])
    model = NETWORKS[expected_arch].build(**config)
    own = model.state_dict()
    details = _mismatch(own, stored)
    if details:
        first, last = next(iter(own)), next(reversed(own))
        raise WeightsError(
            f"{path} is {how} without the '{FORMAT}' format tag, read as an original {expected_arch!r} checkpoint, "
            f"but it does not match the published layout: {details}. Expected the state_dict of {expected_arch!r} "
            f"in its published configuration {config}: {len(own)} entries, {first} ... {last}")
    model.load_state_dict(stored)
    card = {"source": f"original {expected_arch} checkpoint: {how}", "file": str(path)}
    if isinstance(payload, dict) and isinstance(payload.get("epoch"), int):
        card["epoch"] = payload["epoch"]
    return model.eval(), {"format": PLAIN_FORMAT, "arch": expected_arch, "config": config, "state_dict": stored,
                          "card": card}


def load_network(path: str | Path, expected_arch: str | None = None, map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """Build the network a weights file describes and load it: returns (model in eval mode, payload).

    A ReFrame weights file (see the module docstring) builds the architecture and config it names. An untagged
    original checkpoint (a state dict, bare or under ``'state_dict'``, ``module.`` prefixes removed) loads when
    ``expected_arch`` is in :data:`PUBLISHED`, into that architecture's published configuration; the returned
    payload then has ``format`` :data:`PLAIN_FORMAT`, that ``config`` and a ``card`` naming the file.
    """
    path = Path(path)
    expected = f" (expected architecture {expected_arch!r})" if expected_arch else ""
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found{expected}; train one with 'reframe-blender train' or "
                           "reinstall the package to restore the shipped weights")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for damaged files
        raise WeightsError(f"cannot read weights file {path}{expected}: the file is damaged or not a torch "
                           f"weights file ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        return _load_plain(path, payload, expected_arch)
    arch = payload.get("arch")
    if expected_arch is not None and arch != expected_arch:
        raise WeightsError(f"{path} holds weights for {arch!r}, expected architecture {expected_arch!r}")
    if arch not in NETWORKS:
        raise WeightsError(f"{path} names an unknown architecture {arch!r}; known: {', '.join(NETWORKS)}")
    model = NETWORKS[arch].build(**payload.get("config", {}))
    stored = payload["state_dict"]
    details = _mismatch(model.state_dict(), stored)
    if details:
        raise WeightsError(f"{path} does not match architecture {arch!r} with config {payload.get('config')}: {details}")
    model.load_state_dict(stored)
    return model.eval(), payload
