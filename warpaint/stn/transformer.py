"""The Spatial Transformer module (Jaderberg et al. 2015).

localization network -> transform parameters -> grid generator -> sampler.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import ShapeError
from .geometry import (
    PaddingMode,
    affine_grid,
    control_grid,
    identity_affine,
    out_of_bounds_penalty,
    rotation_matrix,
    sample,
    to_matrix,
    tps_grid,
)

TransformKind = Literal["affine", "similarity", "rigid", "projective", "tps"]
KINDS: tuple[str, ...] = ("affine", "similarity", "rigid", "projective", "tps")


def n_transform_params(kind: TransformKind, tps_grid: int = 4) -> int:
    """How many numbers the localization network outputs for a transform ``kind``.

    Example:
        >>> n_transform_params("affine"), n_transform_params("similarity"), n_transform_params("tps", 3)
        (6, 4, 18)
    """
    sizes = {"affine": 6, "similarity": 4, "rigid": 4, "projective": 8, "tps": 2 * tps_grid * tps_grid}
    if kind not in sizes:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return sizes[kind]


def localization_net(in_channels: int, n_params: int, *, width: int = 32) -> nn.Sequential:
    """A small localization network for any input size and channel count.

    Two conv blocks, then adaptive average pooling to 4x4 (instead of the reference code's
    hard-coded ``10 * 6 * 6`` flatten, which only fits 28x28 single-channel input), then two
    linear layers. The last layer starts at zero weight, so the output is its bias.
    """
    net = nn.Sequential(
        nn.Conv2d(in_channels, width // 2, kernel_size=7, padding=3),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.ReLU(inplace=True),
        nn.Conv2d(width // 2, width, kernel_size=5, padding=2),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(width * 16, width),
        nn.ReLU(inplace=True),
        nn.Linear(width, n_params),
    )
    nn.init.zeros_(net[-1].weight)
    return net


class SpatialTransformer(nn.Module):
    """Learnable spatial transformer for (B, C, H, W) inputs of any size and channel count.

    Args:
        in_channels: channels of the input.
        kind: ``"affine"`` (6 parameters), ``"similarity"`` (rotation, isotropic scale and
            translation: 4 parameters ``a, b, tx, ty`` for ``[[a, -b, tx], [b, a, ty]]``),
            ``"rigid"`` (rotation and translation only: the same 4 numbers with ``(a, b)``
            scaled to unit length, so the transformer cannot zoom), ``"projective"``
            (homography, 8) or ``"tps"``
            (thin-plate spline on a ``tps_grid`` x ``tps_grid`` control grid, 2 K^2).
        output_size: (H, W) of the output, or one int for a square; ``None`` keeps the
            input size.
        padding_mode: what is sampled outside the input; ``"border"`` (default) keeps
            gradients alive when the grid leaves the image.
        align_corners: passed to every grid call.
        iterations: with more than 1 (affine, similarity, projective), the localization net
            looks again at its own output and refines the transform by composition
            (inverse-compositional STN, Lin & Lucey 2017); the net is shared between passes.
        localization: a module mapping the input to ``n_params`` numbers; default
            :func:`localization_net`. Its last layer should start at zero weight.

    ``forward`` returns ``(warped, params)``: params are (B, 2, 3) ``theta_src_from_dst``
    for affine, similarity and rigid, (B, 3, 3) for projective, and (B, K, 2) input-space positions of the
    control points for TPS. The module starts at the identity.

    Example:
        >>> stn = SpatialTransformer(3)
        >>> x = torch.rand(2, 3, 20, 30)
        >>> y, theta = stn(x)
        >>> torch.allclose(y, x, atol=1e-5), tuple(theta.shape)
        (True, (2, 2, 3))
    """

    def __init__(self, in_channels: int, *, kind: TransformKind = "affine", tps_grid: int = 4,
                 output_size: int | tuple[int, int] | None = None, padding_mode: PaddingMode = "border",
                 align_corners: bool = False, localization: nn.Module | None = None,
                 iterations: int = 1) -> None:
        super().__init__()
        if iterations < 1 or (iterations > 1 and kind == "tps"):
            raise ValueError("iterations must be >= 1, and 1 for tps (splines do not compose)")
        self.iterations = iterations
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if kind == "tps" and tps_grid < 2:
            raise ValueError(f"tps_grid must be >= 2, got {tps_grid}")
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        if output_size is not None and (len(output_size) != 2 or min(output_size) < 1):
            raise ValueError(f"output_size must be (H, W) of positive ints, got {output_size}")
        if padding_mode not in ("zeros", "border", "reflection"):
            raise ValueError(f"padding_mode must be zeros, border or reflection, got {padding_mode!r}")
        if localization is None and in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.in_channels = in_channels if localization is None else None   # (a given one decides)
        self.kind: TransformKind = kind
        self.output_size = tuple(output_size) if output_size is not None else None
        self.padding_mode: PaddingMode = padding_mode
        self.align_corners = align_corners
        if kind == "tps":
            self.register_buffer("control_points", control_grid(tps_grid))
            identity = self.control_points.reshape(-1)
        elif kind == "affine":
            identity = identity_affine(1).reshape(-1)
        elif kind in ("similarity", "rigid"):
            identity = torch.tensor([1.0, 0.0, 0.0, 0.0])
        else:
            identity = torch.eye(3).reshape(-1)[:8]
        self.register_buffer("identity", identity.clone())
        self.localization = localization if localization is not None else \
            localization_net(in_channels, identity.numel())
        last = [m for m in self.localization.modules() if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():
            last.bias.copy_(identity)

    @property
    def n_params(self) -> int:
        return self.identity.numel()

    def params(self, flat: Tensor) -> Tensor:
        """Reshape flat parameters (B, n_params) into the documented parameter shape."""
        b = flat.shape[0]
        if self.kind == "affine":
            return flat.view(b, 2, 3)
        if self.kind in ("similarity", "rigid"):
            a, s, tx, ty = flat.unbind(1)
            if self.kind == "rigid":
                norm = torch.sqrt(a * a + s * s).clamp_min(1e-6)
                a, s = a / norm, s / norm
            return torch.stack([torch.stack([a, -s, tx], 1), torch.stack([s, a, ty], 1)], 1)
        if self.kind == "projective":
            return torch.cat([flat, flat.new_ones(b, 1)], 1).view(b, 3, 3)
        return flat.view(b, -1, 2)

    def grid(self, params: Tensor, size: tuple[int, int]) -> Tensor:
        """Sampling grid (B, H, W, 2) for parameters in the shape :meth:`params` returns."""
        if self.kind == "tps":
            return tps_grid(params, self.control_points, size, align_corners=self.align_corners)
        return affine_grid(params, size, align_corners=self.align_corners)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim != 4 or (self.in_channels is not None and x.shape[1] != self.in_channels):
            raise ShapeError(f"input must have shape (B, {self.in_channels or 'C'}, H, W), "
                             f"got {tuple(x.shape)}")
        params = self.params(self.localization(x))
        size = self.output_size or (x.shape[-2], x.shape[-1])
        for _ in range(self.iterations - 1):
            # Inverse-compositional refinement (Lin & Lucey 2017): the same localization net
            # looks at the current output and returns a correction in the output's frame.
            view = sample(x, self.grid(params, size), padding_mode=self.padding_mode,
                          align_corners=self.align_corners)
            step = self.params(self.localization(view))
            params = (to_matrix(params) @ to_matrix(step))[:, : params.shape[1]]
        grid = self.grid(params, size)
        self.last_grid = grid
        return sample(x, grid, padding_mode=self.padding_mode, align_corners=self.align_corners), params

    def inverse(self, params: Tensor) -> Tensor:
        """The inverse transforms of ``params`` (same shape): they map input coordinates to
        output coordinates, i.e. they warp an output-frame prediction back onto the input.
        Not defined for TPS."""
        if self.kind == "tps":
            raise ValueError("a thin-plate spline has no closed-form inverse")
        return torch.linalg.inv(to_matrix(params))[:, : params.shape[1]]

    def identity_penalty(self, params: Tensor) -> Tensor:
        """Mean squared distance of the parameters from the identity transform."""
        return (params - self.params(self.identity[None])).pow(2).mean()

    def regularization(self, params: Tensor, *, identity_weight: float = 0.0,
                       bounds_weight: float = 0.0) -> Tensor:
        """Optional penalties against the dead-gradient failure (grid leaving the image)."""
        out = params.new_zeros(())
        if identity_weight:
            out = out + identity_weight * self.identity_penalty(params)
        if bounds_weight:
            out = out + bounds_weight * out_of_bounds_penalty(self.last_grid)
        return out


def turn_batch(x: Tensor, generator: torch.Generator, max_degrees: float = 30.0) -> tuple[Tensor, Tensor]:
    """Each image of a (B, C, H, W) batch turned by its own random angle ``d`` (uniform in
    +-``max_degrees``) about the image centre, zeros outside; returns the turned batch and
    the (B, 2, 2) rotations ``R(d)`` (normalized coordinates, output -> input convention of
    :func:`~warpaint.stn.geometry.affine_grid`)."""
    b = x.shape[0]
    d = (torch.rand(b, generator=generator) * 2 - 1).to(x.device) * math.radians(max_degrees)
    # x2(u) = x(R(-d) u): x turned by d
    back = torch.cat([rotation_matrix(-d).to(x.dtype), x.new_zeros(b, 2, 1)], -1)
    x2 = sample(x, affine_grid(back, tuple(x.shape[-2:]), align_corners=False),
                padding_mode="zeros", align_corners=False)
    return x2, rotation_matrix(d).to(x.dtype)


def equivariance_error(theta: Tensor, theta_turned: Tensor, rot: Tensor) -> Tensor:
    """How far (B, 2, 3) parameters for a batch turned by ``rot`` (from :func:`turn_batch`)
    are from ``rot @ theta``, the transform that shows the turned input in the same pose:
    the mean squared difference divided by the transforms' squared size, so the degenerate
    ``theta = 0`` gains nothing."""
    if theta.shape[-2:] != (2, 3):
        raise ValueError("the rotation-equivariance term needs (B, 2, 3) affine-family parameters")
    num = (theta_turned - rot @ theta).pow(2).flatten(1).sum(1)
    den = 0.5 * (theta.pow(2).flatten(1).sum(1) + theta_turned.pow(2).flatten(1).sum(1))
    return (num / den.clamp_min(1e-6)).mean()


def rotation_equivariance_loss(stn: SpatialTransformer, x: Tensor, theta: Tensor,
                               generator: torch.Generator, max_degrees: float = 30.0) -> Tensor:
    """Self-supervised rotation equivariance of an affine-family transformer.

    The batch is turned by a random extra angle ``d`` about the image centre
    (:func:`turn_batch`); for the transformer to show both versions in the same pose, its
    parameters for the turned input must be ``R(d) theta`` (:func:`equivariance_error`). It
    uses only the extra turn it applies itself, never any known distortion.

    Args:
        x: (B, C, H, W) inputs; theta: (B, 2, 3) the transformer's parameters for ``x``.
    """
    if theta.shape[-2:] != (2, 3):
        raise ValueError("the rotation-equivariance term needs (B, 2, 3) affine-family parameters")
    x2, rot = turn_batch(x, generator, max_degrees)
    return equivariance_error(theta, stn(x2)[1], rot)
