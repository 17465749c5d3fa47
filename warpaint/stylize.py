"""The optimization engine of Gatys et al. style transfer: tensors in, tensor out, no I/O.

Coarse to fine: the image is optimized at a few scales whose long sides double up to
``size``; each scale starts from the previous result, upsampled. Progress is reported
through a callback that receives a frozen :class:`Iterate`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from . import color
from .device import check_device_name, enable_fast_math, pick_device, pick_dtype, use_channels_last
from .errors import (
    InputError,
    NumericalError,
    check_number,
    check_pixels,
    check_weights,
    comma_floats,
    comma_names,
)
from .io import MIN_SIDE, fit_long_side, resize, resize_long_side
from .losses import (
    blend_grams,
    gram_matrix,
    layers_content_loss,
    layers_masked_style_loss,
    layers_style_loss,
    region_grams,
    temporal_loss,
    total_variation,
)
from .masks import check_aspect, keep_photo, soft_weights
from .memory import ENGINE_BASE, IMAGE_PER_PIXEL, STYLE_PER_PIXEL, budget_bytes, check_budget, plan_scale
from .stn.correspond import Matches
from .stn.geometry import sample
from .stn.geostyle import FULL_FROM, WARP_LR, WARP_WEIGHTS, Geometry, estimate_warp, refused
from .tiling import ScalePlan, cuts, layout, segments
from .vgg import CONTENT_LAYERS, LAYER_INDEX, STYLE_LAYERS, VGGFeatures, layer_stride

log = logging.getLogger(__name__)

#: The key of a masked run's style targets that holds the style regions' weights (1, S, H, W)
#: at the scale's size (the other keys are layer names with (1, S, C, C) Grams, one per style).
MASK_KEY = "_mask"


#: Scales with a longer side than this (px) take ``detail_steps`` steps when it is set.
DETAIL_FROM = 1024

#: The option groups of ``--help``: every field of :class:`StylizeConfig` in one of them.
OPTION_GROUPS: dict[str, tuple[str, ...]] = {
    "schedule": ("size", "steps", "coarse_steps", "detail_steps", "min_size", "content_detail"),
    "losses": ("content_weight", "style_weight", "tv_weight", "content_layers", "style_layers",
               "style_layer_weights"),
    "style input": ("style_blend", "style_scale", "style_regions", "preserve_color", "mask",
                    "mask_feather"),
    "geometry": ("warp", "warp_strength", "warp_force", "warp_grid", "align_style"),
    "optimizer": ("optimizer", "lr", "init", "pooling", "seed"),
    "runtime": ("device", "dtype", "max_memory", "tile"),
}


@dataclass(frozen=True)
class StylizeConfig:
    """Every option of the optimization engine. The CLI's flags are generated from these."""

    size: int = field(default=512, metadata={"help": "long side of the result in px (aspect ratio kept)"})
    steps: int = field(default=10, metadata={"help": "optimizer steps at the final scale"})
    coarse_steps: int = field(default=-1, metadata={
        "help": "optimizer steps at each coarser scale; -1 = twice --steps (a step at half "
                "the size costs a quarter as much)"})
    detail_steps: int = field(default=-1, metadata={
        "help": f"optimizer steps at each scale over {DETAIL_FROM} px (long side), the final one "
                "included: at print sizes the coarser scales have placed the strokes and a few "
                "steps sharpen them; -1 = as --steps / --coarse-steps"})
    min_size: int = field(default=128, metadata={
        "help": "long side of the coarsest scale in px (at least): scales halve from --size "
                "while they stay >= this (set it to --size for a single scale)"})
    content_detail: bool = field(default=True, metadata={
        "help": "when moving to a finer scale, add the content's detail that the coarser scale "
                "could not hold (its Laplacian-pyramid band) to the upsampled image"})
    content_weight: float = field(default=1.0, metadata={"help": "weight of the content loss"})
    style_weight: float = field(default=12.0, metadata={"help": "weight of the style loss"})
    tv_weight: float = field(default=0.0, metadata={"help": "weight of the total-variation loss"})
    content_layers: tuple[str, ...] = field(default=CONTENT_LAYERS, metadata={
        "help": "comma-separated VGG19 layers for the content loss", "type": comma_names})
    style_layers: tuple[str, ...] = field(default=STYLE_LAYERS, metadata={
        "help": "comma-separated VGG19 layers for the style loss", "type": comma_names})
    style_layer_weights: tuple[float, ...] = field(default=(), metadata={
        "help": "comma-separated weights, one per style layer (default: equal)", "type": comma_floats})
    style_blend: tuple[float, ...] = field(default=(), metadata={
        "help": "comma-separated blend weights, one per style image (default: equal)",
        "type": comma_floats})
    style_scale: float = field(default=1.0, metadata={
        "help": "size of the style image relative to the result's long side"})
    style_regions: int = field(default=0, metadata={
        "help": "match style statistics per cell of an N x N grid over content and style "
                "(0 = auto: 2 with --align-style, else 1 = whole-image Gram matrices)"})
    mask: str = field(default="", metadata={
        "help": "mask image for regional style: its flat colours or grey levels, sorted darkest "
                "first, take the style images in the order given; with one colour more than "
                "styles, the darkest keeps the photo (no style), e.g. black/white with one style. "
                "Antialiased edge colours are ignored. See docs/masks.md", "metavar": "FILE"})
    mask_feather: float = field(default=0.01, metadata={
        "help": "soft mask edges: Gaussian blur of the regions with this sigma, as a fraction of "
                "the long side (0 = hard edges)"})
    warp: Literal["none", "affine", "tps"] = field(default="none", metadata={
        "help": "geometric style: warp the result toward the style's layout with an affine or "
                "thin-plate-spline transform fitted to VGG-feature matches (and, for portraits, "
                "face landmarks) and optimized with the pixels", "choices": ("none", "affine", "tps")})
    warp_strength: float = field(default=0.5, metadata={
        "help": "how far matched content points move toward their style partners "
                "(0 = not at all, 1 = all the way)"})
    warp_force: bool = field(default=False, metadata={
        "help": "apply --warp at full strength even when the matches show no shared layout "
                "(by default a low confidence scales the strength down or skips the warp, unless "
                "each image has a face, framed alike)"})
    warp_grid: int = field(default=6, metadata={
        "help": "control points per side of the TPS warp (border points stay fixed)"})
    align_style: Literal["none", "affine", "tps"] = field(default="none", metadata={
        "help": "warp the style image toward the content's layout before its statistics are "
                "taken (pairs with --style-regions)", "choices": ("none", "affine", "tps")})
    optimizer: Literal["lbfgs", "adam"] = field(default="lbfgs", metadata={
        "help": "optimizer over the pixels", "choices": ("lbfgs", "adam")})
    lr: float = field(default=0.0, metadata={
        "help": "learning rate (0 = the optimizer's default: 1 for L-BFGS, 0.02 for Adam)"})
    init: str = field(default="content", metadata={
        "help": "start image: content, noise, style, or an image file"})
    pooling: Literal["max", "avg"] = field(default="max", metadata={
        "help": "VGG pooling", "choices": ("max", "avg")})
    preserve_color: color.ColorMode = field(default="none", metadata={
        "help": "keep the content's colours: none, luminance (style on luma only) or "
                "histogram (style colours matched to the content first)",
        "choices": ("none", "luminance", "histogram")})
    seed: int = field(default=0, metadata={"help": "random seed (noise init)"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA, MPS, CPU), cpu, cuda, mps"})
    dtype: Literal["auto", "float32", "bfloat16"] = field(default="auto", metadata={
        "help": "compute dtype of the VGG passes: auto = bfloat16 on CPUs with native bf16, "
                "else float32 (TF32 on CUDA)", "choices": ("auto", "float32", "bfloat16")})
    max_memory: float = field(default=0.0, metadata={
        "help": "memory budget in GB for the run's estimated peak (0 = what the device has "
                "free): scales too large for it run in overlapping tiles; work that does not fit "
                "even so is refused before it starts"})
    tile: int = field(default=0, metadata={
        "help": "tile core in px: scales with a longer side run in overlapping tiles of this "
                "size (0 = auto: only scales too large for the memory budget, in the largest "
                "tiles that fit)"})

    def __post_init__(self) -> None:
        _check_config(self)

    def scales(self, hw: tuple[int, int]) -> list[tuple[int, int]]:
        """(H, W) of every scale, coarse to fine, for a content image of size ``hw``."""
        n = 1 + math.floor(math.log2(self.size / min(self.min_size, self.size)) + 1e-9)
        longs = [max(1, round(self.size / 2 ** (n - 1 - i))) for i in range(n)]
        out = [fit_long_side(hw, s) for s in longs]
        # Drop coarse scales too small for the deepest VGG layer (extreme aspect ratios).
        need = _min_side(self)
        kept = [s for s in out[:-1] if min(s) >= 2 * need] + [out[-1]]
        return kept

    @property
    def init_file(self) -> str | None:
        """The start image's file when ``init`` names one (not content, noise or style)."""
        return None if self.init in ("content", "noise", "style") else self.init

    @property
    def regions(self) -> int:
        """Side of the style-statistics grid (``style_regions`` with 0 resolved)."""
        if self.style_regions:
            return self.style_regions
        return 2 if self.align_style != "none" else 1

    def steps_at(self, index: int, count: int, long_side: int) -> int:
        """Optimizer steps at scale ``index`` of ``count`` (long side ``long_side`` px):
        ``detail_steps`` over :data:`DETAIL_FROM` px when set, else ``steps`` at the final
        scale and ``coarse_steps`` at each coarser one (-1: twice ``steps``).

        Example:
            >>> cfg = StylizeConfig(size=4096, steps=10, detail_steps=3)
            >>> [cfg.steps_at(i, 3, s) for i, s in enumerate((1024, 2048, 4096))]
            [20, 3, 3]
        """
        if self.detail_steps >= 0 and long_side > DETAIL_FROM:
            return self.detail_steps
        if index == count - 1:
            return self.steps
        return self.coarse_steps if self.coarse_steps >= 0 else 2 * self.steps


def add_detail(image: Tensor, content: Tensor, coarse_hw: tuple[int, int]) -> Tensor:
    """Add ``content``'s band-pass detail between ``coarse_hw`` and its own size to ``image``.

    ``image + content - up(down(content))``, clamped to [0, 1]: the Laplacian-pyramid level of
    the content that an image optimized at ``coarse_hw`` cannot contain. Starting a finer scale
    from it saves the optimizer most of the steps it otherwise spends re-creating edges.

    Args:
        image: (B, 3, H, W) upsampled coarse result.
        content: (B, 3, H, W) content image at the same size.
        coarse_hw: (h, w) of the coarser scale.
    """
    low = resize(resize(content, coarse_hw), tuple(content.shape[-2:]))  # type: ignore[arg-type]
    return (image + content - low).clamp(0.0, 1.0)


def _min_side(cfg: StylizeConfig) -> int:
    return max(layer_stride(n) for n in (*cfg.content_layers, *cfg.style_layers))


#: The plan of a scale that runs whole (no tiles, the full L-BFGS history).
WHOLE = ScalePlan()
#: The smallest tile core ``tile`` accepts (tiles overlap by at least 32 px on each side).
MIN_TILE = 64
#: Upper bounds of the options (beyond them a run could not finish on any machine).
MAX_SIZE = 16384
MAX_STEPS = 100_000
MAX_WEIGHT = 1e6


def _check_config(cfg: StylizeConfig) -> None:
    def bad(msg: str) -> None:
        raise InputError(msg)

    for name, lo, hi in (("size", MIN_SIDE, MAX_SIZE), ("min_size", MIN_SIDE, MAX_SIZE),
                         ("steps", 0, MAX_STEPS),
                         ("coarse_steps", -1, MAX_STEPS), ("detail_steps", -1, MAX_STEPS),
                         ("warp_grid", 3, 32), ("style_regions", 0, 8),
                         ("seed", 0, 2**63 - 1)):
        check_number(name, getattr(cfg, name), lo=lo, hi=hi, integer=True)
    for name in ("content_weight", "style_weight", "tv_weight"):
        check_number(name, getattr(cfg, name), lo=0, hi=MAX_WEIGHT)
    check_number("style_scale", cfg.style_scale, lo=0, lo_open=True, hi=8)
    check_number("lr", cfg.lr, lo=0, hi=10)
    check_number("warp_strength", cfg.warp_strength, lo=0, hi=1)
    check_number("mask_feather", cfg.mask_feather, lo=0, hi=0.25)
    check_number("max_memory", cfg.max_memory, lo=0)
    check_number("tile", cfg.tile, lo=0, hi=MAX_SIZE, integer=True)
    if 0 < cfg.tile < MIN_TILE:
        bad(f"tile must be 0 (auto) or at least {MIN_TILE} px, got {cfg.tile}")
    for name in ("style_layer_weights", "style_blend"):
        check_weights(name, getattr(cfg, name), hi=MAX_WEIGHT)
    for n in (*cfg.content_layers, *cfg.style_layers):
        if n not in LAYER_INDEX:
            bad(f"unknown VGG19 layer {n!r}; use names like relu1_1 ... relu5_4, conv4_2")
    if not cfg.content_layers:
        bad("at least one content layer is needed")
    if not cfg.style_layers:
        bad("at least one style layer is needed")
    if cfg.style_layer_weights and len(cfg.style_layer_weights) != len(cfg.style_layers):
        bad(f"{len(cfg.style_layer_weights)} style layer weights for {len(cfg.style_layers)} layers")
    for name, choices in (("optimizer", ("lbfgs", "adam")), ("pooling", ("max", "avg")),
                          ("preserve_color", ("none", "luminance", "histogram")),
                          ("warp", ("none", "affine", "tps")), ("align_style", ("none", "affine", "tps")),
                          ("dtype", ("auto", "float32", "bfloat16"))):
        if getattr(cfg, name) not in choices:
            bad(f"{name} must be one of {', '.join(choices)}, got {getattr(cfg, name)!r}")
    if cfg.warp != "none" and cfg.align_style != "none":
        bad("use warp or align_style, not both: they pull the geometry in opposite directions")
    if cfg.warp_force and cfg.warp == "none":
        bad("warp_force needs a warp (affine or tps)")
    if not isinstance(cfg.mask, str):
        bad(f"mask must be an image file or empty, got {cfg.mask!r}")
    if cfg.mask:
        for used, what in ((cfg.style_regions > 1, "style_regions > 1 (the mask chooses the regions)"),
                           (bool(cfg.style_blend), "style_blend (each mask region takes one style)"),
                           (cfg.warp != "none", "warp (the regions would not fit the warped result)"),
                           (cfg.align_style != "none", "align_style (the mask's regions are the layout)")):
            if used:
                bad(f"mask cannot be combined with {what}")
    if not isinstance(cfg.init, str) or not cfg.init:
        bad(f"init must be content, noise, style or an image file, got {cfg.init!r}")
    check_device_name(cfg.device)


@dataclass(frozen=True)
class Temporal:
    """A video frame's link to the previous one (Ruder et al. 2016): the run starts from
    ``target`` (the warm start) and its loss gains ``weight * temporal_loss(image, target,
    mask)`` (:func:`~warpaint.losses.temporal_loss`) at every scale."""

    target: Tensor     # (1, 3, H, W) in [0, 1]: the previous result warped into this frame
    mask: Tensor       # (1, 1, H, W) in [0, 1]: 0 where the flow is unreliable
    weight: float      # weight of the temporal loss

    def at(self, hw: tuple[int, int], device: torch.device) -> Temporal:
        """This link resized to ``hw`` on ``device``."""
        return Temporal(resize(self.target.to(device, torch.float32), hw),
                        resize(self.mask.to(device, torch.float32), hw), self.weight)


@dataclass(frozen=True)
class Iterate:
    """One optimizer step, as reported to the callback."""

    scale: int                 # index of the current scale, 0 = coarsest
    scales: int                # number of scales
    size: tuple[int, int]      # (H, W) of the current scale
    step: int                  # 1-based step within this scale
    steps: int                 # steps at this scale
    done: int                  # steps done over all scales
    total: int                 # steps over all scales
    losses: dict[str, float]   # weighted "content", "style", "tv" and "total", as this step saw the
                               # image (before its update; Result.final_losses has those after)
    image: Tensor              # (1, 3, H, W) in [0, 1], a detached copy, on the device
    tiles: int = 0             # tiles of this step (0: the scale runs whole)
    work: float = 0.0          # fraction of the run's work done (steps weighted by pixels)


Callback = Callable[[Iterate], None]


class Stylizer:
    """Reusable engine: holds the VGG network on its device, runs many stylizations.

    Example:
        >>> s = Stylizer(StylizeConfig(size=32, min_size=32, steps=2), pretrained=False)
        >>> s.run(torch.rand(1, 3, 24, 32), [torch.rand(1, 3, 32, 32)]).shape
        torch.Size([1, 3, 24, 32])
    """

    def __init__(self, cfg: StylizeConfig = StylizeConfig(), *, pretrained: bool = True) -> None:
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        self.dtype = pick_dtype(cfg.dtype, self.device)
        self.channels_last = use_channels_last(self.device, self.dtype)
        enable_fast_math(self.device)
        vgg = VGGFeatures(pooling=cfg.pooling, pretrained=pretrained).to(self.device)
        self.vgg = vgg.to(memory_format=torch.channels_last) if self.channels_last else vgg
        self.layers = tuple(dict.fromkeys((*cfg.content_layers, *cfg.style_layers)))
        self._current: tuple[Tensor, _Prepared] | None = None   # the run in progress
        #: Tiled scales draw a new tile layout every step (False: one fixed layout, which
        #: leaves seams; kept for the measurement in benchmarks/bench_tiling.py).
        self.shift_tiles = True

    # -- pieces -------------------------------------------------------------------------
    def _features(self, image: Tensor, layers: Sequence[str] | None = None) -> dict[str, Tensor]:
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype,
                            enabled=self.dtype != torch.float32):
            return self.vgg(image, self.layers if layers is None else layers)

    @torch.no_grad()
    def _targets(self, content: Tensor, styles: Sequence[Tensor], blend: Sequence[float],
                 hw: tuple[int, int], regions: int = 1,
                 plan: ScalePlan | None = None,
                 mask: Tensor | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Content features of ``content`` (already at ``hw``) and blended style Grams
        ((1, C, C), or (1, R, C, C) per region when ``regions > 1``). A tiled ``plan``: no
        content features (each tile takes its own), the Grams accumulated over tiles. With a
        ``mask`` ((1, S + 1, H', W') regions, see :meth:`run_detailed`): each style's own
        Gram, stacked (1, S, C, C), and under :data:`MASK_KEY` the soft weights (1, S, h, w)
        of the style regions at ``hw`` (the no-style region gets no style loss)."""
        cfg = self.cfg
        style_long = max(MIN_SIDE, round(max(hw) * cfg.style_scale))
        if plan is not None and plan.tiled:
            per_style = [self._tiled_grams(resize_long_side(s, style_long), plan) for s in styles]
            if mask is not None:
                return {}, self._masked_targets(per_style, mask, hw)
            return {}, {n: blend_grams([g[n] for g in per_style], list(blend)) for n in cfg.style_layers}
        feats = self._features(content, cfg.content_layers)
        content_t = {n: feats[n].float() for n in cfg.content_layers}
        feats_s = [self._features(resize_long_side(s, style_long),
                                  cfg.style_layers) for s in styles]
        # Regions per side: no more than any layer's feature map has rows or columns, in the
        # image at this scale and in every style (an empty cell would give 0 / 0).
        cells = {n: max(1, min(regions, *(d // layer_stride(n) for d in hw),
                               *(d for sf in feats_s for d in sf[n].shape[-2:])))
                 for n in cfg.style_layers}
        per_style = [{n: gram_matrix(sf[n]) if regions == 1 else
                      region_grams(sf[n], cells[n]) for n in cfg.style_layers} for sf in feats_s]
        if mask is not None:
            return content_t, self._masked_targets(per_style, mask, hw)
        style_t = {n: blend_grams([g[n] for g in per_style], list(blend)) for n in cfg.style_layers}
        return content_t, style_t

    def _tiled_grams(self, image: Tensor, plan: ScalePlan) -> dict[str, Tensor]:
        """Gram matrices (1, C, C) of the style layers of a (1, 3, H, W) ``image`` too large
        for one VGG pass: sums of feature outer products over the positions of each cell of
        a tile layout (the tile adds ``plan.margin`` px of context around its cell), divided
        by the positions counted."""
        cfg = self.cfg
        hw = tuple(image.shape[-2:])
        sums: dict[str, Tensor] = {}
        counts = dict.fromkeys(cfg.style_layers, 0)
        for y0, y1 in segments(cuts(hw[0], plan.core)):
            for x0, x1 in segments(cuts(hw[1], plan.core)):
                ey, ex = max(0, y0 - plan.margin), max(0, x0 - plan.margin)
                tile = image[..., ey:min(hw[0], y1 + plan.margin), ex:min(hw[1], x1 + plan.margin)]
                feats = self._features(tile, cfg.style_layers)
                for n in cfg.style_layers:
                    st = layer_stride(n)
                    f = feats[n][..., -(-(y0 - ey) // st):-(-(y1 - ey) // st),
                                 -(-(x0 - ex) // st):-(-(x1 - ex) // st)].float().flatten(2)
                    sums[n] = sums.get(n, 0) + torch.bmm(f, f.transpose(1, 2))
                    counts[n] += f.shape[-1]
        return {n: sums[n] / max(counts[n], 1) for n in cfg.style_layers}

    def _masked_targets(self, per_style: list[dict[str, Tensor]], mask: Tensor,
                        hw: tuple[int, int]) -> dict[str, Tensor]:
        """Style targets of a masked run: each style's (1, C, C) Gram stacked (1, S, C, C), and
        under :data:`MASK_KEY` the style regions' soft weights (1, S, h, w) at ``hw``."""
        cfg = self.cfg
        style_t = {n: torch.stack([g[n][0] for g in per_style])[None] for n in cfg.style_layers}
        style_t[MASK_KEY] = soft_weights(mask, hw, cfg.mask_feather)[:, :len(per_style)]
        return style_t

    def _style(self, feats: dict[str, Tensor], style_t: dict[str, Tensor]) -> Tensor:
        if MASK_KEY in style_t:
            return layers_masked_style_loss(feats, style_t, style_t[MASK_KEY], self.cfg.style_layers,
                                            self.cfg.style_layer_weights or None)
        return layers_style_loss(feats, style_t, self.cfg.style_layers, self.cfg.style_layer_weights or None)

    def losses(self, image: Tensor, content_t: dict[str, Tensor], style_t: dict[str, Tensor],
               geometry: Geometry | None = None, temporal: Temporal | None = None) -> dict[str, Tensor]:
        """Weighted losses of ``image`` against precomputed targets.

        With ``geometry`` (joint optimization), the style loss is the mean of the unwarped
        and the warped image's, and the warp's own terms (``warp_correspondence``,
        ``warp_smoothness``, ``warp_fold``) are added. With ``temporal`` (a video frame, at
        this scale), its ``temporal`` term is added.
        """
        cfg = self.cfg
        feats = self._features(image)
        c = layers_content_loss(feats, content_t, cfg.content_layers)
        s = self._style(feats, style_t)
        out = {"content": cfg.content_weight * c}
        if geometry is None:
            out["style"] = cfg.style_weight * s
        else:
            warped = sample(image, geometry.warp.grid(tuple(image.shape[-2:])).to(image.dtype),
                            padding_mode="border", align_corners=False)
            s_warped = self._style(self._features(warped, cfg.style_layers), style_t)
            out["style"] = cfg.style_weight * (s + s_warped) / 2
            for k, v in geometry.losses().items():
                out[f"warp_{k}"] = WARP_WEIGHTS[k] * v
        if cfg.tv_weight > 0:
            out["tv"] = cfg.tv_weight * total_variation(image.float())
        if temporal is not None:
            out["temporal"] = temporal.weight * temporal_loss(image, temporal.target, temporal.mask)
        out["total"] = sum(out.values())  # type: ignore[assignment]
        return out

    def tiled_losses(self, image: Tensor, content: Tensor, style_t: dict[str, Tensor], plan: ScalePlan,
                     offset: tuple[int, int]) -> tuple[dict[str, Tensor], Tensor, int]:
        """:meth:`losses` of an image too large for one pass, and its gradient, tile by tile.

        Each tile of the layout (:func:`~warpaint.tiling.layout` with ``offset``) takes its
        content target from the same window of ``content`` (so a tile's borders affect both
        sides alike) and its style loss against the whole image's Gram targets; its loss,
        weighted by its share of the pixels, is back-propagated alone and its gradient
        blended into the image's with the tile's window. The losses reported are the
        window-weighted means of the tiles' (the whole image's losses, as estimated).

        Args:
            image: (1, 3, H, W) the iterate (not modified).
            content: (1, 3, H, W) the content at this scale.
        Returns:
            the weighted losses, the gradient (1, 3, H, W) and the number of tiles.
        """
        cfg = self.cfg
        hw = tuple(image.shape[-2:])
        pixels = hw[0] * hw[1]
        tiles = layout(hw, plan.core, plan.margin, offset)  # type: ignore[arg-type]
        grad = torch.zeros_like(image)
        totals = {"content": 0.0, "style": 0.0}
        x = image.detach()
        for t in tiles:
            with torch.no_grad():
                target = {n: v.float() for n, v in
                          self._features(content[..., t.y0:t.y1, t.x0:t.x1], cfg.content_layers).items()}
            crop = x[..., t.y0:t.y1, t.x0:t.x1].clone().requires_grad_(True)
            feats = self._features(crop)
            c = cfg.content_weight * layers_content_loss(feats, target, cfg.content_layers)
            s = cfg.style_weight * self._style(feats, _crop_mask(style_t, t.y0, t.y1, t.x0, t.x1))
            ((c + s) * (t.pixels / pixels)).backward()
            grad[..., t.y0:t.y1, t.x0:t.x1] += t.window.to(grad) * crop.grad  # type: ignore[operator]
            share = float(t.window.sum()) / pixels
            totals["content"] += share * float(c.detach())
            totals["style"] += share * float(s.detach())
            del feats, crop, target
        out = {k: image.new_tensor(v) for k, v in totals.items()}
        if cfg.tv_weight > 0:
            whole = x.clone().requires_grad_(True)
            tv = cfg.tv_weight * total_variation(whole)
            tv.backward()
            grad += whole.grad  # type: ignore[operator]
            out["tv"] = tv.detach()
        out["total"] = sum(out.values())  # type: ignore[assignment]
        return out, grad, len(tiles)

    def _init_image(self, content: Tensor, styles: Sequence[Tensor], hw: tuple[int, int],
                    image: Tensor | None) -> Tensor:
        init = self.cfg.init
        if init == "content":
            return resize(content, hw)
        if init == "noise":
            g = torch.Generator().manual_seed(self.cfg.seed)
            return torch.rand((1, 3, *hw), generator=g).to(content.device)
        if init == "style":
            return resize(styles[0], hw)
        if image is None:
            raise InputError(f"init is the file {init!r}: load it and pass the image as init= (the "
                             "engine reads no files)")
        check_pixels(image, "init")
        return resize(image.to(content.device, torch.float32), hw)

    def align_style(self, style: Tensor, content: Tensor) -> tuple[Tensor, Geometry]:
        """The style image warped toward the content's layout (``cfg.align_style``).

        Returns the aligned style, with the content's aspect ratio and the style's long
        side, and the fitted :class:`Geometry` (style frame <- content frame). Without a
        shared layout, the style itself and a refused geometry (not applied; its reason, the
        matches found).
        """
        try:
            geo = estimate_warp(self.vgg, style, content, self.cfg.align_style,  # type: ignore[arg-type]
                                k=self.cfg.warp_grid, force=True)   # (its own test follows)
            matches, scale = len(geo.source), geo.warp.area_scale()
        except InputError:
            geo, matches, scale = None, 0, float("nan")
        if geo is None or matches < 12 or not 0.5 <= scale <= 2.0:
            reason = f"{matches} matches, scale {scale:.2f}: no shared layout to align to"
            log.warning("align_style: %s; using the style as it is", reason)
            found = None if geo is None else Matches(geo.source, geo.target_full, geo.weights)
            return style, refused(self.cfg.align_style, reason, k=self.cfg.warp_grid,  # type: ignore[arg-type]
                                  matches=found, confidence=None if geo is None else geo.confidence)
        geo.warp.project()
        hw = fit_long_side(tuple(content.shape[-2:]), max(style.shape[-2:]))
        geo.warp.stiffen(hw)   # the fold bound holds here too
        grid = geo.warp.grid(hw).to(style.device)
        return sample(style, grid, padding_mode="border", align_corners=False), geo

    # -- the run --------------------------------------------------------------------------
    def run(self, content: Tensor, styles: Sequence[Tensor], *,
            callback: Callback | None = None, init: Tensor | None = None,
            mask: Tensor | None = None) -> Tensor:
        """Stylize ``content`` with the (blended) ``styles``.

        Args:
            content: (1, 3, H, W) RGB in [0, 1], any size (it is resized to ``cfg.size``).
            styles: one or more (1, 3, H', W') RGB images in [0, 1].
            callback: called after every optimizer step with an :class:`Iterate`.
            init: the start image when ``cfg.init`` names a file.
            mask: the regions of ``cfg.mask`` (see :meth:`run_detailed`).
        Returns:
            (1, 3, h, w) in [0, 1] on the CPU, with ``max(h, w) == cfg.size`` and the
            content's aspect ratio (warped when ``cfg.warp`` is set).
        """
        return self.run_detailed(content, styles, callback=callback, init=init, mask=mask).image

    def run_detailed(self, content: Tensor, styles: Sequence[Tensor], *,
                     callback: Callback | None = None, init: Tensor | None = None,
                     mask: Tensor | None = None, temporal: Temporal | None = None) -> Result:
        """:meth:`run`, also returning the unwarped image and the fitted geometry. ``init`` is
        the start image when ``cfg.init`` names a file (the caller loads it). ``mask`` is
        required when ``cfg.mask`` names a file: its regions (1, S + 1, H', W') for the S
        styles (:func:`warpaint.masks.parse_mask`), with the content's aspect ratio; each
        style region is matched to its own style's Gram (masked Grams), and the last region
        keeps the photo (the result is blended with it by that region's soft weight).
        ``temporal`` (a video frame after the first, :class:`Temporal`) starts the run from the
        previous result warped into this frame and adds the temporal loss; it needs whole
        (untiled) scales, no ``warp`` and no ``luminance`` colour mode.

        Raises:
            InputError: images outside the contract (shape, NaN, values outside [0, 1]).
            NumericalError: the loss became NaN or infinite (e.g. a learning rate too high);
                nothing is returned.
        """
        cfg = self.cfg
        self._current = None                  # nothing of an earlier run
        prepared = self._prepare(content, styles, mask)
        styles, blend, scales = prepared.styles, prepared.blend, prepared.scales
        counts = [cfg.steps_at(i, len(scales), max(hw)) for i, hw in enumerate(scales)]
        total, costs = sum(counts), [n * h * w for n, (h, w) in zip(counts, scales, strict=True)]
        done = 0
        if temporal is not None:
            self._check_temporal(temporal, prepared)
            image = temporal.at(scales[0], prepared.content.device).target
        else:
            image = self._init_image(prepared.content, styles, scales[0], init)
        self._current = (image, prepared)
        t0 = time.perf_counter()
        for si, hw in enumerate(scales):
            content_hw = resize(prepared.content, hw)
            image = resize(image, hw)
            if si > 0 and cfg.content_detail:
                image = add_detail(image, content_hw, scales[si - 1])
            # A contiguous leaf: L-BFGS flattens its gradient with .view(-1), which fails on
            # channels-last strides (a caller's tensor may have them).
            image = image.detach().clone(memory_format=torch.contiguous_format)
            self._current = (image, prepared)
            steps = counts[si]
            plan = prepared.plans[si]
            joint = prepared.geometry if self._joint_at(si, scales) and not plan.tiled else None
            if plan.tiled:
                log.info("scale %d/%d %dx%d: tiles of %d px with %d px overlaps, L-BFGS history %d",
                         si + 1, len(scales), hw[1], hw[0], plan.core, 2 * plan.margin, plan.history)
            content_t, style_t = self._targets(content_hw, styles, blend, hw, prepared.regions, plan,
                                               prepared.mask)
            offsets = torch.Generator().manual_seed(cfg.seed + si)   # tile layouts, one per step
            link = None if temporal is None else temporal.at(hw, image.device)
            run = self._optimize(image, content_t, style_t, steps, joint, plan=plan, content=content_hw,
                                 offsets=offsets, temporal=link)
            for step, (losses, tiles) in enumerate(run, 1):
                done += 1
                if callback is not None:   # a finished-kind snapshot: the leaf changes in place
                    shown = self._finish(image.detach().clone(), prepared)
                    work = (sum(costs[:si]) + costs[si] * step / steps) / max(sum(costs), 1)
                    callback(Iterate(si, len(scales), hw, step, steps, done, total, losses, shown,
                                     tiles, work))
            log.info("scale %d/%d %dx%d: %d steps, %.1f s", si + 1, len(scales), hw[1], hw[0],
                     steps, time.perf_counter() - t0)
        final = None
        if not plan.tiled:   # each step reports the losses it saw before its update; these are after the last
            with torch.no_grad():
                final = {k: float(v) for k, v in self.losses(image, content_t, style_t, joint, link).items()}
            if not all(map(math.isfinite, final.values())):
                raise NumericalError(f"the final losses are not finite ({final}); nothing was written")
        result = replace(self._result(image.detach(), prepared), final_losses=final)
        self._current = None       # (kept until then: a finish that fails still has a partial)
        return result

    def _check_temporal(self, temporal: Temporal, prepared: _Prepared) -> None:
        """An InputError for a temporal link the run cannot honour."""
        check_pixels(temporal.target, "temporal target")
        if temporal.mask.ndim != 4 or temporal.mask.shape[:2] != (1, 1):
            raise InputError(f"temporal mask must be (1, 1, H, W), got {tuple(temporal.mask.shape)}")
        check_number("temporal weight", temporal.weight, lo=0)
        if any(p.tiled for p in prepared.plans):
            raise InputError("temporal consistency needs whole scales, and this size runs in tiles; "
                             "lower --size or raise --max-memory")
        if self.cfg.warp != "none" or self.cfg.preserve_color == "luminance":
            raise InputError("temporal consistency works without --warp and without "
                             "--preserve-color luminance")

    def _result(self, image: Tensor, prepared: _Prepared) -> Result:
        """The finished run: :meth:`_unwarped`, then the warp (stiffened to the fold bound
        again: the joint optimization may have bent it further)."""
        if prepared.geometry is not None:
            prepared.geometry.warp.stiffen(prepared.scales[-1])
        image = self._unwarped(image, prepared)
        final = image if prepared.geometry is None else apply_warp(image, prepared.geometry)
        geometry = prepared.report.to(torch.device("cpu")) if prepared.report else None
        return Result(final.cpu(), image.cpu(), geometry, prepared.aligned, prepared.main, prepared.plans)

    def estimate_geometry(self, content: Tensor, style: Tensor, hw: tuple[int, int]) -> Geometry | None:
        """The warp of ``cfg.warp`` (``None`` without one), projected inside the image and
        stiffened to the fold bound on an ``hw`` grid, or a refused geometry (logged as a
        one-line warning). The strength is scaled down when the confidence is low (also
        logged), unless ``cfg.warp_force``.
        """
        cfg = self.cfg
        if cfg.warp == "none":
            return None
        geo = estimate_warp(self.vgg, content, style, cfg.warp, strength=cfg.warp_strength,
                            k=cfg.warp_grid, force=cfg.warp_force).to(self.device)
        conf = geo.confidence.value if geo.confidence is not None else float("nan")
        if not geo.applied:
            log.warning("--warp: %s; the warp is not applied (--warp-force applies it anyway)", geo.reason)
            return geo
        if geo.confidence is not None and geo.confidence.by_faces:
            log.info("--warp: %s: the layout is shared", geo.confidence.faces)
        if geo.strength < cfg.warp_strength:
            log.warning("--warp: confidence %.2f (full strength from %.2f): strength scaled %.2f -> %.2f",
                        conf, FULL_FROM, cfg.warp_strength, geo.strength)
        geo.warp.project()   # from here on it never samples outside the image
        geo.warp.stiffen(hw)
        return geo

    def current_result(self) -> Tensor | None:
        """The result so far of the run in progress (or one stopped by an exception), as
        :meth:`run` would return it: colours joined, warped, at the final size, on the CPU
        (the start image until the first step); ``None`` before a run has its start image
        and after a finished one."""
        if self._current is None:
            return None
        image, prepared = self._current
        final_hw = prepared.scales[-1]
        return resize(self._finish(image.detach().clone(), prepared), final_hw).cpu()

    def _finish(self, image: Tensor, prepared: _Prepared) -> Tensor:
        """An iterate (1, 3, h, w) as a result: :meth:`_unwarped`, then warped (``warp``)."""
        image = self._unwarped(image, prepared)
        return image if prepared.geometry is None else apply_warp(image, prepared.geometry)

    def _unwarped(self, image: Tensor, prepared: _Prepared) -> Tensor:
        """An iterate (1, 3, h, w) with the content's colours joined back (``luminance``) and
        the photo kept where the mask says."""
        if self.cfg.preserve_color == "luminance":
            image = color.join_luminance(image, prepared.original)
        return self._keep_photo(image, prepared)

    def _keep_photo(self, image: Tensor, prepared: _Prepared) -> Tensor:
        """``image`` (1, 3, h, w) blended with the photo by the mask's no-style weight (as it
        is without a mask, or without a no-style region)."""
        if prepared.mask is None or not bool(prepared.mask[:, -1].any()):
            return image
        weight = soft_weights(prepared.mask, tuple(image.shape[-2:]), self.cfg.mask_feather)[:, -1:]  # type: ignore[arg-type]
        return keep_photo(image, prepared.original, weight)

    def _joint_at(self, si: int, scales: list[tuple[int, int]]) -> bool:
        """Whether the warp is optimized with the pixels at scale ``si``: at the coarse scales
        (the first, and any up to a quarter of the final size), where the second VGG pass
        per step is cheap; a smooth warp needs no finer view. Then it is held fixed. (A
        single-scale run optimizes it at that scale, at twice the cost per step.)"""
        if len(scales) == 1:
            return True
        return (si == 0 or 4 * max(scales[si]) <= max(scales[-1])) and si < len(scales) - 1

    def _prepare(self, content: Tensor, styles: Sequence[Tensor], mask: Tensor | None = None) -> _Prepared:
        """Check the inputs and make what the loop needs: images on the device (colour
        handling applied), blend weights, scales, the style alignment, the warp and the
        mask's regions."""
        cfg = self.cfg
        check_pixels(content, "content")
        if content.shape[0] != 1:
            raise InputError("content must be a single image (batch size 1)")
        if not styles:
            raise InputError("at least one style image is needed")
        for i, s in enumerate(styles):
            check_pixels(s, f"style[{i}]")
        blend = cfg.style_blend or (1.0,) * len(styles)
        if len(blend) != len(styles):
            raise InputError(f"{len(blend)} style blend weights for {len(styles)} style images")
        torch.manual_seed(cfg.seed)
        original = content.to(self.device, torch.float32)
        styles = [s.to(self.device, torch.float32) for s in styles]
        content = original
        if cfg.preserve_color == "luminance":
            styles = [color.match_luminance(s, content) for s in styles]
            content = color.gray3(content)
        elif cfg.preserve_color == "histogram":
            styles = [color.match_color(s, content) for s in styles]
        scales = self._checked_scales(tuple(content.shape[-2:]))  # type: ignore[arg-type]
        aligned: list[Geometry] = []
        regions = cfg.regions
        if cfg.align_style != "none":
            pairs = [self.align_style(s, original) for s in styles]
            styles, aligned = [p[0] for p in pairs], [p[1] for p in pairs]
            if cfg.style_regions == 0 and not any(g.applied for g in aligned):
                regions = 1   # nothing was aligned: per-region statistics would mean nothing
        main = max(range(len(styles)), key=lambda i: blend[i])
        report = self.estimate_geometry(original, styles[main], scales[-1])
        geometry = report if report is not None and report.applied else None
        mask = self._check_mask(mask, len(styles), tuple(content.shape[-2:]))  # type: ignore[arg-type]
        plans = self.plans(tuple(content.shape[-2:]), [tuple(s.shape[-2:]) for s in styles])  # type: ignore[misc]
        return _Prepared(content, original, styles, blend, scales, regions, aligned, geometry, main, report,
                         plans, mask)

    def _check_mask(self, mask: Tensor | None, styles: int, hw: tuple[int, int]) -> Tensor | None:
        """The mask's regions on the device, checked: (1, styles + 1, H', W'), finite, >= 0,
        the content's aspect ratio; ``None`` without ``cfg.mask``."""
        if not self.cfg.mask:
            if mask is not None:
                raise InputError("a mask was passed but cfg.mask is empty: set it (to the file's name)")
            return None
        if mask is None:
            raise InputError(f"mask is the file {self.cfg.mask!r}: parse it (warpaint.masks.parse_mask) "
                             "and pass its regions as mask= (the engine reads no files)")
        if not isinstance(mask, Tensor) or mask.ndim != 4 or tuple(mask.shape[:2]) != (1, styles + 1):
            got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise InputError(f"mask must be (1, {styles + 1}, H, W) regions for {styles} style(s), got {got}")
        if not bool(torch.isfinite(mask).all()) or bool((mask < 0).any()) or not bool(mask[:, :-1].any()):
            raise InputError("mask regions must be finite, >= 0, with at least one style region")
        check_aspect(tuple(mask.shape[-2:]), hw, name=self.cfg.mask)  # type: ignore[arg-type]
        return mask.to(self.device, torch.float32)

    def plans(self, content_hw: tuple[int, int], style_hws: Sequence[tuple[int, int]]) -> list[ScalePlan]:
        """How each scale of a run on a ``content_hw`` image runs within the memory budget
        (``cfg.max_memory``, else what the device has free): whole, or in tiles
        (:func:`~warpaint.memory.plan_scale`).

        Raises:
            ResourceError: the run would not fit even in the smallest tiles.
            InputError: a scale must be tiled but per-region statistics were asked for.
        """
        cfg = self.cfg
        scales = self._checked_scales(content_hw)
        budget = budget_bytes(cfg.max_memory, self.device)
        pixels = content_hw[0] * content_hw[1] + sum(h * w for h, w in style_hws)
        out = []
        style_need = max(layer_stride(n) for n in cfg.style_layers)
        shapes = style_hws if cfg.align_style == "none" else ()   # (aligned styles take the content's shape)
        for si, hw in enumerate(scales):
            long = max(MIN_SIDE, round(max(hw) * cfg.style_scale))
            for i, (h, w) in enumerate(shapes):
                if round(long * min(h, w) / max(h, w)) < style_need:
                    raise InputError(
                        f"style_scale {cfg.style_scale:g} makes style image {i + 1} about {long} px long "
                        f"and {round(long * min(h, w) / max(h, w))} px across at the {hw[1]}x{hw[0]} px "
                        f"scale; the style layers need {style_need} px a side: raise style_scale or "
                        "min_size")
            style_px = sum(long * long * min(h, w) // max(h, w) for h, w in style_hws)
            passes = 2 if cfg.warp != "none" and self._joint_at(si, scales) else 1
            out.append(plan_scale(hw, budget, fixed=int(ENGINE_BASE + IMAGE_PER_PIXEL * pixels),
                                  style=STYLE_PER_PIXEL * style_px, passes=passes, tile=cfg.tile,
                                  lbfgs=cfg.optimizer == "lbfgs"))
        worst = max(out, key=lambda p: p.need)
        hw = scales[out.index(worst)]
        check_budget(worst.need, cfg.max_memory, self.device, f"stylizing at {hw[1]}x{hw[0]} px",
                     budget=budget)
        if any(p.tiled for p in out) and cfg.regions > 1:
            raise InputError(f"at {scales[-1][1]}x{scales[-1][0]} px the run needs tiles, which cannot "
                             "keep per-region style statistics (style_regions, align_style); lower the "
                             "size or raise max_memory")
        return out

    def _checked_scales(self, hw: tuple[int, int]) -> list[tuple[int, int]]:
        """``cfg.scales(hw)``, or an InputError when the final scale is too small for the
        deepest VGG layer used."""
        cfg = self.cfg
        scales = cfg.scales(hw)
        need = _min_side(cfg)
        if min(scales[-1]) < need:
            deepest = max((*cfg.content_layers, *cfg.style_layers), key=LAYER_INDEX.__getitem__)
            raise InputError(
                f"at size {cfg.size} the image would be {scales[-1][1]}x{scales[-1][0]} px; the "
                f"short side must be at least {need} px for layer {deepest}: the aspect ratio is "
                "too extreme, or raise the size")
        return scales

    def _optimize(self, image: Tensor, content_t: dict[str, Tensor], style_t: dict[str, Tensor],
                  steps: int, geometry: Geometry | None = None, *, plan: ScalePlan = WHOLE,
                  content: Tensor | None = None, offsets: torch.Generator | None = None,
                  temporal: Temporal | None = None):
        """Optimize ``image`` in place for ``steps`` steps, yielding the losses of each step
        and its number of tiles (0: whole).

        With ``geometry``, its warp's parameters take an Adam step after every pixel step,
        from the gradients of the same evaluation. A tiled ``plan`` evaluates every step in
        tiles (:meth:`tiled_losses`) at a random ``offsets`` draw, against ``content`` (the
        content at this scale), with the plan's L-BFGS history.
        """
        cfg = self.cfg
        if steps == 0:
            return
        image.requires_grad_(True)
        if cfg.optimizer == "lbfgs":
            opt: torch.optim.Optimizer = torch.optim.LBFGS(
                [image], lr=cfg.lr or 1.0, max_iter=1, history_size=plan.history, tolerance_grad=0.0,
                tolerance_change=0.0)
        else:
            opt = torch.optim.Adam([image], lr=cfg.lr or 0.02)
        warp_opt = torch.optim.Adam(geometry.warp.parameters(), lr=WARP_LR) if geometry else None
        last: dict[str, Tensor] = {}
        tiles = [0]

        def closure() -> Tensor:
            opt.zero_grad(set_to_none=True)
            if warp_opt is not None:
                warp_opt.zero_grad(set_to_none=True)
            if plan.tiled:
                offset = tuple(int(v) for v in torch.randint(plan.core, (2,), generator=offsets)) \
                    if self.shift_tiles else (0, 0)
                out, image.grad, tiles[0] = self.tiled_losses(image, content, style_t, plan, offset)  # type: ignore[arg-type]
            else:
                out = self.losses(image, content_t, style_t, geometry, temporal)
                out["total"].backward()
            last.update(out)
            return out["total"]

        for step in range(1, steps + 1):
            with torch.no_grad():
                before = image.detach().clone()
            opt.step(closure)
            losses = {k: float(v.detach()) for k, v in last.items()}
            if not all(map(math.isfinite, losses.values())) or not bool(torch.isfinite(image).all()):
                with torch.no_grad():
                    image.copy_(before)         # the current result stays the last good one
                image.requires_grad_(False)
                raise NumericalError(
                    f"the loss became non-finite at step {step} of {steps} "
                    f"({', '.join(f'{k}={v:.3g}' for k, v in losses.items())}); lower the "
                    "learning rate or the loss weights")
            if warp_opt is not None:
                warp_opt.step()
                geometry.warp.project()  # type: ignore[union-attr]
            with torch.no_grad():
                image.clamp_(0.0, 1.0)  # the box constraint, on our own leaf only
            yield losses, tiles[0]
        image.requires_grad_(False)


@dataclass(frozen=True)
class _Prepared:
    """What :meth:`Stylizer._prepare` makes for one run (tensors on the device)."""

    content: Tensor               # (1, 3, H, W) the content as optimized (gray for ``luminance``)
    original: Tensor              # (1, 3, H, W) the content as given
    styles: list[Tensor]          # style images, colour-matched and aligned as configured
    blend: tuple[float, ...]      # one weight per style
    scales: list[tuple[int, int]]  # (H, W) of each scale, coarse to fine
    regions: int                  # side of the style-statistics grid
    aligned: list[Geometry]       # one per style with ``align_style``
    geometry: Geometry | None     # the warp of ``warp`` when it is applied
    main: int                     # index of the style the warp was matched to
    report: Geometry | None = None  # the warp of ``warp``, also when refused (for the report)
    plans: list[ScalePlan] = field(default_factory=list)   # how each scale runs (whole, tiles)
    mask: Tensor | None = None    # (1, S + 1, H', W') regions of ``mask`` (last: no style)


@dataclass(frozen=True)
class Result:
    """What :meth:`Stylizer.run_detailed` returns (tensors on the CPU)."""

    image: Tensor                 # (1, 3, h, w) the result (warped when a warp was asked for)
    unwarped: Tensor              # (1, 3, h, w) the optimized pixels before the warp
    geometry: Geometry | None     # the warp of ``cfg.warp``, with its matches
    aligned: list[Geometry]       # one per style image with ``cfg.align_style``
    main_style: int               # index of the style the warp was matched to (largest blend)
    plans: list[ScalePlan] = field(default_factory=list)   # how each scale ran (whole or tiled)
    #: the losses of the optimized pixels after the last step (``None`` when the last scale
    #: ran in tiles); each step's own losses, in the callback, are those before its update
    final_losses: dict[str, float] | None = None


def _crop_mask(style_t: dict[str, Tensor], y0: int, y1: int, x0: int, x1: int) -> dict[str, Tensor]:
    """A masked run's style targets for one tile (its window of the region weights); other
    targets as they are."""
    if MASK_KEY not in style_t:
        return style_t
    return {**style_t, MASK_KEY: style_t[MASK_KEY][..., y0:y1, x0:x1]}


def apply_warp(image: Tensor, geometry: Geometry) -> Tensor:
    """``image`` (B, C, H, W) resampled through ``geometry``'s warp (bicubic, which keeps
    more of the fine texture than bilinear; clamped to [0, 1])."""
    with torch.no_grad():
        grid = geometry.warp.grid(tuple(image.shape[-2:])).to(image)  # type: ignore[arg-type]
        return sample(image, grid, padding_mode="border", align_corners=False, mode="bicubic").clamp(0, 1)
