"""Geometric style: warps between content and style estimated from deep-feature matches.

In the manner of Deformable Style Transfer (Kim et al., ECCV 2020), without an external
keypoint model: correspondences are mutual nearest neighbours of VGG19 features
(:mod:`warpaint.stn.correspond`), an affine or thin-plate-spline :mod:`warp <warpaint.stn.warps>`
is fitted to them, and during stylization the warp is optimized jointly with the pixels
(:class:`Geometry` supplies its loss terms).

Frames: :func:`estimate_warp` returns a warp from the *target* frame to the *source* frame,
so ``sample(source, warp.grid(size))`` shows the source in the target's layout. For
``--warp`` the source is the content (the result takes the style's layout); for
``--align-style`` the source is the style (it takes the content's layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..errors import InputError
from ..io import resize
from ..vgg import VGGFeatures
from .correspond import Matches, deep_matches, match_features
from .geometry import sample
from .warps import AffineWarp, TPSWarp, Warp, ransac_affine

WarpKind = Literal["affine", "tps"]

#: Weights of the warp's terms in the stylization loss (content and style losses are
#: relative errors of order 0.1-1; distances are in normalized units).
WARP_WEIGHTS = {"correspondence": 100.0, "smoothness": 10.0, "fold": 100.0}
#: Adam learning rate of the warp parameters (normalized units per step).
WARP_LR = 1e-3


@dataclass
class Geometry:
    """A warp with the matches it was fitted to, and its loss terms.

    ``warp(target[i])`` should land on ``source[i]``; ``target_full`` are the partners
    before the strength was applied (used to measure how far apart matches still are).
    """

    warp: Warp
    source: Tensor        # (N, 2) matched points in the source frame (normalized)
    target: Tensor        # (N, 2) their goal positions in the output frame (strength applied)
    target_full: Tensor   # (N, 2) the partners' positions in the target image
    weights: Tensor       # (N,) match confidences, summing to 1

    def to(self, device: torch.device) -> Geometry:
        return Geometry(self.warp.to(device), self.source.to(device), self.target.to(device),
                        self.target_full.to(device), self.weights.to(device))

    def correspondence_loss(self) -> Tensor:
        """Weighted mean squared distance (normalized units) of ``warp(target)`` from ``source``."""
        return (self.weights * (self.warp(self.target) - self.source).pow(2).sum(1)).sum()

    def losses(self, grid_size: tuple[int, int] = (64, 64)) -> dict[str, Tensor]:
        """Unweighted warp terms: correspondence, smoothness, fold-over."""
        return {"correspondence": self.correspondence_loss(), "smoothness": self.warp.regularity(),
                **self.warp.penalties(grid_size)}

    @torch.no_grad()
    def match_distance(self, size: tuple[int, int]) -> tuple[float, float]:
        """Mean distance in output pixels between matched points, before and after the warp.

        Before: a content point stays where it is; after: it moves to ``warp.inverse(p)``.
        Both are measured against the partner's position in the target image.
        """
        if self.source.shape[0] == 0:
            return 0.0, 0.0
        scale = torch.tensor([size[1] / 2, size[0] / 2], device=self.source.device)
        before = ((self.source - self.target_full) * scale).norm(dim=1)
        after = ((self.warp.inverse(self.source) - self.target_full) * scale).norm(dim=1)
        return float(before.mean()), float(after.mean())

    def describe(self, size: tuple[int, int]) -> dict:
        before, after = self.match_distance(size)
        return {"kind": "affine" if isinstance(self.warp, AffineWarp) else "tps",
                **self.warp.describe(size), "matches": int(self.source.shape[0]),
                "match_distance_before_px": round(before, 2), "match_distance_after_px": round(after, 2)}


def _fit(kind: WarpKind, src: Tensor, dst: Tensor, w: Tensor, *, k: int, smoothness: float) -> Warp:
    if kind == "affine":
        return AffineWarp.fit(src, dst, w)
    warp = TPSWarp.fit(src, dst, w, k=k, smoothness=smoothness)
    for _ in range(8):                       # stiffen until the fit does not fold over
        if warp.min_jacobian((64, 64)) > 0.1:
            break
        smoothness *= 4
        warp = TPSWarp.fit(src, dst, w, k=k, smoothness=smoothness)
    return warp


def _inliers(m: Matches, threshold: float) -> Matches:
    """Matches consistent with one affine map (within ``threshold``, normalized units); a
    TPS fit then bends from there."""
    return m.subset(ransac_affine(m.a, m.b, threshold=threshold)) if len(m) >= 3 else m


@torch.no_grad()
def estimate_warp(vgg: VGGFeatures, source: Tensor, target: Tensor, kind: WarpKind, *,
                  strength: float = 1.0, size: int = 256, k: int = 6, smoothness: float = 1e-3,
                  threshold: float = 0.25, rounds: int = 2) -> Geometry:
    """Fit a warp that shows ``source`` in ``target``'s layout.

    Round 1 matches the two images and fits; each further round warps the source with the
    current estimate, matches again (now nearly aligned, so matches are denser and more
    exact), maps those matches back through the estimate and refits.

    Args:
        source, target: (1, 3, H, W) RGB in [0, 1] (sizes may differ).
        kind: ``"affine"`` or ``"tps"`` (k x k control grid, border fixed).
        strength: 0 = identity, 1 = matched points land on their partners; in between,
            each goal is that fraction of the way.
        threshold: RANSAC inlier distance (normalized units) for the affine consensus that
            screens out wrong matches; larger lets a TPS follow non-affine layouts.
    """
    if kind not in ("affine", "tps"):
        raise ValueError(f"warp kind must be affine or tps, got {kind!r}")
    hw = tuple(target.shape[-2:])
    target_feats = match_features(vgg, target, size=size)        # the same in every round
    m = _inliers(deep_matches(vgg, source, target_feats, size=size), threshold)
    if len(m) < 6:
        raise InputError(f"only {len(m)} confident, mutually consistent feature matches between "
                         "content and style; a warp needs at least 6 (the images share too little "
                         "structure)")
    src, dst, w = m.a, m.b, m.score.clamp_min(1e-3)
    warp = _fit(kind, src, dst, w, k=k, smoothness=smoothness)
    for _ in range(rounds - 1):
        warped = sample(resize(source, hw), warp.grid(hw).to(source), padding_mode="border",  # type: ignore[arg-type]
                        align_corners=False)
        m2 = _inliers(deep_matches(vgg, warped, target_feats, size=size), threshold / 2)
        if len(m2) < 6:
            break
        src, dst, w = warp(m2.a), m2.b, m2.score.clamp_min(1e-3)
        warp = _fit(kind, src, dst, w, k=k, smoothness=smoothness)
    goal = src + strength * (dst - src)
    if strength != 1.0:
        warp = _fit(kind, src, goal, w, k=k, smoothness=smoothness)
    return Geometry(warp, src, goal, dst, w / w.sum())
