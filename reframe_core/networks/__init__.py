"""Reference networks, each a plain ``nn.Module`` in its own file. A new one is a file plus a line here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from reframe_core.errors import SettingsError
from reframe_core.networks import extranet, supersampling, unet, unetpp


@dataclass(frozen=True)
class NetworkEntry:
    build: Callable[..., nn.Module]
    example_inputs: Callable[..., tuple[torch.Tensor, ...]]
    summary: str


NETWORKS: dict[str, NetworkEntry] = {
    "unet": NetworkEntry(unet.build, unet.example_inputs, "4-level U-Net (ReFrame's demo network)"),
    "unetpp": NetworkEntry(unetpp.build, unetpp.example_inputs, "4-level U-Net++ (nested skip paths)"),
    "ss": NetworkEntry(supersampling.build, supersampling.example_inputs, "temporal supersampling (fast colour branch, cached G-buffer U-Net)"),
    "extranet": NetworkEntry(extranet.build, extranet.example_inputs, "ExtraNet frame extrapolation (gated convs, history branch)"),
}


def get_network(name: str) -> NetworkEntry:
    if name not in NETWORKS:
        raise SettingsError(f"unknown network {name!r}; known: {', '.join(NETWORKS)}")
    return NETWORKS[name]
