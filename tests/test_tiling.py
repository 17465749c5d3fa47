"""Tiled work for images larger than memory: layouts, the engine's tiled steps and Grams, the
feed-forward path's tiles with shared normalization statistics, and the plans."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_cli import TINY, cli  # noqa: E402
from test_cli import assert_one_line_error as one_line_error  # noqa: E402

from warpaint.errors import InputError, ResourceError
from warpaint.feedforward import build
from warpaint.feedforward.nets import tiled_forward
from warpaint.losses import gram_matrix
from warpaint.memory import plan_fast, plan_scale
from warpaint.stylize import StylizeConfig, Stylizer
from warpaint.tiling import ScalePlan, blend, cuts, layout


# -- layouts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("hw,core,margin,offset", [((300, 500), 200, 16, (0, 0)),
                                                  ((777, 1234), 300, 40, (37, 91)),
                                                  ((90, 1000), 128, 64, (127, 3)),
                                                  ((64, 64), 256, 32, (5, 5))])
def test_windows_sum_to_one_and_cover_the_image(hw, core, margin, offset):
    tiles = layout(hw, core, margin, offset)
    acc = torch.zeros(hw)
    for t in tiles:
        assert 0 <= t.y0 < t.y1 <= hw[0] and 0 <= t.x0 < t.x1 <= hw[1]
        assert t.window.shape == (t.y1 - t.y0, t.x1 - t.x0)
        assert float(t.window.min()) >= 0 and float(t.window.max()) <= 1
        acc[t.y0:t.y1, t.x0:t.x1] += t.window
    torch.testing.assert_close(acc, torch.ones(hw))


def test_offsets_move_the_cuts_and_short_edge_cells_merge():
    assert cuts(900, 400) == [0, 400, 900]              # a 100 px last cell joins its neighbour
    assert cuts(900, 400, offset=150) == [0, 250, 650, 900]
    assert cuts(300, 400) == [0, 300]
    for off in range(0, 400, 7):
        c = cuts(2000, 400, off)
        assert c[0] == 0 and c[-1] == 2000 and all(b - a >= 200 for a, b in zip(c, c[1:], strict=False))


def test_blend_of_identical_tiles_is_the_image():
    x = torch.rand(1, 3, 100, 130)
    tiles = layout((100, 130), 48, 12, (5, 17))
    torch.testing.assert_close(blend(tiles, [x[..., t.y0:t.y1, t.x0:t.x1] for t in tiles], (100, 130)), x)


# -- the engine ------------------------------------------------------------------------------------
def _stylizer(vgg, **kw) -> Stylizer:
    s = Stylizer(StylizeConfig(device="cpu", dtype="float32", **kw), pretrained=False)
    s.vgg = vgg
    return s


def _whole_loss_and_grad(s: Stylizer, image, content, style):
    content_t, style_t = s._targets(content, [style], (1.0,), tuple(content.shape[-2:]))
    x = image.clone().requires_grad_(True)
    out = s.losses(x, content_t, style_t)
    out["total"].backward()
    return out, x.grad, style_t


def test_a_single_tile_gives_the_whole_image_loss_and_gradient(vgg_random, images):
    s = _stylizer(vgg_random, tv_weight=0.5)
    content, style = images.content(64, 96), images.stripes(64, 64)
    image = (content + 0.1 * torch.rand_like(content)).clamp(0, 1)
    whole, grad, style_t = _whole_loss_and_grad(s, image, content, style)
    plan = ScalePlan(core=128, margin=32)               # one tile covers the 64 x 96 image
    out, tgrad, n = s.tiled_losses(image, content, style_t, plan, (0, 0))
    assert n == 1
    for k in ("content", "style", "tv", "total"):
        torch.testing.assert_close(out[k], whole[k].detach(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(tgrad, grad, rtol=1e-4, atol=1e-9)


def test_many_tiles_approximate_the_whole_image(vgg_random, images):
    s = _stylizer(vgg_random)
    content, style = images.content(128, 192), images.stripes(96, 96)
    image = (content + 0.2 * torch.rand_like(content)).clamp(0, 1)
    whole, grad, style_t = _whole_loss_and_grad(s, image, content, style)
    out, tgrad, n = s.tiled_losses(image, content, style_t, ScalePlan(core=64, margin=32), (13, 41))
    assert n >= 4
    assert abs(float(out["total"]) / float(whole["total"].detach()) - 1) < 0.5
    cos = torch.nn.functional.cosine_similarity(tgrad.flatten(), grad.flatten(), dim=0)
    assert cos > 0.7, float(cos)


def test_tiled_grams_equal_the_whole_image_grams(vgg_random, images):
    s = _stylizer(vgg_random, style_layers=("relu1_1", "relu2_1"))
    style = images.checker(150, 210)
    tiled = s._tiled_grams(style, ScalePlan(core=64, margin=32))
    feats = s._features(style, s.cfg.style_layers)
    for n in s.cfg.style_layers:   # a 32 px margin holds these layers' receptive fields
        torch.testing.assert_close(tiled[n], gram_matrix(feats[n]), rtol=1e-4, atol=1e-5)


def test_a_tiled_run_reports_its_tiles_and_changes_the_image(vgg_random, images):
    s = _stylizer(vgg_random, size=160, min_size=80, steps=4, coarse_steps=1, tile=64)
    seen = []
    content = images.content(120, 160)
    result = s.run_detailed(content, [images.stripes(64, 64)], callback=seen.append)
    assert result.image.shape == (1, 3, 120, 160) and bool(torch.isfinite(result.image).all())
    assert [p.tiled for p in result.plans] == [True, True]
    assert all(it.tiles >= 1 for it in seen) and seen[-1].tiles >= 4 and seen[-1].work == 1.0
    assert [round(it.work, 3) for it in seen] == sorted(round(it.work, 3) for it in seen)
    final = [it.losses["total"] for it in seen if it.scale == 1]
    assert final[-1] < final[0] and float((result.image - content).abs().mean()) > 1e-5


def test_scales_that_fit_run_whole_unchanged(vgg_random, images):
    """Without tiles a run is the same as before tiling existed: same numbers, no tiles."""
    content, style = images.content(48, 64), images.stripes(64, 64)
    a = _stylizer(vgg_random, size=64, min_size=64, steps=2).run_detailed(content, [style])
    b = _stylizer(vgg_random, size=64, min_size=64, steps=2, tile=64).run_detailed(content, [style])
    assert not any(p.tiled for p in a.plans + b.plans)   # tile=64 does not tile a 64 px scale
    torch.testing.assert_close(a.image, b.image, rtol=0, atol=0)


def test_tiles_refuse_per_region_statistics(vgg_random, images):
    with pytest.raises(InputError, match="per-region"):
        _stylizer(vgg_random, size=128, min_size=128, steps=1, tile=64, style_regions=2).run(
            images.content(96, 128), [images.stripes(64, 64)])


# -- plans -----------------------------------------------------------------------------------------
def test_plans_tile_only_what_does_not_fit():
    assert not plan_scale((540, 960), 6 * 10**9, fixed=10**9).tiled
    big = plan_scale((2160, 3840), 6 * 10**9, fixed=10**9)
    assert big.tiled and big.need <= 6 * 10**9 and big.core >= 256 and 5 <= big.history <= 50
    roomy = plan_scale((2160, 3840), 22 * 10**9, fixed=10**9)
    assert roomy.core > big.core and roomy.history >= big.history
    assert plan_scale((4320, 7680), 2 * 10**9, fixed=10**9).need > 2 * 10**9   # cannot run: refused
    assert plan_scale((600, 800), 10**12, tile=256).core == 256               # asked for


def test_a_run_too_large_even_in_tiles_is_refused(vgg_random, images):
    s = _stylizer(vgg_random, size=4096, min_size=4096, steps=1, max_memory=1.5)
    with pytest.raises(ResourceError, match="GB"):
        s.plans((3072, 4096), [(512, 512)])


def test_fast_plans():
    tile, need = plan_fast((5461, 8192), None, 4 * 10**9)
    assert 512 <= tile <= 2048 and need <= 4 * 10**9
    assert plan_fast((1536, 2048), 480, 4 * 10**9)[0] == 0                  # the network runs at 480
    assert plan_fast((1536, 2048), None, 100 * 10**9, tile=512)[0] == 512


# -- the feed-forward path -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def net_model():
    torch.manual_seed(0)
    model = build("arbitrary", width=8, blocks=2)
    for m in model.net.modules():   # a trained-looking network: norms that scale and shift
        if hasattr(m, "to_affine") and m.to_affine is not None:
            torch.nn.init.normal_(m.to_affine.weight, std=0.3)
    return model


@pytest.mark.parametrize("hw,core", [((200, 264), 64), ((131, 250), 128), ((96, 96), 64)])
def test_tiled_forward_equals_the_whole_pass(net_model, images, hw, core):
    x, code = images.content(*hw), torch.randn(1, net_model.net.code_dim)
    with torch.no_grad():
        whole = net_model.net(x, code)
    tiled = tiled_forward(net_model.net, x, code, core=core, margin=32)
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-3)          # float rounding only
    assert all(m.fixed is None for m in net_model.net.modules() if hasattr(m, "fixed"))   # restored


def test_render_tiled_matches_render_with_colour_transfer(net_model, images):
    net_model.color_transfer = True
    try:
        x = images.content(144, 200)
        stats = torch.tensor([[0.3, 0.5, 0.6, 0.2, 0.1, 0.15]])
        code = torch.cat([torch.randn(1, net_model.net.code_dim), stats], 1)
        with torch.no_grad():
            whole = net_model.render(x, code)
        torch.testing.assert_close(net_model.render_tiled(x, code, 64), whole, rtol=0, atol=1e-3)
    finally:
        net_model.color_transfer = False


# -- the CLI ---------------------------------------------------------------------------------------
def test_cli_tiled_engine_run_and_summary(capsys, image_files, tmp_path):
    out, js = tmp_path / "o.png", tmp_path / "o.json"
    args = [a for a in TINY]
    args[args.index("--size") + 1] = "96"
    args[args.index("--min-size") + 1] = "96"
    rc, _, err = cli(capsys, "stylize", image_files["content"], image_files["style"], "-o", out,
                     "--tile", "64", "--json", js, *args)
    assert rc == 0, err
    summary = json.loads(js.read_text())
    assert summary["tiled_scales"] == [{"size": [96, 72], "tile": 64, "overlap": 64, "lbfgs_history": 50}]


def test_cli_rejects_a_tiny_tile(capsys, image_files, tmp_path):
    rc, _, err = cli(capsys, "stylize", image_files["content"], image_files["style"],
                     "-o", tmp_path / "o.png", "--tile", "10", *TINY)
    one_line_error(rc, err, "--tile")


