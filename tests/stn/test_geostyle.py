"""Geometric style: recovery of known transforms from deep-feature matches."""

from __future__ import annotations

import pytest
import torch
from test_warps import _rotation_scale_theta

from warpaint.io import fit_long_side, load_image, resize
from warpaint.stn.correspond import Matches
from warpaint.stn.geometry import affine_grid, base_grid, control_grid, sample, tps_grid
from warpaint.stn.geostyle import (
    FULL_FROM,
    REFUSE_BELOW,
    correspondence_confidence,
    estimate_warp,
    strength_factor,
)
from warpaint.stn.warps import MIN_JACOBIAN, AffineWarp, ransac_affine


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
        px = torch.tensor([hw[1] / 2, hw[0] / 2])
        shift = ((true_grid - base_grid(hw, align_corners=False)) * px).norm(dim=-1)
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


def _turned(image: torch.Tensor, deg: float = 20.0, scale: float = 1.2) -> torch.Tensor:
    """``image`` turned ``deg`` degrees and scaled ``scale`` about its centre (black outside)."""
    hw = tuple(image.shape[-2:])
    theta = _rotation_scale_theta(deg, scale, hw)
    return sample(image, affine_grid(theta[None], hw, align_corners=False), padding_mode="zeros",
                  align_corners=False)


def _affine_matches(n: int, *, shuffle: bool = False, seed: int = 0) -> Matches:
    """``n`` random points and their images under a turn-and-shift (partners shuffled on request)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 2, generator=g) * 1.6 - 0.8
    rot = torch.tensor([[0.94, -0.34], [0.34, 0.94]])
    b = a @ rot.T * 0.9 + 0.05
    if shuffle:
        b = b[torch.randperm(n, generator=g)]
    return Matches(a, b, torch.ones(n))


def _confidence(m: Matches):
    return correspondence_confidence(m, ransac_affine(m.a, m.b, threshold=0.25))


class TestConfidence:
    def test_consistent_matches_are_confident(self):
        c = _confidence(_affine_matches(100))
        assert c.consensus > 0.95 and c.null < 0.3 and c.value > 0.7
        assert c.spread > 0.5

    def test_shuffled_partners_are_not(self):
        """The null itself: the same points re-paired at random find no layout."""
        c = _confidence(_affine_matches(100, shuffle=True))
        assert c.value < REFUSE_BELOW

    def test_few_matches_count_less(self):
        """10 perfectly consistent matches: each counts 1/30, so the value stays below 1/3."""
        c = _confidence(_affine_matches(10))
        assert c.consensus == 1.0 and c.value <= 10 / 30

    def test_the_larger_chance_counts(self):
        """The upside-down share replaces the re-paired null only when it is larger."""
        m = _affine_matches(100)
        keep = ransac_affine(m.a, m.b, threshold=0.25)
        low = correspondence_confidence(m, keep, upside_down=0.0)
        high = correspondence_confidence(m, keep, upside_down=0.8)
        assert low.value == pytest.approx(low.consensus - low.null)
        assert high.value == pytest.approx(high.consensus - 0.8) and high.value < low.value
        assert high.as_dict()["upside_down"] == 0.8

    def test_upside_down_loses_a_real_layout(self, vgg, photo):
        """The photo against itself turned 20 degrees: a layout the turned copy upside down
        does not share, so its consensus share there (0.37: the plain background and the
        black corners) is far below the real one (0.95)."""
        from warpaint.stn.geostyle import upside_down_share

        turned = _turned(photo)
        geo = estimate_warp(vgg, photo, turned, "affine")
        share = upside_down_share(vgg, photo, turned)
        assert share == pytest.approx(geo.confidence.upside_down)
        assert share < geo.confidence.consensus / 2 and geo.confidence.value > 0.5

    def test_a_mirror_is_no_consensus(self):
        m = _affine_matches(60)
        mirrored = m.b * torch.tensor([-1.0, 1.0])
        assert ransac_affine(m.a, mirrored, threshold=0.25, mirror=True).all()
        assert ransac_affine(m.a, mirrored, threshold=0.25).float().mean() < 0.5

    def test_strength_factor(self):
        assert strength_factor(REFUSE_BELOW - 1e-3) == 0.0
        assert strength_factor(FULL_FROM) == 1.0
        mid = strength_factor((REFUSE_BELOW + FULL_FROM) / 2)
        assert mid == pytest.approx(0.5)

    def test_turned_copy_is_confident(self, vgg, photo):
        """Content against itself turned 20 degrees and scaled 1.2: a shared layout."""
        geo = estimate_warp(vgg, photo, _turned(photo), "tps")
        assert geo.confidence.value >= FULL_FROM
        assert geo.applied and geo.strength == 1.0

    def test_noise_is_refused(self, vgg, photo):
        noise = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(3))
        geo = estimate_warp(vgg, photo, noise, "tps")
        assert geo.confidence.value < REFUSE_BELOW
        assert not geo.applied and geo.reason
        with torch.no_grad():
            torch.testing.assert_close(geo.warp.grid((16, 16))[0], base_grid((16, 16), align_corners=False))
        d = geo.describe((64, 64))
        assert d["applied"] is False and d["reason"] == geo.reason and "confidence" in d

    def test_middle_confidence_scales_the_strength(self, vgg, photo, monkeypatch):
        """With thresholds that put a confident pair in between, the strength shrinks, and
        the fold bound still holds (the matches' confidence alone: faces would decide)."""
        from warpaint.stn import geostyle

        monkeypatch.setattr(geostyle, "REFUSE_BELOW", 0.5)
        monkeypatch.setattr(geostyle, "FULL_FROM", 1.0)
        geo = estimate_warp(vgg, photo, _turned(photo), "tps", strength=0.8, use_faces=False)
        expected = 0.8 * (geo.confidence.value - 0.5) / 0.5
        assert 0 < geo.strength < 0.8 and geo.strength == pytest.approx(expected)
        assert geo.warp.min_jacobian((64, 64)) >= MIN_JACOBIAN
        forced = estimate_warp(vgg, photo, _turned(photo), "tps", strength=0.8, force=True)
        assert forced.strength == 0.8


def test_fitted_and_applied_affine_are_reported_apart(vgg, photo):
    """Issue 18: style = the content turned 20 degrees and scaled 1.2. ``fitted`` says 20
    and 1.2; the applied map (top level) also holds the zoom that keeps the corners inside."""
    from warpaint.stylize import StylizeConfig, Stylizer

    cfg = StylizeConfig(size=64, min_size=64, steps=1, warp="affine", warp_strength=1.0, device="cpu",
                        dtype="float32")
    s = Stylizer(cfg, pretrained=False)
    s.vgg = vgg
    d = s.run_detailed(photo, [_turned(photo)]).geometry.describe((64, 51))
    assert d["fitted"]["rotation_deg"] == pytest.approx(20.0, abs=3.0)
    assert d["fitted"]["scale"] == pytest.approx(1.2, rel=0.05)
    assert d["rotation_deg"] == pytest.approx(d["fitted"]["rotation_deg"], abs=1.0)
    assert d["scale"] > d["fitted"]["scale"] + 0.1                  # the zoom is only in here
