"""Quality report: how far a stylized image is from its content and from its style.

At a fixed evaluation size (long side 512 px by default; every image is resized so its long
side is that size, the output to the content's evaluation size):

* content distance = ||F(o) - F(c)||^2 / ||F(c)||^2 on relu4_2,
* style distance = mean over relu1_1..relu5_1 of ||G(o) - G(s)||^2 / ||G(s)||^2 with
  G = F F^T / (H W),

on the bundled VGG19 with max pooling, in float32. Lower is better on both.

Three picture measures without a network, for what the distances average away
(``benchmarks/bench_fast.py`` reports them beside the paintings' own): the number of
colours a picture uses (:func:`palette_size`), how much it changes over a few pixels
(:func:`detail_energy`) and how far its colours are from a painting's, wherever they sit
(:func:`color_distance`).
"""

from __future__ import annotations

from dataclasses import dataclass

import kornia.color
import torch
import torch.nn.functional as F
from torch import Tensor

from . import color
from .errors import ShapeError, check_number, check_pixels
from .io import MIN_SIDE, fit_long_side, resize, resize_long_side
from .losses import content_loss, gram_matrix, masked_style_errors, style_loss
from .vgg import CONTENT_LAYERS, STYLE_LAYERS, VGGFeatures

#: The report's layers are fixed (whatever a run's own were): Gatys et al.'s.
SCORE_STYLE_LAYERS = STYLE_LAYERS
SCORE_CONTENT_LAYER = CONTENT_LAYERS[0]


@dataclass(frozen=True)
class Score:
    """Distances of one output; lower is better."""

    content: float
    style: float
    style_per_layer: dict[str, float]
    size: int

    def as_dict(self) -> dict[str, object]:
        return {"content_distance": self.content, "style_distance": self.style,
                "style_per_layer": self.style_per_layer, "eval_size": self.size}


@torch.no_grad()
def score(content: Tensor, style: Tensor, output: Tensor, *, size: int = 512,
          vgg: VGGFeatures | None = None) -> Score:
    """Content and style distances of ``output`` (all three (1, 3, H, W) RGB in [0, 1]).

    Example:
        >>> vgg = VGGFeatures(pretrained=False)
        >>> x = torch.rand(1, 3, 40, 60)
        >>> s = score(x, x, x, size=64, vgg=vgg)
        >>> s.content, s.style
        (0.0, 0.0)
    """
    for name, t in (("content", content), ("style", style), ("output", output)):
        check_pixels(t, name)
    vgg = vgg if vgg is not None else VGGFeatures(pooling="max")
    dev = next(vgg.parameters()).device
    hw = fit_long_side(tuple(content.shape[-2:]), size)  # type: ignore[arg-type]
    c = resize(content.float(), hw).to(dev)
    o = resize(output.float(), hw).to(dev)
    s = resize_long_side(style.float(), size).to(dev)
    layers = (*SCORE_STYLE_LAYERS, SCORE_CONTENT_LAYER)
    fo, fc, fs = vgg(o, layers), vgg(c, (SCORE_CONTENT_LAYER,)), vgg(s, SCORE_STYLE_LAYERS)
    per_layer = {n: float(style_loss(fo[n], gram_matrix(fs[n]))) for n in SCORE_STYLE_LAYERS}
    return Score(content=float(content_loss(fo[SCORE_CONTENT_LAYER], fc[SCORE_CONTENT_LAYER])),
                 style=sum(per_layer.values()) / len(per_layer), style_per_layer=per_layer,
                 size=size)


@torch.no_grad()
def region_style_distances(output: Tensor, styles: list[Tensor], weights: Tensor, *, size: int = 512,
                           vgg: VGGFeatures | None = None) -> list[list[float]]:
    """Style distance of each region of ``output`` to each style: ``d[r][s]`` is the mean over
    relu1_1..relu5_1 of the relative error between the masked Gram of region r
    (:func:`~warpaint.losses.masked_gram`, sum w f f^T / sum w) and style s's Gram, at the
    fixed evaluation size (as :func:`score`).

    Args:
        output: (1, 3, H, W) image in [0, 1].
        styles: (1, 3, H', W') style images.
        weights: (1, R, h, w) region weights with the output's aspect ratio (any size).
    Returns:
        R lists of len(styles) distances.
    """
    check_pixels(output, "output")
    vgg = vgg if vgg is not None else VGGFeatures(pooling="max")
    dev = next(vgg.parameters()).device
    hw = fit_long_side(tuple(output.shape[-2:]), size)  # type: ignore[arg-type]
    fo = vgg(resize(output.float(), hw).to(dev), SCORE_STYLE_LAYERS)
    weights = weights.float().to(dev)
    out = torch.zeros(weights.shape[1], len(styles), dtype=torch.float64)
    for si, style in enumerate(styles):
        check_pixels(style, f"styles[{si}]")
        fs = vgg(resize_long_side(style.float(), size).to(dev), SCORE_STYLE_LAYERS)
        for n in SCORE_STYLE_LAYERS:
            target = gram_matrix(fs[n])[:, None].expand(1, weights.shape[1], -1, -1)
            out[:, si] += masked_style_errors(fo[n], target, weights)[0].double().cpu()
    return (out / len(SCORE_STYLE_LAYERS)).tolist()


def _one_image(image: Tensor, name: str = "image") -> Tensor:
    """A checked (1, 3, H, W) picture in [0, 1] as float32 on the CPU."""
    check_pixels(image, name)
    if image.shape[0] != 1:
        raise ShapeError(f"{name} must be one image (batch 1), got a batch of {image.shape[0]}")
    return image.detach().float().cpu()


@torch.no_grad()
def palette_size(image: Tensor, bins: int = 8) -> float:
    """Effective number of colours of a (1, 3, H, W) RGB image in [0, 1]: the exponential of
    the entropy of its histogram over ``bins``^3 equal RGB cells (1 for a flat image; a
    picture whose pixels fill n cells equally gives n). Computed on the CPU.

    Example:
        >>> palette_size(torch.full((1, 3, 8, 8), 0.3))
        1.0
    """
    check_number("bins", bins, lo=1, hi=64, integer=True)
    q = (_one_image(image)[0] * bins).long().clamp_(max=bins - 1)      # cell of each channel value
    p = torch.bincount(((q[0] * bins + q[1]) * bins + q[2]).flatten(), minlength=bins**3).double()
    p = p[p > 0] / p.sum()
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def detail_energy(image: Tensor, factor: float = 3.0) -> float:
    """Mean absolute :func:`~warpaint.color.fine_detail` of a (1, 3, H, W) RGB image's luma
    (the luma less a blur of about ``0.57 * factor`` px), in [0, 1] units: 0 for a flat or
    smooth picture, more the more it changes over a few pixels. Compare images at one size."""
    check_number("factor", factor, lo=1, lo_open=True, hi=64)
    return float(color.detail_energy(_one_image(image), factor)[0])


@torch.no_grad()
def color_distance(a: Tensor, b: Tensor, *, projections: int = 64, samples: int = 65536,
                   seed: int = 0) -> float:
    """Sliced Wasserstein distance between the CIELAB colours of two (1, 3, H, W) RGB images
    in [0, 1] (sizes may differ), in Lab units: the mean over ``projections`` random
    directions of the distance between the sorted projections of up to ``samples`` pixels of
    each (the same number from both, drawn at random with ``seed``). 0 when the two use the
    same colours in the same amounts, wherever they sit. Computed on the CPU.

    Example:
        >>> x = torch.rand(1, 3, 16, 16)
        >>> color_distance(x, x.flip(-1)) < 1e-4
        True
    """
    check_number("projections", projections, lo=1, hi=4096, integer=True)
    check_number("samples", samples, lo=1, integer=True)
    labs = [kornia.color.rgb_to_lab(_one_image(x, name))[0].flatten(1).T for x, name in ((a, "a"), (b, "b"))]
    g = torch.Generator().manual_seed(seed)
    n = min(samples, *(len(x) for x in labs))
    picked = [x[torch.randperm(len(x), generator=g)[:n]] for x in labs]     # (n, 3) each
    directions = F.normalize(torch.randn(3, projections, generator=g), dim=0)
    sorted_a, sorted_b = ((x @ directions).sort(0).values for x in picked)
    return float((sorted_a - sorted_b).abs().mean())


def score_files(content: str, style: str, output: str, *, size: int = 512, device: str = "auto") -> Score:
    """:func:`score` of three image files (``-``: stdin), after checking the size and the
    memory it needs."""
    from .device import pick_device
    from .io import pil_to_tensor, read_pil
    from .memory import check_budget, score_peak_bytes

    check_number("size", size, lo=MIN_SIDE, hi=4096, integer=True)
    dev = pick_device(device)
    images = [read_pil(p) for p in (content, style, output)]
    hw = fit_long_side((images[0].height, images[0].width), size)
    check_budget(score_peak_bytes(hw), 0, dev, f"scoring at {size} px")
    return score(*(pil_to_tensor(im) for im in images), size=size, vgg=VGGFeatures().to(dev))
