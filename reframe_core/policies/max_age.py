"""``max-age:K``: never reuse a cache older than K frames (a safety net to compose with other policies)."""
from __future__ import annotations

from reframe_core.errors import SettingsError
from reframe_core.policies.base import FrameContext, RefreshPolicy


class MaxAge(RefreshPolicy):
    name = "max-age"
    usage = "max-age:K   (K >= 1 integer: at most K-1 hits in a row)"
    summary = "refresh when the cache is K frames old"
    reads_depth = False

    def __init__(self, k: int):
        if int(k) != k or k < 1:
            raise SettingsError(f"max-age:K needs an integer K >= 1, got {k}")
        self.k = int(k)

    @classmethod
    def from_spec(cls, positional, options):
        if len(positional) != 1 or options:
            raise SettingsError("max-age takes exactly one integer, e.g. max-age:8")
        return cls(int(positional[0]))

    def check(self, ctx: FrameContext) -> str | None:
        if ctx.frames_since_refresh >= self.k:
            return f"max-age:{self.k} (cache {ctx.frames_since_refresh} frames old)"
        return None

    @property
    def spec(self) -> str:
        return f"max-age:{self.k}"
