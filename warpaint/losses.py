"""Losses of neural style transfer: content, Gram style, total variation.

Every loss is a plain function; the ``nn.Module`` forms store their targets as buffers and
call the function. Content and style losses are *relative* squared errors (divided by the
target's squared norm), so one set of default weights works at any image size and for any
style image, and the values equal the distances that ``warpaint score`` reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

Reduction = Literal["mean", "none"]

_EPS = 1e-8


def _reduce(x: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _upcast(x: Tensor) -> Tensor:
    """``x`` in at least float32: reduced precision is upcast, float64 stays float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def gram_matrix(feats: Tensor) -> Tensor:
    """Gram matrix of feature maps, normalized by the number of positions: G = F F^T / (H W).

    Args:
        feats: (B, C, H, W) features.
    Returns:
        (B, C, C) Gram matrices, in float32 even for reduced-precision input (float64 stays
        float64).
    Example:
        >>> gram_matrix(torch.ones(1, 2, 3, 3))
        tensor([[[1., 1.],
                 [1., 1.]]])
    """
    b, c, h, w = feats.shape
    f = _upcast(feats.reshape(b, c, h * w))
    return torch.bmm(f, f.transpose(1, 2)) / (h * w)


def region_grams(feats: Tensor, regions: int) -> Tensor:
    """Gram matrices of the cells of a ``regions`` x ``regions`` grid over the feature map.

    Args:
        feats: (B, C, H, W) features, H and W at least ``regions``.
    Returns:
        (B, regions^2, C, C), row-major cells; ``regions=1`` is :func:`gram_matrix`.
    """
    if regions == 1:
        return gram_matrix(feats)[:, None]
    cells = [gram_matrix(cell) for band in torch.tensor_split(feats, regions, dim=2)
             for cell in torch.tensor_split(band, regions, dim=3)]
    return torch.stack(cells, 1)


def relative_sq_error(x: Tensor, target: Tensor) -> Tensor:
    """Per-sample ``||x - target||^2 / ||target||^2``.

    Args:
        x: (B, ...) tensor.
        target: tensor broadcastable to ``x``.
    Returns:
        (B,) relative squared errors.
    Example:
        >>> relative_sq_error(torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 4.0]]))
        tensor([0.5625])
    """
    x = _upcast(x)
    target = _upcast(target).to(x.dtype).expand_as(x)
    dims = tuple(range(1, x.ndim))
    num = (x - target).pow(2).sum(dims)
    return num / target.pow(2).sum(dims).clamp_min(_EPS)


def content_loss(feats: Tensor, target: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Relative content loss ``||F(o) - F(c)||^2 / ||F(c)||^2``.

    Args:
        feats: (B, C, H, W) features of the image being optimized.
        target: (B or 1, C, H, W) features of the content image.
    Returns:
        scalar, or (B,) with ``reduction="none"``.
    Note:
        Gatys et al. use ``0.5 * sum of squares``; dividing by the target's energy makes the
        weight independent of image size and layer.
    """
    return _reduce(relative_sq_error(feats, target), reduction)


def style_loss(feats: Tensor, target_gram: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Relative Gram loss ``||G(o) - G(s)||^2 / ||G(s)||^2`` for one layer.

    Args:
        feats: (B, C, H, W) features of the image being optimized.
        target_gram: (B or 1, C, C) Gram matrix of the style features, or
            (B or 1, R, C, C) per-region Grams (:func:`region_grams`, R = n^2): then the
            loss is the mean over regions of each region's relative error.
    Returns:
        scalar, or (B,) with ``reduction="none"``.
    Note:
        Gatys et al. divide by ``4 N^2 M^2`` and use fixed per-layer weights; our relative
        form gives every layer the same scale, so per-layer weights mean what they say.
    """
    if target_gram.ndim == 4:
        n = math.isqrt(target_gram.shape[1])
        grams = region_grams(feats, n)
        err = relative_sq_error(grams.flatten(0, 1), target_gram.expand_as(grams).flatten(0, 1))
        return _reduce(err.view(grams.shape[0], -1).mean(1), reduction)
    return _reduce(relative_sq_error(gram_matrix(feats), target_gram), reduction)


def layers_content_loss(feats: dict[str, Tensor], targets: dict[str, Tensor],
                        layers: Sequence[str]) -> Tensor:
    """Mean :func:`content_loss` over ``layers`` (features and targets by layer name)."""
    return sum(content_loss(feats[n], targets[n]) for n in layers) / len(layers)  # type: ignore[return-value]


def layers_style_loss(feats: dict[str, Tensor], grams: dict[str, Tensor], layers: Sequence[str],
                      weights: Sequence[float] | None = None) -> Tensor:
    """Weighted mean :func:`style_loss` over ``layers`` (equal weights by default): the style
    term of the engine and of feed-forward training alike."""
    w = weights or (1.0,) * len(layers)
    return sum(wi * style_loss(feats[n], grams[n]) for n, wi in zip(layers, w, strict=True)) / sum(w)  # type: ignore[return-value]


def masked_gram(feats: Tensor, weights: Tensor) -> Tensor:
    """Gram matrices of feature maps weighted by region maps: G_k = sum_p w_k(p) f(p) f(p)^T /
    sum_p w_k(p), the area-normalized Gram of region k.

    Args:
        feats: (B, C, H, W) features.
        weights: (B or 1, K, H', W') region weights >= 0 at any resolution: averaged over
            each feature position's area (``adaptive_avg_pool2d``) when it differs.
    Returns:
        (B, K, C, C), float32 even for reduced-precision input (float64 stays float64).
        An all-ones map gives :func:`gram_matrix`; a region with no weight at this
        resolution gives zeros.
    Example:
        >>> f = torch.rand(1, 4, 6, 6)
        >>> torch.allclose(masked_gram(f, torch.ones(1, 1, 12, 12))[:, 0], gram_matrix(f))
        True
    """
    b, c, h, w = feats.shape
    if tuple(weights.shape[-2:]) != (h, w):
        weights = torch.nn.functional.adaptive_avg_pool2d(weights, (h, w))
    f = _upcast(feats.reshape(b, c, h * w))
    wk = weights.reshape(weights.shape[0], weights.shape[1], h * w).to(f.dtype)   # (B', K, N)
    ft = f.transpose(1, 2)
    # one region at a time: one weighted (B, C, N) copy alive, not K of them
    num = torch.stack([torch.bmm(f * wk[:, k, None], ft) for k in range(wk.shape[1])], 1)  # (B, K, C, C)
    return num / wk.sum(-1).clamp_min(_EPS)[..., None, None]


def masked_style_errors(feats: Tensor, target_grams: Tensor, weights: Tensor) -> Tensor:
    """Relative Gram error ``||G_k(o) - G(s_k)||^2 / ||G(s_k)||^2`` of each region k, with
    G_k the :func:`masked_gram` of region k: the style distance of a region to its style.

    Args:
        feats: (B, C, H, W) features of the image.
        target_grams: (B or 1, K, C, C) one target Gram per region.
        weights: (B or 1, K, H', W') region weights (see :func:`masked_gram`).
    Returns:
        (B, K) relative errors.
    """
    grams = masked_gram(feats, weights)
    err = relative_sq_error(grams.flatten(0, 1), target_grams.expand_as(grams).flatten(0, 1))
    return err.view(grams.shape[0], -1)


def masked_style_loss(feats: Tensor, target_grams: Tensor, weights: Tensor, *,
                      reduction: Reduction = "mean") -> Tensor:
    """Style loss of a mask for one layer: the mean of :func:`masked_style_errors` over the
    regions, weighted by each region's area (its mean weight); a region with no area adds
    nothing.

    Args:
        feats: (B, C, H, W) features of the image being optimized.
        target_grams: (B or 1, K, C, C) the Gram of each region's style.
        weights: (B or 1, K, H', W') region weights (soft; they need not sum to 1 over K:
            an area with no style region, e.g. one that keeps the photo, gets no style loss).
    Returns:
        scalar, or (B,) with ``reduction="none"``. With one region of all ones it equals
        :func:`style_loss`.
    """
    err = masked_style_errors(feats, target_grams, weights)
    area = weights.flatten(2).mean(2).to(err.dtype)                                  # (B', K)
    return _reduce((err * area).sum(1) / area.sum(1).clamp_min(_EPS), reduction)


def layers_masked_style_loss(feats: dict[str, Tensor], grams: dict[str, Tensor], weights: Tensor,
                             layers: Sequence[str], layer_weights: Sequence[float] | None = None) -> Tensor:
    """:func:`layers_style_loss` of a mask: weighted mean :func:`masked_style_loss` over
    ``layers``, ``grams[n]`` (1, K, C, C) and ``weights`` (1, K, H, W) at the image's size."""
    w = layer_weights or (1.0,) * len(layers)
    return sum(wi * masked_style_loss(feats[n], grams[n], weights)   # type: ignore[return-value]
               for n, wi in zip(layers, w, strict=True)) / sum(w)


def total_variation(image: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Mean squared difference between neighbouring pixels (isotropic L2 TV) of an image.

    Args:
        image: (B, C, H, W) the *generated* image (never the style image).
    Returns:
        scalar, or (B,) with ``reduction="none"``.
    Note:
        Differs from Johnson et al. (2016): the mean rather than the sum, so the weight does
        not depend on resolution.
    Example:
        >>> total_variation(torch.zeros(2, 3, 8, 8), reduction="none")
        tensor([0., 0.])
    """
    dx = (image[..., :, 1:] - image[..., :, :-1]).pow(2).flatten(1).mean(1)
    dy = (image[..., 1:, :] - image[..., :-1, :]).pow(2).flatten(1).mean(1)
    return _reduce(dx + dy, reduction)


def temporal_loss(image: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """Ruder et al. (2016)'s short-term temporal loss: the weighted mean squared difference
    between a video frame being stylized and the previous stylized frame warped into it.

    Args:
        image: (B, 3, H, W) the frame being optimized.
        target: (B, 3, H, W) the previous result warped by the optical flow.
        weights: (B, 1, H, W) in [0, 1], 0 where the flow is unreliable (occlusions, motion
            boundaries; :func:`warpaint.flow.occlusion_mask`).
    Returns:
        scalar: ``sum(weights * (image - target)^2) / (B * 3 * H * W)``, Ruder's ``1/D``.
    Example:
        >>> x = torch.zeros(1, 3, 4, 4)
        >>> temporal_loss(x, torch.ones(1, 3, 4, 4), torch.ones(1, 1, 4, 4)).item()
        1.0
    """
    return (weights * (image.float() - target.float()).pow(2)).mean()


class ContentLoss(nn.Module):
    """Module form of :func:`content_loss` holding the target features."""

    def __init__(self, target: Tensor, *, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.register_buffer("target", target.detach())
        self.reduction: Reduction = reduction

    def forward(self, feats: Tensor) -> Tensor:
        return content_loss(feats, self.target, reduction=self.reduction)


class StyleLoss(nn.Module):
    """Module form of :func:`style_loss` holding the target Gram matrix."""

    def __init__(self, target_gram: Tensor, *, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.register_buffer("target", target_gram.detach())
        self.reduction: Reduction = reduction

    def forward(self, feats: Tensor) -> Tensor:
        return style_loss(feats, self.target, reduction=self.reduction)


def blend_grams(grams: list[Tensor], weights: list[float]) -> Tensor:
    """Weighted mean of Gram matrices of several style images (weights are normalized).

    Example:
        >>> blend_grams([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)], [1.0, 3.0])[0, 0, 0]
        tensor(0.7500)
    """
    if len(grams) != len(weights) or not grams:
        raise ValueError("need one blend weight per style image")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"style blend weights must be >= 0 with a positive sum, got {weights}")
    total = float(sum(weights))
    return sum(g * (w / total) for g, w in zip(grams, weights, strict=True))  # type: ignore[return-value]
