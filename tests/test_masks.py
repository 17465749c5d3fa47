"""Tests of regional style (``--mask``): warpaint.masks, the masked losses, the engine, the
fast path and the CLI.

Engine runs are tiny (64 px, 20 L-BFGS steps) on the real bundled weights, on the CPU in
float32, with two strongly different synthetic styles (red/blue stripes, green/yellow checks).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from warpaint.cli import main
from warpaint.errors import InputError
from warpaint.io import pil_to_tensor, resize, tensor_to_pil
from warpaint.jobs import Job, make_method, run_job
from warpaint.losses import gram_matrix, masked_gram, masked_style_errors, masked_style_loss, style_loss
from warpaint.masks import check_aspect, keep_photo, parse_mask, soft_weights
from warpaint.score import region_style_distances
from warpaint.stylize import StylizeConfig, Stylizer

ENGINE = dict(device="cpu", dtype="float32", content_weight=1.0, style_weight=20.0, tv_weight=0.0,
              optimizer="lbfgs", lr=0.0, pooling="max", init="content", style_scale=1.0,
              preserve_color="none", seed=0, coarse_steps=0)


def bands(w: int, h: int, levels: list[int], *, mode: str = "L") -> Image.Image:
    """A mask of equal vertical bands, one per value (grey levels or RGB tuples), left to right."""
    im = Image.new(mode, (w, h))
    for i, v in enumerate(levels):
        im.paste(v, (i * w // len(levels), 0, (i + 1) * w // len(levels), h))
    return im


def regions_of(mask: torch.Tensor) -> list[int]:
    """The channel of each column's top pixel: which region each column is."""
    return mask[0, :, 0].argmax(0).tolist()


class TestParseMask:
    def test_grey_levels_darkest_first(self):
        m = parse_mask(bands(60, 20, [255, 0]), 2)        # white left, black right
        assert m.regions.shape == (1, 3, 20, 60)
        assert set(regions_of(m.regions)[:30]) == {1} and set(regions_of(m.regions)[30:]) == {0}
        assert not m.has_none and m.colors[0] == (0, 0, 0) and m.fractions[-1] == 0

    def test_one_region_more_keeps_the_photo(self):
        m = parse_mask(bands(60, 20, [128, 0, 255]), 2)
        assert regions_of(m.regions)[:20] == [0] * 20       # grey: style 1
        assert regions_of(m.regions)[20:40] == [2] * 20     # black: no style (the last channel)
        assert regions_of(m.regions)[40:] == [1] * 20       # white: style 2
        assert m.has_none and [d["style"] for d in m.describe()] == ["style 1", "style 2", "none (photo)"]

    def test_black_and_white_with_one_style(self):
        m = parse_mask(bands(40, 20, [0, 255]), 1)
        assert regions_of(m.regions) == [1] * 20 + [0] * 20

    def test_colours_by_luminance(self):
        m = parse_mask(bands(90, 30, [(255, 0, 0), (0, 255, 0), (0, 0, 255)], mode="RGB"), 3)
        # luma: blue 29 < red 76 < green 150
        assert regions_of(m.regions) == [1] * 30 + [2] * 30 + [0] * 30

    def test_fringe_colours_are_ignored(self):
        """A one-pixel antialiased column and a rotated, resampled colour mask: no extra regions."""
        im = bands(64, 64, [0, 255])
        im.paste(128, (32, 0, 33, 64))                      # 1.6 % of the pixels, between the two
        m = parse_mask(im, 2)
        assert m.regions.sum(1).eq(1).all()
        big = bands(300, 200, [(255, 0, 0), (0, 0, 255)], mode="RGB").resize((150, 100), Image.BICUBIC)
        big = big.rotate(7, resample=Image.BICUBIC, fillcolor=(255, 0, 0))
        assert len(np.unique(np.asarray(big).reshape(-1, 3), axis=0)) > 20
        assert parse_mask(big, 2).styles == 2

    def test_jpeg_noise(self, tmp_path):
        bands(128, 96, [0, 128, 255]).convert("RGB").save(tmp_path / "m.jpg", quality=50)
        with Image.open(tmp_path / "m.jpg") as im:
            m = parse_mask(im, 2)
        assert m.has_none and abs(m.fractions[-1] - 1 / 3) < 0.02

    @pytest.mark.parametrize("levels, styles, match", [
        ([0, 85, 170, 255], 2, r"4 region\(s\).*needs 2 regions, or 3"),
        ([0, 255], 3, r"2 region\(s\).*for 3 style"),
    ])
    def test_region_count(self, levels, styles, match):
        with pytest.raises(InputError, match=match):
            parse_mask(bands(80, 20, levels), styles)

    def test_not_a_mask(self):
        noise = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
        with pytest.raises(InputError, match="not a mask"):
            parse_mask(Image.fromarray(noise), 2, name="noise.png")

    def test_aspect(self):
        check_aspect((100, 133), (48, 64))                 # 0.25 % apart: stretched
        with pytest.raises(InputError, match="aspect ratios differ"):
            check_aspect((100, 100), (48, 64), name="m.png")


class TestSoftWeights:
    def test_partition_of_unity(self):
        m = parse_mask(bands(60, 40, [0, 128, 255]), 2).regions
        for feather in (0.0, 0.02, 0.2):
            w = soft_weights(m, (33, 50), feather)
            assert w.shape == (1, 3, 33, 50) and (w >= 0).all()
            torch.testing.assert_close(w.sum(1), torch.ones(1, 33, 50))

    def test_feather_softens_only_the_edge(self):
        m = parse_mask(bands(64, 32, [0, 255]), 2).regions
        hard, soft = soft_weights(m, (32, 64), 0), soft_weights(m, (32, 64), 0.03)
        assert hard[0, 0, :, 30].eq(1).all() and 0.5 < float(soft[0, 0, 5, 30]) < 0.9
        assert float(soft[0, 0, 5, 2]) > 0.999 and float(soft[0, 0, 5, 61]) < 0.001

    def test_keep_photo(self):
        image, photo = torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 16, 16)
        w = torch.zeros(1, 1, 8, 8)
        w[..., 4:] = 1
        out = keep_photo(image, photo, w)
        assert out[..., :4].eq(0).all() and out[..., 4:].eq(1).all()


class TestMaskedGram:
    def test_all_ones_is_the_gram(self, dtype, tol):
        f = torch.rand(2, 4, 6, 5, dtype=dtype)
        ones = torch.ones(1, 1, 6, 5, dtype=dtype)
        torch.testing.assert_close(masked_gram(f, ones)[:, 0], gram_matrix(f), **tol)
        target = gram_matrix(torch.rand(1, 4, 7, 7, dtype=dtype))
        ones = torch.ones(1, 1, 12, 10, dtype=dtype)          # another size: pooled to the features'
        torch.testing.assert_close(masked_style_loss(f, target[:, None], ones), style_loss(f, target), **tol)

    def test_region_is_the_gram_of_its_pixels(self, dtype, tol):
        f = torch.rand(1, 3, 4, 8, dtype=dtype)
        w = torch.zeros(1, 2, 4, 8, dtype=dtype)
        w[:, 0, :, :3], w[:, 1, :, 3:] = 1, 1
        g = masked_gram(f, w)
        assert g.shape == (1, 2, 3, 3)
        torch.testing.assert_close(g[:, 0], gram_matrix(f[..., :3]), **tol)
        torch.testing.assert_close(g[:, 1], gram_matrix(f[..., 3:]), **tol)

    def test_errors_per_region(self):
        f = torch.rand(1, 3, 4, 8)
        w = torch.zeros(1, 2, 4, 8)
        w[:, 0, :, :4], w[:, 1, :, 4:] = 1, 1
        own = torch.stack([gram_matrix(f[..., :4]), gram_matrix(f[..., 4:])], 1)
        assert masked_style_errors(f, own, w).abs().max() < 1e-6

    def test_gradcheck(self):
        f = torch.rand(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
        w = torch.rand(1, 2, 6, 6, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda x: masked_gram(x, w), (f,))


class TestConfig:
    @pytest.mark.parametrize("kw, match", [
        (dict(style_regions=2), "style_regions"), (dict(style_blend=(1.0, 2.0)), "style_blend"),
        (dict(warp="affine"), "warp"), (dict(align_style="tps"), "align_style"),
        (dict(mask_feather=-0.1), "mask_feather"), (dict(mask_feather=float("nan")), "mask_feather"),
    ])
    def test_refused(self, kw, match):
        with pytest.raises(InputError, match=match):
            StylizeConfig(mask="m.png", **kw)

    def test_engine_needs_the_regions(self, content_image, style_image):
        s = Stylizer(StylizeConfig(size=32, min_size=32, steps=1, mask="m.png", **ENGINE), pretrained=False)
        with pytest.raises(InputError, match="pass its regions"):
            s.run(content_image, [style_image])
        with pytest.raises(InputError, match=r"\(1, 2, H, W\)"):
            s.run(content_image, [style_image], mask=torch.ones(1, 3, 48, 64))
        with pytest.raises(InputError, match="aspect"):
            s.run(content_image, [style_image], mask=torch.ones(1, 2, 64, 64))
        plain = Stylizer(StylizeConfig(size=32, min_size=32, steps=1, **ENGINE), pretrained=False)
        with pytest.raises(InputError, match="cfg.mask is empty"):
            plain.run(content_image, [style_image], mask=torch.ones(1, 2, 48, 64))


@pytest.fixture(scope="module")
def two_styles(images):
    return [images.stripes(64, 64, period=8), images.checker(64, 64, k=8)]


class TestEngine:
    def test_each_region_takes_its_own_style(self, vgg, images, two_styles):
        """Two style regions (left, right) and a no-style band in the middle."""
        content = images.content(48, 64)
        mask = parse_mask(bands(64, 48, [128, 0, 255]), 2)        # grey | black (photo) | white
        cfg = StylizeConfig(size=64, min_size=64, steps=20, mask="m.png", mask_feather=0.01, **ENGINE)
        out = Stylizer(cfg).run(content, two_styles, mask=mask.regions)
        assert out.shape == (1, 3, 48, 64)
        hard = soft_weights(mask.regions, (48, 64), 0)
        d = region_style_distances(out, two_styles, hard[:, :2], size=64, vgg=vgg)
        assert d[0][0] < 0.7 * d[0][1], d                         # left: stripes
        assert d[1][1] < 0.7 * d[1][0], d                         # right: checks
        none = hard[0, 2] > 0.5
        mad = (out - resize(content, (48, 64))).abs().mean(1)[0][none].mean()
        assert mad < 0.02, float(mad)
        styled = (out - resize(content, (48, 64))).abs().mean(1)[0][~none].mean()
        assert styled > 0.05, float(styled)                      # the style regions did change


    def test_tiled(self, vgg, images, two_styles):
        """A scale run in tiles (``tile``) crops the region weights to each tile: each region
        moves toward its own style, and the no-style band stays the photo."""
        content = images.content(72, 96)
        mask = parse_mask(bands(96, 72, [128, 0, 255]), 2)
        cfg = StylizeConfig(size=96, min_size=96, steps=15, tile=64, mask="m.png", **ENGINE)
        result = Stylizer(cfg).run_detailed(content, two_styles, mask=mask.regions)
        assert result.plans[-1].tiled
        hard = soft_weights(mask.regions, (72, 96), 0)
        d = region_style_distances(result.image, two_styles, hard[:, :2], size=96, vgg=vgg)
        before = region_style_distances(content, two_styles, hard[:, :2], size=96, vgg=vgg)
        assert d[0][0] < 0.8 * d[0][1] and d[1][1] < 0.8 * d[1][0], (d, before)
        assert d[0][0] < before[0][0] - 0.1 and d[1][1] < before[1][1] - 0.1, (d, before)
        mad = (result.image - content).abs().mean(1)[0][hard[0, 2] > 0.5].mean()
        assert mad < 0.02, float(mad)


class TestFast:
    def test_regions_and_photo(self, images, two_styles, tmp_path):
        content = tensor_to_pil(images.content(96, 128))
        bands(128, 96, [128, 0, 255]).save(tmp_path / "m.png")    # grey | black (photo) | white
        cfg = StylizeConfig(size=128, mask=str(tmp_path / "m.png"), mask_feather=0.0, device="cpu")
        method = make_method(cfg, [tensor_to_pil(s) for s in two_styles], fast=True)
        outcome = run_job(Job(content, None), method)
        assert outcome.status == "ok", outcome.error
        out, photo = pil_to_tensor(outcome.image), pil_to_tensor(content)
        assert outcome.summary["mask_regions"][2]["style"] == "none (photo)"
        diff = (out - photo).abs().mean(1)[0]
        assert diff[:, 45:83].mean() < 0.02 and diff[:, :40].mean() > 0.05
        alone = [pil_to_tensor(method.model.stylize_image(content, [s], size=128, work_size=method.work_size))
                 for s in method.styles]
        torch.testing.assert_close(out[..., :40], alone[0][..., :40], atol=2 / 255, rtol=0)
        torch.testing.assert_close(out[..., 90:], alone[1][..., 90:], atol=2 / 255, rtol=0)


class TestCli:
    @pytest.fixture
    def files(self, tmp_path, images, two_styles):
        paths = {k: tmp_path / f"{k}.png" for k in ("content", "s1", "s2", "mask", "square", "four")}
        tensor_to_pil(images.content(48, 64)).save(paths["content"])
        for k, s in zip(("s1", "s2"), two_styles, strict=True):
            tensor_to_pil(s).save(paths[k])
        bands(128, 96, [0, 255]).save(paths["mask"])
        bands(64, 64, [0, 255]).save(paths["square"])
        bands(128, 96, [0, 85, 170, 255]).save(paths["four"])
        return paths

    def test_end_to_end(self, files, tmp_path, capsys):
        out = tmp_path / "o.png"
        rc = main(["stylize", str(files["content"]), str(files["s1"]), str(files["s2"]), "-o", str(out),
                   "--mask", str(files["mask"]), "--size", "64", "--min-size", "64", "--steps", "2",
                   "--coarse-steps", "0", "-q", "--device", "cpu", "--dtype", "float32", "--json", "-"])
        assert rc == 0, capsys.readouterr().err
        summary = json.loads(capsys.readouterr().out)
        assert [r["style"] for r in summary["mask_regions"]] == ["style 1", "style 2"]
        assert out.is_file()

    @pytest.mark.parametrize("which, needle", [
        ("square", "aspect ratios differ"), ("missing", "no such file"), ("four", "4 region(s)"),
    ])
    def test_bad_mask(self, files, tmp_path, capsys, which, needle):
        mask = files.get(which, tmp_path / "missing.png")
        out = tmp_path / "o.png"
        rc = main(["stylize", str(files["content"]), str(files["s1"]), str(files["s2"]), "-o", str(out),
                   "--mask", str(mask), "--size", "32", "--steps", "1", "-q", "--device", "cpu"])
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
