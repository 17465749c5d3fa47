"""Regional style: a mask image whose flat colours (or grey levels) say which style goes where.

The rules (also in ``--mask``'s help and docs/masks.md):

* **Regions.** The mask's colours are grouped: colours within :data:`MERGE_DISTANCE` of a
  more frequent colour (8-bit RGB, Euclidean) join it (JPEG noise). A group is a region only
  if it has *interior* pixels: at least :data:`MIN_INTERIOR` of the mask's pixels whose 3x3
  neighbourhood is all of that group. Antialiased edges (lines of in-between colours one or
  two pixels wide) and specks have none; their pixels go to the nearest region colour.
* **Order.** Regions are sorted by luminance (0.299 R + 0.587 G + 0.114 B), darkest first;
  ties by R, then G, then B.
* **Mapping.** With as many regions as style images, region i takes style i. With one region
  more, the darkest region keeps the photo ("no style") and the others take the styles in
  order: black/white with one style = photo / style. Any other count is an error.
* **Soft edges.** :func:`soft_weights` resizes the one-hot regions to an image's size and
  blurs them with a Gaussian of ``feather`` x the long side (0: hard edges); the weights are
  a partition of unity (they sum to 1 at every pixel).

A mask is stretched to each content image; aspect ratios more than :data:`MAX_ASPECT_DIFF`
apart are refused.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .errors import InputError
from .io import resize

log = logging.getLogger(__name__)

#: Colours closer than this (8-bit RGB, Euclidean) to a more frequent one are the same colour.
MERGE_DISTANCE = 40.0
#: A colour group is a region only with at least this fraction of the pixels in its interior.
MIN_INTERIOR = 0.001
#: More colour groups than this: the file is not a mask (a photo, a noisy scan).
MAX_GROUPS = 64
#: Largest relative difference of the mask's and the content's aspect ratios (then stretched).
MAX_ASPECT_DIFF = 0.05


@dataclass(frozen=True)
class Mask:
    """A parsed mask: one-hot regions and what each channel is.

    ``regions`` is (1, S + 1, H, W) float32 at the mask's own size: channel k < S is the
    region of style k, channel S the region that keeps the photo (all zeros when there is
    none). ``colors`` and ``fractions`` describe each channel (``None`` / 0 when absent).
    """

    regions: Tensor
    colors: tuple[tuple[int, int, int] | None, ...]
    fractions: tuple[float, ...]

    @property
    def styles(self) -> int:
        """Number of style regions S."""
        return self.regions.shape[1] - 1

    @property
    def has_none(self) -> bool:
        """Whether a region keeps the photo."""
        return self.colors[-1] is not None

    def describe(self, style_names: list[str] | None = None) -> list[dict[str, object]]:
        """One JSON-ready line per region: its colour, its share of the mask, what it gets."""
        out = []
        for k, (c, frac) in enumerate(zip(self.colors, self.fractions, strict=True)):
            if c is None:
                continue
            to = "none (photo)" if k == self.styles else \
                f"style {k + 1}" + (f" ({style_names[k]})" if style_names else "")
            out.append({"color": _hex(c), "fraction": round(frac, 4), "style": to})
        return out


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def _interior(labels: np.ndarray, count: int) -> np.ndarray:
    """Pixels per label whose 3x3 neighbourhood (edge pixels: the part inside) is all that label."""
    h, w = labels.shape
    pad = np.pad(labels, 1, mode="edge")
    same = np.ones((h, w), dtype=bool)
    for dy in range(3):
        for dx in range(3):
            same &= pad[dy:dy + h, dx:dx + w] == labels
    return np.bincount(labels[same], minlength=count)


def parse_mask(image: Image.Image, styles: int, *, name: str = "mask") -> Mask:
    """The regions of a mask image for ``styles`` style images (the rules in the module's
    docstring).

    Args:
        image: the mask, any Pillow mode (converted to 8-bit RGB).
        styles: number of style images S (at least 1).
        name: what error messages call the mask (its file name).
    Returns:
        a :class:`Mask` with (1, S + 1, H, W) one-hot regions.
    Raises:
        InputError: too many colours, or a number of regions other than S or S + 1.
    Example:
        >>> im = Image.new("L", (40, 20)); im.paste(255, (20, 0, 40, 20))
        >>> m = parse_mask(im, 2)
        >>> m.regions.shape, m.regions[0, :, 0, 0].tolist(), m.regions[0, :, 0, 39].tolist()
        (torch.Size([1, 3, 20, 40]), [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    """
    if styles < 1:
        raise InputError("a mask needs at least one style image")
    a = np.asarray(image.convert("RGB"), dtype=np.int64)
    h, w, _ = a.shape
    packed = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
    uniq, inverse, counts = np.unique(packed.ravel(), return_inverse=True, return_counts=True)
    cols = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], 1).astype(np.float64)
    group, centres = _group_colours(cols, counts, name)
    region, colours = _regions(cols, group, centres, group[inverse].reshape(h, w), inverse)
    n = len(colours)
    if n not in (styles, styles + 1):
        listed = ", ".join(map(_hex, colours))
        raise InputError(f"{name}: {n} region(s) ({listed}, darkest first) for {styles} style image(s); the "
                         f"mask needs {styles} regions, or {styles + 1} with the darkest keeping the photo")
    # channel of each region: with a region more than styles, region 0 (darkest) is "no style"
    channel = list(range(n)) if n == styles else [styles, *range(styles)]
    onehot = np.zeros((styles + 1, h, w), dtype=np.float32)
    for r in range(n):
        onehot[channel[r]] = region == r
    fractions = onehot.reshape(styles + 1, -1).mean(1)
    out_colours: list[tuple[int, int, int] | None] = [None] * (styles + 1)
    for r in range(n):
        out_colours[channel[r]] = colours[r]
    return Mask(torch.from_numpy(onehot)[None], tuple(out_colours), tuple(float(f) for f in fractions))


def _group_colours(cols: np.ndarray, counts: np.ndarray, name: str) -> tuple[np.ndarray, list[int]]:
    """Groups of near colours: the most frequent colour not yet grouped takes every colour
    within :data:`MERGE_DISTANCE` of it.

    Args:
        cols: (K, 3) the distinct colours. counts: (K,) their pixel counts.
    Returns:
        (K,) the group of each colour, and the index of each group's centre colour.
    """
    group = np.full(len(cols), -1)
    centres: list[int] = []
    for i in np.argsort(-counts, kind="stable"):
        if group[i] >= 0:
            continue
        if len(centres) == MAX_GROUPS:
            raise InputError(f"{name}: more than {MAX_GROUPS} distinct colours: not a mask (use flat "
                             "colours or grey levels, one per region)")
        near = (group < 0) & (np.linalg.norm(cols - cols[i], axis=1) <= MERGE_DISTANCE)
        group[near] = len(centres)
        centres.append(int(i))
    return group, centres


def _regions(cols: np.ndarray, group: np.ndarray, centres: list[int], labels: np.ndarray,
             inverse: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The regions: groups with enough interior pixels, darkest first; every pixel goes to its
    own group's region, or (edges, specks, dropped groups) to the nearest region colour.

    Args:
        cols: (K, 3) distinct colours; group: (K,) their groups; centres: each group's centre
        colour; labels: (H, W) each pixel's group; inverse: (H * W,) each pixel's colour.
    Returns:
        (H, W) region index of every pixel, and each region's colour.
    """
    h, w = labels.shape
    interior = _interior(labels, len(centres))
    keep = [g for g in range(len(centres)) if interior[g] >= max(1, MIN_INTERIOR * h * w)]
    if not keep:   # e.g. a 1-2 px tall mask: no pixel has a full neighbourhood
        keep = [int(np.argmax(np.bincount(labels.ravel(), minlength=len(centres))))]
    centre_rgb = cols[[centres[g] for g in keep]]
    keep = [keep[j] for j in sorted(range(len(keep)), key=lambda j: (_luma(centre_rgb[j]), *centre_rgb[j]))]
    centre_rgb = cols[[centres[g] for g in keep]]
    to_region = np.zeros(len(centres), dtype=np.int64)
    for r, g in enumerate(keep):
        to_region[g] = r
    region_of_colour = to_region[group]
    dropped = ~np.isin(group, keep)
    if dropped.any():
        d = np.linalg.norm(cols[dropped][:, None] - centre_rgb[None], axis=2)
        region_of_colour[dropped] = d.argmin(1)
    colours = [tuple(int(v) for v in cols[centres[g]]) for g in keep]
    return region_of_colour[inverse].reshape(h, w), colours  # type: ignore[return-value]


def check_aspect(mask_hw: tuple[int, int], content_hw: tuple[int, int], *, name: str = "mask") -> None:
    """An InputError when the mask's aspect ratio differs from the content's by more than
    :data:`MAX_ASPECT_DIFF` (a smaller difference is stretched away, with a log line
    above 1 %)."""
    am, ac = mask_hw[1] / mask_hw[0], content_hw[1] / content_hw[0]
    diff = abs(am / ac - 1)
    if diff > MAX_ASPECT_DIFF:
        raise InputError(f"{name} is {mask_hw[1]}x{mask_hw[0]} px (aspect {am:.3f}), the content is "
                         f"{content_hw[1]}x{content_hw[0]} (aspect {ac:.3f}): the aspect ratios differ by "
                         f"more than {MAX_ASPECT_DIFF:.0%}; make the mask with the content's shape")
    if diff > 0.01:
        log.info("%s: stretched to the content's aspect ratio (%.1f %% apart)", name, 100 * diff)


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (B, C, H, W) with edge-replicated borders."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def soft_weights(regions: Tensor, hw: tuple[int, int], feather: float) -> Tensor:
    """Region weights of an image of size ``hw``: a soft partition of unity.

    Args:
        regions: (1, K, H, W) one-hot (or soft) regions, any size.
        hw: (h, w) of the image the weights are for.
        feather: Gaussian sigma as a fraction of ``max(hw)`` (0: no blur).
    Returns:
        (1, K, h, w) float32 weights >= 0 that sum to 1 at every pixel.
    Example:
        >>> r = torch.zeros(1, 2, 8, 8); r[:, 0, :, :4] = 1; r[:, 1, :, 4:] = 1
        >>> soft_weights(r, (16, 16), 0.05).sum(1).allclose(torch.ones(1, 16, 16))
        True
    """
    w = regions.float()
    if tuple(w.shape[-2:]) != tuple(hw):
        down = hw[0] < w.shape[-2] or hw[1] < w.shape[-1]
        w = F.interpolate(w, size=hw, mode="bilinear", align_corners=False, antialias=down)
    if feather > 0:
        w = _gaussian_blur(w, feather * max(hw))
    w = w.clamp_min(0)
    return w / w.sum(1, keepdim=True).clamp_min(1e-8)


def keep_photo(image: Tensor, photo: Tensor, weight: Tensor) -> Tensor:
    """``image`` (B, 3, H, W) with the photo blended in by the (1, 1, h, w) no-style weight
    (both resized to ``image``'s size): ``image (1 - w) + photo w``."""
    hw = tuple(image.shape[-2:])
    if tuple(weight.shape[-2:]) != hw:
        weight = F.interpolate(weight, size=hw, mode="bilinear", align_corners=False)
    photo = resize(photo, hw)  # type: ignore[arg-type]
    weight = weight.to(image)
    return (image * (1 - weight) + photo.to(image) * weight).clamp(0, 1)
