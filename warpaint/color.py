"""Colour preservation (Gatys et al. 2016, "Preserving Color in Neural Artistic Style Transfer").

Two methods:

* ``luminance``: style transfer runs on luminance only (the style's luminance first matched
  in mean and spread to the content's); the result's luminance is then joined with the
  content's chroma (YCbCr).
* ``histogram``: the style image's colours are mapped onto the content's colour distribution
  (mean and covariance, a linear map with symmetric matrix square roots) before transfer.

Also the colour statistics the fast model reads and matches (:func:`color_moments`,
:func:`match_moments`), the photo's fine luma detail it puts back (:func:`add_detail_`) and
the strength of fine detail it matches to the painting's (:func:`detail_energy`,
:func:`match_detail_`).
"""

from __future__ import annotations

from typing import Literal

import kornia.color
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ShapeError
from .io import resize

ColorMode = Literal["none", "luminance", "histogram"]


#: ITU-R BT.601 luma weights of R, G, B (kornia's YCbCr uses the same).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def luminance(image: Tensor) -> Tensor:
    """Luma Y of (B, 3, H, W) RGB images, shape (B, 1, H, W) (no 3-channel temporary).

    A weighted sum of the channel slices: as a 1x1 convolution (``F.conv2d``) it took 50
    times as long on a CPU (9.6 ms against 0.19 ms at 640 x 480, 2 threads).
    """
    if image.ndim != 4 or image.shape[1] != 3:
        raise ShapeError(f"luminance needs (B, 3, H, W) RGB, got {tuple(image.shape)}")
    r, g, b = LUMA_WEIGHTS
    y = image[:, 0:1] * r
    return y.add_(image[:, 1:2], alpha=g).add_(image[:, 2:3], alpha=b)


def gray3(image: Tensor) -> Tensor:
    """Luma replicated to three channels: a grayscale image in the library's RGB contract."""
    return luminance(image).expand(-1, 3, -1, -1).contiguous()


def match_luminance(style: Tensor, content: Tensor) -> Tensor:
    """Grayscale ``style`` whose luma has the mean and standard deviation of ``content``'s.

    Args:
        style: (B, 3, H, W) RGB.
        content: (B, 3, H', W') RGB.
    Returns:
        (B, 3, H, W) gray RGB in [0, 1].
    """
    ys, yc = luminance(style), luminance(content)
    out = (ys - ys.mean()) / ys.std().clamp_min(1e-6) * yc.std() + yc.mean()
    return out.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def join_luminance(luma_source: Tensor, chroma_source: Tensor) -> Tensor:
    """Image with the luma of ``luma_source`` and the chroma (Cb, Cr) of ``chroma_source``.

    ``chroma_source`` is resized to ``luma_source``'s size. Both are (B, 3, H, W) RGB.
    """
    y = kornia.color.rgb_to_ycbcr(luma_source)[:, :1]
    cbcr = kornia.color.rgb_to_ycbcr(resize(chroma_source, tuple(luma_source.shape[-2:])))[:, 1:]
    return kornia.color.ycbcr_to_rgb(torch.cat([y, cbcr], 1)).clamp(0, 1)


def fine_detail(luma: Tensor, factor: float) -> Tensor:
    """The fine detail of (B, 1, H, W) luma: the luma less itself shrunk ``factor`` times
    (antialiased) and enlarged back (bilinear), a low-pass close to a Gaussian of about
    ``0.57 * factor`` px; (B, 1, H, W), about zero-mean.

    Example:
        >>> flat = torch.full((1, 1, 16, 16), 0.5)
        >>> float(fine_detail(flat, 3.0).abs().max()) < 1e-6
        True
    """
    h, w = luma.shape[-2:]
    small = F.interpolate(luma, size=(max(1, round(h / factor)), max(1, round(w / factor))),
                          mode="bilinear", antialias=True, align_corners=False)
    return luma - F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def add_detail_(image: Tensor, source: Tensor, amount: float, factor: float) -> Tensor:
    """Add ``amount`` times the :func:`fine_detail` of ``source``'s luma to every channel of
    ``image``, in place, and clamp to [0, 1]: the photo's fine shapes put back into a
    stylized result that lost them. Both (B, 3, H, W) RGB of one size; returns ``image``.
    (In place: at print sizes only one-channel maps are added to the peak memory.) The
    engine's :func:`warpaint.stylize.add_detail` adds a full-colour Laplacian level between
    its scales in the same spirit."""
    if amount != 0:
        image.add_(fine_detail(luminance(source.to(image.dtype)), factor), alpha=amount).clamp_(0, 1)
    return image


def detail_energy(image: Tensor, factor: float) -> Tensor:
    """How much (B, 3, H, W) RGB images change over a few pixels: the mean absolute
    :func:`fine_detail` of their luma, shape (B,). 0 for flat or smooth pictures. Compare
    images at one size and ``factor``.

    Example:
        >>> x = torch.rand(1, 3, 32, 32)
        >>> bool(detail_energy(x, 3.0) > detail_energy(torch.full_like(x, 0.5), 3.0))
        True
    """
    return fine_detail(luminance(image), factor).abs().mean((1, 2, 3))


def match_detail_(image: Tensor, target: float, factor: float, amount: float = 1.0,
                  max_gain: float = 3.0) -> float:
    """Move the strength of a (1, 3, H, W) RGB image's fine detail toward ``target``, in place.

    The fine detail of its luma (:func:`fine_detail`) is scaled by
    ``g = (target / detail_energy(image, factor)) ** amount``, ``g`` kept within
    [1 / max_gain, max_gain]: ``g - 1`` times it is added to every channel (as
    :func:`add_detail_` adds the photo's); then clamp to [0, 1]. The low-pass is not an
    exact projection, so :func:`detail_energy` changes by about ``g`` for noise-like
    detail and by less for smoother detail: the result moves toward ``target`` without
    always reaching it. The fast model gives a busy painting's result more fine detail and
    a calm one's less this way (texture strength follows the painting, as the colour
    transfer makes the colours follow it). Returns the gain ``g``.

    Example:
        >>> x = torch.rand(1, 3, 32, 32) * 0.2 + 0.4
        >>> e = float(detail_energy(x, 3.0))
        >>> g = match_detail_(x, 1.5 * e, 3.0)
        >>> round(g, 3), abs(float(detail_energy(x, 3.0)) / e - 1.5) < 0.05
        (1.5, True)
    """
    detail = fine_detail(luminance(image), factor)
    current = float(detail.abs().mean())
    if amount == 0 or current <= 1e-6 or target <= 0:      # flat: no detail to scale
        return 1.0
    gain = min(max_gain, max(1 / max_gain, (target / current) ** amount))
    image.add_(detail, alpha=gain - 1).clamp_(0, 1)
    return gain


def _sym_sqrt(cov: Tensor, inverse: bool = False) -> Tensor:
    vals, vecs = torch.linalg.eigh(cov)
    vals = vals.clamp_min(1e-8)
    vals = vals.rsqrt() if inverse else vals.sqrt()
    return vecs @ torch.diag_embed(vals) @ vecs.transpose(-1, -2)


def match_color(source: Tensor, target: Tensor) -> Tensor:
    """Map ``source``'s colours onto ``target``'s colour mean and covariance.

    ``x' = C_t^{1/2} C_s^{-1/2} (x - mu_s) + mu_t`` per image, clamped to [0, 1].

    Args:
        source: (B, 3, H, W) RGB whose colours change (the style image).
        target: (B, 3, H', W') RGB giving the colour distribution (the content image).
    Returns:
        (B, 3, H, W).
    """
    b = source.shape[0]
    s = source.double().reshape(b, 3, -1)
    t = target.double().reshape(target.shape[0], 3, -1)
    mu_s, mu_t = s.mean(-1, keepdim=True), t.mean(-1, keepdim=True)
    cs = (s - mu_s) @ (s - mu_s).transpose(1, 2) / s.shape[-1]
    ct = (t - mu_t) @ (t - mu_t).transpose(1, 2) / t.shape[-1]
    eye = torch.eye(3, dtype=torch.float64, device=cs.device) * 1e-5   # on the run's device
    m = _sym_sqrt(ct + eye) @ _sym_sqrt(cs + eye, inverse=True)
    out = m @ (s - mu_s) + mu_t
    return out.reshape(source.shape).to(source.dtype).clamp(0, 1)


def channel_mean_var(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (biased) variance of (B, C, H, W) maps, (B, C) each.

    Two plain passes (the mean, then the mean square deviation from it): on a CPU several
    times faster than ``Tensor.var``, whose Welford reduction is slow on large maps.

    Example:
        >>> x = torch.rand(2, 3, 5, 7)
        >>> mean, var = channel_mean_var(x)
        >>> torch.allclose(var, x.flatten(2).var(2, unbiased=False), atol=1e-6)
        True
    """
    mean = x.mean((2, 3), keepdim=True)
    return mean.flatten(1), (x - mean).square().mean((2, 3))


def color_moments(image: Tensor) -> Tensor:
    """Per-channel mean and standard deviation of (B, 3, H, W) images, (B, 6): means first."""
    mean, var = channel_mean_var(image)
    return torch.cat([mean, var.sqrt()], 1)


def match_moments(image: Tensor, moments: Tensor, eps: float = 1e-4, *, own: Tensor | None = None) -> Tensor:
    """``image`` with each channel shifted and scaled to the (B, 6) ``moments`` of
    :func:`color_moments` (AdaIN, Huang & Belongie 2017, on pixels), clamped to [0, 1].
    Differentiable; used by the feed-forward models to take the style's palette. ``own``:
    the moments to map from (default: the image's; a tile passes its whole image's).

    Example:
        >>> x, y = torch.rand(2, 3, 8, 8), 0.4 + 0.2 * torch.rand(2, 3, 5, 5)
        >>> torch.allclose(color_moments(match_moments(x, color_moments(y))), color_moments(y), atol=1e-3)
        True
    """
    own = color_moments(image) if own is None else own
    scale = moments[:, 3:] / (own[:, 3:] + eps)                    # (B, 3) each: one multiply-add
    shift = moments[:, :3] - own[:, :3] * scale
    return torch.addcmul(shift[:, :, None, None], image, scale[:, :, None, None]).clamp_(0, 1)
