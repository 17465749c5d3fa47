"""Tests of warpaint.color: luminance-only transfer and colour-histogram matching."""

from __future__ import annotations

import kornia.color
import pytest
import torch

from warpaint.color import (
    color_moments,
    gray3,
    join_luminance,
    luminance,
    match_color,
    match_luminance,
    match_moments,
)
from warpaint.io import resize
from warpaint.stylize import StylizeConfig, Stylizer


def _chroma(x: torch.Tensor) -> torch.Tensor:
    return kornia.color.rgb_to_ycbcr(x)[:, 1:]


def _mean_cov(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    f = x.double().reshape(3, -1)
    mu = f.mean(1, keepdim=True)
    return mu.squeeze(1), (f - mu) @ (f - mu).T / f.shape[1]


def _correlated_colors(h: int, w: int, seed: int, mean, mix) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(3, h * w, generator=g, dtype=torch.float64)
    x = torch.tensor(mix, dtype=torch.float64) @ z + torch.tensor(mean, dtype=torch.float64)[:, None]
    return x.reshape(1, 3, h, w).float()


class TestLuminance:
    def test_cardinality(self):
        assert luminance(torch.rand(2, 3, 5, 6)).shape == (2, 1, 5, 6)
        assert gray3(torch.rand(2, 3, 5, 6)).shape == (2, 3, 5, 6)

    def test_gray_in_gray_out(self):
        x = torch.rand(1, 1, 4, 4).expand(1, 3, 4, 4)
        torch.testing.assert_close(luminance(x), x[:, :1], atol=1e-5, rtol=0)

    def test_gray3_channels_equal(self):
        g = gray3(torch.rand(1, 3, 4, 4))
        assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])

    def test_match_luminance(self):
        style = torch.rand(1, 3, 16, 16) * 0.5
        content = 0.4 + 0.1 * torch.rand(1, 3, 8, 12)
        out = match_luminance(style, content)
        assert out.shape == style.shape
        assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])  # gray
        y, yc = luminance(out), luminance(content)
        torch.testing.assert_close(y.mean(), yc.mean(), atol=1e-4, rtol=0)
        torch.testing.assert_close(y.std(), yc.std(), atol=1e-4, rtol=0)

    def test_match_luminance_constant_style(self):
        out = match_luminance(torch.full((1, 3, 4, 4), 0.3), torch.rand(1, 3, 4, 4))
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1

    def test_join_luminance(self):
        luma_src = torch.rand(1, 3, 8, 8) * 0.2 + 0.4
        chroma_src = torch.tensor([0.6, 0.5, 0.4]).view(1, 3, 1, 1).expand(1, 3, 16, 16)
        out = join_luminance(luma_src, chroma_src)
        assert out.shape == (1, 3, 8, 8)
        torch.testing.assert_close(luminance(out), luminance(luma_src), atol=1e-4, rtol=0)
        torch.testing.assert_close(_chroma(out), _chroma(chroma_src[..., :8, :8]), atol=1e-4, rtol=0)


class TestMatchColor:
    def test_mean_and_covariance(self):
        source = _correlated_colors(32, 32, 0, (0.5, 0.4, 0.6), [[0.05, 0.02, 0.0], [0.0, 0.04, 0.01],
                                                                  [0.01, 0.0, 0.03]])
        target = _correlated_colors(24, 40, 1, (0.3, 0.6, 0.5), [[0.03, 0.0, 0.01], [0.02, 0.05, 0.0],
                                                                  [0.0, 0.01, 0.06]])
        assert source.min() > 0 and source.max() < 1 and target.min() > 0 and target.max() < 1
        out = match_color(source, target)
        assert out.shape == source.shape and out.dtype == source.dtype
        assert out.min() > 0 and out.max() < 1  # no clamping, so the moments must match
        mu_o, cov_o = _mean_cov(out)
        mu_t, cov_t = _mean_cov(target)
        torch.testing.assert_close(mu_o, mu_t, atol=1e-5, rtol=0)
        torch.testing.assert_close(cov_o, cov_t, atol=1e-5, rtol=0.02)  # 1e-5 ridge in match_color
        mu_s, cov_s = _mean_cov(source)
        assert (cov_s - cov_t).abs().max() > 1e-3  # the test is not vacuous

    def test_keeps_structure(self):
        """A linear colour map: the ordering of pixels along a gray ramp survives."""
        ramp = torch.linspace(0.2, 0.8, 16).view(1, 1, 1, 16).expand(1, 3, 4, 16).contiguous()
        ramp = ramp + 0.01 * torch.rand(1, 3, 4, 16)
        target = _correlated_colors(8, 8, 2, (0.5, 0.5, 0.5), [[0.05, 0, 0], [0, 0.05, 0], [0, 0, 0.05]])
        out = match_color(ramp, target)
        lum = luminance(out)[0, 0].mean(0)
        assert (lum[1:] - lum[:-1] > -0.02).all()
        assert lum[-1] - lum[0] > 0.05

    def test_identity(self):
        x = _correlated_colors(16, 16, 3, (0.5, 0.5, 0.5), [[0.05, 0.01, 0], [0, 0.05, 0], [0, 0, 0.05]])
        torch.testing.assert_close(match_color(x, x), x, atol=1e-4, rtol=0)

    def test_does_not_mutate(self):
        s, t = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
        s0, t0 = s.clone(), t.clone()
        match_color(s, t)
        assert torch.equal(s, s0) and torch.equal(t, t0)

    def test_gray_source(self):
        """A gray (rank-deficient) source must not produce NaNs."""
        out = match_color(torch.rand(1, 1, 8, 8).expand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.fixture(scope="module")
def runs(images) -> dict[str, torch.Tensor]:
    """One short real run (size 64, bundled weights) per preserve_color mode, shared."""
    content, style = images.content(), images.stripes()
    out = {}
    for mode in ("none", "luminance", "histogram"):
        cfg = StylizeConfig(size=64, min_size=64, steps=10, coarse_steps=0, preserve_color=mode,
                            device="cpu", dtype="float32")
        out[mode] = Stylizer(cfg).run(content, [style])
    return {"content": content, **out}


class TestPreserveColorRun:
    def test_luminance_keeps_content_chroma(self, runs):
        content, out_lum, out_none = runs["content"], runs["luminance"], runs["none"]
        assert out_lum.shape == out_none.shape == (1, 3, 48, 64)
        ref = _chroma(resize(content, tuple(out_lum.shape[-2:])))
        d_lum = (_chroma(out_lum) - ref).abs().mean().item()
        d_none = (_chroma(out_none) - ref).abs().mean().item()
        assert d_lum < 0.02
        assert d_none > 0.02 and d_none > 5 * d_lum
        # The luminance did change: style transfer happened.
        assert (luminance(out_lum) - luminance(content)).abs().mean() > 0.01

    def test_histogram_moves_colours_towards_content(self, runs):
        mu_c, _ = _mean_cov(runs["content"])
        d_hist = (_mean_cov(runs["histogram"])[0] - mu_c).abs().sum().item()
        d_none = (_mean_cov(runs["none"])[0] - mu_c).abs().sum().item()
        assert d_hist < d_none


class TestMatchMoments:
    def test_takes_the_moments_and_keeps_gradients(self):
        g = torch.Generator().manual_seed(3)
        x = (0.3 + 0.4 * torch.rand(2, 3, 9, 11, generator=g)).requires_grad_(True)
        target = color_moments(0.45 + 0.1 * torch.rand(2, 3, 5, 5, generator=g))
        out = match_moments(x, target)
        torch.testing.assert_close(color_moments(out), target, atol=2e-3, rtol=0)
        # the map, written out: (x - own mean) / (own std + eps) * std + mean, clamped
        own = color_moments(x)
        ref = ((x - own[:, :3, None, None]) / (own[:, 3:, None, None] + 1e-4) * target[:, 3:, None, None]
               + target[:, :3, None, None]).clamp(0, 1)
        torch.testing.assert_close(out, ref)
        grads = torch.autograd.grad(out.square().sum(), x)[0]
        ref_grads = torch.autograd.grad(ref.square().sum(), x)[0]
        torch.testing.assert_close(grads, ref_grads)
        assert grads.abs().sum() > 0

    def test_own_moments_and_clamping(self):
        x = torch.linspace(0, 1, 48).view(1, 3, 4, 4)
        own = torch.tensor([[0.5, 0.5, 0.5, 0.1, 0.1, 0.1]])
        out = match_moments(x, torch.tensor([[0.5, 0.5, 0.5, 0.4, 0.4, 0.4]]), own=own)
        expected = ((x - 0.5) / (0.1 + 1e-4) * 0.4 + 0.5).clamp(0, 1)
        torch.testing.assert_close(out, expected)
        assert out.min() == 0 and out.max() == 1            # clamped at both ends
