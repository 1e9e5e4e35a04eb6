"""Blender's view transform as a lookup table, for images Blender does not draw itself (the viewport overlay).

The network outputs scene-linear colour; the viewport shows everything through the scene's view transform (Filmic,
AgX, Standard ...), look, exposure and gamma. Python cannot call OpenColorIO in Blender, but Blender can save an
image through it (``Image.save_render``): the add-on saves a grid of colours once and this module turns the saved
pixels into a 3-D table over a log2 shaper, applied with trilinear interpolation -- or, when the transform works
per channel (Standard, and Filmic in Blender 3.x), three 1-D tables, much cheaper. Pure numpy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOW, HIGH = -12.0, 12.0  # log2 range of the shaper: 2^-12 (black in 8 bits) .. 4096; 49 or 65 nodes put one at 1.0 (where
# Standard clips: a kink between two nodes would be smoothed over)
SEPARABLE_TOLERANCE = 1.5 / 255


def shaper(linear: np.ndarray) -> np.ndarray:
    """Scene-linear values -> [0, 1] table coordinates (0 also for 0 and negatives)."""
    with np.errstate(divide="ignore"):
        t = (np.log2(np.maximum(linear, 2.0 ** LOW)) - LOW) / (HIGH - LOW)
    return np.clip(t, 0.0, 1.0)


def grid_values(size: int) -> np.ndarray:
    """The linear values at the table's nodes (the first is 0 exactly)."""
    values = 2.0 ** (LOW + (HIGH - LOW) * np.linspace(0.0, 1.0, size))
    values[0] = 0.0
    return values.astype(np.float32)


def grid_image(size: int) -> np.ndarray:
    """(size, size * size, 3) linear colours to save through Blender: row g, column b * size + r (r fastest)."""
    v = grid_values(size)
    r, g, b = np.meshgrid(v, v, v, indexing="xy")  # r varies along axis 1, g along 0, b along 2
    cube = np.stack([r, g, b], axis=-1)  # [g, r, b]
    return np.ascontiguousarray(cube.transpose(0, 2, 1, 3).reshape(size, size * size, 3))


@dataclass
class DisplayLUT:
    """``table[r, g, b]`` = display-referred RGB in [0, 1] of the node's linear colour."""

    table: np.ndarray  # (n, n, n, 3)

    @classmethod
    def from_saved(cls, pixels: np.ndarray) -> "DisplayLUT":
        """From :func:`grid_image` as Blender saved it (rows top first, values in [0, 1])."""
        size = pixels.shape[0]
        cube = np.asarray(pixels[..., :3], np.float32).reshape(size, size, size, 3)  # [g, b, r]
        return cls(np.ascontiguousarray(cube.transpose(2, 0, 1, 3)))  # [r, g, b]

    @property
    def separable(self) -> bool:
        """Whether each output channel depends only on its own input (then three 1-D tables are exact)."""
        t = self.table
        n = t.shape[0]
        diag = t[np.arange(n), np.arange(n), np.arange(n)]
        per_channel = np.stack(np.broadcast_arrays(diag[:, None, None, 0], diag[None, :, None, 1],
                                                   diag[None, None, :, 2]), axis=-1)
        return float(np.abs(per_channel - t).max()) <= SEPARABLE_TOLERANCE

    def apply(self, linear: np.ndarray) -> np.ndarray:
        """(..., 3) scene-linear -> (..., 3) display-referred float32 in [0, 1]."""
        coords = shaper(np.asarray(linear[..., :3], np.float32)) * (self.table.shape[0] - 1)
        n = self.table.shape[0]
        if self.separable:
            nodes = np.arange(n, dtype=np.float32)
            diag = self.table[np.arange(n), np.arange(n), np.arange(n)]
            return np.stack([np.interp(coords[..., c], nodes, diag[:, c]) for c in range(3)], axis=-1).astype(np.float32)
        shape = coords.shape[:-1]
        coords = coords.reshape(-1, 3)
        low = np.minimum(coords.astype(np.int32), n - 2)
        frac = (coords - low).astype(np.float32)
        flat = self.table.reshape(-1, 3)
        base = (low[:, 0] * n + low[:, 1]) * n + low[:, 2]
        out = np.zeros((coords.shape[0], 3), np.float32)
        for dr in (0, 1):
            wr = frac[:, 0] if dr else 1 - frac[:, 0]
            for dg in (0, 1):
                wrg = wr * (frac[:, 1] if dg else 1 - frac[:, 1])
                for db in (0, 1):
                    weight = wrg * (frac[:, 2] if db else 1 - frac[:, 2])
                    out += weight[:, None] * np.take(flat, base + (dr * n + dg) * n + db, axis=0)
        return out.reshape(shape + (3,))
