"""Tests of warpaint.vgg: the bundled weights, Caffe preprocessing and the feature extractor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from warpaint.errors import ShapeError
from warpaint.io import load_image, resize_long_side
from warpaint.vgg import (
    CAFFE_MEAN_BGR,
    LAYER_INDEX,
    LAYER_NAMES,
    VGGFeatures,
    caffe_deprocess,
    caffe_preprocess,
    layer_stride,
    load_vgg19_weights,
    weights_path,
)

CONV_SHAPES = {
    "conv1_1": (64, 3), "conv1_2": (64, 64),
    "conv2_1": (128, 64), "conv2_2": (128, 128),
    "conv3_1": (256, 128), "conv3_2": (256, 256), "conv3_3": (256, 256), "conv3_4": (256, 256),
    "conv4_1": (512, 256), "conv4_2": (512, 512), "conv4_3": (512, 512), "conv4_4": (512, 512),
    "conv5_1": (512, 512), "conv5_2": (512, 512), "conv5_3": (512, 512), "conv5_4": (512, 512),
}


def _raw_weights() -> dict[str, torch.Tensor]:
    return torch.load(weights_path(), map_location="cpu", weights_only=True)


class TestLoadWeights:
    def test_smoke(self):
        assert Path(weights_path()).is_file()

    def test_cardinality(self):
        w = load_vgg19_weights()
        assert len(w) == 32
        expected = {}
        for name, (c_out, c_in) in CONV_SHAPES.items():
            expected[f"{name}.weight"] = (c_out, c_in, 3, 3)
            expected[f"{name}.bias"] = (c_out,)
        assert {k: tuple(v.shape) for k, v in w.items()} == expected
        assert all(v.dtype == torch.float32 for v in w.values())

    def test_cached(self):
        assert load_vgg19_weights() is load_vgg19_weights()

    @pytest.mark.parametrize("ours, raw", [("conv1_1", "block1_conv1"), ("conv3_2", "block3_conv2")])
    def test_reference_dequantization(self, ours, raw):
        """Our one-op ``table[indices]`` equals a slow element-by-element lookup."""
        q = _raw_weights()
        idx, table, bias = q[f"{raw}_W_q"], q[f"{raw}_W_table"], q[f"{raw}_b"]
        assert idx.dtype == torch.uint8 and table.shape == (256,)
        table_list = table.tolist()
        ref = torch.tensor([table_list[i] for i in idx.flatten().tolist()],
                           dtype=torch.float32).reshape(idx.shape)
        w = load_vgg19_weights()
        assert torch.equal(w[f"{ours}.weight"], ref)
        assert torch.equal(w[f"{ours}.bias"], bias.float())

    def test_all_layers_match_raw_spot_check(self):
        """Every layer's weight matches the raw file at a few positions (slow path, by hand)."""
        q = _raw_weights()
        w = load_vgg19_weights()
        g = torch.Generator().manual_seed(0)
        for b, n in enumerate((2, 2, 4, 4, 4), start=1):
            for i in range(1, n + 1):
                idx, table = q[f"block{b}_conv{i}_W_q"], q[f"block{b}_conv{i}_W_table"]
                ours = w[f"conv{b}_{i}.weight"]
                flat_positions = torch.randint(0, idx.numel(), (20,), generator=g).tolist()
                for p in flat_positions:
                    assert ours.flatten()[p].item() == table[int(idx.flatten()[p])].item()

    def test_values_plausible(self):
        """The bundled weights are real trained weights: not all-zero, finite, varied."""
        w = load_vgg19_weights()
        for k, v in w.items():
            assert torch.isfinite(v).all(), k
        assert w["conv1_1.weight"].std() > 0.01
        assert len(w["conv5_4.weight"].unique()) > 100  # 256-entry codebook, mostly used


class TestCaffePreprocess:
    def test_by_hand(self):
        x = torch.zeros(1, 3, 2, 2)
        x[0, :, 1, 0] = torch.tensor([0.2, 0.4, 0.6])  # R, G, B of one pixel
        y = caffe_preprocess(x)
        expected = torch.tensor([0.6 * 255 - 103.939, 0.4 * 255 - 116.779, 0.2 * 255 - 123.68])
        torch.testing.assert_close(y[0, :, 1, 0], expected)
        # A black pixel is minus the mean, in BGR order.
        torch.testing.assert_close(y[0, :, 0, 0], -torch.tensor(CAFFE_MEAN_BGR))

    def test_bgr_order(self):
        red = torch.zeros(1, 3, 1, 1)
        red[0, 0] = 1.0
        y = caffe_preprocess(red) + torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
        torch.testing.assert_close(y.flatten(), torch.tensor([0.0, 0.0, 255.0]))

    def test_round_trip(self, dtype):
        x = torch.rand(2, 3, 5, 7, dtype=dtype)
        torch.testing.assert_close(caffe_deprocess(caffe_preprocess(x)), x,
                                   **({"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}))

    def test_does_not_mutate(self):
        x = torch.rand(1, 3, 4, 4)
        before = x.clone()
        caffe_preprocess(x)
        caffe_deprocess(x)
        assert torch.equal(x, before)


class TestLayerNames:
    def test_cardinality(self):
        assert len(LAYER_NAMES) == 16 + 16 + 5
        assert LAYER_NAMES[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
        assert LAYER_NAMES[-1] == "pool5"
        assert [LAYER_INDEX[n] for n in LAYER_NAMES] == list(range(len(LAYER_NAMES)))

    @pytest.mark.parametrize("name, stride", [("relu1_1", 1), ("pool1", 2), ("relu2_1", 2),
                                              ("relu3_4", 4), ("relu4_2", 8), ("relu5_1", 16),
                                              ("pool5", 32)])
    def test_stride(self, name, stride):
        assert layer_stride(name) == stride
        assert VGGFeatures.min_size([name, "relu1_1"]) == stride


class TestVGGFeatures:
    def test_cardinality(self, vgg_random):
        """A 64x48 (W x H) input: relu1_1 full resolution, relu4_2 1/8, relu5_1 1/16."""
        x = torch.rand(1, 3, 48, 64)
        layers = ("relu5_1", "relu1_1", "relu2_1", "relu3_1", "relu4_2", "pool5")
        feats = vgg_random(x, layers)
        assert list(feats) == list(layers)  # in the order asked
        assert feats["relu1_1"].shape == (1, 64, 48, 64)
        assert feats["relu2_1"].shape == (1, 128, 24, 32)
        assert feats["relu3_1"].shape == (1, 256, 12, 16)
        assert feats["relu4_2"].shape == (1, 512, 6, 8)
        assert feats["relu5_1"].shape == (1, 512, 3, 4)
        assert feats["pool5"].shape == (1, 512, 1, 2)

    def test_batch(self, vgg_random):
        x = torch.rand(2, 3, 32, 32)
        both = vgg_random(x, ("relu3_1",))["relu3_1"]
        one = vgg_random(x[1:], ("relu3_1",))["relu3_1"]
        torch.testing.assert_close(both[1:], one, rtol=1e-4, atol=1e-4)

    def test_stops_at_deepest_layer(self, vgg_random):
        calls = []
        handle = vgg_random.layers["conv2_1"].register_forward_hook(lambda *a: calls.append(1))
        try:
            vgg_random(torch.rand(1, 3, 32, 32), ("relu1_1",))
            assert calls == []
            vgg_random(torch.rand(1, 3, 32, 32), ("relu1_1", "relu2_1"))
            assert calls == [1]
        finally:
            handle.remove()

    def test_empty_layers(self, vgg_random):
        assert vgg_random(torch.rand(1, 3, 8, 8), ()) == {}

    def test_frozen_but_input_gets_gradient(self, vgg_random):
        assert all(not p.requires_grad for p in vgg_random.parameters())
        assert not vgg_random.training
        vgg_random.train()
        assert not vgg_random.training  # stays in eval mode
        x = torch.rand(1, 3, 32, 32, requires_grad=True)
        vgg_random(x, ("relu3_1",))["relu3_1"].sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        assert all(p.grad is None for p in vgg_random.parameters())

    def test_too_small(self, vgg_random):
        with pytest.raises(ShapeError, match="at least 16"):
            vgg_random(torch.rand(1, 3, 15, 64), ("relu5_1",))
        with pytest.raises(ValueError, match="at least"):  # ShapeError is a ValueError
            vgg_random(torch.rand(1, 3, 64, 7), ("relu4_2",))
        assert vgg_random(torch.rand(1, 3, 16, 16), ("relu5_1",))["relu5_1"].shape[-2:] == (1, 1)

    def test_exception(self, vgg_random):
        with pytest.raises(ValueError, match="unknown VGG19 layer"):
            vgg_random(torch.rand(1, 3, 32, 32), ("relu9_9",))
        with pytest.raises(ShapeError):
            vgg_random(torch.rand(3, 32, 32), ("relu1_1",))
        with pytest.raises(TypeError):
            vgg_random(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), ("relu1_1",))
        with pytest.raises(ValueError, match="pooling"):
            VGGFeatures(pooling="median", pretrained=False)  # type: ignore[arg-type]

    def test_max_vs_avg_pooling(self, vgg_random):
        avg = VGGFeatures(pooling="avg", pretrained=False)
        avg.layers.load_state_dict(vgg_random.layers.state_dict())
        assert isinstance(avg.layers["pool1"], torch.nn.AvgPool2d)
        x = torch.rand(1, 3, 32, 32)
        fm, fa = vgg_random(x, ("relu1_2", "relu2_1")), avg(x, ("relu1_2", "relu2_1"))
        torch.testing.assert_close(fm["relu1_2"], fa["relu1_2"])  # before any pooling: same
        assert not torch.allclose(fm["relu2_1"], fa["relu2_1"], atol=1e-3)

    def test_real_weights_loaded(self, vgg):
        w = load_vgg19_weights()
        assert torch.equal(vgg.layers["conv1_1"].weight, w["conv1_1.weight"])
        assert torch.equal(vgg.layers["conv5_4"].bias, w["conv5_4.bias"])
        params = dict(vgg.named_parameters())
        # none left on meta
        assert all(p.device.type == "cpu" and not p.requires_grad for p in params.values())
        before = w["conv1_1.weight"].clone()
        other = VGGFeatures()                  # each instance owns its weights; the cache stays as loaded
        with torch.no_grad():
            other.layers["conv1_1"].weight.add_(1.0)
        assert torch.equal(vgg.layers["conv1_1"].weight, before)
        assert torch.equal(load_vgg19_weights()["conv1_1.weight"], before)

    def test_real_features_sane(self, vgg, images):
        a = vgg(images.content(64, 64), ("relu5_1",))["relu5_1"]
        b = vgg(images.checker(64, 64), ("relu5_1",))["relu5_1"]
        for f in (a, b):
            assert torch.isfinite(f).all()
            assert f.abs().sum() > 0
            assert (f >= 0).all()  # after a ReLU
        assert not torch.allclose(a, b, rtol=0.1, atol=0.1)

    def test_real_features_of_photos_differ(self, vgg, shared_image):
        a = resize_long_side(load_image(shared_image("content/tubingen.jpg")), 64)
        b = resize_long_side(load_image(shared_image("style/starry_night.jpg")), 64)
        fa, fb = vgg(a, ("relu5_1",))["relu5_1"], vgg(b, ("relu5_1",))["relu5_1"]
        assert torch.isfinite(fa).all() and torch.isfinite(fb).all()
        assert fa.abs().mean() > 0 and fb.abs().mean() > 0
        # Gram matrices (size-independent) of a photo and a painting are far apart.
        ga = fa.flatten(2) @ fa.flatten(2).transpose(1, 2) / fa[0, 0].numel()
        gb = fb.flatten(2) @ fb.flatten(2).transpose(1, 2) / fb[0, 0].numel()
        assert (ga - gb).norm() > 0.1 * ga.norm()
