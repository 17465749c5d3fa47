"""Overlapping tiles for images too large to process whole: layouts, blending windows, plans.

A *layout* cuts an (H, W) image into cells (about ``core`` px a side, the first cut moved by
an offset), and grows every cell by ``margin`` px on each side that has a neighbour: the
tile a network sees. Each tile carries a *window*, a separable ramp that is 1 inside its
cell, falls linearly to 0 across the ``2 * margin`` px it shares with its neighbour, and is 1
up to the image border; the windows of a layout sum to exactly 1 at every pixel. Blending
tile outputs (or tile gradients) with these windows leaves no hard edge anywhere, and a new
offset at every optimizer step moves the blend zones so that none stays in one place.

Used by the engine (:mod:`warpaint.stylize`: gradients of scales too large for memory, and
the Gram targets of large style images) and the feed-forward path
(:mod:`warpaint.feedforward.model`). The plan (tile size, L-BFGS history) comes from
:func:`warpaint.memory.plan_scale`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def cuts(length: int, core: int, offset: int = 0) -> list[int]:
    """Cut points of ``[0, length)`` into segments about ``core`` long: the interior cuts
    are ``k * core - offset``; a first or last segment shorter than half a core is merged
    with its neighbour.

    Example:
        >>> cuts(900, 400), cuts(900, 400, offset=150), cuts(300, 400)
        ([0, 400, 900], [0, 250, 650, 900], [0, 300])
    """
    if length <= 0 or core <= 0:
        raise ValueError(f"need a positive length and core, got {length}, {core}")
    offset %= core
    inner = [k * core - offset for k in range(1, length // core + 2)]
    points = [0, *(p for p in inner if 0 < p < length), length]
    if len(points) > 2 and points[1] - points[0] < core // 2:
        del points[1]
    if len(points) > 2 and points[-1] - points[-2] < core // 2:
        del points[-2]
    return points


def _ramps(points: list[int], margin: int, length: int) -> list[tuple[int, int, Tensor]]:
    """Per segment of ``points``: its tile's extent (start, stop) and 1-D window there."""
    out = []
    u = torch.arange(length, dtype=torch.float32) + 0.5
    for i, (a, b) in enumerate(zip(points[:-1], points[1:])):
        lo = a - margin if i > 0 else 0
        hi = b + margin if i < len(points) - 2 else length
        w = torch.ones(length)
        if i > 0:
            w = w * ((u - (a - margin)) / (2 * margin)).clamp(0, 1)
        if i < len(points) - 2:
            w = w * (((b + margin) - u) / (2 * margin)).clamp(0, 1)
        out.append((max(0, lo), min(length, hi), w[max(0, lo):min(length, hi)]))
    return out


@dataclass(frozen=True)
class Tile:
    """One tile of a layout: rows ``y0:y1``, columns ``x0:x1`` and its window (h, w)."""

    y0: int
    y1: int
    x0: int
    x1: int
    window: Tensor

    @property
    def slices(self) -> tuple[slice, slice]:
        """Index with ``image[..., *tile.slices]``."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def pixels(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)


def layout(hw: tuple[int, int], core: int, margin: int, offset: tuple[int, int] = (0, 0)) -> list[Tile]:
    """Tiles covering an image of ``hw`` = (H, W), row-major, with windows summing to 1.

    Args:
        hw: (H, W) of the image.
        core: cell side in px (tiles are up to ``core + 2 * margin`` a side, an edge cell up
            to 1.5 ``core``).
        margin: px a tile reaches into each neighbouring cell (half the blend zone).
        offset: (dy, dx) shift of the cut points (taken modulo ``core``).
    Example:
        >>> tiles = layout((300, 500), core=200, margin=16)
        >>> len(tiles), (tiles[0].y1, tiles[0].x1)
        (6, (216, 216))
        >>> round(float(sum(t.window.sum() for t in tiles)))
        150000
    """
    if margin < 0 or 2 * margin > core:
        raise ValueError(f"margin must be in [0, core / 2], got {margin} for core {core}")
    rows = _ramps(cuts(hw[0], core, offset[0]), margin, hw[0])
    cols = _ramps(cuts(hw[1], core, offset[1]), margin, hw[1])
    return [Tile(y0, y1, x0, x1, wy[:, None] * wx[None, :])
            for y0, y1, wy in rows for x0, x1, wx in cols]


def blend(tiles: list[Tile], outputs: list[Tensor], hw: tuple[int, int]) -> Tensor:
    """The (B, C, H, W) image whose pixels are the window-weighted sum of the tile
    ``outputs`` ((B, C, h, w) each, one per tile)."""
    b, c = outputs[0].shape[:2]
    out = outputs[0].new_zeros((b, c, *hw))
    for t, o in zip(tiles, outputs, strict=True):
        out[..., t.y0:t.y1, t.x0:t.x1] += o * t.window.to(o)
    return out


@dataclass(frozen=True)
class ScalePlan:
    """How one scale of the engine runs: whole (``core == 0``) or in tiles of ``core`` px
    with ``margin`` px overlaps, and the L-BFGS history it can afford."""

    core: int = 0
    margin: int = 0
    history: int = 50
    need: int = 0            # estimated peak in bytes

    @property
    def tiled(self) -> bool:
        return self.core > 0


__all__ = ["ScalePlan", "Tile", "blend", "cuts", "layout"]
