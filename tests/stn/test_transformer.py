"""The SpatialTransformer module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from warpaint.errors import ShapeError
from warpaint.stn import SpatialTransformer, rotation_equivariance_loss

KINDS = ["affine", "similarity", "projective", "tps"]


class TestSpatialTransformer:
    @pytest.mark.parametrize("kind", ["affine", "similarity", "projective"])
    def test_iterations_compose(self, kind):
        torch.manual_seed(0)
        stn = SpatialTransformer(1, kind=kind, iterations=3, output_size=(16, 16))
        x = torch.rand(2, 1, 24, 24)
        y, params = stn(x)                              # identity start survives composition
        torch.testing.assert_close(y, F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False,
                                                    antialias=False), atol=1e-5, rtol=0)
        with torch.no_grad():
            stn.localization[-1].bias.mul_(0.9)       # each pass zooms: the passes compose
        _, p3 = stn(x)
        assert p3[0, 0, 0].item() == pytest.approx(0.9 ** 3, abs=1e-5)
        with pytest.raises(ValueError):
            SpatialTransformer(1, kind="tps", iterations=2)

    @pytest.mark.parametrize("kind", KINDS)
    def test_identity_start(self, kind):
        torch.manual_seed(0)
        stn = SpatialTransformer(3, kind=kind)
        x = torch.rand(2, 3, 24, 20)
        y, params = stn(x)
        torch.testing.assert_close(y, x, atol=1e-5, rtol=0)
        assert stn.identity_penalty(params).item() == pytest.approx(0.0, abs=1e-10)

    @pytest.mark.parametrize("kind", KINDS)
    @pytest.mark.parametrize("shape", [(1, 1, 28, 28), (2, 3, 42, 42), (3, 5, 7, 13), (1, 2, 100, 60)])
    def test_any_size_and_channels(self, kind, shape):
        stn = SpatialTransformer(shape[1], kind=kind)
        y, _ = stn(torch.rand(shape))
        assert y.shape == shape

    @pytest.mark.parametrize("kind", KINDS)
    def test_output_size(self, kind):
        stn = SpatialTransformer(1, kind=kind, output_size=(16, 12))
        y, params = stn(torch.rand(4, 1, 42, 42))
        assert y.shape == (4, 1, 16, 12)
        expected = {"affine": (4, 2, 3), "similarity": (4, 2, 3), "projective": (4, 3, 3),
                    "tps": (4, 16, 2)}[kind]
        assert tuple(params.shape) == expected

    @pytest.mark.parametrize("kind", KINDS)
    def test_gradients_reach_localization(self, kind):
        torch.manual_seed(0)
        stn = SpatialTransformer(1, kind=kind)
        x = torch.rand(2, 1, 28, 28)
        target = torch.roll(x, shifts=3, dims=-1)
        opt = torch.optim.SGD(stn.parameters(), lr=0.1)
        first_conv = stn.localization[0]
        grads = []
        for _ in range(2):  # the head starts at zero weight: deeper layers get gradient from step 2
            opt.zero_grad()
            y, _ = stn(x)
            F.mse_loss(y, target).backward()
            grads.append(first_conv.weight.grad.abs().sum().item())
            opt.step()
        last = [m for m in stn.localization.modules() if isinstance(m, torch.nn.Linear)][-1]
        assert last.weight.grad.abs().sum() > 0
        assert grads[-1] > 0

    @pytest.mark.parametrize("kind", [*KINDS, "rigid"])
    def test_parameter_count_matches_the_identity(self, kind):
        from warpaint.stn.transformer import n_transform_params

        assert SpatialTransformer(1, kind=kind, tps_grid=3).n_params == n_transform_params(kind, 3)

    def test_bad_kind(self):
        with pytest.raises(ValueError, match="kind"):
            SpatialTransformer(3, kind="spline")  # type: ignore[arg-type]

    def test_bad_arguments_are_said_at_construction(self):
        for kwargs, match in (({"output_size": (0, 5)}, "output_size"),
                              ({"padding_mode": "foo"}, "padding_mode")):
            with pytest.raises(ValueError, match=match):
                SpatialTransformer(3, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="in_channels"):
            SpatialTransformer(0)

    def test_square_output_size_and_input_shape(self):
        stn = SpatialTransformer(3, output_size=16)
        assert stn(torch.rand(2, 3, 20, 30))[0].shape == (2, 3, 16, 16)
        for bad in (torch.rand(2, 1, 20, 30), torch.rand(3, 20, 30)):
            with pytest.raises(ShapeError, match=r"input must have shape \(B, 3, H, W\)"):
                stn(bad)

    def test_package_exports_the_documented_loss(self):
        """docs/stn.md names ``rotation_equivariance_loss`` among warpaint.stn's functions."""
        assert callable(rotation_equivariance_loss)

    def test_regularization(self):
        stn = SpatialTransformer(1, kind="affine")
        _, params = stn(torch.rand(1, 1, 16, 16))
        assert stn.regularization(params, identity_weight=1.0, bounds_weight=1.0).item() == 0.0
        far = params * 3.0
        stn.last_grid = stn.grid(far, (16, 16))
        assert stn.regularization(far, identity_weight=1.0, bounds_weight=1.0).item() > 0.0
