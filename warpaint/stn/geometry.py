"""Small typed functions for spatial-transformer geometry.

Conventions (as in ``torch.nn.functional.affine_grid`` / ``grid_sample``):

* Normalized coordinates: ``(x, y)`` in ``[-1, 1]``; x to the right, y down.
* A transform named ``*_src_from_dst`` maps **output** (destination) coordinates to **input**
  (source) coordinates: that is what a sampling grid needs, and what ``affine_grid`` takes.
  To move points or boxes from the input into the output frame, use its inverse.
* Grids are ``(B, H, W, 2)`` with ``(x, y)`` last. Every sampling call passes
  ``align_corners`` explicitly; with ``align_corners=False`` the normalized coordinates
  -1 and 1 are the outer *edges* of the border pixels, pixel ``i`` has centre
  ``(2 i + 1) / W - 1``.
* Pixel coordinates: ``(x, y)`` of pixel centres, ``x`` in ``[0, W - 1]``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

PaddingMode = Literal["zeros", "border", "reflection"]


def identity_affine(batch: int = 1, *, device: torch.device | None = None,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """Identity affine transforms, shape (B, 2, 3).

    Example:
        >>> identity_affine(1)
        tensor([[[1., 0., 0.],
                 [0., 1., 0.]]])
    """
    return torch.eye(2, 3, device=device, dtype=dtype).expand(batch, 2, 3).clone()


def rotation_matrix(angle: Tensor) -> Tensor:
    """Rotation matrices ``[[cos, -sin], [sin, cos]]`` (B, 2, 2) for angles (B,) in radians.

    With y pointing down, a positive angle turns points clockwise on screen.
    """
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def rotation_angle(theta: Tensor) -> Tensor:
    """The rotation (B,) in radians of (B, 2, 3) or (B, 2, 2) affine transforms: the angle
    of the rotation nearest to the linear part (exact for similarities)."""
    a = theta[..., :2, :2]
    return torch.atan2(a[..., 1, 0] - a[..., 0, 1], a[..., 0, 0] + a[..., 1, 1])


def to_matrix(theta: Tensor) -> Tensor:
    """(B, 2, 3) affine or (B, 3, 3) projective transforms as (B, 3, 3) matrices."""
    if theta.shape[-2:] == (3, 3):
        return theta
    if theta.shape[-2:] != (2, 3):
        raise ValueError(f"expected (B, 2, 3) or (B, 3, 3) transforms, got {tuple(theta.shape)}")
    last = theta.new_tensor([0.0, 0.0, 1.0]).expand(theta.shape[0], 1, 3)
    return torch.cat([theta, last], dim=1)


def compose_affine(theta_a: Tensor, theta_b: Tensor) -> Tensor:
    """The affine map ``a o b`` (apply ``b`` first, then ``a``), shape (B, 2, 3).

    If ``theta_b`` maps frame 2 -> frame 1 and ``theta_a`` maps frame 1 -> frame 0, the
    result maps frame 2 -> frame 0.

    Example:
        >>> t = torch.tensor([[[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]])
        >>> compose_affine(t, t)[0, 0, 2].item()
        1.0
    """
    return (to_matrix(theta_a) @ to_matrix(theta_b))[:, :2]


def invert_affine(theta: Tensor) -> Tensor:
    """Inverse of (B, 2, 3) affine transforms, shape (B, 2, 3)."""
    return torch.linalg.inv(to_matrix(theta))[:, :2]


def pixel_from_normalized(size: tuple[int, int], *, align_corners: bool,
                          device: torch.device | None = None,
                          dtype: torch.dtype = torch.float32) -> Tensor:
    """(3, 3) matrix taking normalized ``(x, y)`` to pixel-centre coordinates of an (H, W) image.

    Example:
        >>> m = pixel_from_normalized((4, 4), align_corners=False)
        >>> (m @ torch.tensor([-1.0, -1.0, 1.0]))[:2].tolist()   # the outer edge: half a pixel out
        [-0.5, -0.5]
    """
    h, w = size
    if align_corners:
        sx, sy, ox, oy = (w - 1) / 2, (h - 1) / 2, (w - 1) / 2, (h - 1) / 2
    else:
        sx, sy, ox, oy = w / 2, h / 2, (w - 1) / 2, (h - 1) / 2
    return torch.tensor([[sx, 0.0, ox], [0.0, sy, oy], [0.0, 0.0, 1.0]], device=device, dtype=dtype)


def to_pixel_transform(theta_src_from_dst: Tensor, src_size: tuple[int, int],
                       dst_size: tuple[int, int], *, align_corners: bool) -> Tensor:
    """Convert a normalized transform (affine_grid convention) into pixel coordinates.

    Args:
        theta_src_from_dst: (B, 2, 3) or (B, 3, 3), normalized output -> input coordinates.
        src_size: (H, W) of the input image; dst_size: (H, W) of the output.
    Returns:
        (B, 3, 3) matrix mapping output pixel ``(x, y, 1)`` to input pixel coordinates.
    """
    kw = {"align_corners": align_corners, "device": theta_src_from_dst.device,
          "dtype": theta_src_from_dst.dtype}
    p_src = pixel_from_normalized(src_size, **kw)
    n_dst = torch.linalg.inv(pixel_from_normalized(dst_size, **kw))
    return p_src @ to_matrix(theta_src_from_dst) @ n_dst


def from_pixel_transform(m_src_from_dst: Tensor, src_size: tuple[int, int],
                         dst_size: tuple[int, int], *, align_corners: bool) -> Tensor:
    """Inverse of :func:`to_pixel_transform`: (B, 3, 3) pixel matrix -> normalized (B, 3, 3)."""
    kw = {"align_corners": align_corners, "device": m_src_from_dst.device, "dtype": m_src_from_dst.dtype}
    n_src = torch.linalg.inv(pixel_from_normalized(src_size, **kw))
    p_dst = pixel_from_normalized(dst_size, **kw)
    return n_src @ m_src_from_dst @ p_dst


def transform_points(matrix: Tensor, points: Tensor) -> Tensor:
    """Apply (B, 2, 3) affine or (B, 3, 3) projective transforms to points (B, N, 2).

    Example:
        >>> t = torch.tensor([[[2.0, 0.0, 1.0], [0.0, 2.0, 0.0]]])
        >>> transform_points(t, torch.tensor([[[1.0, 1.0]]])).tolist()
        [[[3.0, 2.0]]]
    """
    m = to_matrix(matrix)
    ph = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)  # (B, N, 3)
    out = ph @ m.transpose(1, 2)
    return out[..., :2] / out[..., 2:].clamp_min(1e-8) if matrix.shape[-2] == 3 else out[..., :2]


def transform_boxes(matrix: Tensor, boxes: Tensor) -> Tensor:
    """Map axis-aligned boxes (B, N, 4) ``x1, y1, x2, y2`` through transforms.

    Each box becomes the axis-aligned box of its four transformed corners (a rotated box
    grows to contain the rotated rectangle).
    """
    x1, y1, x2, y2 = boxes.unbind(-1)
    corners = torch.stack([torch.stack([x1, y1], -1), torch.stack([x2, y1], -1),
                           torch.stack([x2, y2], -1), torch.stack([x1, y2], -1)], dim=2)  # (B,N,4,2)
    b, n = boxes.shape[:2]
    moved = transform_points(matrix, corners.reshape(b, n * 4, 2)).reshape(b, n, 4, 2)
    return torch.cat([moved.amin(2), moved.amax(2)], dim=-1)


def base_grid(size: tuple[int, int], *, align_corners: bool, device: torch.device | None = None,
              dtype: torch.dtype = torch.float32) -> Tensor:
    """Normalized ``(x, y)`` coordinates of every output pixel, shape (H, W, 2)."""
    theta = identity_affine(1, device=device, dtype=dtype)
    return F.affine_grid(theta, [1, 1, *size], align_corners=align_corners)[0]


def affine_grid(theta_src_from_dst: Tensor, size: tuple[int, int], *, align_corners: bool) -> Tensor:
    """Sampling grid (B, H, W, 2) of (B, 2, 3) affine or (B, 3, 3) projective transforms."""
    if theta_src_from_dst.shape[-2:] == (2, 3):
        return F.affine_grid(theta_src_from_dst, [theta_src_from_dst.shape[0], 1, *size],
                             align_corners=align_corners)
    b = theta_src_from_dst.shape[0]
    pts = base_grid(size, align_corners=align_corners, device=theta_src_from_dst.device,
                    dtype=theta_src_from_dst.dtype).reshape(1, -1, 2).expand(b, -1, -1)
    return transform_points(theta_src_from_dst, pts).reshape(b, *size, 2)


def control_grid(k: int, *, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """A k x k grid of thin-plate-spline control points spanning [-1, 1]^2, shape (k*k, 2)."""
    t = torch.linspace(-1.0, 1.0, k, device=device, dtype=dtype)
    y, x = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1)


def _tps_kernel(d2: Tensor) -> Tensor:
    """U(r) = r^2 log r^2 (with U(0) = 0) on squared distances."""
    return d2 * torch.log(d2.clamp_min(1e-12))


def tps_weights(points: Tensor, dst_points: Tensor) -> Tensor:
    """(N, K) weights with ``tps(points) = weights @ src_points`` for any ``src_points``.

    The thin-plate spline with kernel centres on the fixed control points ``dst_points``
    (K, 2) that sends ``dst_points[k]`` to ``src_points[k]`` is linear in ``src_points``; this
    is its matrix, evaluated at ``points`` (N, 2). Grids, point mapping and least-squares fits
    of the spline all use it.
    """
    # Solved in float64 (the system is ill-conditioned for large K) on the CPU (MPS has no
    # float64); the weights go back to the points' device and dtype.
    c = dst_points.detach().to("cpu", torch.float64)
    q = points.detach().to("cpu", torch.float64)
    k = c.shape[0]
    p = torch.cat([torch.ones(k, 1, dtype=c.dtype, device=c.device), c], 1)   # (K, 3)
    lhs = torch.zeros(k + 3, k + 3, dtype=c.dtype, device=c.device)
    lhs[:k, :k] = _tps_kernel(torch.cdist(c, c).pow(2))
    lhs[:k, k:] = p
    lhs[k:, :k] = p.T
    basis = torch.cat([_tps_kernel(torch.cdist(q, c).pow(2)),
                       torch.ones(q.shape[0], 1, dtype=c.dtype, device=c.device), q], 1)
    # coef = lhs^-1 [src; 0], so tps(points) = basis @ (lhs^-1)[:, :K] @ src
    w = torch.linalg.solve(lhs.T, basis.T).T[:, :k]
    return w.to(points.device, points.dtype)                             # (N, K)


def tps_grid(src_points: Tensor, dst_points: Tensor, size: tuple[int, int], *,
             align_corners: bool) -> Tensor:
    """Thin-plate-spline sampling grid (B, H, W, 2) that maps ``dst_points`` onto ``src_points``.

    The spline has its kernel centres on the fixed output-space control points
    ``dst_points`` (K, 2), as in Jaderberg et al.'s TPS transformer, and interpolates
    exactly: output location ``dst_points[k]`` samples the input at ``src_points[:, k]``.
    The grid is linear in ``src_points`` (see :func:`tps_weights`).

    Args:
        src_points: (B, K, 2) normalized input-space positions of the control points.
        dst_points: (K, 2) normalized output-space control points (e.g. :func:`control_grid`).
    Note:
        kornia's ``get_tps_transform`` re-solves the system with the kernel centred on the
        moving points; here the system matrix depends only on the fixed points.
    """
    b = src_points.shape[0]
    g = base_grid(size, align_corners=align_corners, device=src_points.device,
                  dtype=src_points.dtype).reshape(-1, 2)
    return (tps_weights(g, dst_points) @ src_points).reshape(b, *size, 2)


def sample(image: Tensor, grid: Tensor, *, padding_mode: PaddingMode = "border",
           align_corners: bool = False, mode: Literal["bilinear", "bicubic"] = "bilinear") -> Tensor:
    """Sampling of (B, C, H, W) images at a (B, H', W', 2) grid -> (B, C, H', W').

    ``mode="bicubic"`` keeps more fine detail (for final images); it may overshoot, so
    clamp images afterwards.
    """
    return F.grid_sample(image, grid.to(image.dtype), mode=mode, padding_mode=padding_mode,
                         align_corners=align_corners)


def out_of_bounds_penalty(grid: Tensor) -> Tensor:
    """Mean squared distance by which grid points leave [-1, 1]^2 (0 when all inside).

    Penalizing it keeps the sampling grid on the image, where gradients do not vanish.
    """
    return F.relu(grid.abs() - 1.0).pow(2).mean()
