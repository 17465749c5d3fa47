"""Warps (affine, TPS), their fits, inverse, Jacobian and description."""

from __future__ import annotations

import math

import pytest
import torch

from warpaint.stn.geometry import base_grid, from_pixel_transform
from warpaint.stn.warps import (
    MIN_JACOBIAN,
    AffineWarp,
    TPSWarp,
    fit_affine,
    jacobian_determinant,
    ransac_affine,
)


def _rotation_scale_theta(deg: float, scale: float, hw: tuple[int, int]) -> torch.Tensor:
    """Normalized theta of the warp whose forward map rotates by ``deg`` and scales by
    ``scale`` about the image centre (in pixels)."""
    h, w = hw
    a = math.radians(deg)
    fwd = torch.tensor([[scale * math.cos(a), -scale * math.sin(a), 0.0],
                        [scale * math.sin(a), scale * math.cos(a), 0.0], [0, 0, 1]], dtype=torch.float64)
    c = torch.tensor([[1, 0, (w - 1) / 2], [0, 1, (h - 1) / 2], [0, 0, 1]], dtype=torch.float64)
    pix = c @ fwd @ torch.linalg.inv(c)
    return from_pixel_transform(torch.linalg.inv(pix)[None].float(), hw, hw, align_corners=False)[0, :2]


class TestJacobian:
    def test_identity_is_one(self):
        g = base_grid((20, 30), align_corners=False)[None]
        torch.testing.assert_close(jacobian_determinant(g), torch.ones(1, 19, 29))

    def test_mirror_folds(self):
        g = base_grid((20, 30), align_corners=False)[None].clone()
        g[..., 0] = -g[..., 0]
        assert (jacobian_determinant(g) < 0).all()

    def test_scale(self):
        warp = AffineWarp(torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]))
        torch.testing.assert_close(jacobian_determinant(warp.grid((16, 16))),
                                   torch.full((1, 15, 15), 0.25))


class TestAffine:
    def test_fit_exact(self):
        g = torch.Generator().manual_seed(0)
        theta = torch.tensor([[0.9, -0.2, 0.1], [0.3, 1.1, -0.05]])
        dst = torch.rand(20, 2, generator=g) * 2 - 1
        src = dst @ theta[:, :2].T + theta[:, 2]
        torch.testing.assert_close(fit_affine(src, dst), theta, atol=1e-5, rtol=0)

    def test_ransac_rejects_outliers(self):
        g = torch.Generator().manual_seed(1)
        theta = torch.tensor([[1.1, 0.1, 0.0], [-0.1, 0.9, 0.2]])
        dst = torch.rand(40, 2, generator=g) * 2 - 1
        src = dst @ theta[:, :2].T + theta[:, 2]
        src[30:] = torch.rand(10, 2, generator=g) * 2 - 1      # 10 wrong matches
        keep = ransac_affine(src, dst, threshold=0.02)
        assert keep[:30].all() and keep[30:].sum() <= 1
        torch.testing.assert_close(fit_affine(src[keep], dst[keep]), theta, atol=1e-4, rtol=0)

    def test_describe_recovers_rotation_and_scale(self):
        hw = (60, 80)
        d = AffineWarp(_rotation_scale_theta(20.0, 1.2, hw)).describe(hw)
        assert d["rotation_deg"] == pytest.approx(20.0, abs=1e-3)
        assert d["scale"] == pytest.approx(1.2, abs=1e-4)
        assert d["scale_x"] == pytest.approx(1.2, abs=1e-4) and d["scale_y"] == pytest.approx(1.2, abs=1e-4)
        assert abs(d["translation_x_px"]) < 0.01 and abs(d["translation_y_px"]) < 0.01

    def test_inverse_round_trip(self):
        warp = AffineWarp(_rotation_scale_theta(-15.0, 0.8, (32, 32)))
        p = torch.rand(10, 2) - 0.5
        torch.testing.assert_close(warp.inverse(warp(p)), p, atol=1e-4, rtol=0)


class TestTPS:
    def test_identity_start(self):
        warp = TPSWarp(5)
        torch.testing.assert_close(warp.grid((12, 16))[0], base_grid((12, 16), align_corners=False),
                                   atol=1e-5, rtol=0)
        assert warp.describe((12, 16))["max_displacement_px"] < 1e-3
        assert warp.regularity().item() == pytest.approx(0.0, abs=1e-12)

    def test_border_points_fixed(self):
        warp = TPSWarp(4)
        with torch.no_grad():
            warp.interior.add_(0.1)
        pts = warp.points()
        border = ~warp.inner
        torch.testing.assert_close(pts[border], warp.control[border])
        assert warp.interior.shape == (4, 2)

    def test_fit_recovers_known_spline(self):
        true = TPSWarp(5)
        g = torch.Generator().manual_seed(2)
        with torch.no_grad():
            true.interior.add_(0.08 * torch.randn(true.interior.shape, generator=g))
            dst = torch.rand(400, 2, generator=g) * 2 - 1
            src = true(dst)
        fitted = TPSWarp.fit(src, dst, k=5, smoothness=1e-8)
        torch.testing.assert_close(fitted.interior, true.interior, atol=2e-3, rtol=0)

    def test_inverse_round_trip(self):
        warp = TPSWarp(5)
        with torch.no_grad():
            warp.interior.add_(0.05)
        p = torch.rand(10, 2) * 1.6 - 0.8
        with torch.no_grad():
            torch.testing.assert_close(warp.inverse(warp(p)), p, atol=1e-4, rtol=0)

    def test_fold_detected(self):
        warp = TPSWarp(4)
        with torch.no_grad():
            warp.interior.copy_(warp.interior.flip(0))          # swap interior points: folds
        assert warp.min_jacobian((32, 32)) < 0
        assert warp.penalties((32, 32))["fold"] > 0

    def test_needs_three_points_per_side(self):
        with pytest.raises(ValueError):
            TPSWarp(2)


class TestInside:
    def test_affine_projection_keeps_corners_inside(self):
        warp = AffineWarp(torch.tensor([[1.1, 0.1, 0.2], [-0.1, 0.95, -0.1]]))
        assert warp.grid((32, 32)).abs().max() > 1
        warp.project()
        g = warp.grid((32, 32))
        assert g.abs().max() <= 1 + 1e-5
        assert g.abs().max() > 0.95                      # the smallest zoom, not any zoom

    def test_affine_projection_leaves_inside_maps(self):
        theta = torch.tensor([[0.8, 0.1, 0.05], [-0.1, 0.8, 0.0]])
        warp = AffineWarp(theta)
        warp.project()
        torch.testing.assert_close(warp.theta.detach(), theta)


class TestStiffen:
    """The fold guarantee: :meth:`Warp.stiffen` brings the minimum Jacobian to MIN_JACOBIAN."""

    def test_folding_tps(self):
        w = TPSWarp(4)
        with torch.no_grad():
            w.interior.copy_(w.interior.flip(0) * 0.9)      # interior points swapped: folds
        assert w.min_jacobian((32, 32)) < 0
        lam = w.stiffen((32, 32))
        assert 0 <= lam < 1
        assert w.min_jacobian((32, 32)) >= MIN_JACOBIAN

    def test_border_bulge_is_no_fold(self):
        """A spline that bulges under a pixel past the bottom edge between its fixed border
        points: the sampling grid is clamped there (its cells flattened to 0), but the map
        does not fold, so the fold measures read the map and stiffening leaves it alone."""
        w = TPSWarp(6)
        with torch.no_grad():
            lowest = w.interior[:, 1] == w.interior[:, 1].max()
            w.interior[lowest, 1] += 0.2
            bulge = (w.map_grid((256, 256)).abs().max() - 1) * 128            # px at 256
            assert 0.3 < bulge < 1.0 and w.grid((256, 256)).abs().max() <= 1.0
            assert jacobian_determinant(w.grid((256, 256))).min() < 0.01      # clamped: flat
        assert w.min_jacobian((256, 256)) > 0.25
        assert w.stiffen((256, 256)) == 1.0
        assert w.describe((256, 256))["min_jacobian"] > 0.25

    def test_strong_affine_zoom(self):
        w = AffineWarp(torch.tensor([[0.2, 0.0, 0.1], [0.0, 0.25, 0.0]]))   # det 0.05: 4.5x zoom
        assert w.min_jacobian((16, 16)) < MIN_JACOBIAN
        w.stiffen((16, 16))
        assert w.min_jacobian((16, 16)) >= MIN_JACOBIAN
        with torch.no_grad():
            assert w.grid((16, 16)).abs().max() <= 1.0 + 1e-6           # still inside (projected)

    def test_a_good_warp_is_left_alone(self):
        w = TPSWarp(5)
        with torch.no_grad():
            w.interior.add_(0.03)
        before = w.interior.detach().clone()
        assert w.stiffen((32, 32)) == 1.0
        torch.testing.assert_close(w.interior.detach(), before, atol=0, rtol=0)
