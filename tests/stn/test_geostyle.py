"""Geometric style: recovery of known transforms from deep-feature matches."""

from __future__ import annotations

import math

import pytest
import torch

from warpaint.io import fit_long_side, load_image, resize
from warpaint.stn.geometry import affine_grid, base_grid, control_grid, sample, tps_grid
from warpaint.stn.geostyle import estimate_warp
from warpaint.stn.warps import AffineWarp

from test_warps import _rotation_scale_theta


@pytest.fixture
def photo(shared_image):
    img = load_image(shared_image("content/brad_pitt.jpg"))
    return resize(img, fit_long_side(tuple(img.shape[-2:]), 256))


def test_affine_recovery(vgg, photo):
    """Style = the content rotated 20 degrees and scaled 1.2: recovered within 3 deg, 5 %."""
    hw = tuple(photo.shape[-2:])
    theta = _rotation_scale_theta(20.0, 1.2, hw)
    style = sample(photo, affine_grid(theta[None], hw, align_corners=False), padding_mode="zeros",
                   align_corners=False)
    geo = estimate_warp(vgg, photo, style, "affine")
    d = geo.warp.describe(hw)
    assert d["rotation_deg"] == pytest.approx(20.0, abs=3.0)
    assert d["scale"] == pytest.approx(1.2, rel=0.05)
    before, after = geo.match_distance(hw)
    assert after < 0.2 * before


def test_tps_bulge_recovery(vgg, photo):
    """Style = the content under a smooth TPS bulge: mean grid error under 2 px at 256 px."""
    hw = tuple(photo.shape[-2:])
    ctrl = control_grid(5)
    src = ctrl * (1 - 0.35 * torch.exp(-ctrl.norm(dim=1, keepdim=True) ** 2 / 0.3))
    true_grid = tps_grid(src[None], ctrl, hw, align_corners=False)
    style = sample(photo, true_grid, padding_mode="border", align_corners=False)
    geo = estimate_warp(vgg, photo, style, "tps")
    with torch.no_grad():
        err = ((geo.warp.grid(hw) - true_grid) * torch.tensor([hw[1] / 2, hw[0] / 2])).norm(dim=-1)
        shift = ((true_grid - base_grid(hw, align_corners=False)) * torch.tensor([hw[1] / 2, hw[0] / 2])).norm(dim=-1)
    assert shift.mean() > 3.0                                 # the bulge is not trivial
    assert err.mean() < 2.0
    assert geo.warp.min_jacobian(hw) > 0


def test_half_strength_moves_half_way(vgg, photo):
    """Style = the content moved 24 px right: at strength 0.5 the warp moves it 12 px."""
    hw = tuple(photo.shape[-2:])
    shift = 24.0
    theta = torch.tensor([[[1.0, 0.0, -2 * shift / hw[1]], [0.0, 1.0, 0.0]]])
    style = sample(photo, affine_grid(theta, hw, align_corners=False), padding_mode="border",
                   align_corners=False)
    full = estimate_warp(vgg, photo, style, "affine").warp.describe(hw)
    half = estimate_warp(vgg, photo, style, "affine", strength=0.5).warp.describe(hw)
    assert full["translation_x_px"] == pytest.approx(shift, abs=3.0)
    assert half["translation_x_px"] == pytest.approx(shift / 2, abs=3.0)
    assert abs(half["translation_y_px"]) < 3.0


@pytest.mark.parametrize("kind", ["affine", "tps"])
def test_strength_zero_is_identity(vgg_random, images, kind):
    a = images.content(64, 64)
    b = torch.roll(a, 6, dims=-1)
    geo = estimate_warp(vgg_random, a, b, kind, strength=0.0, size=64)
    with torch.no_grad():
        torch.testing.assert_close(geo.warp.grid((16, 16))[0], base_grid((16, 16), align_corners=False),
                                   atol=1e-4, rtol=0)
    assert isinstance(geo.warp, AffineWarp) == (kind == "affine")


def test_too_few_matches_is_refused_or_with_force_an_input_error(vgg_random):
    """At 16 px the feature maps hold at most 5 cells: fewer than the 6 a warp needs."""
    from warpaint.errors import InputError

    flat = torch.full((1, 3, 64, 64), 0.5)
    geo = estimate_warp(vgg_random, flat, flat, "affine", size=16)
    assert not geo.applied and "matches" in geo.reason
    assert geo.describe((16, 16))["applied"] is False
    with pytest.raises(InputError, match="matches"):
        estimate_warp(vgg_random, flat, flat, "affine", size=16, force=True)
