"""Geometric style in the engine and the CLI: --warp, --align-style, --style-regions."""

from __future__ import annotations

import importlib
import json
import logging

import pytest
import torch
from PIL import Image
from test_stylize import make_cfg

from warpaint.cli import main
from warpaint.errors import InputError
from warpaint.losses import region_grams, style_loss
from warpaint.stn.geostyle import FULL_FROM, REFUSE_BELOW
from warpaint.stn.warps import MIN_JACOBIAN
from warpaint.stylize import Stylizer


def rotated(image: torch.Tensor, degrees: float) -> torch.Tensor:
    from warpaint.stn.geometry import affine_grid, sample

    a = torch.tensor(degrees).deg2rad()
    theta = torch.tensor([[a.cos(), -a.sin(), 0.0], [a.sin(), a.cos(), 0.0]])[None]
    return sample(image, affine_grid(theta, tuple(image.shape[-2:]), align_corners=False),
                  padding_mode="border", align_corners=False)


def blobs(size: int = 96, seed: int = 0) -> torch.Tensor:
    """Smoothed colour noise: structure everywhere, so every region can be matched."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, size // 8, size // 8, generator=g)
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


class TestRegionGrams:
    def test_one_region_is_the_gram(self):
        f = torch.rand(2, 4, 6, 6)
        assert region_grams(f, 1).shape == (2, 1, 4, 4)
        one = region_grams(f[:1], 1)
        torch.testing.assert_close(style_loss(f, one), style_loss(f, one[:, 0]))

    def test_regions_see_layout(self):
        """Swapping the two halves keeps the global Gram but not the per-region ones."""
        f = torch.rand(1, 4, 8, 8)
        swapped = torch.cat([f[..., 4:], f[..., :4]], -1)
        from warpaint.losses import gram_matrix

        assert style_loss(swapped, gram_matrix(f)) < 1e-10
        assert style_loss(swapped, region_grams(f, 2)) > 1e-3
        assert style_loss(f, region_grams(f, 2)) < 1e-10


class TestEngine:
    @pytest.mark.parametrize("kind", ["affine", "tps"])
    def test_warp_run(self, vgg_random, images, kind):
        content = images.content(64, 64)
        style = rotated(content, 10.0)
        # random VGG weights: the confidence means nothing there, so the warp is forced
        s = Stylizer(make_cfg(size=64, min_size=32, steps=2, coarse_steps=3, warp=kind,
                              warp_strength=1.0, warp_force=True), pretrained=False)
        s.vgg = vgg_random
        seen = []
        r = s.run_detailed(content, [style], callback=lambda it: seen.append(it))
        assert r.image.shape == r.unwarped.shape == (1, 3, 64, 64)
        assert r.geometry is not None and r.geometry.warp.min_jacobian((64, 64)) > 0
        with torch.no_grad():                               # nothing sampled outside the image
            assert r.geometry.warp.grid((64, 64)).abs().max() <= 1.0
        assert not torch.allclose(r.image, r.unwarped)
        # the warp is optimized at the coarse scale only, and shows up in the losses there
        assert all(("warp_correspondence" in it.losses) == (it.scale == 0) for it in seen)
        d = r.geometry.describe((64, 64))
        assert d["kind"] == kind
        if kind == "tps":  # (an affine map must also zoom in to keep its corners inside)
            assert d["match_distance_after_px"] < d["match_distance_before_px"]

    def test_no_warp_result_is_unwarped(self, vgg_random, images):
        s = Stylizer(make_cfg(size=32, steps=1), pretrained=False)
        r = s.run_detailed(images.content(32, 32), [images.stripes(32, 32)])
        assert r.geometry is None and r.aligned == []
        assert torch.equal(r.image, r.unwarped)

    def test_align_style(self, vgg, images):
        content = blobs(96)
        s = Stylizer(make_cfg(size=64, min_size=32, steps=1, coarse_steps=1, align_style="affine"),
                     pretrained=False)
        s.vgg = vgg
        assert s.cfg.regions == 2
        aligned, geo = s.align_style(rotated(content, 15.0), content)
        assert aligned.shape == (1, 3, 96, 96)
        # the style was rotated by -15 degrees on screen; the fitted map turns it back
        assert geo.warp.describe((96, 96))["rotation_deg"] == pytest.approx(15.0, abs=3.0)
        r = s.run_detailed(content, [rotated(content, 15.0)])
        assert len(r.aligned) == 1

    def test_align_style_without_shared_layout_keeps_the_style(self, vgg, images, caplog):
        s = Stylizer(make_cfg(size=64, steps=1, align_style="affine"), pretrained=False)
        s.vgg = vgg
        style = images.checker(96, 96)
        aligned, geo = s.align_style(style, blobs(96))
        assert "no shared layout" in caplog.text
        torch.testing.assert_close(aligned, style, atol=1e-5, rtol=0)
        # --json says it was not applied, and why (it once said "applied": true)
        said = geo.describe((96, 96))
        assert said["applied"] is False and "no shared layout" in said["reason"]
        assert said["kind"] == "affine" and said["matches"] == len(geo.source)
        s_tps = Stylizer(make_cfg(size=64, steps=1, align_style="tps"), pretrained=False)
        s_tps.vgg = vgg
        assert s_tps.align_style(style, blobs(96))[1].describe((96, 96))["kind"] == "tps"

    def test_single_scale_optimizes_the_warp(self, vgg_random, images):
        s = Stylizer(make_cfg(size=64, steps=2, warp="tps", warp_force=True), pretrained=False)
        s.vgg = vgg_random
        seen = []
        content = images.content(64, 64)
        s.run_detailed(content, [rotated(content, 10.0)], callback=seen.append)
        assert len(seen) == 2 and all("warp_correspondence" in it.losses for it in seen)

    @pytest.mark.parametrize("extra", [dict(preserve_color="luminance"), dict(preserve_color="histogram"),
                                       dict(style_blend=(0.7, 0.3))])
    def test_warp_with_other_options(self, vgg, images, extra):
        s = Stylizer(make_cfg(size=64, min_size=32, steps=1, coarse_steps=1, warp="affine", **extra),
                     pretrained=False)
        s.vgg = vgg
        content = blobs(96)
        styles = [rotated(content, 8.0), images.checker(64, 64)][: 2 if "style_blend" in extra else 1]
        r = s.run_detailed(content, styles)
        assert r.image.shape == (1, 3, 64, 64) and torch.isfinite(r.image).all()
        assert r.geometry is not None

    def test_refused_warp_is_the_plain_run(self, vgg, images, caplog):
        """No shared layout: one warning line, and the result is the run without a warp."""
        kw = dict(size=64, min_size=32, steps=1, coarse_steps=1)
        content, style = blobs(96), images.checker(96, 96)
        s = Stylizer(make_cfg(warp="tps", **kw), pretrained=False)
        s.vgg = vgg
        with caplog.at_level(logging.WARNING, logger="warpaint"):
            r = s.run_detailed(content, [style])
        assert r.geometry is not None and not r.geometry.applied
        warnings = [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "not applied" in warnings[0].getMessage()
        assert "\n" not in warnings[0].getMessage()
        plain = Stylizer(make_cfg(**kw), pretrained=False)
        plain.vgg = vgg
        assert torch.equal(r.image, r.unwarped)
        assert torch.equal(r.image, plain.run(content, [style]))
        d = r.geometry.describe((64, 64))
        assert d["applied"] is False and d["reason"] == r.geometry.reason

    def test_low_confidence_scales_and_force_does_not(self, vgg, caplog, monkeypatch):
        """Two unrelated smooth-noise images (confidence 0.04), with thresholds that put them in
        between: the strength is scaled down (with a warning); --warp-force applies the full
        strength."""
        from warpaint.stn import geostyle

        monkeypatch.setattr(geostyle, "REFUSE_BELOW", -0.2)
        monkeypatch.setattr(geostyle, "FULL_FROM", 0.3)
        content, style = blobs(96), blobs(96, seed=3)
        runs = {}
        for force in (False, True):
            cfg = make_cfg(size=64, min_size=32, steps=1, coarse_steps=1, warp="tps", warp_force=force)
            s = Stylizer(cfg, pretrained=False)
            s.vgg = vgg
            runs[force] = s.run_detailed(content, [style])
            assert runs[force].geometry.applied
            assert runs[force].geometry.warp.min_jacobian((64, 64)) >= MIN_JACOBIAN
        assert geostyle.REFUSE_BELOW <= runs[False].geometry.confidence.value < geostyle.FULL_FROM
        assert 0 < runs[False].geometry.strength < 0.5 and "strength scaled" in caplog.text
        assert runs[True].geometry.strength == 0.5
        assert not torch.equal(runs[True].image, runs[True].unwarped)

    def test_unrelated_smooth_noise_is_refused(self, vgg):
        """Two smooth-noise images: their consensus (0.26) is what the style upside down gives
        as well (0.22), so the confidence is below the threshold (it was 0.10 to 0.16, in the
        scaling band, with the re-paired null alone)."""
        from warpaint.stn.geostyle import estimate_warp

        geo = estimate_warp(vgg, blobs(96), blobs(96, seed=3), "tps")
        c = geo.confidence
        assert c.upside_down is not None and c.upside_down > c.null
        assert c.value == pytest.approx(c.consensus - c.upside_down, abs=1e-6)
        assert c.value < REFUSE_BELOW < FULL_FROM and not geo.applied

    def test_fold_bound_after_joint_optimization(self, vgg_random, images, monkeypatch):
        """A warp optimizer that overshoots (learning rate 0.3, no fold term) still ends with
        a minimum Jacobian of at least the bound: the engine stiffens after optimizing."""
        engine = importlib.import_module("warpaint.stylize")   # (warpaint.stylize is also a function)
        monkeypatch.setattr(engine, "WARP_LR", 0.3)
        monkeypatch.setitem(engine.WARP_WEIGHTS, "fold", 0.0)
        content = images.content(64, 64)
        s = Stylizer(make_cfg(size=64, steps=4, warp="tps", warp_force=True, warp_strength=1.0),
                     pretrained=False)
        s.vgg = vgg_random
        r = s.run_detailed(content, [rotated(content, 10.0)])
        assert r.geometry.warp.min_jacobian((64, 64)) >= MIN_JACOBIAN
        assert r.geometry.describe((64, 64))["min_jacobian"] >= MIN_JACOBIAN

    def test_regions_fit_small_feature_maps(self, vgg_random, images):
        """8 x 8 regions at 32 px: relu5_1 maps are 1 x 2, so fewer regions there, no NaN."""
        s = Stylizer(make_cfg(size=32, steps=2, style_regions=8), pretrained=False)
        s.vgg = vgg_random
        seen = []
        s.run(images.content(32, 48), [images.stripes(32, 64)], callback=seen.append)
        assert all(torch.isfinite(torch.tensor(it.losses["total"])) for it in seen)

    @pytest.mark.parametrize("kw, match", [
        (dict(warp="bend"), "warp"), (dict(warp_strength=1.5), "warp_strength"),
        (dict(warp_grid=2), "warp_grid"), (dict(style_regions=9), "style_regions"),
        (dict(align_style="x"), "align_style"), (dict(warp="tps", align_style="affine"), "not both")])
    def test_bad_options(self, kw, match):
        with pytest.raises(InputError, match=match):
            make_cfg(**kw)


class TestCLI:
    def test_save_warp_and_json(self, capsys, image_files, tmp_path):
        out, warp_dir = tmp_path / "out.png", tmp_path / "warp"
        rc = main([
            "stylize", str(image_files["content"]), str(image_files["content"]), "-o", str(out),
            "--size", "64", "--min-size", "32", "--steps", "1", "--coarse-steps", "2", "-q",
            "--device", "cpu", "--warp", "tps", "--save-warp", str(warp_dir), "--json"])
        captured = capsys.readouterr()
        assert rc == 0, captured.err
        d = json.loads(captured.out)
        assert d["warp"]["kind"] == "tps"
        assert {"mean_displacement_px", "max_displacement_px", "min_jacobian"} <= set(d["warp"])
        assert sorted(p.name for p in warp_dir.iterdir()) == [
            "compare.png", "displacement.png", "grid.png", "matches.png"]
        for p in warp_dir.iterdir():
            with Image.open(p) as im:
                assert im.format == "PNG" and im.width > 300

    def test_affine_json_fields(self, capsys, image_files, tmp_path):
        rc = main(["stylize", str(image_files["content"]), str(image_files["content"]), "-o",
                   str(tmp_path / "o.png"), "--size", "64", "--min-size", "32", "--steps", "1",
                   "--coarse-steps", "1", "-q", "--device", "cpu", "--warp", "affine", "--json"])
        captured = capsys.readouterr()
        assert rc == 0, captured.err
        w = json.loads(captured.out)["warp"]
        assert {"rotation_deg", "scale_x", "scale_y", "translation_x_px", "translation_y_px"} <= set(w)

    def test_refused_warp_json(self, capsys, caplog, tmp_path):
        from conftest import make_checker

        from warpaint.io import tensor_to_pil

        paths = [tmp_path / "blobs.png", tmp_path / "checker.png"]
        tensor_to_pil(blobs(96)).save(paths[0])
        tensor_to_pil(make_checker(96, 96)).save(paths[1])
        rc = main(["stylize", *map(str, paths), "-o", str(tmp_path / "o.png"), "--size", "64", "--steps", "1",
                   "--coarse-steps", "1", "-q", "--device", "cpu", "--warp", "tps", "--json"])
        captured = capsys.readouterr()
        assert rc == 0, captured.err
        w = json.loads(captured.out)["warp"]
        assert w["applied"] is False and w["reason"] and w["confidence"]["value"] < 0.1
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(said) == 1 and said[0].startswith("--warp") and "not applied" in said[0]

    def test_warp_force_needs_warp(self):
        with pytest.raises(InputError, match="warp_force"):
            make_cfg(warp_force=True)

    def test_save_warp_needs_warp(self, capsys, image_files, tmp_path):
        rc = main(["stylize", str(image_files["content"]), str(image_files["style"]), "-o",
                   str(tmp_path / "o.png"), "--save-warp", str(tmp_path / "w"), "-q"])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and "--save-warp needs --warp" in err
