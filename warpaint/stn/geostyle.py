"""Geometric style: warps between content and style estimated from deep-feature matches.

In the manner of Deformable Style Transfer (Kim et al., ECCV 2020), without an external
keypoint model (except a face detector's landmarks where both images are portraits,
:mod:`warpaint.stn.faces`): correspondences are mutual nearest neighbours of VGG19 features
(:mod:`warpaint.stn.correspond`), an affine or thin-plate-spline :mod:`warp <warpaint.stn.warps>`
is fitted to them, and during stylization the warp is optimized jointly with the pixels
(:class:`Geometry` supplies its loss terms).

Frames: :func:`estimate_warp` returns a warp from the *target* frame to the *source* frame,
so ``sample(source, warp.grid(size))`` shows the source in the target's layout. For
``--warp`` the source is the content (the result takes the style's layout); for
``--align-style`` the source is the style (it takes the content's layout).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from ..errors import InputError
from ..io import resize
from ..vgg import VGGFeatures
from . import faces
from .correspond import Matches, deep_matches, match_features
from .geometry import sample
from .warps import MIN_JACOBIAN, AffineWarp, TPSWarp, Warp, ransac_affine

WarpKind = Literal["affine", "tps"]

#: Weights of the warp's terms in the stylization loss (content and style losses are
#: relative errors of order 0.1-1; distances are in normalized units).
WARP_WEIGHTS = {"correspondence": 100.0, "smoothness": 10.0, "fold": 100.0}
#: Adam learning rate of the warp parameters (normalized units per step).
WARP_LR = 1e-3
#: Confidence (:class:`Confidence`) below which ``--warp`` is not applied, and from which it
#: gets the full ``--warp-strength``; in between the strength is scaled linearly. Chosen from
#: the measurements in docs/geometric.md: no-layout pairs reach 0.080, the lowest shared pair
#: found 0.093, the next 0.121; a shared pair needs most of the strength to bring its matches
#: 30 % closer, so the band is narrow (the gap is).
REFUSE_BELOW = 0.085
FULL_FROM = 0.09
#: Random re-pairings of the matches that estimate the chance consensus.
NULL_DRAWS = 5
#: Below this many matches, the confidence counts each as 1 / MIN_COUNTED (see Confidence).
MIN_COUNTED = 30


@dataclass(frozen=True)
class Confidence:
    """How sure the matches are of a shared layout.

    ``value = (consensus - max(null, upside_down)) * matches / max(matches, MIN_COUNTED)``:
    the share of matches that one (non-mirroring) affine consensus explains, less the share
    that chance explains. Chance is measured two ways and the larger counts: ``null``, the
    share when the same points are re-paired at random (a cluster of matches or a generous
    inlier distance raises both), and ``upside_down``, the consensus share of the matches
    against the style turned upside down (flipped and turned 180 degrees, mean of the two;
    see :func:`upside_down_share`): what features that do not care which way is up give
    (plain grounds, image borders, a centred figure), since a layout that the style upside
    down shares just as well says nothing about where things go. With fewer than
    :data:`MIN_COUNTED` matches each counts as ``1 / MIN_COUNTED``: a share of a handful of
    matches says little. The other fields are reported, not used: ``spread`` is the share of
    a 4 x 4 grid over the source that holds a consensus match, ``rounds`` the share of the
    second round's matches within half the inlier distance of where the first round put them
    (``None`` without a second round). ``faces`` says in one line what the face detector
    found (:mod:`~warpaint.stn.faces`; ``None``: not looked for); ``by_faces``: a face in
    each image decided that the layout is shared, whatever ``value`` says.
    """

    value: float
    matches: int
    consensus: float
    null: float
    spread: float
    rounds: float | None = None
    upside_down: float | None = None
    faces: str | None = None
    by_faces: bool = False

    def as_dict(self) -> dict[str, float | int | str | None]:
        r, u = (None if x is None else round(x, 3) for x in (self.rounds, self.upside_down))
        return {"value": round(self.value, 3), "matches": self.matches, "consensus": round(self.consensus, 3),
                "null": round(self.null, 3), "upside_down": u, "spread": round(self.spread, 3), "rounds": r,
                "faces": self.faces, "decided_by": "faces" if self.by_faces else "matches"}


def correspondence_confidence(m: Matches, keep: Tensor, *, upside_down: float | None = None,
                              threshold: float = 0.25, draws: int = NULL_DRAWS, seed: int = 0) -> Confidence:
    """:class:`Confidence` of matches ``m`` whose affine consensus is ``keep`` (N,) bool;
    ``upside_down`` is the consensus share against the style upside down (none: not used).

    Example:
        >>> pts = torch.rand(40, 2) * 2 - 1
        >>> m = Matches(pts, pts * 0.9, torch.ones(40))
        >>> correspondence_confidence(m, torch.ones(40, dtype=torch.bool)).value > 0.5
        True
        >>> correspondence_confidence(m, torch.ones(40, dtype=torch.bool), upside_down=0.9).value < 0.11
        True
    """
    n = len(m)
    if n < 3:
        return Confidence(0.0, n, 0.0, 0.0, 0.0, upside_down=upside_down)
    g = torch.Generator().manual_seed(seed)
    null = sum(float(ransac_affine(m.a, m.b[torch.randperm(n, generator=g)], threshold=threshold,
                                   seed=seed + i + 1).float().mean()) for i in range(draws)) / draws
    consensus = float(keep.float().mean())
    cells = ((m.a[keep] + 1) * 2).floor().clamp(0, 3)                  # 4 x 4 grid cell of each
    spread = len({(int(x), int(y)) for x, y in cells.tolist()}) / 16
    chance = max(null, upside_down or 0.0)
    return Confidence((consensus - chance) * n / max(n, MIN_COUNTED), n, consensus, null, spread,
                      upside_down=upside_down)


@torch.no_grad()
def upside_down_share(vgg: VGGFeatures, source: Tensor | dict[str, Tensor], target: Tensor, *,
                      size: int = 256, threshold: float = 0.25) -> float:
    """Mean share of the matches between ``source`` and ``target`` upside down (flipped top to
    bottom; turned 180 degrees) that one non-mirroring affine explains.

    A real layout (a face, a building, a horizon) is lost upside down: the flipped one only
    fits a mirroring map, which is no candidate, and the turned one pairs features that are
    not alike turned round. What remains is the consensus that features blind to which way
    is up give: plain grounds, image borders, a figure in the middle of the frame.

    Args:
        source: (1, 3, H, W) RGB in [0, 1] or its :func:`match_features`.
        target: (1, 3, H', W') RGB in [0, 1].
    """
    shares = []
    for turned in (target.flip(-2), target.flip(-2).flip(-1)):
        m = deep_matches(vgg, source, turned, size=size)
        shares.append(float(_consensus(m, threshold).float().mean()) if len(m) >= 3 else 0.0)
    return sum(shares) / len(shares)


def strength_factor(confidence: float) -> float:
    """Factor on ``--warp-strength`` for a confidence: 0 below :data:`REFUSE_BELOW`, 1 from
    :data:`FULL_FROM`, linear in between.

    Example:
        >>> strength_factor(0.05), round(strength_factor(0.0875), 3), strength_factor(0.3)
        (0.0, 0.5, 1.0)
    """
    return min(1.0, max(0.0, (confidence - REFUSE_BELOW) / (FULL_FROM - REFUSE_BELOW)))


@dataclass
class Geometry:
    """A warp with the matches it was fitted to, and its loss terms.

    ``warp(target[i])`` should land on ``source[i]``; ``target_full`` are the partners
    before the strength was applied (used to measure how far apart matches still are).
    ``fitted`` is the least-squares fit to the matches at strength 1, before the strength,
    the zoom that keeps an affine warp's corners inside, the joint optimization and any
    stiffening changed ``warp``. A geometry with a ``reason`` was refused: its warp is the
    identity and it is not applied.
    """

    warp: Warp
    source: Tensor        # (N, 2) matched points in the source frame (normalized)
    target: Tensor        # (N, 2) their goal positions in the output frame (strength applied)
    target_full: Tensor   # (N, 2) the partners' positions in the target image
    weights: Tensor       # (N,) match confidences, summing to 1
    confidence: Confidence | None = None
    strength: float = 1.0                   # the strength used (after confidence scaling)
    fitted: Warp | None = None
    reason: str = ""                        # why the warp is not applied ("" when it is)

    @property
    def kind(self) -> WarpKind:
        return "affine" if isinstance(self.warp, AffineWarp) else "tps"

    @property
    def applied(self) -> bool:
        return not self.reason

    def to(self, device: torch.device) -> Geometry:
        return replace(self, warp=self.warp.to(device), source=self.source.to(device),
                       target=self.target.to(device), target_full=self.target_full.to(device),
                       weights=self.weights.to(device),
                       fitted=None if self.fitted is None else self.fitted.to(device))

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
        """What ``--json`` says of the warp, in pixels of an output of ``size`` (H, W).

        Top level: the applied warp (see :meth:`Warp.describe`), the matches and their mean
        distance before and after it; ``fitted``: the fit at strength 1 (see the class
        docstring). A refused geometry: ``applied`` false and the ``reason``.
        """
        conf = None if self.confidence is None else self.confidence.as_dict()
        head = {"kind": self.kind, "applied": self.applied}
        if not self.applied:
            return {**head, "reason": self.reason, "matches": int(self.source.shape[0]), "confidence": conf}
        before, after = self.match_distance(size)
        out = {**head, **self.warp.describe(size), "matches": int(self.source.shape[0]),
               "match_distance_before_px": round(before, 2), "match_distance_after_px": round(after, 2),
               "strength": round(self.strength, 3), "confidence": conf}
        if self.fitted is not None:
            out["fitted"] = self.fitted.describe(size)
        return out


def _fit(kind: WarpKind, src: Tensor, dst: Tensor, w: Tensor, *, k: int, smoothness: float) -> Warp:
    if kind == "affine":
        return AffineWarp.fit(src, dst, w)
    warp = TPSWarp.fit(src, dst, w, k=k, smoothness=smoothness)
    for _ in range(8):                       # stiffen until the fit does not fold over
        if warp.min_jacobian((64, 64)) >= MIN_JACOBIAN:
            break
        smoothness *= 4
        warp = TPSWarp.fit(src, dst, w, k=k, smoothness=smoothness)
    return warp


def _consensus(m: Matches, threshold: float) -> Tensor:
    """(N,) bool: the matches consistent with one affine map (within ``threshold``,
    normalized units); a TPS fit then bends from there."""
    if len(m) < 3:
        return torch.ones(len(m), dtype=torch.bool)
    return ransac_affine(m.a, m.b, threshold=threshold)


def _agreeing(m: Matches, anchor: Matches, threshold: float) -> Tensor:
    """(N,) bool: the matches within ``threshold`` (normalized units) of the affine map
    fitted to the ``anchor`` matches."""
    return (AffineWarp.fit(anchor.a, anchor.b)(m.b) - m.a).norm(dim=1) < threshold


def _identity(kind: WarpKind, k: int) -> Warp:
    return AffineWarp() if kind == "affine" else TPSWarp(k)


def refused(kind: WarpKind, reason: str, *, k: int = 6, matches: Matches | None = None,
            confidence: Confidence | None = None) -> Geometry:
    """A geometry that is not applied: the identity warp of ``kind``, ``matches`` for the
    pictures, and the ``reason`` (one line)."""
    m = matches if matches is not None else Matches(torch.zeros(0, 2), torch.zeros(0, 2), torch.zeros(0))
    w = m.score.clamp_min(1e-3)
    return Geometry(_identity(kind, k), m.a, m.a, m.b, w / w.sum().clamp_min(1e-12), confidence,
                    0.0, None, reason)


def _refine(vgg: VGGFeatures, source: Tensor, target_feats: dict[str, Tensor], hw: tuple[int, int],
            kind: WarpKind, m: Matches, *, rounds: int, size: int, threshold: float,
            anchor: Matches | None = None, **fit: float) -> tuple[Tensor, Tensor, Tensor, Warp, float | None]:
    """Fit to matches ``m``, then ``rounds - 1`` times: warp the source, match again, map the
    matches back through the estimate and refit. ``anchor`` matches (face landmarks) are in
    ``m`` and kept in every round.

    Returns:
        source points (N, 2), target points (N, 2), weights (N,), the warp, and the share of
        the last round's matches within ``threshold / 2`` of where the previous fit put them.
    """
    src, dst, w = m.a, m.b, m.score.clamp_min(1e-3)
    warp = _fit(kind, src, dst, w, **fit)  # type: ignore[arg-type]
    agree = None
    for _ in range(rounds - 1):
        warped = sample(resize(source, hw), warp.grid(hw).to(source), padding_mode="border",
                        align_corners=False)
        found = deep_matches(vgg, warped, target_feats, size=size)
        if len(found):
            agree = float(((found.a - found.b).norm(dim=1) < threshold / 2).float().mean())
        m2 = found.subset(_consensus(found, threshold / 2))
        if len(m2) < 6:
            break
        m2 = Matches(warp(m2.a), m2.b, m2.score)
        if anchor is not None:
            m2 = Matches.cat([anchor, m2])
        src, dst, w = m2.a, m2.b, m2.score.clamp_min(1e-3)
        warp = _fit(kind, src, dst, w, **fit)  # type: ignore[arg-type]
    return src, dst, w, warp, agree


@torch.no_grad()
def estimate_warp(vgg: VGGFeatures, source: Tensor, target: Tensor, kind: WarpKind, *,
                  strength: float = 1.0, size: int = 256, k: int = 6, smoothness: float = 1e-3,
                  threshold: float = 0.25, rounds: int = 2, force: bool = False,
                  use_faces: bool = True) -> Geometry:
    """Fit a warp that shows ``source`` in ``target``'s layout, or refuse to.

    Round 1 matches the two images, measures the :class:`Confidence` of a shared layout and
    fits; each further round warps the source with the current estimate, matches again (now
    nearly aligned, so matches are denser and more exact), maps those matches back through
    the estimate and refits. The strength is scaled by :func:`strength_factor` of the
    confidence; at 0 (or with fewer than 6 consistent matches) the result is
    :func:`refused`, not applied. A face in each image of about the same relative size
    (:func:`~warpaint.stn.faces.portrait_pair`) decides instead: a shared portrait layout, the
    full strength, and the faces' landmarks and box corners join the matches (with the
    feature matches that agree with the affine map between the faces) in every round.

    Args:
        source, target: (1, 3, H, W) RGB in [0, 1] (sizes may differ).
        kind: ``"affine"`` or ``"tps"`` (k x k control grid, border fixed).
        strength: 0 = identity, 1 = matched points land on their partners; in between,
            each goal is that fraction of the way.
        threshold: RANSAC inlier distance (normalized units) for the affine consensus that
            screens out wrong matches; larger lets a TPS follow non-affine layouts.
        force: fit and apply at the full ``strength`` whatever the confidence (fewer than 6
            consistent matches is then an :class:`~warpaint.errors.InputError`).
        use_faces: look for faces (when :mod:`~warpaint.stn.faces` is installed).
    Returns:
        a :class:`Geometry`; an applied one has a minimum Jacobian determinant of at least
        :data:`~warpaint.stn.warps.MIN_JACOBIAN` on a 64 x 64 grid.
    """
    if kind not in ("affine", "tps"):
        raise ValueError(f"warp kind must be affine or tps, got {kind!r}")
    hw = tuple(target.shape[-2:])
    target_feats = match_features(vgg, target, size=size)        # the same in every round
    source_feats = match_features(vgg, source, size=size)
    found = deep_matches(vgg, source_feats, target_feats, size=size)
    keep = _consensus(found, threshold)
    upside = upside_down_share(vgg, source_feats, target, size=size, threshold=threshold)
    conf = correspondence_confidence(found, keep, upside_down=upside, threshold=threshold)
    m = found.subset(keep)
    factor = 1.0 if force else strength_factor(conf.value)
    anchor = None
    if use_faces:
        pair, said = None, faces.unavailable()
        if said is None:
            pair, said = faces.portrait_pair(faces.find_faces(source), faces.find_faces(target))
        conf = replace(conf, faces=said, by_faces=pair is not None)
        if pair is not None:
            anchor = faces.face_matches(*pair)
            m = Matches.cat([anchor, found.subset(_agreeing(found, anchor, threshold))])
            factor = 1.0
    if len(m) < 6:
        msg = (f"only {len(m)} confident, mutually consistent feature matches between content and "
               "style; a warp needs at least 6 (the images share too little structure)")
        if force:
            raise InputError(msg)
        return refused(kind, msg, k=k, matches=m, confidence=conf)
    if factor == 0.0:
        return refused(kind, f"confidence {conf.value:.3f} is below {REFUSE_BELOW:g}: the matches show "
                       "no shared layout", k=k, matches=m, confidence=conf)
    src, dst, w, fitted, agree = _refine(vgg, source, target_feats, hw, kind, m, rounds=rounds, size=size,
                                         threshold=threshold, anchor=anchor, k=k, smoothness=smoothness)
    used = strength * factor
    goal = src + used * (dst - src)
    warp = _fit(kind, src, goal, w, k=k, smoothness=smoothness)      # (= fitted at strength 1)
    warp.stiffen((64, 64))
    return Geometry(warp, src, goal, dst, w / w.sum(), replace(conf, rounds=agree), used, fitted)
