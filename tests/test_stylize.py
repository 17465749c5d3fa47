"""Tests of warpaint.stylize (the engine) and the Python API ``warpaint.stylize``.

Runs are tiny (32-64 px, a few steps) on the real bundled weights, on the CPU in float32.
The options that decide whether a run works are passed explicitly, so that tuning the
defaults of :class:`StylizeConfig` does not break these tests.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image

import warpaint
from warpaint.errors import InputError
from warpaint.io import resize, save_image
from warpaint.score import score
from warpaint.stylize import Iterate, StylizeConfig, Stylizer

#: The options the assertions below depend on, fixed here rather than taken from the defaults.
BASE = dict(device="cpu", dtype="float32", content_weight=1.0, style_weight=20.0, tv_weight=0.0,
            optimizer="lbfgs", lr=0.0, pooling="max", init="content", style_scale=1.0,
            preserve_color="none", style_blend=(), style_layer_weights=(), seed=0)


def make_cfg(**kw) -> StylizeConfig:
    opts = {**BASE, "coarse_steps": 0, **kw}
    opts.setdefault("min_size", opts.get("size", 64))
    return StylizeConfig(**opts)


def run(content, styles, callback=None, **kw) -> torch.Tensor:
    return Stylizer(make_cfg(**kw)).run(content, styles, callback=callback)


class TestStylizeConfig:
    def test_a_style_scaled_too_small_is_refused_before_work(self):
        """relu5_1 needs 16 px a side: a wide style at a small style_scale would fail deep in VGG."""
        s = Stylizer(make_cfg(size=64, style_scale=0.25), pretrained=False)
        with pytest.raises(InputError, match=r"style_scale 0.25 makes style image 2 .* 16 px a side"):
            s.plans((48, 64), [(64, 64), (30, 120)])
        assert len(s.plans((48, 64), [(64, 64), (120, 120)])) == 1

    def test_defaults_are_valid(self):
        cfg = StylizeConfig()  # validates itself
        scales = cfg.scales((480, 640))
        assert max(scales[-1]) == cfg.size
        assert [max(s) for s in scales] == sorted(max(s) for s in scales)
        assert all(cfg.steps_at(i, len(scales), max(hw)) >= 0 for i, hw in enumerate(scales))

    def test_frozen(self):
        with pytest.raises(dataclasses.FrozenInstanceError):
            StylizeConfig().size = 10  # type: ignore[misc]

    def test_plain_types(self):
        """Fields hold plain types only (they go into weights_only checkpoints and JSON)."""
        for f in dataclasses.fields(StylizeConfig):
            v = getattr(StylizeConfig(), f.name)
            assert isinstance(v, (str, int, float, tuple)), f.name
            assert "help" in f.metadata, f.name

    def test_scales_coarse_to_fine(self):
        cfg = StylizeConfig(size=512, min_size=128)
        assert cfg.scales((768, 1024)) == [(96, 128), (192, 256), (384, 512)]
        assert cfg.scales((1024, 768)) == [(128, 96), (256, 192), (512, 384)]

    @pytest.mark.parametrize("size, min_size, longs", [(512, 512, [512]), (512, 1000, [512]),
                                                       (512, 256, [256, 512]), (64, 32, [32, 64]),
                                                       (400, 100, [100, 200, 400])])
    def test_scales_long_sides(self, size, min_size, longs):
        scales = StylizeConfig(size=size, min_size=min_size).scales((1000, 1000))
        assert [max(s) for s in scales] == longs

    def test_scales_drop_coarse_scales_too_small(self):
        """A wide image's coarse scales would be thinner than relu5_1 needs: dropped."""
        scales = StylizeConfig(size=512, min_size=128).scales((100, 1000))
        assert scales[-1] == (51, 512)
        assert all(min(s) >= 32 for s in scales[:-1])
        assert len(scales) < 3

    def test_steps_at(self):
        cfg = StylizeConfig(steps=7, coarse_steps=3)
        assert [cfg.steps_at(i, 3, 128 * 2**i) for i in range(3)] == [3, 3, 7]

    def test_detail_steps(self):
        """``detail_steps`` replaces the count at scales over DETAIL_FROM only, final included;
        -1 leaves every scale as it was."""
        from warpaint.stylize import DETAIL_FROM

        sides = (DETAIL_FROM // 2, DETAIL_FROM, 2 * DETAIL_FROM)
        cfg = StylizeConfig(size=2 * DETAIL_FROM, steps=7, coarse_steps=5, detail_steps=2)
        assert [cfg.steps_at(i, 3, s) for i, s in enumerate(sides)] == [5, 5, 2]
        cfg = StylizeConfig(size=4 * DETAIL_FROM, steps=7, detail_steps=2)
        sides = (DETAIL_FROM, 2 * DETAIL_FROM, 4 * DETAIL_FROM)
        assert [cfg.steps_at(i, 3, s) for i, s in enumerate(sides)] == [14, 2, 2]
        sides = (DETAIL_FROM // 2, DETAIL_FROM, 2 * DETAIL_FROM)
        plain = StylizeConfig(size=2 * DETAIL_FROM, steps=7, coarse_steps=5)
        assert [plain.steps_at(i, 3, s) for i, s in enumerate(sides)] == [5, 5, 7]
        with pytest.raises(InputError):
            StylizeConfig(detail_steps=-2)

    def test_string_lists(self):
        """Comma-separated strings (as from the CLI or a web form) are parsed."""
        from warpaint.errors import comma_floats, comma_names

        assert comma_names("relu1_1,relu2_1,") == ("relu1_1", "relu2_1")
        assert comma_floats("1,0.5") == (1.0, 0.5)

    @pytest.mark.parametrize("kw, match", [
        ({"content_weight": -1.0}, "content_weight"),
        ({"style_weight": -0.1}, "style_weight"),
        ({"tv_weight": -1.0}, "tv_weight"),
        ({"style_weight": float("nan")}, "style_weight must be a finite number"),
        ({"content_weight": float("nan")}, "content_weight must be a finite"),
        ({"tv_weight": float("inf")}, "tv_weight must be a finite"),
        ({"style_blend": (float("nan"),)}, "style_blend must be a finite"),
        ({"style_blend": (-1.0,)}, "style_blend must be >= 0"),
        ({"style_layer_weights": (float("nan"), 1.0, 1.0, 1.0, 1.0)}, "style_layer_weights must be a finite"),
        ({"style_scale": float("inf")}, "style_scale"),
        ({"style_scale": float("nan")}, "style_scale"),
        ({"lr": 1e9}, "lr must be <= 10"),
        ({"lr": float("nan")}, "lr must be a finite"),
        ({"seed": 99999999999999999999999}, "seed must be <="),
        ({"seed": -1}, "seed must be >= 0"),
        ({"size": 100_000}, "size must be <="),
        ({"warp_grid": 400}, "warp_grid must be <= 32"),
        ({"warp_strength": float("nan")}, "warp_strength"),
        ({"max_memory": -1.0}, "max_memory"),
        ({"device": "meta"}, "unknown device 'meta'"),
        ({"size": 64.5}, "size must be an integer"),
        ({"style_layers": ("relu1_1", "relu9_1")}, "relu9_1"),
        ({"content_layers": ("conv4_9",)}, "conv4_9"),
        ({"content_layers": ()}, "content layer"),
        ({"style_layers": ()}, "style layer"),
        ({"style_layer_weights": (1.0, 2.0)}, "2 style layer weights for 5"),
        ({"style_layer_weights": (1.0, 1.0, 1.0, 1.0, -1.0)}, ">= 0"),
        ({"style_layer_weights": (0.0, 0.0, 0.0, 0.0, 0.0)}, "positive sum"),
        ({"size": 8}, "size"),
        ({"min_size": 0}, "min_size"),
        ({"steps": -1}, "steps"),
        ({"coarse_steps": -5}, "steps"),
        ({"style_scale": 0.0}, "style_scale"),
        ({"lr": -0.1}, "lr"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"pooling": "median"}, "pooling"),
        ({"preserve_color": "yes"}, "preserve_color"),
        ({"dtype": "float16"}, "dtype"),
    ])
    def test_exception(self, kw, match):
        with pytest.raises(InputError, match=match):
            StylizeConfig(**kw)

    def test_input_error_is_value_error(self):
        with pytest.raises(ValueError):
            StylizeConfig(style_weight=-1.0)


class TestStylizerRun:
    def test_lowers_style_distance(self, vgg, content_image, style_image):
        out = run(content_image, [style_image], size=64, steps=12)
        before = score(content_image, style_image, content_image, size=64, vgg=vgg)
        after = score(content_image, style_image, out, size=64, vgg=vgg)
        assert after.style < 0.5 * before.style
        assert 0.0 < after.content < 2.0  # it moved away from the content, but not wildly

    def test_adam_lowers_the_loss(self, vgg, content_image, style_image):
        losses = []
        out = run(content_image, [style_image], callback=lambda it: losses.append(it.losses["total"]),
                  size=64, steps=15, optimizer="adam")
        assert len(losses) == 15
        assert losses[-1] < 0.7 * losses[0]
        before = score(content_image, style_image, content_image, size=64, vgg=vgg)
        assert score(content_image, style_image, out, size=64, vgg=vgg).style < before.style

    def test_lbfgs_loss_decreases(self, content_image, style_image):
        losses = []
        run(content_image, [style_image], callback=lambda it: losses.append(it.losses), size=32, steps=6)
        totals = [h["total"] for h in losses]
        assert totals[-1] < totals[0]
        assert set(losses[0]) == {"content", "style", "total"}
        assert losses[0]["content"] == 0.0  # the first step is evaluated at the content image

    def test_output_contract(self, content_image, style_image):
        out = run(content_image, [style_image], size=32, steps=2)
        assert out.shape == (1, 3, 24, 32)  # 64x48 content: long side 32, aspect kept
        assert out.dtype == torch.float32 and out.device.type == "cpu"
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert not out.requires_grad

    def test_portrait_and_upscale(self, images, style_image):
        out = run(images.content(64, 40), [style_image], size=80, steps=1)
        assert out.shape == (1, 3, 80, 50)

    @pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
    def test_channels_last_content_at_its_own_size(self, content_image, style_image, optimizer):
        """A loaded image has channels-last strides; used at its own size it is not resized."""
        content = content_image.contiguous(memory_format=torch.channels_last)
        assert not content.is_contiguous()
        out = run(content, [style_image], size=64, steps=2, optimizer=optimizer)
        assert out.shape == (1, 3, 48, 64)

    def test_does_not_mutate_inputs(self, content_image, style_image):
        c0, s0 = content_image.clone(), style_image.clone()
        run(content_image, [style_image], size=32, steps=2)
        assert torch.equal(content_image, c0) and torch.equal(style_image, s0)

    def test_seeded_noise_init_reproducible(self, content_image, style_image):
        a = run(content_image, [style_image], size=32, steps=3, init="noise", seed=1)
        b = run(content_image, [style_image], size=32, steps=3, init="noise", seed=1)
        c = run(content_image, [style_image], size=32, steps=3, init="noise", seed=2)
        assert torch.equal(a, b)
        assert (a - c).abs().max() > 0.05

    def test_stylizer_is_reusable(self, content_image, style_image):
        s = Stylizer(make_cfg(size=32, steps=2))
        assert torch.equal(s.run(content_image, [style_image]), s.run(content_image, [style_image]))

    def test_uses_logging_not_print(self, capsys, content_image, style_image):
        run(content_image, [style_image], size=32, steps=1)
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err == ""


class TestInit:
    """With zero steps the result is the start image itself, resized."""

    def test_content(self, content_image, style_image):
        out = run(content_image, [style_image], size=32, steps=0)
        torch.testing.assert_close(out, resize(content_image, (24, 32)))

    def test_style(self, content_image, style_image):
        out = run(content_image, [style_image], size=32, steps=0, init="style")
        torch.testing.assert_close(out, resize(style_image, (24, 32)))

    def test_noise(self, content_image, style_image):
        out = run(content_image, [style_image], size=32, steps=0, init="noise", seed=3)
        expected = torch.rand((1, 3, 24, 32), generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(out, expected)
        assert out.std() > 0.2  # uniform noise, not the content

    def test_file(self, tmp_path, content_image, style_image, images):
        """The engine reads no file: the caller (the job layer) passes the start image."""
        from warpaint.jobs import read_init

        start = images.checker(48, 64)
        save_image(start, tmp_path / "start.png")
        cfg = make_cfg(size=32, steps=0, init=str(tmp_path / "start.png"))
        out = Stylizer(cfg).run(content_image, [style_image], init=read_init(cfg))
        torch.testing.assert_close(out, resize(start, (24, 32)), atol=1 / 255, rtol=0)
        with pytest.raises(InputError, match="reads no files"):
            Stylizer(cfg).run(content_image, [style_image])

    def test_file_through_the_api(self, tmp_path, content_image, style_image, images):
        import warpaint

        save_image(images.checker(48, 64), tmp_path / "start.png")
        out = warpaint.stylize(content_image, style_image, size=32, min_size=32, steps=0, device="cpu",
                               init=str(tmp_path / "start.png"))
        assert out.size == (32, 24)

    def test_missing_file(self, tmp_path, content_image, style_image):
        from warpaint.jobs import read_init

        with pytest.raises(InputError, match="nope.png"):
            read_init(make_cfg(size=32, steps=1, init=str(tmp_path / "nope.png")))

    @pytest.mark.parametrize("init", ["noise", "style"])
    def test_runs_from_other_inits(self, content_image, style_image, init):
        losses = []
        out = run(content_image, [style_image], callback=lambda it: losses.append(it.losses["total"]),
                  size=32, steps=4, init=init)
        assert out.shape == (1, 3, 24, 32)
        assert losses[-1] < losses[0]


@pytest.fixture(scope="module")
def blends(images) -> dict:
    """Runs with single styles and with blends of two, shared by TestBlend."""
    c, a, b = images.content(), images.stripes(), images.checker()
    kw = dict(size=64, steps=8)
    out = {"content": c, "A": a, "B": b,
           "single_A": run(c, [a], **kw), "single_B": run(c, [b], **kw)}
    for blend in [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)]:
        out[blend] = run(c, [a, b], style_blend=blend, **kw)
    return out


class TestBlend:

    def test_one_hot_equals_single_style(self, blends):
        assert torch.equal(blends[(1.0, 0.0)], blends["single_A"])
        assert torch.equal(blends[(0.0, 1.0)], blends["single_B"])
        assert not torch.equal(blends["single_A"], blends["single_B"])

    def test_even_blend_is_between(self, vgg, blends):
        c = blends["content"]

        def dist(out, style):
            return score(c, style, out, size=64, vgg=vgg).style

        a_only, b_only, mix = blends[(1.0, 0.0)], blends[(0.0, 1.0)], blends[(1.0, 1.0)]
        assert dist(a_only, blends["A"]) < dist(mix, blends["A"]) < dist(b_only, blends["A"])
        assert dist(b_only, blends["B"]) < dist(mix, blends["B"]) < dist(a_only, blends["B"])

    def test_exception(self, content_image, style_image):
        s = Stylizer(make_cfg(size=32, steps=1, style_blend=(1.0, 2.0, 3.0)))
        with pytest.raises(InputError, match="3 style blend weights for 2"):
            s.run(content_image, [style_image, style_image])


class TestCallback:
    def test_iterates(self, images, style_image):
        seen: list[Iterate] = []
        content = images.content(64, 64)
        cfg = make_cfg(size=64, min_size=32, steps=3, coarse_steps=2)
        assert cfg.scales((64, 64)) == [(32, 32), (64, 64)]
        out = Stylizer(cfg).run(content, [style_image], callback=seen.append)
        assert all(isinstance(it, Iterate) for it in seen)
        assert [it.done for it in seen] == [1, 2, 3, 4, 5]
        assert all(it.total == 2 + 3 for it in seen)
        assert [(it.scale, it.step, it.steps) for it in seen] == [(0, 1, 2), (0, 2, 2), (1, 1, 3),
                                                                   (1, 2, 3), (1, 3, 3)]
        assert all(it.scales == 2 for it in seen)
        for it in seen:
            assert it.image.shape == (1, 3, *it.size)
            assert not it.image.requires_grad
            assert set(it.losses) == {"content", "style", "total"}
            assert all(isinstance(v, float) for v in it.losses.values())
        assert seen[0].size == (32, 32) and seen[-1].size == (64, 64)
        assert seen[-1].image.shape == out.shape
        torch.testing.assert_close(seen[-1].image.cpu(), out)
        with pytest.raises(dataclasses.FrozenInstanceError):
            seen[0].step = 9  # type: ignore[misc]

    def test_final_losses_are_those_of_the_result(self, images, style_image):
        """Each step reports the losses it saw before its update; ``final_losses`` are those of
        the pixels returned: a run started from them sees them at its first step."""
        content = images.content(48, 48)
        cfg = make_cfg(size=48, min_size=48, steps=2, coarse_steps=0)
        stylizer = Stylizer(cfg)
        seen: list[dict] = []
        r = stylizer.run_detailed(content, [style_image], callback=lambda it: seen.append(it.losses))
        assert r.final_losses is not None and set(r.final_losses) == set(seen[-1])
        assert r.final_losses["total"] != seen[-1]["total"]
        again = Stylizer(dataclasses.replace(cfg, steps=1, init="start.png"))
        first: list[dict] = []
        again.run_detailed(content, [style_image], init=r.unwarped,
                           callback=lambda it: first.append(it.losses))
        assert first[0] == pytest.approx(r.final_losses, rel=1e-4)

    def test_callback_images_are_snapshots(self, content_image, style_image):
        """A (frozen) Iterate's image must not change later, as the optimization goes on."""
        seen = []
        run(content_image, [style_image], callback=lambda it: seen.append((it.image, it.image.clone())),
            size=32, steps=3)
        for kept, copy_at_the_time in seen:
            assert torch.equal(kept, copy_at_the_time)
        assert not torch.equal(seen[0][0], seen[-1][0])  # the image did change between steps

    def test_interrupt_from_callback(self, content_image, style_image):
        calls = []

        def stop(it):
            calls.append(it.done)
            if it.done == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run(content_image, [style_image], callback=stop, size=32, steps=10)
        assert calls == [1, 2]


class TestLosses:
    def test_layer_weights(self, vgg_random):
        """Per-layer weights (1, 0) equal using the first layer alone."""
        image, content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)

        def losses(**kw):
            s = Stylizer(make_cfg(size=32, **kw), pretrained=False)
            s.vgg = vgg_random
            ct, st = s._targets(content, [style], [1.0], (32, 32))
            return s.losses(image, ct, st)

        one = losses(style_layers=("relu2_1",))
        weighted = losses(style_layers=("relu2_1", "relu3_1"), style_layer_weights=(2.0, 0.0))
        equal = losses(style_layers=("relu2_1", "relu3_1"))
        torch.testing.assert_close(weighted["style"], one["style"])
        assert not torch.allclose(equal["style"], one["style"])

    def test_weights_scale_terms(self, vgg_random):
        image, content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
        out = {}
        for cw, sw in [(1.0, 1.0), (3.0, 5.0)]:
            s = Stylizer(make_cfg(size=32, content_weight=cw, style_weight=sw), pretrained=False)
            s.vgg = vgg_random
            ct, st = s._targets(content, [style], [1.0], (32, 32))
            out[cw] = s.losses(image, ct, st)
        torch.testing.assert_close(out[3.0]["content"], 3.0 * out[1.0]["content"])
        torch.testing.assert_close(out[3.0]["style"], 5.0 * out[1.0]["style"])


class TestRunExceptions:
    def test_extreme_aspect(self, style_image):
        content = torch.rand(1, 3, 10, 2000)  # 2000 x 10 px
        with pytest.raises(InputError, match="aspect"):
            run(content, [style_image], size=64, steps=1)

    def test_no_style(self, content_image):
        with pytest.raises(InputError, match="style"):
            run(content_image, [], size=32, steps=1)

    def test_batch_content(self, style_image):
        with pytest.raises(InputError, match="single image"):
            run(torch.rand(2, 3, 32, 32), [style_image], size=32, steps=1)

    def test_bad_tensors(self, content_image, style_image):
        with pytest.raises(ValueError):
            run(content_image[0], [style_image], size=32, steps=1)
        with pytest.raises(ValueError):
            run(content_image, [style_image[:, :2]], size=32, steps=1)


class TestApi:
    def test_stylize_returns_pil(self, tmp_path, image_files):
        im = warpaint.stylize(str(image_files["content"]), image_files["style"], size=32, min_size=32,
                              steps=1, coarse_steps=0, device="cpu")
        assert isinstance(im, Image.Image) and im.mode == "RGB" and im.size == (32, 24)

    def test_inputs_of_every_kind(self, content_image, style_image):
        from warpaint.io import tensor_to_pil

        im = warpaint.stylize(tensor_to_pil(content_image), [style_image[0], style_image], size=32,
                              min_size=32, steps=1, coarse_steps=0, device="cpu")
        assert im.size == (32, 24)

    def test_original_size(self, content_image, style_image):
        im = warpaint.stylize(content_image, style_image, original_size=True, size=32, min_size=32,
                              steps=1, coarse_steps=0, device="cpu")
        assert im.size == (64, 48)

    def test_unknown_option(self, content_image, style_image):
        with pytest.raises(InputError, match="stepz"):
            warpaint.stylize(content_image, style_image, stepz=3)

    def test_bad_device(self, content_image, style_image):
        with pytest.raises(InputError, match="device"):
            warpaint.stylize(content_image, style_image, size=32, min_size=32, steps=1, coarse_steps=0,
                             device="no-such-device")
