"""Where and in what number format a workload runs its network: device, precision, memory layout.

Workload code keeps its own tensors (history, warps) in float32 on ``device``; only the network's inputs
are cast to ``dtype`` (and channels-last) at the call, and its output comes back as float32, so reduced
precision never accumulates through the temporal feedback.

``precision="mixed"``: float32, except the layers a network names in ``reduced_precision_layers()`` (the SS
resolve's display-resolution convolutions, most of a cache hit), which run in bfloat16 where the processor has
bf16 arithmetic (x86 AVX512-BF16 or AMX; a CUDA GPU that supports it); elsewhere everything stays float32, as
:meth:`Placement.describe` says. Measured on this project's CPU (AVX512-BF16), the SS resolve's three layers took
5.7 against 10.5 ms at 256x256 and 184 against 355 ms at 1920x1080 (README, "A bf16 resolve").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from reframe_core.errors import SettingsError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "mixed": torch.float32}


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes in bfloat16 natively (emulated bf16 is slower than float32)."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = (getattr(cpu, "_is_avx512_bf16_supported", None), getattr(cpu, "_is_amx_tile_supported", None))
    return any(check() for check in checks if check is not None)


def reduced_in(module: torch.nn.Module) -> bool:
    """Whether a placed network runs some of its layers in reduced precision (``Placement(precision="mixed")``)."""
    return any(getattr(part, "reduced_precision", None) is not None for part in module.modules())


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
    def reduces_layers(self) -> bool:
        """Whether networks' reducible layers run in bfloat16 here ("mixed" on a device with bf16 arithmetic)."""
        return self.precision == "mixed" and native_bf16(self.device)

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def model(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move a network here (in place, as ``Module.to`` does)."""
        module = module.to(device=self.device, dtype=self.dtype)
        if self.reduces_layers:
            for part in module.modules():
                layers = part.reduced_precision_layers() if hasattr(part, "reduced_precision_layers") else None
                if layers is not None:
                    layers.to(dtype=torch.bfloat16)
                    part.reduced_precision = torch.bfloat16
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

    def describe(self, module: torch.nn.Module | None = None) -> str:
        """Device, precision and layout; for "mixed", what it means here (and, given the placed ``module``, for it)."""
        precision = self.precision
        if precision == "mixed":
            if not self.reduces_layers:
                precision = "mixed (all fp32: no bf16 arithmetic here)"
            elif module is not None and not reduced_in(module):
                precision = "mixed (all fp32: no bf16 layers in this network)"
            else:
                precision = "mixed (bf16 resolve)"
        return f"{self.device} {precision}" + (" channels-last" if self.channels_last else "")
