"""Geometry functions of warpaint.stn: frames, composition, pixels, points, boxes, TPS."""

from __future__ import annotations

import math

import pytest
import torch

from warpaint.stn.geometry import (
    affine_grid,
    compose_affine,
    control_grid,
    from_pixel_transform,
    identity_affine,
    invert_affine,
    out_of_bounds_penalty,
    rotation_angle,
    sample,
    to_matrix,
    to_pixel_transform,
    tps_grid,
    transform_boxes,
    transform_points,
)


def rot_scale(angle_deg: float, scale: float, tx: float = 0.0, ty: float = 0.0) -> torch.Tensor:
    a = math.radians(angle_deg)
    c, s = math.cos(a) * scale, math.sin(a) * scale
    return torch.tensor([[[c, -s, tx], [s, c, ty]]], dtype=torch.float64)


def dot_image(h: int, w: int, x: int, y: int) -> torch.Tensor:
    img = torch.zeros(1, 1, h, w, dtype=torch.float64)
    img[0, 0, y, x] = 1.0
    return img


class TestRotationAngle:
    @pytest.mark.parametrize("deg", [-170.0, -45.0, 0.0, 30.0, 90.0])
    def test_angle_of_a_similarity(self, deg):
        theta = rot_scale(deg, 0.7, 0.2, -0.1)
        assert rotation_angle(theta).item() == pytest.approx(math.radians(deg), abs=1e-9)

    def test_composition_adds_angles(self):
        both = compose_affine(rot_scale(20.0, 1.3), rot_scale(-50.0, 0.8))
        assert rotation_angle(both).item() == pytest.approx(math.radians(-30.0), abs=1e-9)


class TestCompose:
    def test_invert_compose_round_trip(self):
        a, b = rot_scale(20, 1.2, 0.1, -0.2), rot_scale(-35, 0.8, 0.3, 0.05)
        ab = compose_affine(a, b)
        torch.testing.assert_close(compose_affine(invert_affine(ab), ab),
                                   identity_affine(1, dtype=torch.float64))
        torch.testing.assert_close(invert_affine(ab), compose_affine(invert_affine(b), invert_affine(a)))

    def test_compose_order(self):
        shift = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])
        double = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
        p = torch.tensor([[[1.0, 1.0]]])
        # apply shift first, then double: (1+1)*2 = 4
        assert transform_points(compose_affine(double, shift), p).tolist() == [[[4.0, 2.0]]]

    def test_to_matrix_rejects_bad_shape(self):
        with pytest.raises(ValueError, match="expected"):
            to_matrix(torch.zeros(1, 2, 2))


class TestKnownWarp:
    @pytest.mark.parametrize("align_corners", [False, True])
    def test_translation_moves_pixel(self, align_corners):
        h, w = 12, 16
        src = dot_image(h, w, x=10, y=5)
        # output pixel (x, y) samples input pixel (x + 3, y - 2): the dot moves to (7, 7)
        m = torch.tensor([[[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
        theta = from_pixel_transform(m, (h, w), (h, w), align_corners=align_corners)[:, :2]
        out = sample(src, affine_grid(theta, (h, w), align_corners=align_corners),
                     padding_mode="zeros", align_corners=align_corners)
        y, x = divmod(int(out.flatten().argmax()), w)
        assert (x, y) == (7, 7)
        assert out.max().item() == pytest.approx(1.0, abs=1e-9)

    def test_pixel_transform_round_trip(self):
        theta = rot_scale(30, 0.9, 0.2, -0.1)
        m = to_pixel_transform(theta, (40, 60), (20, 30), align_corners=False)
        back = from_pixel_transform(m, (40, 60), (20, 30), align_corners=False)
        torch.testing.assert_close(back[:, :2], theta)

    def test_identity_is_identity_in_pixels(self):
        m = to_pixel_transform(identity_affine(1, dtype=torch.float64), (9, 7), (9, 7), align_corners=False)
        torch.testing.assert_close(m[0], torch.eye(3, dtype=torch.float64))


class TestPointsAgreeWithWarp:
    @pytest.mark.parametrize("angle,scale", [(25.0, 1.0), (-40.0, 0.8), (10.0, 1.3)])
    def test_points(self, angle, scale):
        h, w = 64, 64
        theta = rot_scale(angle, scale, 0.1, -0.05)
        m_src_from_dst = to_pixel_transform(theta, (h, w), (h, w), align_corners=False)
        m_dst_from_src = torch.linalg.inv(m_src_from_dst)
        # a small blob, so bilinear sampling keeps a clear maximum
        yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
        px, py = 40.0, 22.0
        src = torch.exp(-((xx - px) ** 2 + (yy - py) ** 2) / 4.0)[None, None]
        out = sample(src, affine_grid(theta, (h, w), align_corners=False), padding_mode="zeros")
        weights = out[0, 0] / out[0, 0].sum()
        centroid = torch.stack([(weights * xx).sum(), (weights * yy).sum()])
        expected = transform_points(m_dst_from_src, torch.tensor([[[px, py]]], dtype=torch.float64))[0, 0]
        assert torch.dist(centroid, expected) < 0.5

    def test_boxes(self):
        h, w = 80, 80
        theta = rot_scale(30, 1.0)
        m_dst_from_src = torch.linalg.inv(to_pixel_transform(theta, (h, w), (h, w), align_corners=False))
        src = torch.zeros(1, 1, h, w, dtype=torch.float64)
        src[..., 30:50, 25:55] = 1.0  # box x 25..54, y 30..49
        out = sample(src, affine_grid(theta, (h, w), align_corners=False), padding_mode="zeros")
        ys, xs = torch.nonzero(out[0, 0] > 0.5, as_tuple=True)
        seen = torch.tensor([xs.min(), ys.min(), xs.max(), ys.max()], dtype=torch.float64)
        box = torch.tensor([[[25.0, 30.0, 54.0, 49.0]]], dtype=torch.float64)
        mapped = transform_boxes(m_dst_from_src, box)[0, 0]
        assert (seen - mapped).abs().max() < 1.5

    def test_rotated_box_grows(self):
        box = torch.tensor([[[-1.0, -1.0, 1.0, 1.0]]])
        out = transform_boxes(rot_scale(45, 1.0).float(), box)[0, 0]
        r2 = math.sqrt(2)
        torch.testing.assert_close(out, torch.tensor([-r2, -r2, r2, r2]))


class TestProjective:
    def test_affine_as_projective_same_grid(self):
        theta = rot_scale(15, 1.1, 0.1, 0.0).float()
        g1 = affine_grid(theta, (9, 11), align_corners=False)
        g2 = affine_grid(to_matrix(theta), (9, 11), align_corners=False)
        torch.testing.assert_close(g1, g2, atol=1e-6, rtol=0)


class TestTPS:
    def test_interpolates_control_points(self):
        dst = control_grid(3, dtype=torch.float64)                  # x, y in {-1, 0, 1}
        g = torch.Generator().manual_seed(0)
        src = dst[None] + 0.1 * torch.randn(1, 9, 2, dtype=torch.float64, generator=g)
        grid = tps_grid(src, dst, (5, 5), align_corners=True)       # pixels at -1, -.5, 0, .5, 1
        at_controls = grid[0, ::2, ::2].reshape(-1, 2)
        torch.testing.assert_close(at_controls, src[0])

    def test_identity(self):
        dst = control_grid(4)
        grid = tps_grid(dst[None].expand(2, -1, -1), dst, (7, 9), align_corners=False)
        torch.testing.assert_close(grid, affine_grid(identity_affine(2), (7, 9), align_corners=False),
                                   atol=1e-5, rtol=0)

    def test_gradcheck(self):
        dst = control_grid(2, dtype=torch.float64)
        src = (dst[None] + 0.05).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda s: tps_grid(s, dst, (3, 4), align_corners=False), (src,))


class TestPenalty:
    def test_zero_inside_positive_outside(self):
        g = affine_grid(identity_affine(1), (8, 8), align_corners=False)
        assert out_of_bounds_penalty(g).item() == 0.0
        assert out_of_bounds_penalty(g * 1.5).item() > 0.0
