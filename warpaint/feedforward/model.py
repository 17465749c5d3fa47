"""A trained feed-forward stylizer: load, save, stylize in one forward pass.

Two kinds share one file format:

* ``"arbitrary"``: a :class:`StyleEncoder` turns any style image into a style code and the
  :class:`TransformerNet` is conditioned on it. With ``color_transfer`` the code also holds
  the style image's per-channel colour mean and spread, and the network's output is moved
  to them (AdaIN on pixels). ``strength`` moves the code from the content's own code to the
  style's and blends the result with the content by the same amount (0: exactly the
  content, 1: the full style); several styles blend by averaging their codes.
* ``"single"``: a Johnson-style network trained for one style; ``strength`` blends its
  output with the content.

A model file is a ``torch.save`` dict: ``format``, ``version``, ``kind``, ``net`` (the
network's shape), ``state`` (fp16 weights), ``training`` (how it was made), and how it runs:
``work_size``, ``style_size``, ``color_transfer``, ``detail`` and ``fineness`` (absent in
older files: full size, 256, off, 0, 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from torch import Tensor

from .. import color, vgg_int8
from ..errors import InputError, check_number, check_pixels
from ..io import (
    MIN_SIDE,
    fit_long_side,
    pil_to_pixels,
    pixels_to_pil,
    pixels_to_tensor,
    resize,
    resize_long_side,
    resize_pixels,
    tensor_to_pil,
    tensor_to_pixels,
)
from ..vgg import VGGFeatures
from .nets import STAT_LAYERS, StyleEncoder, TransformerNet, feature_statistics, tiled_forward

Kind = Literal["arbitrary", "single"]
FORMAT = "warpaint.feedforward"
#: Long side at which style images are encoded, for model files that do not say (version 1).
STYLE_SIZE = 256
#: Scale of the photo's detail that :attr:`FastStylizer.detail` puts back into the network's
#: output: what the network's input loses when shrunk this many times
#: (:func:`~warpaint.color.fine_detail`).
DETAIL_FACTOR = 2.2
#: :attr:`FastStylizer.fineness` moves the strength of the result's fine detail (at the
#: network's size) to the painting's, read with the painting at this long side (the shipped
#: model's work size, where it was measured; at other work sizes the target is the same) ...
FINENESS_SIZE = 640
#: ... both measured in this band (:func:`~warpaint.color.detail_energy`: less a blur of
#: about 2.1 px).
FINENESS_FACTOR = 3.75
#: (The shortest side the network takes, io.MIN_SIDE: two stride-2 convolutions, padding.)


def style_inputs(vgg: VGGFeatures | vgg_int8.Int8VGG, image: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """What a model reads of a (B, 3, H, W) style image resized to ``size`` on its long side:
    VGG feature statistics (B, 1920) and colour moments (B, 6)."""
    image = resize_long_side(image, size)
    # one image: channels-last, as in TransformerNet (the style code 5-10 % faster on a CPU)
    x = image.contiguous(memory_format=torch.channels_last) if image.shape[0] == 1 and isinstance(
        vgg, VGGFeatures) else image
    return feature_statistics(vgg(x, STAT_LAYERS)), color.color_moments(image)


def painting_detail(style: Tensor | Image.Image) -> float:
    """The strength of a style image's fine detail that :attr:`FastStylizer.fineness`
    matches (Pillow, (1, 3, H, W) uint8 on the CPU from :func:`~warpaint.io.pil_to_pixels`,
    or float in [0, 1]): :func:`~warpaint.color.detail_energy` of the image resized to
    :data:`FINENESS_SIZE` px on its long side (Pillow's bicubic kernel, on the 8-bit pixels
    where there are some; a smaller painting is enlarged, so its strokes count at the size the
    network paints at) in the band of :data:`FINENESS_FACTOR`."""
    if isinstance(style, Image.Image):
        style = pil_to_pixels(style)
    hw = fit_long_side(tuple(style.shape[-2:]), FINENESS_SIZE)
    if style.dtype == torch.uint8:
        style = pixels_to_tensor(resize_pixels(style, hw))
    else:
        style = resize(style, hw, smooth=True)
    return float(color.detail_energy(style, FINENESS_FACTOR)[0])


def style_weights(weights: list[float] | None, n: int) -> list[float]:
    """The blend weights of ``n`` styles (``None``: equal), checked: one per style, each
    >= 0, a positive sum; an InputError otherwise."""
    w = weights or [1.0] * n
    if len(w) != n or min(w) < 0 or sum(w) <= 0:
        raise InputError(f"{len(w)} style weights for {n} styles (need >= 0, sum > 0)")
    return w


def shipped_model_path() -> Path:
    """The arbitrary-style model that ships inside the package (``--fast``)."""
    return Path(str(resources.files("warpaint") / "models" / "fast_arbitrary.pt"))


@dataclass
class FastStylizer:
    """A feed-forward model with what it needs to run (VGG for style statistics)."""

    net: TransformerNet
    encoder: StyleEncoder | None              # None for a single-style model
    training: dict = field(default_factory=dict)
    vgg: VGGFeatures | None = None
    work_size: int | None = None              # default long side the network runs at
    style_size: int = STYLE_SIZE              # long side at which style images are encoded
    color_transfer: bool = False              # output takes the style's colour moments
    #: how much of the photo's fine luma detail (see :data:`DETAIL_FACTOR`) is added back to
    #: the result (:func:`~warpaint.color.add_detail_`); 0: none
    detail: float = 0.0
    #: how far the strength of the result's fine detail moves to the painting's
    #: (:func:`painting_detail`, :func:`~warpaint.color.match_detail_`; arbitrary-style models):
    #: 0 not at all, 1 matched
    fineness: float = 0.0
    #: read style statistics with VGG in 8-bit integers when on a CPU (vgg_int8; about twice as
    #: fast, statistics within about 2 %); False: in float32, as in training
    int8_style: bool = True
    _int8: vgg_int8.Int8VGG | None = field(default=None, repr=False)


    @property
    def kind(self) -> Kind:
        return "single" if self.encoder is None else "arbitrary"

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: torch.device | str) -> FastStylizer:
        self.net.to(device)
        if self.encoder is not None:
            self.encoder.to(device)
        if self.vgg is not None:
            self.vgg.to(device)
        return self

    def _vgg(self) -> VGGFeatures:
        if self.vgg is None:
            self.vgg = VGGFeatures().to(self.device)
        return self.vgg

    def style_reader(self) -> VGGFeatures | vgg_int8.Int8VGG:
        """What reads style statistics: :class:`~warpaint.vgg_int8.Int8VGG` on a CPU (with
        :attr:`int8_style`, where PyTorch has the kernels), else the float VGG."""
        if not (self.int8_style and self.device.type == "cpu" and vgg_int8.available()):
            return self._vgg()
        if self._int8 is None:
            self._int8 = vgg_int8.Int8VGG(self._vgg())
        return self._int8

    @torch.no_grad()
    def style_code(self, styles: list[Tensor], weights: list[float] | None = None) -> Tensor:
        """The code of one or more (1, 3, H, W) style images (weights blend): (1, code_dim),
        or (1, code_dim + 6) with :attr:`color_transfer` (then the style's colour moments,
        :func:`~warpaint.color.color_moments`, follow the learned code).

        Each image is encoded whole, resized to :attr:`style_size` on its long side (the size
        the model was trained to read styles at).
        """
        if self.encoder is None:
            raise InputError("a single-style model takes no style image")
        weights = style_weights(weights, len(styles))
        reader = self.style_reader()
        codes = [self.encode(*style_inputs(reader, s.to(self.device), self.style_size)) for s in styles]
        return sum(w * c for w, c in zip(weights, codes, strict=True)) / sum(weights)

    def encode(self, stats: Tensor, moments: Tensor) -> Tensor:
        """The code of :func:`style_inputs` (B rows; differentiable, used in training)."""
        code = self.encoder(stats)  # type: ignore[misc]
        return torch.cat([code, moments], 1) if self.color_transfer else code

    @torch.no_grad()
    def stylize(self, content: Tensor, styles: list[Tensor] | None = None, *,
                weights: list[float] | None = None, strength: float = 1.0,
                preserve_color: color.ColorMode = "none", code: Tensor | None = None,
                work_size: int | None = None, tile: int = 0, detail: float | None = None,
                fineness: float | None = None, style_detail: list[float] | None = None) -> Tensor:
        """Stylize a (1, 3, H, W) content image; returns (1, 3, H, W) in [0, 1] at its size.

        ``code`` (from :meth:`style_code`) skips encoding the styles again. ``work_size``: the
        network runs with the long side at most this many pixels and the result is resized
        (Pillow's bicubic) to the content's size; strokes then keep the scale they were trained at,
        and large images are faster. ``None`` runs at full size. ``tile`` > 0: a network
        input with a longer side runs in tiles of that size (:meth:`render_tiled`).
        ``detail``: how much of the photo's fine detail to add back (``None``: :attr:`detail`).
        ``fineness``: how far the strength of the result's fine detail moves to the styles'
        (``None``: :attr:`fineness`), read from ``styles`` (:func:`painting_detail`) or given
        as ``style_detail`` (one number per style, as :func:`painting_detail` reads it from
        the full-size style; the styles may then be small). Either way it is the styles as
        given, before ``preserve_color="histogram"`` recolours them.
        """
        check_number("strength", strength, lo=0, hi=1)
        amount = self.detail if detail is None else detail
        check_number("detail", amount, lo=0, hi=2)
        fine = self.fineness if fineness is None else fineness
        check_number("fineness", fine, lo=0, hi=2)
        check_pixels(content, "content")
        for i, s in enumerate(styles or []):
            check_pixels(s, f"style[{i}]")
        if style_detail is not None:
            if styles and len(style_detail) != len(styles):
                raise InputError(f"{len(style_detail)} style_detail values for {len(styles)} styles")
            for i, d in enumerate(style_detail):
                check_number(f"style_detail[{i}]", d, lo=0)
        elif fine > 0 and self.encoder is not None and styles:    # read before any recolouring
            style_detail = [painting_detail(s) for s in styles]
        if min(content.shape[-2:]) < MIN_SIDE:
            raise InputError(f"content is {content.shape[-1]}x{content.shape[-2]} px; the network needs "
                             f"at least {MIN_SIDE} px on the short side")
        original = content.to(self.device)
        full = tuple(original.shape[-2:])
        content = original
        if work_size is not None and max(full) > work_size:
            content = resize_long_side(original, work_size)
        self.net.eval()
        if self.encoder is None:
            if styles:
                raise InputError("a single-style model takes no style image")
            out = self.render_tiled(content, None, tile) \
                if 0 < tile < max(content.shape[-2:]) \
                else self.net(content)
        else:
            if code is None:
                if not styles:
                    raise InputError("an arbitrary-style model needs at least one style image")
                if preserve_color == "histogram":
                    styles = [color.match_color(s.to(self.device), original) for s in styles]
                code = self.style_code(styles, weights)
            if strength < 1:
                code = strength * code + (1 - strength) * self.style_code([original])
            out = self.render_tiled(content, code, tile) \
                if 0 < tile < max(content.shape[-2:]) \
                else self.render(content, code)
        out = color.add_detail_(out.clamp_(0, 1), content, amount, DETAIL_FACTOR)   # at the network's size
        if fine > 0 and self.encoder is not None and style_detail:
            target = self._detail_target(style_detail, weights, strength, original)
            color.match_detail_(out, target, FINENESS_FACTOR, fine)
        out = resize(out, full, smooth=True)  # type: ignore[arg-type]
        if strength < 1:      # then blend with the content, so that 0 is exactly the content
            out = strength * out + (1 - strength) * original
        if preserve_color == "luminance":
            out = color.join_luminance(out, original)
        return out.clamp_(0, 1)      # (every path above made ``out`` anew: never the input)

    @staticmethod
    def _detail_target(values: list[float], weights: list[float] | None, strength: float,
                       content: Tensor) -> float:
        """The fine-detail strength the result moves to: the styles' (blended with their
        weights, as their codes are) and, below full strength, the content's by the rest, as
        the code moves toward the content's own (the result is then blended with the content
        as well, so at strength s the detail ends nearer the content's than s alone says)."""
        w = style_weights(weights, len(values))
        target = sum(a * b for a, b in zip(w, values, strict=True)) / sum(w)
        if strength < 1:
            target = strength * target + (1 - strength) * painting_detail(content)
        return target

    def stylize_image(self, content: Image.Image, styles: list[Image.Image] | None = None, *,
                      size: int | None = None, weights: list[float] | None = None, strength: float = 1.0,
                      preserve_color: color.ColorMode = "none", work_size: int | None = None,
                      tile: int = 0, detail: float | None = None, fineness: float | None = None,
                      style_detail: list[float] | None = None) -> Image.Image:
        """:meth:`stylize` for 8-bit RGB Pillow images (what ``warpaint stylize --fast`` runs).

        The result has ``size`` px on its long side (default: the content's size). Every
        resize (the content to the work size and the result back, the styles to
        :attr:`style_size` and to the fineness's size) is Pillow's bicubic on 8-bit pixels
        (:func:`~warpaint.io.resize_pixels`), the filter :meth:`stylize` uses on float
        tensors, so only the small images are converted to and from float tensors (at 1024 px
        with a 480 px work size, 9-15 % of the call saved on a CPU), and each Pillow image's
        pixels are read once (with the output's conversion back, 8 % of the call at 640 px).
        With ``strength < 1`` or luminance preservation the result is blended with the
        content at full resolution, as :meth:`stylize` does. With ``fineness``, each style's
        :func:`painting_detail` is read here unless given as ``style_detail`` (when the
        styles given are already small).
        """
        full = (content.height, content.width)
        if size is not None:
            full = fit_long_side(full, size)
        small = full if work_size is None or max(full) <= work_size else fit_long_side(full, work_size)
        fine = self.fineness if fineness is None else fineness
        # Each image's 8-bit pixels are read once; every resize runs on them.
        style_pixels = [pil_to_pixels(s) for s in styles or []]
        if fine > 0 and self.encoder is not None and style_pixels and style_detail is None:
            style_detail = [painting_detail(p) for p in style_pixels]
        style_images = [pixels_to_tensor(resize_pixels(p, fit_long_side((p.shape[-2], p.shape[-1]),
                                                                        self.style_size)))
                        for p in style_pixels]
        del style_pixels          # the full-size paintings are not needed any more
        options = dict(weights=weights, preserve_color=preserve_color, tile=tile, detail=detail,
                       fineness=fineness, style_detail=style_detail)
        pixels = pil_to_pixels(content)
        if strength == 1 and preserve_color != "luminance":
            out = self.stylize(pixels_to_tensor(resize_pixels(pixels, small)), style_images, **options)
            return pixels_to_pil(resize_pixels(tensor_to_pixels(out), full))
        out = self.stylize(pixels_to_tensor(resize_pixels(pixels, full)), style_images, strength=strength,
                           work_size=work_size, **options)
        return tensor_to_pil(out)

    @torch.no_grad()
    def render_tiled(self, content: Tensor, code: Tensor | None, tile: int) -> Tensor:
        """:meth:`render` (or the single-style network) of a content image too large for one
        pass, in tiles of ``tile`` px (:func:`~.nets.tiled_forward`: every normalization
        with the whole image's statistics, so the result equals a whole pass to float
        rounding); the colour transfer then takes the moments of the whole result.

        Args:
            content: (1, 3, H, W) in [0, 1].
            code: (1, ...) from :meth:`style_code`, or ``None`` for a single-style model.
        Returns:
            (1, 3, H, W) in [0, 1].
        """
        net_code = None if code is None else code[:, :self.net.code_dim]
        out = tiled_forward(self.net, content, net_code, core=max(64, tile // 8 * 8))
        if self.color_transfer and code is not None:
            out = color.match_moments(out, code[:, self.net.code_dim:])
        return out

    def render(self, content: Tensor, code: Tensor) -> Tensor:
        """The network's output for (B, 3, H, W) ``content`` and a (B, ...) code from
        :meth:`style_code` (arbitrary-style models; differentiable, used in training)."""
        out = self.net(content, code[:, :self.net.code_dim])
        return color.match_moments(out, code[:, self.net.code_dim:]) if self.color_transfer else out

    def save(self, path: str | Path, *, dtype: torch.dtype = torch.float16) -> None:
        """Write the model (weights in ``dtype``) atomically."""
        from ..training import save_checkpoint

        state = {"net": {k: v.detach().to("cpu", dtype) for k, v in self.net.state_dict().items()}}
        if self.encoder is not None:
            state["encoder"] = {k: v.detach().to("cpu", dtype) for k, v in self.encoder.state_dict().items()}
        net = {"code_dim": self.net.code_dim, "width": self.net.down[0].conv.out_channels,
               "blocks": len(self.net.res)}
        save_checkpoint({"format": FORMAT, "version": 1, "kind": self.kind, "net": net, "state": state,
                         "training": self.training, "work_size": self.work_size,
                         "style_size": self.style_size, "color_transfer": self.color_transfer,
                         "detail": self.detail, "fineness": self.fineness}, Path(path))


def build(kind: Kind, *, code_dim: int = 64, width: int = 16, blocks: int = 5) -> FastStylizer:
    """A new, untrained model."""
    if kind not in ("arbitrary", "single"):
        raise InputError(f"kind must be arbitrary or single, got {kind!r}")
    arbitrary = kind == "arbitrary"
    return FastStylizer(TransformerNet(code_dim if arbitrary else 0, width=width, blocks=blocks),
                        StyleEncoder(code_dim) if arbitrary else None)


def load(path: str | Path | None = None, *, device: torch.device | str = "cpu") -> FastStylizer:
    """Load a model file (default: the shipped arbitrary-style model) in float32.

    Read with ``weights_only=True``; the network's shape is bounded and every weight must be
    finite and fit it. Anything else is a one-line InputError.
    """
    from ..training import check_finite_state

    path = Path(path) if path is not None else shipped_model_path()
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: model file not found") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is bad input
        raise InputError(f"{path}: not a warpaint model file ({type(e).__name__})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise InputError(f"{path}: not a warpaint feed-forward model (train one with `warpaint train`)")
    try:
        model = _from_file(ck, path)
    except (KeyError, TypeError, RuntimeError, AttributeError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: the model file is damaged or does not fit this version of "
                         f"warpaint ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    for part in ck["state"].values():
        check_finite_state(part, path)
    model.to(device)
    if model.encoder is not None:     # style statistics need VGG: load it now, not on first use
        model.vgg = VGGFeatures().to(device)
        model.style_reader()
    return model


#: Bounds on the network shape a model file may ask for (the shipped one: 64, 16, 5).
MAX_CODE_DIM, MAX_WIDTH, MAX_BLOCKS = 1024, 128, 32


def _from_file(ck: dict, path: Path) -> FastStylizer:
    """The model a loaded model-file dict describes (KeyError/TypeError/RuntimeError when
    it is damaged; InputError when its shape is out of bounds)."""
    net_cfg = ck["net"]
    for name, hi in (("code_dim", MAX_CODE_DIM), ("width", MAX_WIDTH), ("blocks", MAX_BLOCKS)):
        v = net_cfg[name]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
            raise InputError(f"{path}: network {name} {v!r} out of bounds (0..{hi})")
    model = build(ck["kind"], code_dim=net_cfg["code_dim"] or 64, width=max(4, net_cfg["width"]),
                  blocks=max(1, net_cfg["blocks"]))
    model.net.load_state_dict({k: v.float() for k, v in ck["state"]["net"].items()})
    if model.encoder is not None:
        missing, unexpected = model.encoder.load_state_dict(
            {k: v.float() for k, v in ck["state"]["encoder"].items()}, strict=False)
        if set(missing) - {"center", "spread"} or unexpected:   # older files: no input normalization
            raise InputError(f"{path}: the style encoder's weights do not fit its shape")
    model.training = dict(ck.get("training", {}))
    work_size = ck.get("work_size")
    if work_size is not None:
        check_number("work_size", work_size, lo=32, hi=16384, integer=True)
    model.work_size = work_size
    model.style_size = int(ck.get("style_size", STYLE_SIZE))
    check_number("style_size", model.style_size, lo=32, hi=4096, integer=True)
    model.color_transfer = bool(ck.get("color_transfer", False))
    model.detail = float(ck.get("detail", 0.0))
    check_number("detail", model.detail, lo=0, hi=2)
    model.fineness = float(ck.get("fineness", 0.0))
    check_number("fineness", model.fineness, lo=0, hi=2)
    model.net.eval()
    return model
