"""Tests of warpaint.losses, against values computed by hand."""

from __future__ import annotations

import pytest
import torch

from warpaint.losses import (
    ContentLoss,
    StyleLoss,
    blend_grams,
    content_loss,
    gram_matrix,
    relative_sq_error,
    style_loss,
    total_variation,
)
from warpaint.stylize import StylizeConfig, Stylizer


class TestGramMatrix:
    def test_smoke(self, device, dtype):
        assert gram_matrix(torch.rand(1, 3, 4, 4, device=device, dtype=dtype)).dtype == dtype

    def test_cardinality(self, device, dtype):
        assert gram_matrix(torch.rand(2, 4, 5, 6, device=device, dtype=dtype)).shape == (2, 4, 4)

    def test_by_hand(self, device, dtype, tol):
        # Two channels over a 2x2 map: F = [[1, 2, 3, 4], [0, 1, 0, 1]], HW = 4.
        f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]], device=device, dtype=dtype)
        expected = torch.tensor([[[1 + 4 + 9 + 16, 2 + 4], [2 + 4, 1 + 1]]], device=device, dtype=dtype) / 4
        torch.testing.assert_close(gram_matrix(f), expected, **tol)

    def test_reference(self, device, dtype, tol):
        """Equals F F^T / (H W) written out as a loop over positions."""
        x = torch.rand(2, 3, 4, 5, device=device, dtype=dtype)
        ref = torch.zeros(2, 3, 3, device=device, dtype=dtype)
        for b in range(2):
            for i in range(4):
                for j in range(5):
                    v = x[b, :, i, j]
                    ref[b] += torch.outer(v, v)
        torch.testing.assert_close(gram_matrix(x), ref / 20, **tol)

    def test_symmetric(self, device, dtype):
        g = gram_matrix(torch.rand(1, 3, 4, 4, device=device, dtype=dtype))
        torch.testing.assert_close(g, g.transpose(1, 2))

    def test_low_precision_upcast(self):
        assert gram_matrix(torch.rand(1, 3, 4, 4, dtype=torch.bfloat16)).dtype == torch.float32

    def test_gradcheck(self):
        x = torch.rand(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(gram_matrix, (x,))


class TestRelativeSqError:
    def test_by_hand(self):
        # ||(1, 2) - (1, 4)||^2 / ||(1, 4)||^2 = 4 / 17
        out = relative_sq_error(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 4.0]]))
        torch.testing.assert_close(out, torch.tensor([4.0 / 17.0]))

    def test_zero_target_is_finite(self):
        out = relative_sq_error(torch.ones(1, 3), torch.zeros(1, 3))
        assert torch.isfinite(out).all() and out.item() > 0


class TestContentLoss:
    def test_cardinality(self, dtype):
        x, t = torch.rand(3, 2, 4, 4, dtype=dtype), torch.rand(1, 2, 4, 4, dtype=dtype)
        assert content_loss(x, t).shape == ()
        assert content_loss(x, t, reduction="none").shape == (3,)

    def test_identity(self, dtype):
        x = torch.rand(2, 4, 5, 5, dtype=dtype)
        assert content_loss(x, x).item() == 0.0

    def test_by_hand(self, dtype, tol):
        # target = all ones (1x1x2x2): ||t||^2 = 4; x - t = (1, 0, -1, 2) -> 6; relative 1.5.
        t = torch.ones(1, 1, 2, 2, dtype=dtype)
        x = torch.tensor([[[[2.0, 1.0], [0.0, 3.0]]]], dtype=dtype)
        torch.testing.assert_close(content_loss(x, t), torch.tensor(1.5, dtype=dtype), **tol)

    def test_scale_invariant(self):
        """Relative: scaling both features by the same factor does not change the loss."""
        x, t = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
        torch.testing.assert_close(content_loss(10 * x, 10 * t), content_loss(x, t))

    def test_exception(self):
        with pytest.raises(ValueError, match="reduction"):
            content_loss(torch.rand(1, 2, 3, 3), torch.rand(1, 2, 3, 3), reduction="sum")  # type: ignore[arg-type]

    def test_module_equals_function(self, dtype):
        x, t = torch.rand(2, 3, 4, 4, dtype=dtype), torch.rand(1, 3, 4, 4, dtype=dtype)
        m = ContentLoss(t)
        assert torch.equal(m(x), content_loss(x, t))
        assert torch.equal(ContentLoss(t, reduction="none")(x), content_loss(x, t, reduction="none"))
        assert "target" in dict(m.named_buffers())

    def test_gradcheck(self):
        x = torch.rand(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
        t = torch.rand(1, 2, 3, 3, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda a: content_loss(a, t), (x,))


class TestStyleLoss:
    def test_identity(self):
        x = torch.rand(1, 4, 5, 5)
        assert style_loss(x, gram_matrix(x)).item() == 0.0

    def test_by_hand(self, dtype, tol):
        # 1 channel, 2x2 map of ones: G = 1; target G = 2 -> (1 - 2)^2 / 2^2 = 0.25.
        feats = torch.ones(1, 1, 2, 2, dtype=dtype)
        out = style_loss(feats, torch.full((1, 1, 1), 2.0, dtype=dtype))
        torch.testing.assert_close(out, torch.tensor(0.25, dtype=dtype), **tol)

    def test_spatial_invariance(self):
        """Gram statistics ignore where features are: a shuffled map has the same loss."""
        x = torch.rand(1, 3, 4, 4)
        perm = torch.randperm(16)
        shuffled = x.flatten(2)[..., perm].reshape(1, 3, 4, 4)
        assert style_loss(shuffled, gram_matrix(x)).item() < 1e-10

    def test_cardinality(self):
        x = torch.rand(3, 2, 4, 4)
        assert style_loss(x, gram_matrix(x[:1]), reduction="none").shape == (3,)

    def test_module_equals_function(self, dtype):
        x = torch.rand(2, 3, 4, 4, dtype=dtype)
        g = gram_matrix(torch.rand(1, 3, 6, 6, dtype=dtype))
        assert torch.equal(StyleLoss(g)(x), style_loss(x, g))
        assert torch.equal(StyleLoss(g, reduction="none")(x), style_loss(x, g, reduction="none"))

    def test_gradcheck(self):
        x = torch.rand(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
        g = gram_matrix(torch.rand(1, 2, 4, 4, dtype=torch.float64))
        assert torch.autograd.gradcheck(lambda a: style_loss(a, g), (x,))


class TestTotalVariation:
    def test_cardinality(self):
        assert total_variation(torch.rand(2, 3, 5, 5), reduction="none").shape == (2,)
        assert total_variation(torch.rand(2, 3, 5, 5)).shape == ()

    def test_by_hand(self, dtype, tol):
        # One channel [[0, 1], [2, 4]]: horizontal diffs 1, 2 -> mean sq 2.5;
        # vertical diffs 2, 3 -> mean sq 6.5; total 9.0.
        x = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]], dtype=dtype)
        torch.testing.assert_close(total_variation(x), torch.tensor(9.0, dtype=dtype), **tol)

    def test_constant_is_zero(self):
        assert total_variation(torch.full((1, 3, 6, 6), 0.3)).item() == 0.0

    def test_resolution_independent(self):
        """Mean, not sum: a 2x nearest-upsampled ramp has about half the TV, not twice."""
        x = torch.linspace(0, 1, 8).view(1, 1, 1, 8).expand(1, 3, 8, 8)
        big = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        assert total_variation(big).item() < total_variation(x).item()

    def test_gradcheck(self):
        x = torch.rand(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(total_variation, (x,))

    def test_engine_tv_is_of_the_generated_image_only(self, vgg_random):
        """Stylizer.losses: the tv term depends on the image, never on the style image."""
        s = Stylizer(StylizeConfig(size=32, min_size=32, tv_weight=3.0, device="cpu", dtype="float32"),
                     pretrained=False)
        s.vgg = vgg_random
        content = torch.rand(1, 3, 32, 32)
        smooth = torch.full((1, 3, 32, 32), 0.5)
        noisy = torch.rand(1, 3, 32, 32)
        image = torch.rand(1, 3, 32, 32)
        losses = []
        for style in (smooth, noisy):
            content_t, style_t = s._targets(content, [style], [1.0], (32, 32))
            losses.append(s.losses(image, content_t, style_t))
        a, b = losses
        assert a["tv"].item() == b["tv"].item()
        torch.testing.assert_close(a["tv"], 3.0 * total_variation(image))
        assert a["style"].item() != b["style"].item()  # the style did change something
        torch.testing.assert_close(a["total"], a["content"] + a["style"] + a["tv"])

    def test_engine_no_tv_term_when_weight_zero(self, vgg_random):
        s = Stylizer(StylizeConfig(size=32, min_size=32, tv_weight=0.0, device="cpu", dtype="float32"),
                     pretrained=False)
        s.vgg = vgg_random
        content_t, style_t = s._targets(torch.rand(1, 3, 32, 32), [torch.rand(1, 3, 32, 32)], [1.0], (32, 32))
        assert "tv" not in s.losses(torch.rand(1, 3, 32, 32), content_t, style_t)


class TestBlendGrams:
    def test_normalized(self):
        a, b = torch.full((1, 2, 2), 2.0), torch.full((1, 2, 2), 6.0)
        torch.testing.assert_close(blend_grams([a, b], [1.0, 1.0]), torch.full((1, 2, 2), 4.0))
        torch.testing.assert_close(blend_grams([a, b], [3.0, 1.0]), torch.full((1, 2, 2), 3.0))
        # Only ratios matter.
        torch.testing.assert_close(blend_grams([a, b], [30.0, 10.0]), blend_grams([a, b], [0.75, 0.25]))

    def test_single(self):
        a = torch.rand(1, 3, 3)
        assert torch.equal(blend_grams([a], [5.0]), a)

    def test_one_hot_is_exact(self):
        a, b = torch.rand(1, 3, 3), torch.rand(1, 3, 3)
        assert torch.equal(blend_grams([a, b], [1.0, 0.0]), a)
        assert torch.equal(blend_grams([a, b], [0.0, 2.0]), b)

    @pytest.mark.parametrize("weights", [[1.0], [1.0, 1.0, 1.0], [-1.0, 2.0], [0.0, 0.0]])
    def test_exception(self, weights):
        with pytest.raises(ValueError):
            blend_grams([torch.rand(1, 2, 2), torch.rand(1, 2, 2)], weights)

    def test_empty(self):
        with pytest.raises(ValueError):
            blend_grams([], [])
