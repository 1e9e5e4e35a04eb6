"""``always``: refresh every frame -- the uncached baseline through the same code path."""
from __future__ import annotations

from reframe_core.errors import SettingsError
from reframe_core.policies.base import FrameContext, RefreshPolicy


class AlwaysRefresh(RefreshPolicy):
    name = "always"
    usage = "always"
    summary = "refresh every frame (baseline: identical to the uncached network)"
    reads_depth = False

    @classmethod
    def from_spec(cls, positional, options):
        if positional or options:
            raise SettingsError("'always' takes no arguments")
        return cls()

    def check(self, ctx: FrameContext) -> str | None:
        return "always"

    @property
    def spec(self) -> str:
        return "always"
