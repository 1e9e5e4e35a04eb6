"""``every:N``: DeepCache's fixed schedule -- refresh when the frame index is a multiple of N."""
from __future__ import annotations

from reframe_core.errors import SettingsError
from reframe_core.policies.base import FrameContext, RefreshPolicy


class EveryN(RefreshPolicy):
    name = "every"
    usage = "every:N   (N >= 1 integer)"
    summary = "refresh when frame_index % N == 0 (frame_index counts from the last reset)"
    reads_depth = False

    def __init__(self, n: int):
        if int(n) != n or n < 1:
            raise SettingsError(f"every:N needs an integer N >= 1, got {n}")
        self.n = int(n)

    @classmethod
    def from_spec(cls, positional, options):
        if len(positional) != 1 or options:
            raise SettingsError("every takes exactly one integer, e.g. every:4")
        return cls(int(positional[0]))

    def check(self, ctx: FrameContext) -> str | None:
        return f"every:{self.n} (frame {ctx.index})" if ctx.index % self.n == 0 else None

    @property
    def spec(self) -> str:
        return f"every:{self.n}"
