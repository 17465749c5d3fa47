"""Feed-forward style transfer: networks, style codes, strength, training, resume, the
shipped model and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from warpaint.cli import main
from warpaint.errors import InputError
from warpaint.feedforward import build, load, shipped_model_path
from warpaint.feedforward.nets import StyleEncoder, TransformerNet, upsample_conv
from warpaint.feedforward.train import TrainConfig, code_inputs, from_checkpoint, losses, style_targets, train
from warpaint.io import (
    pil_to_pixels,
    pil_to_tensor,
    resize,
    resize_long_side,
    resize_pil,
    save_image,
    tensor_to_pil,
)
from warpaint.vgg import VGGFeatures


@pytest.fixture(scope="module")
def vgg():
    return VGGFeatures()


def _smooth(seed: int, h: int = 48, w: int = 64) -> torch.Tensor:
    """A smooth random picture (1, 3, H, W)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, 4, 5, generator=g)
    big = torch.nn.functional.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)
    return big.clamp(0, 1)


class TestNets:
    @pytest.mark.parametrize("hw", [(17, 33), (37, 53), (64, 64), (90, 41)])
    def test_any_size(self, hw):
        x = torch.rand(2, 3, *hw)
        net = TransformerNet(8, width=4, blocks=1).eval()
        y = net(x, torch.randn(2, 8))
        assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
        single = TransformerNet(0, width=4, blocks=1).eval()
        assert single(x).shape == x.shape

    def test_conditioning_matters(self):
        net = TransformerNet(8, width=4, blocks=1).eval()
        for p in net.parameters():           # leave the identity start
            torch.nn.init.normal_(p, std=0.3)
        x = torch.rand(1, 3, 32, 32)
        assert not torch.allclose(net(x, torch.zeros(1, 8)), net(x, torch.ones(1, 8)), atol=1e-3)
        with pytest.raises(ValueError):
            net(x)

    @pytest.mark.parametrize("code_dim", [8, 0])
    def test_one_image_path_matches_the_batch_path(self, code_dim):
        """A single image runs channels-last with batch-norm kernels; a batch runs instance
        norm. Both must compute the same function."""
        net = TransformerNet(code_dim, width=4, blocks=1).eval()
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.3)
        x, code = torch.rand(3, 3, 21, 30), torch.randn(3, code_dim) if code_dim else None
        with torch.no_grad():
            batch = net(x, code)
            one = torch.cat([net(x[i:i + 1], None if code is None else code[i:i + 1]) for i in range(3)])
        assert one.is_contiguous() and torch.allclose(one, batch, atol=1e-5)
        assert (batch - batch.mean()).abs().max() > 0.05       # not a constant picture

    def test_upsample_conv_equals_upsampling_then_convolving(self):
        conv = torch.nn.Conv2d(5, 3, 3, padding=1, padding_mode="reflect")
        x = torch.randn(2, 5, 7, 4, requires_grad=True)
        ref = conv(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
        out = upsample_conv(x, conv)
        assert out.shape == (2, 3, 14, 8) and torch.allclose(out, ref, atol=1e-5)
        g_ref, = torch.autograd.grad(ref.square().sum(), conv.weight)
        g, = torch.autograd.grad(out.square().sum(), conv.weight)
        assert torch.allclose(g, g_ref, rtol=1e-4, atol=1e-4)
        with pytest.raises(ValueError, match="3x3"):
            upsample_conv(x, torch.nn.Conv2d(5, 3, 3, padding=1))          # zero padding: not folded

    @pytest.mark.parametrize("batch", [1, 2])
    def test_upsample_conv_by_phases_in_channels_last(self, batch):
        """Channels-last input (what one image runs in) takes the 2x2-phase path; same numbers."""
        conv = torch.nn.Conv2d(6, 4, 3, padding=1, padding_mode="reflect")
        x = torch.randn(batch, 6, 5, 9).contiguous(memory_format=torch.channels_last)
        ref = conv(torch.nn.functional.interpolate(x.contiguous(), scale_factor=2, mode="nearest"))
        out = upsample_conv(x, conv)
        assert out.shape == (batch, 4, 10, 18) and out.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)

    @pytest.mark.parametrize("hw", [(21, 30), (40, 24)])
    def test_last_stage_by_phases_equals_the_plain_one(self, hw):
        """One image without gradients runs the last stage on the four phases of the full-
        resolution map; it computes what the differentiable path computes."""
        torch.manual_seed(3)
        net = TransformerNet(8, width=4, blocks=1)
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.3)
        x, code = torch.rand(1, 3, *hw), torch.randn(1, 8)
        plain = net(x, code)                          # gradients on: the plain path
        with torch.no_grad():
            phases = net(x, code)
        assert plain.requires_grad and not phases.requires_grad and phases.is_contiguous()
        torch.testing.assert_close(phases, plain.detach(), atol=1e-5, rtol=1e-5)
        assert (phases - phases.mean()).abs().max() > 0.05

    def test_style_code_is_deterministic(self, vgg):
        model = build("arbitrary", code_dim=8, width=4, blocks=1)
        model.vgg = vgg
        a, b = _smooth(1), _smooth(2)
        assert torch.equal(model.style_code([a]), model.style_code([a]))
        assert not torch.allclose(model.style_code([a]), model.style_code([b]))
        mix = model.style_code([a, b], [1.0, 3.0])
        torch.testing.assert_close(mix, 0.25 * model.style_code([a]) + 0.75 * model.style_code([b]))

    def test_training_reads_styles_as_inference_does(self, vgg):
        """The code a style gets in training (whole image at code_size, no augmentation) is
        the code :meth:`style_code` gives it at inference (in float; the int8 reading is
        within about 2 %, tests/test_vgg_int8.py)."""
        model = build("arbitrary", code_dim=8, width=4, blocks=1)
        model.vgg, model.style_size, model.int8_style = vgg, 40, False
        style = _smooth(6, 50, 90)
        trained_view = model.encoder(code_inputs(vgg, [style[0]], 40)[0])
        torch.testing.assert_close(trained_view, model.style_code([style]))
        g = torch.Generator().manual_seed(0)
        augmented = code_inputs(vgg, [style[0]] * 2, 40, g)[0]
        again = code_inputs(vgg, [style[0]] * 2, 40, torch.Generator().manual_seed(0))[0]
        torch.testing.assert_close(augmented, again)                   # seeded
        assert not torch.allclose(augmented[0], augmented[1])          # two different crops

    def test_color_transfer_takes_the_style_palette(self, vgg):
        torch.manual_seed(0)
        model = build("arbitrary", code_dim=8, width=4, blocks=1)
        model.vgg, model.style_size, model.color_transfer = vgg, 48, True
        from warpaint.color import color_moments

        content, style = _smooth(7), 0.1 + 0.5 * _smooth(8) * torch.tensor([1.0, 0.6, 0.3])[:, None, None]
        code = model.style_code([style])
        assert code.shape == (1, 8 + 6)
        out = model.stylize(content, code=code)
        # the style's moments (as encoded, at style_size), up to a little clamping to [0, 1]
        torch.testing.assert_close(color_moments(out), code[:, 8:], atol=0.02, rtol=0)
        plain = model.net(content, code[:, :8])
        gap = (color_moments(out) - code[:, 8:]).abs().sum()
        assert gap < 0.2 * (color_moments(plain) - code[:, 8:]).abs().sum()

    def test_normalization_keeps_the_function(self):
        enc = StyleEncoder(4)
        stats = torch.rand(5, 1920) * 30
        before = enc(stats)
        enc.set_normalization(torch.rand(20, 1920) * 30)
        assert enc.center.abs().sum() > 0
        torch.testing.assert_close(enc(stats), before, atol=1e-4, rtol=1e-4)

    def test_encoder_sees_log_statistics(self):
        enc = StyleEncoder(4)
        assert enc(torch.rand(3, 1920)).shape == (3, 4)


class TestStrength:
    def test_single_style_strength_zero_is_the_content(self):
        model = build("single", width=4, blocks=1)
        x = _smooth(3)
        torch.testing.assert_close(model.stylize(x, strength=0.0), x)
        assert not torch.allclose(model.stylize(x, strength=1.0), x, atol=0.05)

    def test_bad_strength(self):
        from warpaint.errors import InputError

        with pytest.raises(InputError):
            build("single", width=4, blocks=1).stylize(_smooth(0), strength=1.5)


class TestTraining:
    def test_steps_lower_the_loss(self, vgg):
        torch.manual_seed(0)
        model = build("arbitrary", code_dim=8, width=8, blocks=1)
        content, style = _smooth(4, 48, 48), torch.rand(1, 3, 48, 48)
        cfg = TrainConfig(size=48, style_size=48)
        grams, stats = style_targets(vgg, style)
        params = [*model.net.parameters(), *model.encoder.parameters()]
        opt = torch.optim.Adam(params, lr=1e-2)
        values = []
        for _ in range(15):
            loss, _ = losses(vgg, model.net(content, model.encoder(stats)), content, grams, cfg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            values.append(float(loss.detach()))
        assert values[-1] < 0.7 * values[0], values

    def test_style_layer_weights(self, vgg):
        """The style term is the weighted mean of the layers' style losses: all the weight on
        one layer gives that layer's loss; equal weights give the plain mean."""
        from warpaint.losses import style_loss
        from warpaint.vgg import STYLE_LAYERS

        torch.manual_seed(0)
        content, style = _smooth(2, 48, 48), torch.rand(1, 3, 48, 48)
        out = content.flip(-1)
        grams, _ = style_targets(vgg, style)
        feats = vgg(out, STYLE_LAYERS)
        per_layer = [float(style_loss(feats[n], grams[n])) for n in STYLE_LAYERS]
        for weights, expected in (((), sum(per_layer) / len(per_layer)), ((0, 1, 0, 0, 0), per_layer[1]),
                                  ((1, 1, 1, 1, 1), sum(per_layer) / len(per_layer))):
            cfg = TrainConfig(size=48, style_size=48, content_weight=0.0, style_weight=1.0,
                              style_layer_weights=weights)
            assert losses(vgg, out, content, grams, cfg)[1]["style"] == pytest.approx(expected, rel=1e-4)
        assert len(set(per_layer)) == len(per_layer)        # the layers differ, so the weights matter

    def test_older_checkpoints_still_resume(self, tmp_path):
        """A checkpoint written before style_layer_weights existed (no such key) resumes a run
        with the default; a run with other weights does not take it."""
        from warpaint.feedforward.train import resume_key

        pool = [_smooth(i, 40, 44)[0] for i in range(3)]
        cfg = TrainConfig(steps=2, batch_size=2, size=32, style_size=32, code_dim=8, width=4, blocks=1)
        assert "style_layer_weights" not in resume_key(cfg)
        weighted = TrainConfig(**{**cfg.__dict__, "style_layer_weights": (2.0, 1, 1, 1, 1)})
        assert resume_key(weighted)["style_layer_weights"] == (2.0, 1, 1, 1, 1)
        ck = tmp_path / "m.pt.ckpt"
        train(cfg, pool, pool, checkpoint=ck, progress=False)
        saved = torch.load(ck, weights_only=True)
        assert "style_layer_weights" not in saved["config"]                   # as older checkpoints
        train(cfg, pool, pool, checkpoint=ck, progress=False)
        assert not list(tmp_path.glob("*.stale-*"))                            # taken: resumed
        train(weighted, pool, pool, checkpoint=ck, progress=False)
        assert list(tmp_path.glob("*.stale-*"))                                # another run's: set aside

    @pytest.mark.parametrize("weights, match", [((1, 2), "needs 5 weights"),
                                                 ((1, 1, 1, 1, -1), ">= 0"),
                                                 ((0, 0, 0, 0, 0), "positive sum"),
                                                 (1.5, "sequence of 5")])
    def test_bad_style_layer_weights(self, weights, match):
        from warpaint.errors import InputError

        with pytest.raises(InputError, match=match):
            TrainConfig(style_layer_weights=weights)

    def test_resume_gives_identical_losses(self, tmp_path, ctrl_c_at_step):
        pool = [_smooth(i, 40, 44)[0] for i in range(3)]
        cfg = TrainConfig(steps=4, batch_size=2, size=32, style_size=32, code_dim=8, width=4, blocks=1)
        _, full = train(cfg, pool, pool, progress=False)
        ck = tmp_path / "m.pt.ckpt"
        ctrl_c_at_step(2)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, pool, pool, checkpoint=ck, progress=False)
        assert from_checkpoint(ck).training["steps"] == 2
        _, resumed = train(cfg, pool, pool, checkpoint=ck, progress=False)
        expected = [h["total"] for h in full["history"]]
        assert [h["total"] for h in resumed["history"]] == pytest.approx(expected, rel=1e-5)

    def test_save_and_load_round_trip(self, tmp_path):
        model = build("arbitrary", code_dim=8, width=4, blocks=1)
        for p in model.net.parameters():
            torch.nn.init.normal_(p, std=0.1)
        model.save(tmp_path / "m.pt")
        back = load(tmp_path / "m.pt")
        x, code = torch.rand(1, 3, 24, 24), torch.randn(1, 8)
        torch.testing.assert_close(back.net(x, code), model.net.eval()(x, code), atol=5e-3, rtol=0)
        state = torch.load(tmp_path / "m.pt", weights_only=True)["state"]
        assert {v.dtype for part in state.values() for v in part.values()} == {torch.float16}

    @pytest.mark.parametrize("key, value, default, bad", [("style_size", 96, "STYLE_SIZE", 10**6),
                                                         ("detail", 0.75, 0.0, float("nan")),
                                                         ("fineness", 1.0, 0.0, 2.5)])
    def test_run_setting_is_stored_and_checked(self, tmp_path, key, value, default, bad):
        from warpaint.feedforward import model as model_module

        default = getattr(model_module, default) if isinstance(default, str) else default
        model = build("arbitrary", code_dim=8, width=4, blocks=1)
        setattr(model, key, value)
        model.save(tmp_path / "m.pt")
        assert getattr(load(tmp_path / "m.pt"), key) == value
        ck = torch.load(tmp_path / "m.pt", weights_only=True)
        ck[key] = bad
        torch.save(ck, tmp_path / "bad.pt")
        with pytest.raises(InputError, match=key):
            load(tmp_path / "bad.pt")
        del ck[key]                              # files written before it was stored
        torch.save(ck, tmp_path / "old.pt")
        assert getattr(load(tmp_path / "old.pt"), key) == default

    def test_init_starts_from_a_model(self, tmp_path):
        pool = [_smooth(i, 40, 44)[0] for i in range(3)]
        start = build("arbitrary", code_dim=8, width=4, blocks=1)
        for p in [*start.net.parameters(), *start.encoder.parameters()]:
            torch.nn.init.normal_(p, std=0.1)
        start.save(tmp_path / "start.pt")
        start = load(tmp_path / "start.pt")
        cfg = TrainConfig(steps=1, batch_size=2, size=32, style_size=32, code_dim=8, width=4, blocks=1,
                          lr=1e-7, code_size=32, init=str(tmp_path / "start.pt"))
        model, _ = train(cfg, pool, pool, progress=False)
        for a, b in zip(model.net.state_dict().values(), start.net.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
        assert model.style_size == 32
        from warpaint.errors import InputError

        build("single", width=4, blocks=1).save(tmp_path / "single.pt")
        with pytest.raises(InputError, match="single-style model cannot start"):
            wrong = TrainConfig(**{**cfg.__dict__, "init": str(tmp_path / "single.pt")})
            train(wrong, pool, pool, progress=False)


class TestShippedModel:
    def test_loads_and_runs_at_64px(self):
        assert shipped_model_path().is_file()
        model = load()
        assert model.kind == "arbitrary"
        content, style = _smooth(5, 48, 64), torch.rand(1, 3, 64, 64)
        kept = content.clone(), style.clone()
        out = model.stylize(content, [style])
        assert out.shape == content.shape and torch.isfinite(out).all()
        assert torch.equal(content, kept[0]) and torch.equal(style, kept[1])   # in-place work on its own
        assert not torch.allclose(out, content, atol=0.02)
        # strength 0 is the content; in between, closer to it than the full style
        torch.testing.assert_close(model.stylize(content, [style], strength=0.0), content)
        half = model.stylize(content, [style], strength=0.5)
        assert 0.01 < (half - content).abs().mean() < (out - content).abs().mean()

    def test_pillow_path_matches_the_tensor_path(self):
        model = load()
        content, style = tensor_to_pil(_smooth(6, 90, 120)), tensor_to_pil(_smooth(7, 80, 100))
        out = model.stylize_image(content, [style], size=160, work_size=64)
        assert out.size == (160, 120) and out.mode == "RGB"
        ref = model.stylize(resize(pil_to_tensor(content), (120, 160)), [pil_to_tensor(style)], work_size=64)
        diff = (pil_to_tensor(out) - ref).abs()
        assert diff.mean() < 1.5 / 255 and diff.max() < 0.1         # the same picture, 8-bit resizes
        assert (pil_to_tensor(out) - pil_to_tensor(resize_pil(content, (120, 160)))).abs().mean() > 0.02
        same = model.stylize_image(content, [style], strength=0.0)   # full-resolution blend path
        assert same.size == content.size
        assert (pil_to_tensor(same) - pil_to_tensor(content)).abs().max() <= 1 / 255


class TestCLI:
    @pytest.fixture()
    def folders(self, tmp_path):
        for i in range(3):
            (tmp_path / "c").mkdir(exist_ok=True)
            (tmp_path / "s").mkdir(exist_ok=True)
            save_image(_smooth(i, 60, 80), tmp_path / "c" / f"c{i}.png")
            save_image(torch.rand(1, 3, 70, 50), tmp_path / "s" / f"s{i}.jpg")
        return tmp_path

    def test_train_and_use(self, folders, capsys):
        t = folders
        common = ["--content-dir", str(t / "c"), "--steps", "2", "--batch-size", "2", "--size", "32",
                  "--style-size", "32", "-q", "--device", "cpu"]
        assert main(["train", *common, "--style-dir", str(t / "s"), "-o", str(t / "any.pt"),
                     "--sample-every", "1", "--work-size", "48", "--code-size", "40",
                     "--color-transfer"]) == 0
        assert (t / "any.pt").is_file() and (t / "any_loss.png").is_file()
        trained = load(t / "any.pt")
        assert (trained.work_size, trained.style_size, trained.color_transfer) == (48, 40, True)
        assert (t / "any_samples" / "step_000002.png").is_file()
        assert main(["train", *common, "--style", str(t / "s" / "s0.jpg"), "-o", str(t / "one.pt")]) == 0
        capsys.readouterr()
        assert main(["stylize", str(t / "c" / "c0.png"), str(t / "s" / "s1.jpg"),
                     "--model", str(t / "any.pt"), "-o", str(t / "o.png"), "--size", "64", "--json",
                     "-q"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["kind"] == "arbitrary" and info["output_size"] == [64, 48]
        assert main(["stylize", str(t / "c" / "c0.png"), "--model", str(t / "one.pt"), "-o", str(t / "p.png"),
                     "--size", "40", "--original-size", "--json", "-q"]) == 0
        assert (t / "p.png").is_file() and json.loads(capsys.readouterr().out)["output_size"] == [80, 60]

    def test_bad_input(self, folders, capsys):
        t = folders
        c = str(t / "c" / "c0.png")
        assert main(["stylize", c, "--model", str(t / "nope.pt"), "-o", str(t / "x.png")]) == 2
        assert main(["stylize", c, str(t / "s" / "s0.jpg"), "--model", c, "-o", str(t / "x.png")]) == 2
        assert main(["stylize", c, "-o", str(t / "x.png")]) == 2
        assert main(["stylize", c, "--fast", "-o", str(t / "x.png")]) == 2          # no style
        assert main(["stylize", c, str(t / "s" / "s0.jpg"), "--fast", "--strength", "2", "-o",
                     str(t / "x.png")]) == 2
        assert main(["stylize", c, str(t / "s" / "s0.jpg"), "--fast", "--warp", "tps", "-o",
                     str(t / "x.png")]) == 2
        assert main(["train", "--content-dir", str(t / "nope"), "--style-dir", str(t / "s"), "-o",
                     str(t / "m.pt")]) == 2
        assert main(["train", "--content-dir", str(t / "c"), "--style-dir", str(t / "s"), "-o",
                     str(t / "m.txt")]) == 2
        assert main(["train", "--content-dir", str(t / "c"), "--style-dir", str(t / "s"), "-o",
                     str(t / "m.pt"), "--init", str(t / "nope.pt")]) == 2
        assert main(["train", "--content-dir", str(t / "c"), "--style-dir", str(t / "s"), "-o",
                     str(t / "m.pt"), "--size", "64", "--content-scale", "50"]) == 2
        assert main(["train", "--content-dir", str(t / "c"), "--style", str(t / "s" / "s0.jpg"), "-o",
                     str(t / "m.pt"), "--color-transfer"]) == 2
        assert not (t / "x.png").exists() and not (t / "m.pt").exists()
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("warpaint: error:") == 11


class TestDetail:
    """The photo's fine detail added back to a result the network made at a lower resolution."""

    def test_fine_detail_is_the_high_pass_of_luma(self):
        import kornia

        from warpaint import color

        flat = torch.full((1, 3, 32, 32), 0.3)
        assert color.fine_detail(color.luminance(flat), 3.0).abs().max() < 1e-6
        assert torch.equal(color.add_detail_(flat.clone(), flat, 0.0, 3.0), flat)
        step = torch.zeros(1, 3, 32, 32)
        step[..., 16:] = 1.0
        d = color.fine_detail(color.luminance(step), 3.0)[0, 0]
        assert (d[:, 15] < -0.1).all() and (d[:, 16] > 0.1).all()     # the edge, both sides
        assert d[:, :8].abs().max() < 1e-3 and d[:, 24:].abs().max() < 1e-3
        image = torch.full_like(step, 0.95)
        out = color.add_detail_(image, step, 2.0, 3.0)
        assert out is image and out.max() <= 1.0 and out.min() >= 0.0 and out[0, 0, 0, 15] < 0.8
        torch.testing.assert_close(color.luminance(step), kornia.color.rgb_to_ycbcr(step)[:, :1])

    def test_shipped_model_adds_detail_and_zero_turns_it_off(self):
        from warpaint import color

        model = load()
        assert model.detail == pytest.approx(1.0)
        content, style = _smooth(3, 96, 128), torch.rand(1, 3, 64, 64)
        content = content + 0.3 * (torch.rand(1, 1, 96, 128) > 0.5)            # fine structure
        content = content.clamp(0, 1)
        plain = model.stylize(content, [style], work_size=64, detail=0.0)
        sharp = model.stylize(content, [style], work_size=64)
        model.detail = 0.0
        torch.testing.assert_close(model.stylize(content, [style], work_size=64), plain)

        def agreement(x):   # correlation of the result's fine detail with the photo's
            a, b = (color.fine_detail(color.luminance(t), 3.0).flatten() for t in (x, content))
            return float(torch.corrcoef(torch.stack([a, b]))[0, 1])
        assert agreement(sharp) > agreement(plain) + 0.1
        with pytest.raises(InputError, match="detail"):
            model.stylize(content, [style], detail=-1.0)



class TestFineness:
    """The strength of the result's fine detail moved to the painting's (the fast model)."""

    def test_match_detail_scales_the_fine_detail(self):
        from warpaint import color

        x = (torch.rand(1, 3, 48, 48) * 0.3 + 0.35)
        e = float(color.detail_energy(x, 3.0))
        for ratio in (0.5, 2.0):
            y = x.clone()
            g = color.match_detail_(y, ratio * e, 3.0)
            assert g == pytest.approx(ratio)
            assert float(color.detail_energy(y, 3.0)) / e == pytest.approx(ratio, rel=0.05)
            assert (y.mean() - x.mean()).abs() < 0.01            # the coarse picture stays
        y = x.clone()
        assert color.match_detail_(y, 10 * e, 3.0, max_gain=2.0) == 2.0      # bounded
        y = x.clone()
        assert color.match_detail_(y, 4 * e, 3.0, amount=0.5) == pytest.approx(2.0)
        y = x.clone()
        assert color.match_detail_(y, 2 * e, 3.0, amount=0.0) == 1.0 and torch.equal(y, x)
        flat = torch.full((1, 3, 16, 16), 0.5)
        assert color.match_detail_(flat, 0.1, 3.0) == 1.0 and (flat == 0.5).all()   # nothing to scale

    def test_painting_detail_reads_busy_and_calm_paintings(self):
        from PIL import Image

        from warpaint import color
        from warpaint.feedforward.model import FINENESS_FACTOR, FINENESS_SIZE, painting_detail

        busy = torch.rand(1, 3, 700, 900)
        calm = _smooth(4, 700, 900)
        assert painting_detail(busy) > 10 * painting_detail(calm) > 0
        pil = tensor_to_pil(busy)
        assert painting_detail(pil) == pytest.approx(painting_detail(pil_to_tensor(pil)), rel=0.1)
        # on 8-bit pixels: as Pillow's own bicubic resize to FINENESS_SIZE then measured
        by_pillow = pil.resize((FINENESS_SIZE, round(700 * FINENESS_SIZE / 900)), Image.BICUBIC)
        ref = float(color.detail_energy(pil_to_tensor(by_pillow), FINENESS_FACTOR)[0])
        assert painting_detail(pil_to_pixels(pil)) == pytest.approx(ref, rel=0.01)
        small = resize(busy, (140, 180))     # enlarged to FINENESS_SIZE first: its strokes become broad
        assert 0 < painting_detail(small) < 0.5 * painting_detail(busy)

    def test_result_follows_the_paintings_detail(self):
        from warpaint import color
        from warpaint.feedforward.model import FINENESS_FACTOR, painting_detail

        model = load()
        assert model.fineness == pytest.approx(1.0)
        content = _smooth(5, 96, 128)
        busy = (_smooth(6, 480, 640) + 0.4 * torch.rand(1, 3, 480, 640)).clamp(0, 1)
        calm = _smooth(7, 480, 640)

        def energy(x):
            return float(color.detail_energy(x, 3.0))
        out = {(name, f): model.stylize(content, [s], work_size=128, fineness=f)
               for name, s in (("busy", busy), ("calm", calm)) for f in (0.0, 1.0)}
        # at the network's size (no resize here): moved toward the painting's own strength
        # (up for the busy painting, down for the calm one)
        for name, s in (("busy", busy), ("calm", calm)):
            target = painting_detail(s)
            plain, matched = (float(color.detail_energy(out[name, f], FINENESS_FACTOR)) for f in (0.0, 1.0))
            assert (plain < matched < target) if name == "busy" else (target < matched < 0.8 * plain), \
                (name, plain, matched, target)
        assert energy(out["busy", 1.0]) > energy(out["calm", 1.0])
        model.fineness = 0.0
        torch.testing.assert_close(model.stylize(content, [busy], work_size=128), out["busy", 0.0])
        # style_detail given: the styles may be small (as stylize_image passes them)
        model.fineness = 1.0
        small = resize_long_side(busy, model.style_size)
        torch.testing.assert_close(model.stylize(content, [small], work_size=128,
                                                 style_detail=[painting_detail(busy)]), out["busy", 1.0])
        # histogram colour preservation recolours the styles; the target is read before it, as
        # the job layer reads it (from the styles as given)
        torch.testing.assert_close(
            model.stylize(content, [busy], work_size=128, preserve_color="histogram"),
            model.stylize(content, [busy], work_size=128, preserve_color="histogram",
                          style_detail=[painting_detail(busy)]))
        with pytest.raises(InputError, match="fineness"):
            model.stylize(content, [busy], fineness=2.5)
        for bad in ([0.01, 0.02], [float("nan")], [-0.1]):     # one finite value >= 0 per style
            with pytest.raises(InputError, match="style_detail"):
                model.stylize(content, [busy], style_detail=bad)

    def test_stylize_image_and_the_job_layer_read_the_full_painting(self):
        from warpaint import color
        from warpaint.feedforward.model import painting_detail
        from warpaint.jobs import make_method
        from warpaint.stylize import StylizeConfig

        busy = tensor_to_pil((_smooth(6, 400, 400) + 0.4 * torch.rand(1, 3, 400, 400)).clamp(0, 1))
        content = tensor_to_pil(_smooth(5, 96, 128))
        model = load()
        a = pil_to_tensor(model.stylize_image(content, [busy], work_size=96))
        b = pil_to_tensor(model.stylize_image(content, [busy], work_size=96,
                                              style_detail=[painting_detail(busy)]))
        assert (a - b).abs().max() < 2 / 255
        shrunk = resize_pil(busy, (model.style_size, model.style_size))    # read small: a lower target
        assert painting_detail(shrunk) < 0.7 * painting_detail(busy)
        c = pil_to_tensor(model.stylize_image(content, [shrunk], work_size=96))
        assert float(color.detail_energy(c, 3.0)) < float(color.detail_energy(a, 3.0))
        method = make_method(StylizeConfig(size=128), [busy], fast=True, fineness=0.5)
        assert method.model.fineness == 0.5
        assert method.style_detail == [pytest.approx(painting_detail(busy))]
        assert max(method.styles[0].size) == method.model.style_size        # shrunk after reading it
        assert make_method(StylizeConfig(size=128), [busy], fast=True, fineness=0.0).style_detail is None

    def test_single_style_model_refuses_fineness(self, tmp_path):
        from warpaint.jobs import make_method
        from warpaint.stylize import StylizeConfig

        build("single", width=4, blocks=1).save(tmp_path / "one.pt")
        with pytest.raises(InputError, match="fineness needs an arbitrary-style model"):
            make_method(StylizeConfig(size=64), [], model=tmp_path / "one.pt", fineness=1.0)
        assert make_method(StylizeConfig(size=64), [], model=tmp_path / "one.pt").model.fineness == 0


@pytest.mark.parametrize("flag, good, bad", [("detail", 1.5, "3"), ("fineness", 0.5, "-1")])
def test_run_setting_flag(tmp_path, capsys, flag, good, bad):
    """--detail and --fineness reach the model and the --json summary; out of range: exit 2."""
    c, s = tmp_path / "c.png", tmp_path / "s.png"
    save_image(_smooth(1, 60, 80), c)
    save_image(_smooth(2, 60, 80), s)
    assert main(["stylize", str(c), str(s), "--fast", "-o", str(tmp_path / "o.png"), "--size", "64",
                 f"--{flag}", str(good), "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)[flag] == good
    assert main(["stylize", str(c), str(s), "--fast", "-o", str(tmp_path / "p.png"), f"--{flag}", bad]) == 2
    assert flag in capsys.readouterr().err and not (tmp_path / "p.png").exists()
