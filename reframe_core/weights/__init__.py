"""Shipped network weights and their safe loading.

A weights file is ``torch.save`` of a plain dict: ``format``, ``arch`` (a name in ``networks.NETWORKS``),
``config`` (constructor keyword arguments), ``state_dict`` and ``card`` (training facts). It is always
loaded with ``torch.load(..., weights_only=True)``. The model card of each shipped file sits beside it (``.md``).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..networks import NETWORKS

FORMAT = "reframe-weights/1"
SHIPPED = Path(__file__).resolve().parent


class WeightsError(ValueError):
    """A weights file is missing, unreadable or for another architecture; the message names file and network."""


def shipped(name: str) -> Path:
    """Path of a shipped weights file by name (``ss_x2``), without checking it exists."""
    return SHIPPED / f"{name}.pt"


def save_weights(path: str | Path, arch: str, config: dict, model: nn.Module, card: dict) -> None:
    from ..buffers import atomic_write

    payload = {"format": FORMAT, "arch": arch, "config": dict(config),
               "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, "card": card}
    atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def load_network(path: str | Path, expected_arch: str | None = None, map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """Build the network a weights file describes and load it: returns (model in eval mode, payload)."""
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
        raise WeightsError(f"{path} is not a ReFrame weights file (no '{FORMAT}' format tag){expected}")
    arch = payload.get("arch")
    if expected_arch is not None and arch != expected_arch:
        raise WeightsError(f"{path} holds weights for {arch!r}, expected architecture {expected_arch!r}")
    if arch not in NETWORKS:
        raise WeightsError(f"{path} names an unknown architecture {arch!r}; known: {', '.join(NETWORKS)}")
    model = NETWORKS[arch].build(**payload.get("config", {}))
    own = model.state_dict()
    stored = payload["state_dict"]
    missing = sorted(set(own) - set(stored))
    unexpected = sorted(set(stored) - set(own))
    wrong = sorted(k for k in set(own) & set(stored) if own[k].shape != stored[k].shape)
    if missing or unexpected or wrong:
        details = "; ".join(part for part in (
            f"missing {', '.join(missing[:5])}" if missing else "",
            f"unexpected {', '.join(unexpected[:5])}" if unexpected else "",
            f"shape mismatch {', '.join(f'{k} {tuple(stored[k].shape)} vs {tuple(own[k].shape)}' for k in wrong[:5])}" if wrong else "",
        ) if part)
        raise WeightsError(f"{path} does not match architecture {arch!r} with config {payload.get('config')}: {details}")
    model.load_state_dict(stored)
    return model.eval(), payload
