"""What every refresh policy is: an object that says, each frame, whether the cache is stale and why."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from reframe_core.errors import SettingsError
from reframe_core.frames.hints import CameraHints


class PolicySpecError(SettingsError):
    """A policy spec string could not be parsed; the message lists the valid forms."""


@dataclass(frozen=True)
class FrameContext:
    """What a policy may look at for one frame.

    Attributes:
        index: frames seen since the cache was built or last reset (0 for the first).
        frames_since_refresh: frames since the last refresh (1 on the frame right after it).
        inputs: the network's inputs for this frame, as passed to the cached model.
        hints: camera hints for this frame, or None when the caller has none.
        depth: (B, 1, H, W) planar view depth of this frame (inf on background), or None when not given.
    """

    index: int
    frames_since_refresh: int
    inputs: tuple
    hints: CameraHints | None
    depth: torch.Tensor | None = None


class RefreshPolicy(ABC):
    """Decides per frame whether to refresh the cache.

    Subclasses set ``name`` (the spec keyword), ``usage`` (the spec form shown in errors) and implement
    :meth:`from_spec` and :meth:`check`. The cache calls :meth:`observe_refresh` after every refresh,
    whoever asked for it (policy, camera cut, invalidation, the caller), so that references stay current.
    """

    name: str = ""
    usage: str = ""
    summary: str = ""
    # Whether check() looks at ctx.depth: callers build the depth only for policies that read it. True unless a
    # policy says otherwise, so that a new policy reading the depth gets it.
    reads_depth: bool = True

    @classmethod
    @abstractmethod
    def from_spec(cls, positional: list[str], options: dict[str, str]) -> "RefreshPolicy":
        """Build from the parts of ``name:pos,key=value``; raise ValueError on a bad value."""

    @abstractmethod
    def check(self, ctx: FrameContext) -> str | None:
        """Return a reason to refresh, or None to reuse the cache."""

    def observe_refresh(self, ctx: FrameContext) -> None:
        """Remember what a refresh saw (inputs, camera). Default: nothing."""

    def reset(self) -> None:
        """Forget all references (camera cut, explicit reset). Default: nothing."""

    @property
    @abstractmethod
    def spec(self) -> str:
        """The canonical spec string of this policy (round-trips through parse_policy)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


class AnyOf(RefreshPolicy):
    """Composition: refresh when any member says so (spec ``a+b+c``); every member sees every refresh."""

    name = "+"
    usage = "SPEC+SPEC[+...]"
    summary = "refresh when any member policy asks"

    def __init__(self, members: list[RefreshPolicy]):
        if len(members) < 2:
            raise SettingsError("AnyOf needs at least two member policies")
        self.members = list(members)
        self.reads_depth = any(m.reads_depth for m in self.members)

    @classmethod
    def from_spec(cls, positional, options):  # pragma: no cover - built by the parser, not from a keyword
        raise NotImplementedError

    def check(self, ctx: FrameContext) -> str | None:
        reasons = [r for r in (m.check(ctx) for m in self.members) if r]
        return "; ".join(reasons) if reasons else None

    def observe_refresh(self, ctx: FrameContext) -> None:
        for member in self.members:
            member.observe_refresh(ctx)

    def reset(self) -> None:
        for member in self.members:
            member.reset()

    @property
    def spec(self) -> str:
        return "+".join(m.spec for m in self.members)


def fmt_number(value: float) -> str:
    """Shortest spec form of a number (0.1 not 0.1000)."""
    return f"{value:g}"


def pick_input(inputs: tuple, index: int, who: str) -> torch.Tensor:
    if index >= len(inputs) or not isinstance(inputs[index], torch.Tensor):
        raise SettingsError(
            f"{who}: input {index} is not a tensor (the model got {len(inputs)} inputs); "
            f"choose another with ',input=N'"
        )
    return inputs[index]
