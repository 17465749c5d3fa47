"""The networks of feed-forward style transfer.

* :class:`StyleEncoder`: deep-feature statistics of a style image (channel means and
  standard deviations of VGG19 relu1_1..relu4_1) -> a small style code (Ghiasi et al. 2017
  use a learned network for this step; feature statistics are what AdaIN, Huang & Belongie
  2017, shows carry the style).
* :class:`TransformerNet`: a light encoder (three strided convolutions), residual blocks
  and an upsample + conv decoder (no transposed convolutions, hence no checkerboards), as in
  Johnson et al. 2016 but downsampling from the first layer so 1024 px runs in a fraction
  of a second on a CPU. Every normalization is a conditional instance norm whose scale and
  shift come from the style code; with ``code_dim=0`` they are ordinary affine instance
  norms and the network is a single-style Johnson network.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: VGG19 layers whose channel statistics describe a style.
STAT_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
STAT_DIM = 2 * (64 + 128 + 256 + 512)


def feature_statistics(feats: dict[str, Tensor]) -> Tensor:
    """Channel means and standard deviations of :data:`STAT_LAYERS`, (B, 1920).

    Example:
        >>> f = {n: torch.ones(2, c, 4, 4) for n, c in zip(STAT_LAYERS, (64, 128, 256, 512))}
        >>> feature_statistics(f).shape
        torch.Size([2, 1920])
    """
    out = []
    for name in STAT_LAYERS:
        f = feats[name].flatten(2)
        out += [f.mean(2), (f.var(2, unbiased=False) + 1e-5).sqrt()]
    return torch.cat(out, 1)


class StyleEncoder(nn.Module):
    """Feature statistics (B, 1920) -> style code (B, ``code_dim``).

    The statistics are log-compressed (they span orders of magnitude between layers) and
    standardized with the buffers ``center`` and ``spread`` (set from the training styles by
    :meth:`set_normalization`; 0 and 1 until then) before a two-layer perceptron.
    """

    def __init__(self, code_dim: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(STAT_DIM, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, code_dim))
        self.register_buffer("center", torch.zeros(STAT_DIM))
        self.register_buffer("spread", torch.ones(STAT_DIM))

    def forward(self, stats: Tensor) -> Tensor:
        return self.net((torch.log1p(stats) - self.center) / self.spread)

    @torch.no_grad()
    def set_normalization(self, stats: Tensor) -> None:
        """Standardize inputs with the mean and spread of ``stats`` (N, 1920), keeping the
        function the encoder computes (the first layer absorbs the change)."""
        logs = torch.log1p(stats)
        center, spread = logs.mean(0), logs.std(0, unbiased=False).clamp_min(1e-3)
        first = self.net[0]
        # W (l - c0) / s0 + b = W' (l - c) / s + b'  with  W' = W s / s0,  b' = b + W (c - c0) / s0
        first.bias += first.weight @ ((center - self.center) / self.spread)
        first.weight *= spread / self.spread
        self.center.copy_(center)
        self.spread.copy_(spread)


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose per-channel scale and shift come from a style code (Dumoulin et
    al. 2017, Ghiasi et al. 2017); with ``code_dim=0`` an ordinary affine instance norm."""

    def __init__(self, channels: int, code_dim: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=code_dim == 0)
        # Tiled inference (:func:`tiled_forward`): the whole image's (mean, var) per channel,
        # used instead of the tile's own.
        self.fixed: tuple[Tensor, Tensor] | None = None
        self.to_affine = nn.Linear(code_dim, 2 * channels) if code_dim else None
        if self.to_affine is not None:         # start as the identity affine map
            nn.init.zeros_(self.to_affine.weight)
            with torch.no_grad():
                self.to_affine.bias.copy_(torch.cat([torch.ones(channels), torch.zeros(channels)]))

    def forward(self, x: Tensor, code: Tensor | None) -> Tensor:
        if self.to_affine is not None:
            if code is None:
                raise ValueError("this network is conditioned on a style code; pass code=")
            scale, shift = self.to_affine(code).chunk(2, 1)                      # (B, C) each
        else:
            scale, shift = (p.expand(x.shape[0], -1) for p in (self.norm.weight, self.norm.bias))
        if self.fixed is not None:   # one tile of a larger image: the whole image's statistics
            mean, var = self.fixed
            return F.batch_norm(x, mean, var, scale[0], shift[0], False, 0.0, self.norm.eps)
        if x.shape[0] == 1:
            # For one image, batch norm with batch statistics is exactly instance norm, and
            # its kernel normalizes, scales and shifts in one pass in any memory layout.
            return F.batch_norm(x, None, None, scale[0], shift[0], True, 0.0, self.norm.eps)
        return F.instance_norm(x, eps=self.norm.eps) * scale[:, :, None, None] + shift[:, :, None, None]


#: ``_UPSAMPLE_TAPS[a, d, l] = 1`` where tap ``d`` (0-2) of a 3x3 kernel on a 2x nearest-
#: upsampled image, at an output pixel of phase ``a`` (its coordinate mod 2), reads the
#: low-resolution pixel at offset ``l - 1``.
_UPSAMPLE_TAPS = torch.tensor([[[1, 0, 0], [0, 1, 0], [0, 1, 0]],
                               [[0, 1, 0], [0, 1, 0], [0, 0, 1]]], dtype=torch.float32)


def upsample_conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """``conv(interpolate(x, scale_factor=2, mode="nearest"))`` for a 3x3, stride-1,
    reflect-padded ``conv``, computed at ``x``'s resolution: (B, C, H, W) -> (B, C', 2H, 2W).

    Each 2x2 phase of the output reads a 2x2 neighbourhood of ``x``, so the kernel folds into
    a 3x3 kernel with four times the output channels, run on ``x`` (replicate padding is what
    the upsampled image's reflect padding reads), and :func:`~torch.nn.functional.pixel_shuffle`
    interleaves the phases. The same numbers (to float rounding) at the same cost in
    multiply-adds, without the large upsampled and padded intermediates (on this project's
    2-core CPU: the full-resolution stage of :class:`TransformerNet` alone twice as fast, the
    whole network at 480 x 360 px 2-3 ms faster).

    Example:
        >>> conv = nn.Conv2d(4, 2, 3, padding=1, padding_mode="reflect")
        >>> x = torch.rand(1, 4, 5, 6)
        >>> ref = conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        >>> torch.allclose(upsample_conv(x, conv), ref, atol=1e-5)
        True
    """
    if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) \
            or conv.padding_mode != "reflect" or conv.dilation != (1, 1) or conv.groups != 1:
        raise ValueError("upsample_conv needs a 3x3, stride-1, reflect-padded convolution")
    taps = _UPSAMPLE_TAPS.to(conv.weight)
    w = torch.einsum("ayl,bxm,oiyx->oabilm", taps, taps, conv.weight).flatten(0, 2)   # (4 C', C, 3, 3)
    b = conv.bias.repeat_interleave(4) if conv.bias is not None else None
    return F.pixel_shuffle(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), w, b), 2)


class _ConvNorm(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int, code_dim: int, *, relu: bool = True,
                 upsample: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, padding_mode="reflect")
        self.norm = ConditionalInstanceNorm(c_out, code_dim)
        self.relu = relu
        self.upsample = upsample      # 2x nearest upsampling before the convolution

    def forward(self, x: Tensor, code: Tensor | None) -> Tensor:
        x = self.norm(upsample_conv(x, self.conv) if self.upsample else self.conv(x), code)
        return F.relu(x, inplace=True) if self.relu else x     # (the norm's backward does not read x)


class _Residual(nn.Module):
    def __init__(self, c: int, code_dim: int) -> None:
        super().__init__()
        self.a = _ConvNorm(c, c, 3, 1, code_dim)
        self.b = _ConvNorm(c, c, 3, 1, code_dim, relu=False)

    def forward(self, x: Tensor, code: Tensor | None) -> Tensor:
        return x + self.b(self.a(x, code), code)


class TransformerNet(nn.Module):
    """Image (B, 3, H, W) in [0, 1] (+ style code) -> stylized image (B, 3, H, W) in [0, 1].

    Any H and W: the input is padded (reflect) to a multiple of 8 and the output cropped.

    Args:
        code_dim: length of the style code it is conditioned on; 0 for a single-style net.
        width: channels of the first layer (then 2x and 4x).
        blocks: residual blocks at 1/8 resolution.
    """

    def __init__(self, code_dim: int = 64, *, width: int = 16, blocks: int = 5) -> None:
        super().__init__()
        w = width
        self.code_dim = code_dim
        self.down = nn.ModuleList([_ConvNorm(3, w, 5, 2, code_dim), _ConvNorm(w, 2 * w, 3, 2, code_dim),
                                   _ConvNorm(2 * w, 4 * w, 3, 2, code_dim)])
        self.res = nn.ModuleList([_Residual(4 * w, code_dim) for _ in range(blocks)])
        self.up = nn.ModuleList([_ConvNorm(4 * w, 2 * w, 3, 1, code_dim, upsample=True),
                                 _ConvNorm(2 * w, w, 3, 1, code_dim, upsample=True),
                                 _ConvNorm(w, w, 3, 1, code_dim, upsample=True)])
        self.out = nn.Conv2d(w, 3, 3, padding=1, padding_mode="reflect")

    def forward(self, x: Tensor, code: Tensor | None = None) -> Tensor:
        h, w = x.shape[-2:]
        if x.shape[0] == 1:   # channels-last: oneDNN's few-channel convolutions run 2-6x faster
            x = x.contiguous(memory_format=torch.channels_last)
        ph, pw = (-h) % 8, (-w) % 8
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        for layer in self.down:
            x = layer(x, code)
        for block in self.res:
            x = block(x, code)
        for layer in self.up:
            x = layer(x, code)
        return torch.sigmoid(self.out(x))[..., :h, :w].contiguous()   # the usual layout again


# -- tiled inference ------------------------------------------------------------------------------
def _tile_cores(hw: tuple[int, int], core: int, margin: int):
    """(input slices with context, core slices relative to them, core slices in the image) of
    a tiling of ``hw`` into cells of ``core`` px with ``margin`` px of context (all even
    multiples of the strides used, so every scale's coordinates are whole)."""
    from ..tiling import cuts

    rows, cols = cuts(hw[0], core), cuts(hw[1], core)
    for y0, y1 in zip(rows[:-1], rows[1:]):
        for x0, x1 in zip(cols[:-1], cols[1:]):
            ey0, ex0 = max(0, y0 - margin), max(0, x0 - margin)
            ey1, ex1 = min(hw[0], y1 + margin), min(hw[1], x1 + margin)
            yield (y0, y1, x0, x1), (ey0, ey1, ex0, ex1)


def _over_tiles(x: Tensor, fn: Callable[[Tensor], Tensor], factor: float, core: int, margin: int):
    """For each tile of ``x`` (B, C, H, W): ``fn`` of the tile with its context, cropped to the
    tile's core; ``factor`` is the output's scale relative to ``x``. Yields (out-slices, out)."""
    for (y0, y1, x0, x1), (ey0, ey1, ex0, ex1) in _tile_cores(tuple(x.shape[-2:]), core, margin):  # type: ignore[arg-type]
        out = fn(x[..., ey0:ey1, ex0:ex1])
        f = lambda v: round(v * factor)  # noqa: E731
        yield ((slice(f(y0), f(y1)), slice(f(x0), f(x1))),
               out[..., f(y0 - ey0):f(y1 - ey0), f(x0 - ex0):f(x1 - ex0)])


def _channel_moments(parts) -> tuple[Tensor, Tensor]:
    """(mean, var) per channel over all positions of the (B, C, h, w) ``parts``."""
    n, s1, s2 = 0, 0.0, 0.0
    for _, p in parts:
        q = p.double()
        n, s1, s2 = n + q.shape[0] * q.shape[2] * q.shape[3], s1 + q.sum((0, 2, 3)), s2 + q.pow(2).sum((0, 2, 3))
    mean = s1 / n
    return mean.float(), (s2 / n - mean * mean).clamp_min(0).float()


@torch.no_grad()
def tiled_forward(net: TransformerNet, x: Tensor, code: Tensor | None = None, *, core: int = 512,
                  margin: int = 64) -> Tensor:
    """``net(x, code)`` of one image too large for a whole pass, computed tile by tile, equal
    to the whole pass up to float rounding (no blending: each tile's core is exact).

    Every instance norm needs its channel statistics over the whole image. The encoder
    (three strided convolutions) runs in tiles: one pass per normalization accumulates the
    statistics of its input over all tiles' cores (the earlier ones already fixed to the
    whole image's), then a last pass writes the 1/8-resolution features, small enough to
    hold whole; the residual blocks run on them whole; the decoder runs in tiles like the
    encoder. ``margin`` (px at full resolution) must cover the receptive field of the
    tile's edge effects: 64 px is four times what the network needs.

    Args:
        x: (1, 3, H, W) in [0, 1].
        core: tile core in px (a multiple of 8).
    Returns:
        (1, 3, H, W) in [0, 1].
    """
    if x.shape[0] != 1 or core % 8 or margin % 8 or margin < 32:
        raise ValueError("one image; core and margin multiples of 8, margin >= 32")
    h, w = x.shape[-2:]
    ph, pw = (-h) % 8, (-w) % 8
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    layers = [*net.down, *net.up]
    try:
        def down_to(k: int, t: Tensor) -> Tensor:   # the encoder up to down[k]'s convolution
            for layer in net.down[:k]:
                t = layer(t, code)
            return net.down[k].conv(t)

        for k, layer in enumerate(net.down):
            layer.norm.fixed = _channel_moments(_over_tiles(x, lambda t, k=k: down_to(k, t), 2.0 ** -(k + 1),
                                                            core, margin))
        y = x.new_zeros((1, net.down[-1].conv.out_channels, x.shape[-2] // 8, x.shape[-1] // 8))
        for sl, part in _over_tiles(x, lambda t: _down(net, t, code), 1 / 8, core, margin):
            y[..., sl[0], sl[1]] = part
        for block in net.res:
            y = block(y, code)

        def up_to(k: int, t: Tensor) -> Tensor:     # the decoder up to up[k]'s convolution
            for layer in net.up[:k]:
                t = layer(t, code)
            return upsample_conv(t, net.up[k].conv)

        cy, my = core // 8, max(4, margin // 8)
        for k, layer in enumerate(net.up):
            layer.norm.fixed = _channel_moments(_over_tiles(y, lambda t, k=k: up_to(k, t), 2.0 ** (k + 1), cy, my))
        out = x.new_zeros((1, 3, *x.shape[-2:]))
        for sl, part in _over_tiles(y, lambda t: _up(net, t, code), 8.0, cy, my):
            out[..., sl[0], sl[1]] = part
    finally:
        for layer in layers:
            layer.norm.fixed = None
    return out[..., :h, :w]


def _down(net: TransformerNet, t: Tensor, code: Tensor | None) -> Tensor:
    for layer in net.down:
        t = layer(t, code)
    return t


def _up(net: TransformerNet, t: Tensor, code: Tensor | None) -> Tensor:
    for layer in net.up:
        t = layer(t, code)
    return torch.sigmoid(net.out(t))
