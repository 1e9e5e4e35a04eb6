"""``delta:T``: the paper's input-difference policy.

Compares the chosen input with the input stored **at the last refresh** (not the previous frame) by
``smape = 2 * mean(|x - x_c|) / mean(|x| + |x_c|)`` over the whole tensor, and refreshes when
``smape > T``. Thresholds of the reference code: ExtraNet 0.20, FBSR 0.25, Implicit Depth 0.25, U-Net 0.1.
"""
from __future__ import annotations

import torch

from reframe_core.errors import SettingsError
from reframe_core.policies.base import FrameContext, RefreshPolicy, fmt_number, pick_input


def smape(x: torch.Tensor, reference: torch.Tensor) -> float:
    """Symmetric mean absolute percentage error as a ratio of means (ReFrame's formula), in [0, 2]."""
    x = x.float()
    reference = reference.float()
    denominator = (x.abs() + reference.abs()).mean()
    if denominator == 0:
        return 0.0
    return float(2.0 * (x - reference).abs().mean() / denominator)


class DeltaInput(RefreshPolicy):
    name = "delta"
    usage = "delta:T[,input=I]   (T > 0 SMAPE threshold; I: which input tensor, default 0)"
    summary = "refresh when SMAPE(input, input at last refresh) > T"
    reads_depth = False

    def __init__(self, threshold: float, input_index: int = 0):
        if not threshold > 0:
            raise SettingsError(f"delta:T needs a threshold T > 0, got {threshold}")
        if input_index < 0:
            raise SettingsError(f"delta input index must be >= 0, got {input_index}")
        self.threshold = float(threshold)
        self.input_index = int(input_index)
        self._reference: torch.Tensor | None = None
        self.last_value: float | None = None

    @classmethod
    def from_spec(cls, positional, options):
        if len(positional) != 1 or set(options) - {"input"}:
            raise SettingsError("delta takes one threshold and optionally input=I, e.g. delta:0.1 or delta:0.2,input=1")
        return cls(float(positional[0]), int(options.get("input", 0)))

    def check(self, ctx: FrameContext) -> str | None:
        x = pick_input(ctx.inputs, self.input_index, "delta")
        if self._reference is None or self._reference.shape != x.shape:
            return "delta: no reference input"
        self.last_value = smape(x, self._reference)
        if self.last_value > self.threshold:
            return f"delta: smape {self.last_value:.3f} > {fmt_number(self.threshold)}"
        return None

    def observe_refresh(self, ctx: FrameContext) -> None:
        # A copy: callers often reuse their input buffers from frame to frame.
        self._reference = pick_input(ctx.inputs, self.input_index, "delta").detach().clone()

    def reset(self) -> None:
        self._reference = None
        self.last_value = None

    @property
    def spec(self) -> str:
        extra = f",input={self.input_index}" if self.input_index else ""
        return f"delta:{fmt_number(self.threshold)}{extra}"
