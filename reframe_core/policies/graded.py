"""``FULL/PARTIAL``: graded refresh -- two policies, one per depth of the cache.

The cache keeps features at two depths: the usual cut, reused on hits, and a deeper one stored at full
refreshes. ``FULL`` decides, against the last full refresh, when the deep features are stale (the whole
network runs); otherwise ``PARTIAL`` decides, against the last refresh of either grade, when the shallower
cached features are: then only the part of the network between the two cuts runs, from the current inputs
and the deep features, and the following hits reuse its fresh result. Moderate change then costs a partial
pass instead of a full one. Example: ``screen:px=16,holes=0.1/screen:px=2`` (full refresh after 16 pixels of
image motion or 10 % unseen, partial after 2 pixels), ``every:8/every:2``.
"""
from __future__ import annotations

from dataclasses import replace

from reframe_core.errors import SettingsError
from reframe_core.policies.base import FrameContext, RefreshPolicy


class GradedRefresh(RefreshPolicy):
    name = "/"
    usage = "FULL/PARTIAL   (two specs, e.g. screen:px=16/screen:px=2 or every:8/every:2)"
    summary = "graded refresh: FULL runs the whole network, PARTIAL only the part above a deeper cut"

    def __init__(self, full: RefreshPolicy, partial: RefreshPolicy):
        if isinstance(full, GradedRefresh) or isinstance(partial, GradedRefresh):
            raise SettingsError("a graded policy has exactly two grades (FULL/PARTIAL), not more")
        self.full, self.partial = full, partial
        self.reads_depth = full.reads_depth or partial.reads_depth
        self._since_any = 0  # frames since the last refresh of either grade

    @classmethod
    def from_spec(cls, positional, options):  # pragma: no cover - built by the parser from "A/B"
        raise NotImplementedError

    def check(self, ctx: FrameContext) -> str | None:
        """A reason for a full refresh (``ctx.frames_since_refresh`` counts from the last full one)."""
        return self.full.check(ctx)

    def partial_context(self, ctx: FrameContext) -> FrameContext:
        """``ctx`` as the partial grade sees it: frames counted from the last refresh of either grade."""
        return replace(ctx, frames_since_refresh=self._since_any)

    def check_partial(self, ctx: FrameContext) -> str | None:
        """A reason for a partial refresh, asked when no full refresh is due."""
        return self.partial.check(self.partial_context(ctx))

    def advance(self) -> None:
        """One more frame seen (the cache calls this every frame, after deciding)."""
        self._since_any += 1

    def observe_refresh(self, ctx: FrameContext) -> None:
        self.full.observe_refresh(ctx)
        self.partial.observe_refresh(ctx)  # a full refresh is fresh at every depth
        self._since_any = 0

    def observe_partial(self, ctx: FrameContext) -> None:
        self.partial.observe_refresh(self.partial_context(ctx))
        self._since_any = 0

    def reset(self) -> None:
        self.full.reset()
        self.partial.reset()
        self._since_any = 0

    @property
    def spec(self) -> str:
        return f"{self.full.spec}/{self.partial.spec}"
