"""Where and in what number format a workload runs its network: device, precision, memory layout.

Workload code keeps its own tensors (history, warps) in float32 on ``device``; only the network's inputs
are cast to ``dtype`` (and channels-last) at the call, and its output comes back as float32, so reduced
precision never accumulates through the temporal feedback.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from reframe_core.errors import SettingsError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Placement:
    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise SettingsError(f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.device == "auto":  # the GPU when there is one
            object.__setattr__(self, "device", "cuda" if torch.cuda.is_available() else "cpu")
        kind, colon, index = self.device.partition(":")
        # Only what the networks were checked on: torch.device() also accepts mps, xla, meta, cpu:1 ..., which
        # fail (or silently do nothing) later, inside the network.
        if kind not in ("cpu", "cuda") or (colon and (kind == "cpu" or not index.isdigit())):
            raise SettingsError(f"unknown device {self.device!r}: use cpu, cuda, cuda:N or auto")
        if kind == "cuda":
            if not torch.cuda.is_available():
                raise SettingsError(f"device {self.device!r} asked for, but this torch build sees no CUDA GPU "
                                    f"(torch {torch.__version__}); use --device cpu")
            if colon and int(index) >= torch.cuda.device_count():
                raise SettingsError(f"device {self.device!r} asked for, but this machine has "
                                    f"{torch.cuda.device_count()} CUDA GPU(s): use cuda:0 .. "
                                    f"cuda:{torch.cuda.device_count() - 1}")

    @property
    def dtype(self) -> torch.dtype:
        return PRECISIONS[self.precision]

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def model(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move a network here (in place, as ``Module.to`` does)."""
        module = module.to(device=self.device, dtype=self.dtype)
        if not self.channels_last:
            return module
        for part in module.modules():  # networks that pick a memory format per level keep the one asked for
            if hasattr(part, "mixed_memory_format"):
                part.mixed_memory_format = False
        return module.to(memory_format=torch.channels_last)

    def inputs(self, tensors) -> tuple:
        """Network inputs cast for the call."""
        out = []
        for t in tensors:
            t = t.to(device=self.device, dtype=self.dtype)
            if self.channels_last and t.ndim == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            out.append(t)
        return tuple(out)

    def synchronize(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize()

    def describe(self) -> str:
        return f"{self.device} {self.precision}" + (" channels-last" if self.channels_last else "")
