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

from ..color import channel_mean_var

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
        mean, var = channel_mean_var(feats[name])
        out += [mean, (var + 1e-5).sqrt()]
    return torch.cat(out, 1)


class StyleEncoder(nn.Module):
    """Feature statistics (B, 1920) -> style code (B, ``code_dim``).

    The statistics are log-compressed (they span orders of magnitude between layers) and
    standardized with the buffers ``center`` and ``spread`` (set from the training styles by
    :meth:`set_normalization`; 0 and 1 until then) before a two-layer perceptron.
    """

    def __init__(self, code_dim: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(STAT_DIM, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, code_dim))
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

    def over_phases(self, x: Tensor, code: Tensor | None) -> Tensor:
        """:meth:`forward` of one full-resolution map stored as its four phases, (1, 4C, h, w)
        channels-last from :func:`_phase_planes`: in memory that is (h, 4w) pixels of C channels,
        normalized as one (1, C, h, 4w) image."""
        c, h, w = x.shape[1] // 4, x.shape[2], x.shape[3]
        pixels = x.permute(0, 2, 3, 1).reshape(1, h, 4 * w, c).permute(0, 3, 1, 2)    # a view
        return self(pixels, code).permute(0, 2, 3, 1).reshape(1, h, w, 4 * c).permute(0, 3, 1, 2)


# -- 2x upsampling by phases -------------------------------------------------------------------
# A 2x-upsampled map is four "phases", the pixels whose (row, column) mod 2 is (a, b). A 3x3
# convolution of it reads, at every pixel of phase (a, b), a 2x2 window of the low-resolution
# grid that starts at offset (a - 1, b - 1): it is a 2x2 convolution per phase, run at low
# resolution, 2.25x fewer multiply-adds than convolving at full resolution.

#: ``_UPSAMPLE_TAPS[a, d, l] = 1`` where tap ``d`` (0-2) of a 3x3 kernel on a 2x nearest-
#: upsampled image, at an output pixel of phase ``a``, reads pixel ``l`` (0-1) of the window.
_UPSAMPLE_TAPS = torch.tensor([[[1, 0], [0, 1], [0, 1]],
                               [[1, 0], [1, 0], [0, 1]]], dtype=torch.float32)
#: The same taps in a 3x3 window centred on the pixel (offsets -1, 0, 1), for a plain 3x3 kernel.
_UPSAMPLE_TAPS_3X3 = torch.tensor([[[1, 0, 0], [0, 1, 0], [0, 1, 0]],
                                   [[0, 1, 0], [0, 1, 0], [0, 0, 1]]], dtype=torch.float32)
#: ``_PHASE_TAPS[a, d, p, l] = 1`` where tap ``d`` of a 3x3 kernel on a full-resolution map
#: stored as phases, at an output pixel of phase ``a``, reads phase ``p`` of pixel ``l`` of the window.
_PHASE_TAPS = torch.tensor([[[[0, 0], [1, 0]], [[0, 1], [0, 0]], [[0, 0], [0, 1]]],
                            [[[1, 0], [0, 0]], [[0, 0], [1, 0]], [[0, 1], [0, 0]]]], dtype=torch.float32)


def _check_foldable(conv: nn.Conv2d) -> None:
    if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) \
            or conv.padding_mode != "reflect" or conv.dilation != (1, 1) or conv.groups != 1:
        raise ValueError("upsample_conv needs a 3x3, stride-1, reflect-padded convolution")


def _upsample_kernel(conv: nn.Conv2d, taps: Tensor = _UPSAMPLE_TAPS) -> tuple[Tensor, Tensor | None]:
    """``conv``'s (C', C, 3, 3) kernel as four phase kernels: (4 C', C, 2, 2), the output
    channels of phase (a, b) at ``(2a + b) C'`` (with :data:`_UPSAMPLE_TAPS_3X3`: (4 C', C, 3, 3),
    phase (a, b) of channel o at ``4 o + 2a + b``, the order of ``pixel_shuffle``)."""
    taps = taps.to(conv.weight)
    order = "aboilm" if taps.shape[-1] == 2 else "oabilm"
    w = torch.einsum(f"ayl,bxm,oiyx->{order}", taps, taps, conv.weight).flatten(0, 2)
    if conv.bias is None:
        return w, None
    return w, conv.bias.repeat(4) if taps.shape[-1] == 2 else conv.bias.repeat_interleave(4)


def _phase_kernel(conv: nn.Conv2d) -> tuple[Tensor, Tensor | None]:
    """``conv``'s (C', C, 3, 3) kernel for a full-resolution input stored as phases (input
    channel ``(2p + q) C + c``, as :func:`_phase_planes` stores them): (4 C', 4 C, 2, 2)."""
    taps = _PHASE_TAPS.to(conv.weight)
    w = torch.einsum("aypl,bxqm,oiyx->abopqilm", taps, taps, conv.weight).flatten(0, 2).flatten(1, 3)
    return w, None if conv.bias is None else conv.bias.repeat(4)


def _phase_windows(y: Tensor) -> Tensor:
    """(B, 4C, h + 1, w + 1) outputs of 2x2 phase kernels -> (B, h + 1, w + 1, 4, C), a view."""
    return y.permute(0, 2, 3, 1).unflatten(3, (4, y.shape[1] // 4))


def _interleave(y: Tensor) -> Tensor:
    """(B, 4C, h + 1, w + 1) channels-last outputs of 2x2 phase kernels -> the full-resolution
    map (B, C, 2h, 2w), channels-last: pixel (2i + a, 2j + b) from the window of phase (a, b)
    that starts at (i + a, j + b) of the padded grid."""
    b, c, h, w = y.shape[0], y.shape[1] // 4, y.shape[2] - 1, y.shape[3] - 1
    win, out = _phase_windows(y), y.new_empty(b, h, 2, w, 2, c)
    for k in range(4):
        out[:, :, k // 2, :, k % 2] = win[:, k // 2:k // 2 + h, k % 2:k % 2 + w, k]
    return out.view(b, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


def _phase_planes(y: Tensor) -> Tensor:
    """(B, 4C, h + 1, w + 1) outputs of 2x2 phase kernels -> the full-resolution map stored as
    its four phases, (B, 4C, h, w) channels-last (channel ``(2a + b) C + c``: phase (a, b))."""
    b, c, h, w = y.shape[0], y.shape[1] // 4, y.shape[2] - 1, y.shape[3] - 1
    win, out = _phase_windows(y), y.new_empty(b, h, w, 4, c)
    for k in range(4):
        out[:, :, :, k] = win[:, k // 2:k // 2 + h, k % 2:k % 2 + w, k]
    return out.view(b, h, w, 4 * c).permute(0, 3, 1, 2)


def _conv2x2_edge_padded(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, bias)`` for a 2x2 kernel,
    (1, C, h, w) -> (1, C', h + 1, w + 1), without the padded copy of ``x``: zero padding
    inside the convolution, then the outer rows and columns, the only outputs that read the
    padding, again from thin replicate-padded strips. For a large, many-channel ``x`` (the
    four phases of a 16-channel map at 640 x 480 px: the copy took 10 ms of a 240 ms call);
    with few channels the convolution's own padding is the slower part."""
    out = F.conv2d(x, weight, bias, padding=1)
    h, w = x.shape[-2:]

    def strip(t: Tensor) -> Tensor:      # a one-pixel-wide strip of x, padded and convolved
        return F.conv2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), weight, bias)

    out[..., :1, :] = strip(x[..., :1, :])[..., :1, :]
    out[..., h:, :] = strip(x[..., h - 1:, :])[..., :1, :]
    out[..., :, :1] = strip(x[..., :, :1])[..., :, :1]
    out[..., :, w:] = strip(x[..., :, w - 1:])[..., :, :1]
    return out


def upsample_conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """``conv(interpolate(x, scale_factor=2, mode="nearest"))`` for a 3x3, stride-1,
    reflect-padded ``conv``, computed at ``x``'s resolution: (B, C, H, W) -> (B, C', 2H, 2W).

    Each phase of the output is a 2x2 convolution of ``x`` (replicate padding is what the
    upsampled image's reflect padding reads), and the phases are interleaved: the same numbers
    (to float rounding) without the large upsampled and padded intermediates, and with 2.25x
    fewer multiply-adds (on this project's 2-core CPU, the network's three upsampling
    convolutions at 640 x 480 px 31 -> 20 ms). That is for channels-last input (one image, see
    :class:`TransformerNet`); batches in the usual layout (training) run each phase as a 3x3
    kernel with zeros and ``pixel_shuffle``, which with its backward is faster there.

    Example:
        >>> conv = nn.Conv2d(4, 2, 3, padding=1, padding_mode="reflect")
        >>> x = torch.rand(1, 4, 5, 6)
        >>> ref = conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        >>> torch.allclose(upsample_conv(x, conv), ref, atol=1e-5)
        True
    """
    _check_foldable(conv)
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return _interleave(F.conv2d(x, *_upsample_kernel(conv)))
    return F.pixel_shuffle(F.conv2d(x, *_upsample_kernel(conv, _UPSAMPLE_TAPS_3X3)), 2)


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
        for layer in self.up[:-1]:
            x = layer(x, code)
        if x.shape[0] == 1 and not torch.is_grad_enabled():
            x = self._last_by_phases(x, code)
        else:
            x = self.out(self.up[-1](x, code))
        return torch.sigmoid(x)[..., :h, :w].contiguous()   # the usual layout again

    def _last_by_phases(self, x: Tensor, code: Tensor | None) -> Tensor:
        """``self.out(self.up[-1](x, code))`` for one image, with the full-resolution map in
        between kept as its four phases at ``x``'s resolution: no interleaving, reflect
        padding or 3-channel convolution at full resolution (on this project's 2-core CPU,
        with :func:`upsample_conv`'s phase kernels, the network at 640 x 480 px 128 -> 112 ms)."""
        layer = self.up[-1]
        _check_foldable(layer.conv)
        _check_foldable(self.out)
        y = _phase_planes(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), *_upsample_kernel(layer.conv)))
        y = layer.norm.over_phases(y, code)
        if layer.relu:
            y = F.relu(y, inplace=True)
        # replicate padding of the phases is what reflect padding of the full map reads
        return _interleave(_conv2x2_edge_padded(y, *_phase_kernel(self.out)))


# -- tiled inference ------------------------------------------------------------------------------
def _tile_cores(hw: tuple[int, int], core: int, margin: int):
    """(input slices with context, core slices relative to them, core slices in the image) of
    a tiling of ``hw`` into cells of ``core`` px with ``margin`` px of context (all even
    multiples of the strides used, so every scale's coordinates are whole)."""
    from ..tiling import cuts, segments

    for y0, y1 in segments(cuts(hw[0], core)):
        for x0, x1 in segments(cuts(hw[1], core)):
            ey0, ex0 = max(0, y0 - margin), max(0, x0 - margin)
            ey1, ex1 = min(hw[0], y1 + margin), min(hw[1], x1 + margin)
            yield (y0, y1, x0, x1), (ey0, ey1, ex0, ex1)


def _over_tiles(x: Tensor, fn: Callable[[Tensor], Tensor], factor: float, core: int, margin: int):
    """For each tile of ``x`` (B, C, H, W): ``fn`` of the tile with its context, cropped to the
    tile's core; ``factor`` is the output's scale relative to ``x``. Yields (out-slices, out)."""
    hw = (x.shape[-2], x.shape[-1])
    for (y0, y1, x0, x1), (ey0, ey1, ex0, ex1) in _tile_cores(hw, core, margin):
        out = fn(x[..., ey0:ey1, ex0:ex1])
        f = lambda v: round(v * factor)  # noqa: E731
        yield ((slice(f(y0), f(y1)), slice(f(x0), f(x1))),
               out[..., f(y0 - ey0):f(y1 - ey0), f(x0 - ex0):f(x1 - ex0)])


def _channel_moments(parts) -> tuple[Tensor, Tensor]:
    """(mean, var) per channel over all positions of the (B, C, h, w) ``parts``."""
    n, s1, s2 = 0, 0.0, 0.0
    for _, p in parts:
        q = p.double()
        n += q.shape[0] * q.shape[2] * q.shape[3]
        s1, s2 = s1 + q.sum((0, 2, 3)), s2 + q.pow(2).sum((0, 2, 3))
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
            parts = _over_tiles(y, lambda t, k=k: up_to(k, t), 2.0 ** (k + 1), cy, my)
            layer.norm.fixed = _channel_moments(parts)
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
