"""Tests of warpaint.vgg_int8: VGG19 to relu4_1 in 8-bit integers for the style statistics."""

from __future__ import annotations

import pytest
import torch

from warpaint import vgg_int8
from warpaint.demo import demo_content, demo_style
from warpaint.feedforward import load
from warpaint.feedforward.nets import STAT_LAYERS, feature_statistics
from warpaint.io import resize_long_side
from warpaint.vgg import VGGFeatures

pytestmark = pytest.mark.skipif(not vgg_int8.available(),
                                reason="this PyTorch has no oneDNN quantized kernels")


@pytest.fixture(scope="module")
def int8(vgg) -> vgg_int8.Int8VGG:
    return vgg_int8.Int8VGG(vgg)


@pytest.mark.parametrize("make", [demo_content, demo_style], ids=["photo", "painting"])
def test_statistics_match_float(vgg, int8, make):
    x = resize_long_side(make(), 128)
    ref = feature_statistics(vgg(x, STAT_LAYERS))
    got = feature_statistics(int8(x, STAT_LAYERS))
    rel = (got - ref).abs() / (ref.abs() + 1)
    assert rel.mean() < 0.04, rel.mean()
    # layer by layer: every layer is close, and the numbers are not the float ones
    feats, fref = int8(x, STAT_LAYERS), vgg(x, STAT_LAYERS)
    for name in STAT_LAYERS:
        assert feats[name].shape == fref[name].shape and feats[name].dtype == torch.float32
        err = (feats[name] - fref[name]).norm() / fref[name].norm()
        assert 0 < err < 0.15, (name, err)


def test_asked_layers_only_and_in_order(int8):
    x = torch.rand(1, 3, 40, 48)
    out = int8(x, ("relu2_1", "relu1_1"))
    assert list(out) == ["relu2_1", "relu1_1"] and out["relu2_1"].shape == (1, 128, 20, 24)
    with pytest.raises(ValueError, match="relu4_1"):
        int8(x, ("relu5_1",))


def test_saturates_instead_of_overflowing(vgg):
    tight = vgg_int8.Int8VGG(vgg, dict.fromkeys(vgg_int8.RELU_MAXIMA, 10.0))
    out = tight(torch.rand(1, 3, 32, 32), STAT_LAYERS)
    assert all(torch.isfinite(v).all() for v in out.values())
    top = out["relu1_1"].max().item()     # 8-bit codes: at most twice the range, not wrapped around
    assert top == pytest.approx(255 * 10.0 / 127, rel=1e-4)


def test_bad_ranges_and_pooling_are_refused(vgg):
    with pytest.raises(ValueError, match="conv3_1"):
        vgg_int8.Int8VGG(vgg, {**vgg_int8.RELU_MAXIMA, "conv3_1": 0.0})
    with pytest.raises(ValueError, match="max pooling"):
        vgg_int8.Int8VGG(VGGFeatures(pooling="avg", pretrained=False))


def test_leaves_the_quantized_engine_as_it_was(vgg):
    before = torch.backends.quantized.engine
    vgg_int8.Int8VGG(vgg)
    assert torch.backends.quantized.engine == before


def test_maxima_cover_what_they_measure(vgg):
    x = resize_long_side(demo_style(), 64)
    top = vgg_int8.relu_maxima(vgg, [x, x.flip(-1)], last="relu2_1")
    assert list(top) == ["conv1_1", "conv1_2", "conv2_1"]
    each = [vgg(v, ["relu1_1"])["relu1_1"].max().item() for v in (x, x.flip(-1))]
    assert top["conv1_1"] == pytest.approx(max(each)) and each[0] != each[1]


def test_fast_model_reads_styles_in_int8_on_cpu_and_float_when_asked():
    model = load()
    assert isinstance(model.style_reader(), vgg_int8.Int8VGG)
    style = demo_style()
    code8 = model.style_code([style])
    model.int8_style = False
    assert isinstance(model.style_reader(), VGGFeatures)
    code32 = model.style_code([style])
    assert not torch.equal(code8, code32)
    assert torch.nn.functional.cosine_similarity(code8, code32).item() > 0.98
    assert (code8 - code32).norm() / code32.norm() < 0.1


def test_falls_back_to_float_without_the_kernels(monkeypatch):
    model = load()
    model._int8 = None
    monkeypatch.setattr(vgg_int8, "available", lambda: False)
    assert isinstance(model.style_reader(), VGGFeatures)
