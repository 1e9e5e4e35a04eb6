"""How a frame range is cut into farm chunks (pure: no Ray, no bpy).

A chunk is one ``reframe-blender render ... --frames A-B --warmup N`` command. Temporal state (the SS history,
the cached features, FE's pattern of full renders) starts over in every chunk, so:

- chunks break at camera cuts where they can: a chunk that starts at a cut needs no warm-up (the cut resets the
  state anyway), so the seam costs nothing;
- a shot longer than the chunk size is split into near-equal chunks, each of which warms up on the ``warmup``
  frames before it (rendered and stepped, not written; the render loop never warms up across a cut);
- neighbouring pieces of short shots are packed into one chunk up to the chunk size (every chunk pays a process
  start and a shader warm-up, and the render loop resets at a cut inside a chunk by itself).

The Flamenco job type (``reframe_core/farm/flamenco/reframe_render.js``) cuts the same way; a test holds the two
to the same answers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from reframe_core.errors import SettingsError


@dataclass(frozen=True)
class Chunk:
    """Frames ``first``..``last`` written by one task, after ``warmup`` frames stepped but not written."""

    first: int
    last: int
    warmup: int
    at_cut: bool  # starts at a camera cut inside the range: no state to carry over

    @property
    def frames(self) -> range:
        return range(self.first, self.last + 1)

    @property
    def label(self) -> str:
        return f"{self.first:04d}-{self.last:04d}"

    def render_words(self) -> list[str]:
        """The ``render`` options that make this chunk."""
        return ["--frames", f"{self.first}-{self.last}", "--warmup", str(self.warmup)]


def plan_chunks(frames: range, shots: list[tuple[int, int]], size: int, warmup: int) -> list[Chunk]:
    """Chunks covering ``frames`` once each. ``shots``: the (first, last) runs of ``frames`` seen by one camera,
    in order (a single run when the camera never switches); ``size``: frames per chunk at most; ``warmup``:
    the warm-up of a chunk that starts inside a shot."""
    if size < 1:
        raise SettingsError(f"--chunk must be at least 1 frame, got {size}")
    if warmup < 0:
        raise SettingsError(f"--warmup must be 0 or more frames, got {warmup}")
    covered = [f for a, b in shots for f in range(a, b + 1)]
    if covered != list(frames):
        raise SettingsError(f"the shots {shots} do not cover frames {frames.start}-{frames.stop - 1} once each, "
                            "in order")
    pieces: list[Chunk] = []
    for index, (a, b) in enumerate(shots):
        length = b - a + 1
        parts = math.ceil(length / size)
        base, extra = divmod(length, parts)
        start = a
        for part in range(parts):
            end = start + base + (1 if part < extra else 0) - 1
            # The range's first shot may continue before the range: the render loop warms up there if it can.
            at_cut = part == 0 and index > 0
            pieces.append(Chunk(start, end, 0 if at_cut else warmup, at_cut))
            start = end + 1
    chunks: list[Chunk] = []
    for piece in pieces:
        last = chunks[-1] if chunks else None
        if last is not None and piece.at_cut and piece.last - last.first + 1 <= size:
            chunks[-1] = Chunk(last.first, piece.last, last.warmup, last.at_cut)
        else:
            chunks.append(piece)
    return chunks
