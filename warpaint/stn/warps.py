"""Optimizable image warps (affine, thin-plate spline) and their fits to point matches.

A warp is a map from **output** coordinates to **input** coordinates (normalized ``(x, y)``
in ``[-1, 1]``, ``align_corners=False``), the direction a sampling grid needs: the warped
image is ``sample(image, warp.grid(size))``, and a point ``p`` of the input shows up in the
output at ``warp.inverse(p)``.

* :class:`AffineWarp`: 6 parameters.
* :class:`TPSWarp`: a thin-plate spline on a k x k control grid whose border points stay
  fixed (the image frame does not move); only the interior points are parameters.

Both fit to matches by (weighted, regularized) least squares, report their geometry in
pixels (:meth:`describe`) and measure fold-overs through the Jacobian determinant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .geometry import (
    base_grid,
    control_grid,
    to_pixel_transform,
    tps_weights,
)


def jacobian_determinant(grid: Tensor) -> Tensor:
    """Determinant of the sampling map's Jacobian at every cell of a grid.

    Args:
        grid: (B, H, W, 2) normalized output -> input grid (``align_corners=False``).
    Returns:
        (B, H - 1, W - 1) determinants in units where the identity is 1; a value <= 0 means
        the map folds over there.
    """
    h, w = grid.shape[1:3]
    dx = (grid[:, :-1, 1:] - grid[:, :-1, :-1]) * (w / 2)     # d(grid)/d(output x), per unit
    dy = (grid[:, 1:, :-1] - grid[:, :-1, :-1]) * (h / 2)
    return dx[..., 0] * dy[..., 1] - dx[..., 1] * dy[..., 0]


#: The fold guarantee: every warp that geometric style applies has a Jacobian determinant of
#: at least this much everywhere on the output grid (:meth:`Warp.stiffen` enforces it).
MIN_JACOBIAN = 0.1


def fold_penalty(grid: Tensor, *, margin: float = 0.2) -> Tensor:
    """Mean squared shortfall of the Jacobian determinant below ``margin`` (0 when none)."""
    return F.relu(margin - jacobian_determinant(grid)).pow(2).mean()


class Warp(nn.Module):
    """Base class: subclasses implement :meth:`forward` on (N, 2) output points."""

    def forward(self, points: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def grid(self, size: tuple[int, int]) -> Tensor:
        """(1, H, W, 2) sampling grid (output pixel centres -> input positions)."""
        g = base_grid(size, align_corners=False, device=self.device, dtype=torch.float32)
        return self(g.reshape(-1, 2)).reshape(1, *size, 2)

    def map_grid(self, size: tuple[int, int]) -> Tensor:
        """The map itself on a (1, H, W, 2) grid, before any clamping to the image: what the
        fold measures (:meth:`min_jacobian`, :meth:`penalties`) read. As :meth:`grid` here."""
        return self.grid(size)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def inverse(self, points: Tensor, *, iterations: int = 20) -> Tensor:
        """Output positions of (N, 2) input points: solves ``warp(y) = p`` by Newton steps."""
        y = points.detach().clone()
        eye = torch.eye(2, device=y.device)
        h = 1e-3
        with torch.no_grad():
            for _ in range(iterations):
                r = self(y) - points
                jx = (self(y + h * eye[0]) - self(y - h * eye[0])) / (2 * h)
                jy = (self(y + h * eye[1]) - self(y - h * eye[1])) / (2 * h)
                jac = torch.stack([jx, jy], -1)                        # (N, 2, 2)
                y = y - torch.linalg.solve(jac, r[..., None])[..., 0]
        return y

    def regularity(self) -> Tensor:
        """Smoothness penalty of the parameters (0 for affine)."""
        return torch.zeros((), device=self.device)

    def project(self) -> None:
        """Pull the parameters back so that the grid stays inside the input (in place)."""

    #: Jacobian determinant below which :meth:`penalties` charges (an affine warp only
    #: charges for mirroring: a strong zoom is not a fold).
    fold_margin = 0.2

    def penalties(self, size: tuple[int, int] = (64, 64)) -> dict[str, Tensor]:
        """The fold-over penalty evaluated on a ``size`` grid. (No out-of-bounds term: the
        grid stays inside the image by construction, see :meth:`project`.)"""
        return {"fold": fold_penalty(self.map_grid(size), margin=self.fold_margin)}

    @torch.no_grad()
    def min_jacobian(self, size: tuple[int, int]) -> float:
        """The smallest Jacobian determinant of the map on a ``size`` (H, W) grid."""
        return float(jacobian_determinant(self.map_grid(size)).min())

    def identity_parameters(self) -> list[Tensor]:  # pragma: no cover - abstract
        """The parameters' values for the identity warp, in :meth:`parameters` order."""
        raise NotImplementedError

    @torch.no_grad()
    def stiffen(self, size: tuple[int, int], *, bound: float = MIN_JACOBIAN, factor: float = 0.8,
                tries: int = 30) -> float:
        """Pull the warp toward the identity (in place) until its minimum Jacobian determinant
        on a ``size`` (H, W) grid is at least ``bound``.

        The parameters become ``identity + lam * (current - identity)`` with ``lam`` = 1,
        ``factor``, ``factor^2``... (then 0, the identity), each followed by :meth:`project`.

        Returns:
            the ``lam`` kept: 1 when the warp already met the bound, 0 when only the identity did.
        """
        if self.min_jacobian(size) >= bound:
            return 1.0
        start = [p.detach().clone() for p in self.parameters()]
        ident = self.identity_parameters()
        lam = 1.0
        for i in range(tries + 1):
            lam = factor ** (i + 1) if i < tries else 0.0
            for p, s, e in zip(self.parameters(), start, ident, strict=True):
                p.copy_(e + lam * (s - e))
            self.project()
            if self.min_jacobian(size) >= bound:
                break
        return lam

    @torch.no_grad()
    def area_scale(self, size: tuple[int, int] = (32, 32)) -> float:
        """How much the warped image magnifies its input on average: the inverse square root
        of the mean Jacobian determinant of the sampling map."""
        return float(jacobian_determinant(self.map_grid(size)).mean().clamp_min(1e-6).rsqrt())


class AffineWarp(Warp):
    """``warp(y) = A y + t`` with a (2, 3) parameter ``theta``; identity by default."""

    fold_margin = 0.0

    def __init__(self, theta: Tensor | None = None) -> None:
        super().__init__()
        t = torch.eye(2, 3) if theta is None else theta.detach().reshape(2, 3).float()
        self.theta = nn.Parameter(t.clone())

    def forward(self, points: Tensor) -> Tensor:
        return points @ self.theta[:, :2].T + self.theta[:, 2]

    def identity_parameters(self) -> list[Tensor]:
        return [torch.eye(2, 3, device=self.theta.device)]

    @classmethod
    def fit(cls, src: Tensor, dst: Tensor, weights: Tensor | None = None) -> AffineWarp:
        """Weighted least-squares affine with ``warp(dst[i]) ~ src[i]`` (N >= 3)."""
        return cls(fit_affine(src, dst, weights))

    @torch.no_grad()
    def project(self) -> None:
        """Zoom in about the centre's image until the output's corners sample inside the
        input: the smallest change that keeps every sample inside (no smeared borders).

        The output frame is convex, so its four corners are the extreme points.
        """
        a, t = self.theta[:, :2], self.theta[:, 2]
        t.clamp_(-0.9, 0.9)
        corners = torch.tensor([[-1.0, -1], [1, -1], [1, 1], [-1, 1]], device=a.device)
        reach = corners @ a.T                                            # (4, 2) = A c
        limit = torch.where(reach > 0, (1 - t) / reach.clamp_min(1e-9),
                            (-1 - t) / reach.clamp_max(-1e-9))
        lam = float(limit.min().clamp(max=1.0))
        a.mul_(lam)

    @torch.no_grad()
    def describe(self, size: tuple[int, int]) -> dict[str, float]:
        """The forward map (input -> output) in pixels of an output of ``size`` (H, W).

        ``rotation_deg`` is positive clockwise on screen (the image y axis points down);
        ``scale_x``/``scale_y`` are the lengths of the mapped unit axes, ``scale`` the square
        root of the area change; the translation is where the image centre goes.
        """
        m = torch.linalg.inv(to_pixel_transform(self.theta[None].cpu(), size, size, align_corners=False)[0])
        a = m[:2, :2].double()
        u, s, vh = torch.linalg.svd(a)
        rot = u @ vh
        angle = math.degrees(math.atan2(float(rot[1, 0]), float(rot[0, 0])))
        centre = torch.tensor([(size[1] - 1) / 2, (size[0] - 1) / 2, 1.0], dtype=m.dtype)
        moved = m @ centre
        sx = float(torch.linalg.norm(a[:, 0]))
        sy = float(torch.linalg.norm(a[:, 1]))
        return {"rotation_deg": round(angle, 3), "scale_x": round(sx, 4), "scale_y": round(sy, 4),
                "scale": round(math.sqrt(abs(float(torch.linalg.det(a)))), 4),
                "translation_x_px": round(float(moved[0] - centre[0]), 2),
                "translation_y_px": round(float(moved[1] - centre[1]), 2)}


class TPSWarp(Warp):
    """Thin-plate spline on a ``k`` x ``k`` control grid with the border points fixed.

    Parameters: the input-space positions of the ``(k - 2)^2`` interior control points
    (identity at start). ``smoothness`` weights :meth:`regularity`, the squared discrete
    Laplacian of the control-point displacements.
    """

    def __init__(self, k: int = 6, interior: Tensor | None = None) -> None:
        super().__init__()
        if k < 3:
            raise ValueError(f"a TPS warp with fixed borders needs k >= 3, got {k}")
        self.k = k
        control = control_grid(k)
        ij = torch.stack(torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij"), -1).reshape(-1, 2)
        inner = ((ij > 0) & (ij < k - 1)).all(1)
        self.register_buffer("control", control)
        self.register_buffer("inner", inner)
        start = control[inner] if interior is None else interior.detach().float()
        self.interior = nn.Parameter(start.clone())
        self._weights_cache: dict[tuple, Tensor] = {}

    def points(self) -> Tensor:
        """(K, 2) input-space positions of all control points (border ones fixed)."""
        out = self.control.clone()
        out[self.inner] = self.interior
        return out

    def forward(self, points: Tensor) -> Tensor:
        return tps_weights(points, self.control) @ self.points()

    def identity_parameters(self) -> list[Tensor]:
        return [self.control[self.inner].clone()]

    def map_grid(self, size: tuple[int, int]) -> Tensor:
        """The spline on a (1, H, W, 2) grid, unclamped: between the fixed border points it
        can bulge a little outside the image (about a pixel at 256 px in the warps measured)."""
        key = (size, str(self.control.device))
        w = self._weights_cache.get(key)
        if w is None:
            g = base_grid(size, align_corners=False, device=self.control.device).reshape(-1, 2)
            w = self._weights_cache.setdefault(key, tps_weights(g, self.control))
        return (w @ self.points()).reshape(1, *size, 2)

    def grid(self, size: tuple[int, int]) -> Tensor:
        """As :meth:`Warp.grid`, clamped to the image (:meth:`map_grid` where the spline
        bulges outside it: those samples take the edge's pixels, as border padding would).
        The clamp flattens the bulge, so fold measures read :meth:`map_grid` instead."""
        return self.map_grid(size).clamp(-1.0, 1.0)

    @torch.no_grad()
    def project(self) -> None:
        """Keep the interior control points inside the input, away from the border."""
        self.interior.clamp_(-0.95, 0.95)

    def displacement(self) -> Tensor:
        """(k, k, 2) control-point displacements from the identity."""
        return (self.points() - self.control).reshape(self.k, self.k, 2)

    def regularity(self) -> Tensor:
        d = self.displacement().permute(2, 0, 1)[None]                   # (1, 2, k, k)
        lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], device=d.device)
        return F.conv2d(d.reshape(2, 1, self.k, self.k), lap[None, None]).pow(2).mean()

    @classmethod
    def fit(cls, src: Tensor, dst: Tensor, weights: Tensor | None = None, *, k: int = 6,
            smoothness: float = 1e-3) -> TPSWarp:
        """Regularized least squares: ``warp(dst[i]) ~ src[i]``, border points fixed.

        Minimizes ``sum w_i |warp(dst_i) - src_i|^2 / sum w_i + smoothness * |L d|^2`` over
        the interior points, where ``L d`` is the discrete Laplacian of the displacements.
        """
        warp = cls(k)
        control, inner = warp.control, warp.inner
        w = torch.ones(src.shape[0]) if weights is None else weights.float().cpu()
        w = (w / w.sum()).double()[:, None]
        a = tps_weights(dst.float().cpu(), control).double()             # (N, K)
        ci, cb = control[inner].double(), control[~inner].double()
        ai = a[:, inner]                                                  # (N, M)
        rhs = src.float().cpu().double() - a[:, ~inner] @ cb              # border part is known
        li = _laplacian_matrix(k).double()[:, inner]                      # L d = L_I (x_I - c_I)
        ridge = 1e-4 * torch.eye(ai.shape[1], dtype=torch.float64)        # unobserved points stay put
        lhs = ai.T @ (w * ai) + smoothness * li.T @ li + ridge
        rhs_n = ai.T @ (w * rhs) + (smoothness * li.T @ li + ridge) @ ci
        sol = torch.linalg.solve(lhs, rhs_n)
        return cls(k, sol.float())

    @torch.no_grad()
    def describe(self, size: tuple[int, int]) -> dict[str, float]:
        """Displacement of the output's pixels (mean, max, in px) and the minimum Jacobian
        determinant, on a grid of ``size`` (H, W)."""
        g = self.grid(size)
        ident = base_grid(size, align_corners=False, device=g.device)[None]
        px = (g - ident) * torch.tensor([size[1] / 2, size[0] / 2], device=g.device)
        mag = px.norm(dim=-1)
        return {"mean_displacement_px": round(float(mag.mean()), 3),
                "max_displacement_px": round(float(mag.max()), 3),
                "min_jacobian": round(self.min_jacobian(size), 4)}


def _laplacian_matrix(k: int) -> Tensor:
    """(k^2, k^2) rows: the 5-point Laplacian at every interior node of a k x k grid
    (zero rows at the border)."""
    lap = torch.zeros(k * k, k * k)
    for i in range(1, k - 1):
        for j in range(1, k - 1):
            r = i * k + j
            lap[r, r] = -4
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                lap[r, (i + di) * k + j + dj] = 1
    return lap


def fit_affine(src: Tensor, dst: Tensor, weights: Tensor | None = None) -> Tensor:
    """(2, 3) ``theta`` minimizing ``sum w_i |theta [dst_i; 1] - src_i|^2`` (N >= 3)."""
    if src.shape[0] < 3:
        raise ValueError(f"an affine fit needs at least 3 matches, got {src.shape[0]}")
    x = torch.cat([dst.double(), torch.ones(dst.shape[0], 1, dtype=torch.float64, device=dst.device)], 1)
    w = (torch.ones(src.shape[0], device=src.device) if weights is None else weights).double()
    sw = w.sqrt()[:, None]
    sol = torch.linalg.lstsq(sw * x, sw * src.double()).solution       # (3, 2)
    return sol.T.float()


def ransac_affine(src: Tensor, dst: Tensor, *, threshold: float = 0.1, iterations: int = 512,
                  seed: int = 0, mirror: bool = False) -> Tensor:
    """Boolean inlier mask of the affine model (from 3 random matches) with the most inliers.

    ``threshold`` is the largest residual, in normalized units, of an inlier. Unless
    ``mirror``, models that mirror the image (negative determinant) are not candidates: no
    warp can follow them without folding over.
    """
    n = src.shape[0]
    if n < 3:
        return torch.ones(n, dtype=torch.bool, device=src.device)
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(n, generator=g)[:3] for _ in range(iterations)])  # (I, 3)
    x = torch.cat([dst, torch.ones(n, 1, device=dst.device)], 1).double()              # (N, 3)
    xs, ys = x[idx], src.double()[idx]                                                 # (I, 3, 3), (I, 3, 2)
    ok = torch.linalg.det(xs).abs() > 1e-6
    if not ok.any():                                   # all samples collinear: no consensus
        return torch.ones(n, dtype=torch.bool, device=src.device)
    sol = torch.linalg.solve(xs[ok], ys[ok])                                           # (I', 3, 2)
    res = (x[None] @ sol - src.double()[None]).norm(dim=-1)                            # (I', N)
    inliers = res < threshold
    if not mirror:
        inliers &= (torch.linalg.det(sol[:, :2, :]) > 0)[:, None]
    best = inliers.sum(1).argmax()
    return inliers[best]
