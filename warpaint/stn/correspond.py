"""Point correspondences between two images from deep features (no keypoint model).

Mutual nearest neighbours of VGG19 feature vectors (cosine similarity), kept when they are
confident (high similarity) and distinctive (clearly better than the second-best
candidate), with sub-cell positions in the second image from a parabola fit through the similarity peak.

Points are normalized ``(x, y)`` in ``[-1, 1]`` with ``align_corners=False`` (cell ``j`` of
``w`` has its centre at ``(2 j + 1) / w - 1``), so they do not depend on the image sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..io import resize_long_side
from ..vgg import VGGFeatures

MATCH_LAYERS = ("relu4_1", "relu5_1")


@dataclass(frozen=True)
class Matches:
    """Matched points: ``a[i]`` in the first image corresponds to ``b[i]`` in the second."""

    a: Tensor          # (N, 2) normalized (x, y) in image A
    b: Tensor          # (N, 2) normalized (x, y) in image B
    score: Tensor      # (N,) cosine similarity of the matched features, in [-1, 1]

    def __len__(self) -> int:
        return self.a.shape[0]

    def subset(self, keep: Tensor) -> Matches:
        return Matches(self.a[keep], self.b[keep], self.score[keep])

    @staticmethod
    def cat(parts: Sequence[Matches]) -> Matches:
        return Matches(torch.cat([m.a for m in parts]), torch.cat([m.b for m in parts]),
                       torch.cat([m.score for m in parts]))


def cell_centres(h: int, w: int, *, device: torch.device | None = None) -> Tensor:
    """(h * w, 2) normalized centres of an h x w feature grid, row-major."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) * 2 + 1) / w - 1
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], -1)


def _subcell_position(sim_rows: Tensor, h: int, w: int, idx: Tensor) -> Tensor:
    """Sub-cell positions of similarity peaks by a parabola through each axis' 3 samples.

    Args:
        sim_rows: (N, h * w) similarities of N query features to every cell.
        idx: (N,) index of each query's best cell.
    Returns:
        (N, 2) normalized positions; the offset is clipped to half a cell, and an axis at the
        border of the map stays at the cell centre.
    """
    s = sim_rows.reshape(-1, h, w)
    iy, ix = idx // w, idx % w
    n = torch.arange(idx.shape[0], device=idx.device)

    def offset(centre: Tensor, lo: Tensor, hi: Tensor, ok: Tensor) -> Tensor:
        curv = lo - 2 * centre + hi
        off = 0.5 * (lo - hi) / curv.clamp_max(-1e-6)
        return torch.where(ok & (curv < 0), off.clamp(-0.5, 0.5), torch.zeros_like(off))

    c = s[n, iy, ix]
    ox = offset(c, s[n, iy, (ix - 1).clamp_min(0)], s[n, iy, (ix + 1).clamp_max(w - 1)],
                (ix > 0) & (ix < w - 1))
    oy = offset(c, s[n, (iy - 1).clamp_min(0), ix], s[n, (iy + 1).clamp_max(h - 1), ix],
                (iy > 0) & (iy < h - 1))
    return torch.stack([((ix + ox) * 2 + 1) / w - 1, ((iy + oy) * 2 + 1) / h - 1], -1)


def mutual_nearest(fa: Tensor, fb: Tensor, *, ratio: float = 0.97) -> Matches:
    """Mutual nearest neighbours of two feature maps by cosine similarity.

    Args:
        fa: (C, h, w) features of image A. fb: (C, h', w') features of image B.
        ratio: keep a match only if the best similarity in B outside the best cell's 3x3
            neighbourhood is below ``ratio`` times the best (a distinctiveness test against
            flat, repetitive regions); 1 disables it.
    Returns:
        :class:`Matches` with A's points at cell centres and B's refined to sub-cell.
    """
    (c, h, w), (_, h2, w2) = fa.shape, fb.shape
    a = F.normalize(fa.float().reshape(c, -1), dim=0)
    b = F.normalize(fb.float().reshape(c, -1), dim=0)
    sim = a.T @ b                                                     # (h w, h' w')
    best_ab = sim.argmax(1)
    best_ba = sim.argmax(0)
    ia = torch.arange(sim.shape[0], device=sim.device)
    mutual = best_ba[best_ab] == ia
    # second best outside the best cell's 3x3 neighbourhood (neighbours are alike anyway)
    by, bx = best_ab // w2, best_ab % w2
    ys = torch.arange(h2, device=sim.device)[None, :, None]
    xs = torch.arange(w2, device=sim.device)[None, None, :]
    near = ((ys - by[:, None, None]).abs() <= 1) & ((xs - bx[:, None, None]).abs() <= 1)
    second = sim.masked_fill(near.reshape(sim.shape), float("-inf")).amax(1)
    distinct = second < ratio * sim.gather(1, best_ab[:, None])[:, 0]
    keep = mutual & (distinct if ratio < 1 else torch.ones_like(mutual))
    ia, ib = ia[keep], best_ab[keep]
    pa = cell_centres(h, w, device=sim.device)[ia]
    pb = _subcell_position(sim[ia], h2, w2, ib)
    return Matches(pa, pb, sim[ia, ib])


@torch.no_grad()
def match_features(vgg: VGGFeatures, image: Tensor, *, size: int = 256,
                   layers: Sequence[str] = MATCH_LAYERS) -> dict[str, Tensor]:
    """``vgg`` features of an RGB image (1, 3, H, W) resized to long side ``size``."""
    dev = next(vgg.parameters()).device
    return vgg(resize_long_side(image.to(dev), size), layers)


@torch.no_grad()
def deep_matches(vgg: VGGFeatures, image_a: Tensor | dict[str, Tensor],
                 image_b: Tensor | dict[str, Tensor], *,
                 size: int = 256, layers: Sequence[str] = MATCH_LAYERS, min_score: float = 0.0,
                 max_matches: int = 400) -> Matches:
    """Correspondences between two RGB images from ``vgg`` features.

    Each image is resized so its long side is ``size`` (aspect kept); matches from every
    layer in ``layers`` are pooled, those with similarity below ``min_score`` dropped, and
    at most ``max_matches`` of the most similar kept. The matches are returned on the CPU
    (fits and RANSAC run there, in float64, on any device).

    Args:
        image_a, image_b: (1, 3, H, W) RGB in [0, 1]; either may instead be its
            :func:`match_features` (computed once when it is matched repeatedly).
    """
    fa_all, fb_all = (im if isinstance(im, dict) else match_features(vgg, im, size=size, layers=layers)
                      for im in (image_a, image_b))
    parts = [mutual_nearest(fa_all[n][0], fb_all[n][0]) for n in layers]
    m = Matches.cat(parts)
    m = m.subset(m.score >= min_score)
    if len(m) > max_matches:
        m = m.subset(m.score.topk(max_matches).indices)
    return Matches(m.a.cpu(), m.b.cpu(), m.score.cpu())
