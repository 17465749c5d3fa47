"""Tests of warpaint.score: content and style distances of a result."""

from __future__ import annotations

import json

import pytest
import torch

from warpaint.cli import main
from warpaint.errors import InputError, ShapeError
from warpaint.io import resize, save_image
from warpaint.losses import content_loss, gram_matrix, style_loss
from warpaint.score import SCORE_CONTENT_LAYER, SCORE_STYLE_LAYERS, Score, score
from warpaint.stylize import StylizeConfig, Stylizer


@pytest.fixture(scope="module")
def stylized(images) -> dict[str, torch.Tensor]:
    """A short real run: content 64x48, stripes style, 5 L-BFGS steps."""
    content, style = images.content(), images.stripes()
    cfg = StylizeConfig(size=64, min_size=64, steps=5, coarse_steps=0, device="cpu", dtype="float32")
    return {"content": content, "style": style, "output": Stylizer(cfg).run(content, [style])}


class TestScore:
    def test_identity_is_zero(self, vgg):
        x = torch.rand(1, 3, 40, 60)
        s = score(x, x, x, size=64, vgg=vgg)
        assert s.content == 0.0 and s.style == 0.0
        assert all(v == 0.0 for v in s.style_per_layer.values())

    def test_cardinality(self, vgg, stylized):
        s = score(stylized["content"], stylized["style"], stylized["output"], size=64, vgg=vgg)
        assert isinstance(s, Score) and s.size == 64
        assert tuple(s.style_per_layer) == SCORE_STYLE_LAYERS
        assert s.style == pytest.approx(sum(s.style_per_layer.values()) / 5)
        d = s.as_dict()
        assert set(d) == {"content_distance", "style_distance", "style_per_layer", "eval_size"}
        json.dumps(d)  # plain types

    def test_stylized_output(self, vgg, stylized):
        c, st, o = stylized["content"], stylized["style"], stylized["output"]
        s = score(c, st, o, size=64, vgg=vgg)
        base = score(c, st, c, size=64, vgg=vgg)
        assert s.content > 0.0
        assert base.content == 0.0
        assert s.style < base.style  # the run moved towards the style

    def test_reference(self, vgg, stylized):
        """The distances are the documented formulas on relu4_2 and relu1_1..relu5_1."""
        c, st, o = stylized["content"], stylized["style"], stylized["output"]
        fo = vgg(o, (*SCORE_STYLE_LAYERS, SCORE_CONTENT_LAYER))  # already at eval size 64x48
        fc = vgg(c, (SCORE_CONTENT_LAYER,))
        fs = vgg(st, SCORE_STYLE_LAYERS)  # 64x64: its long side is the eval size
        s = score(c, st, o, size=64, vgg=vgg)
        assert s.content == pytest.approx(content_loss(fo["relu4_2"], fc["relu4_2"]).item(), rel=1e-5)
        for n in SCORE_STYLE_LAYERS:
            ref = style_loss(fo[n], gram_matrix(fs[n])).item()
            assert s.style_per_layer[n] == pytest.approx(ref, rel=1e-5)

    def test_output_resolution_invariance(self, vgg, stylized):
        """The output is evaluated at the content's evaluation size, whatever its own size."""
        c, st, o = stylized["content"], stylized["style"], stylized["output"]
        a = score(c, st, o, size=64, vgg=vgg)
        b = score(c, st, resize(o, (96, 128)), size=64, vgg=vgg)
        assert b.content == pytest.approx(a.content, rel=0.05)
        assert b.style == pytest.approx(a.style, rel=0.05)

    def test_content_resolution_invariance(self, vgg, stylized):
        """Content and style at other resolutions are resized to the evaluation size too."""
        c, st, o = stylized["content"], stylized["style"], stylized["output"]
        a = score(c, st, o, size=64, vgg=vgg)
        b = score(resize(c, (96, 128)), resize(st, (128, 128)), o, size=64, vgg=vgg)
        assert b.content == pytest.approx(a.content, rel=0.05)
        assert b.style == pytest.approx(a.style, rel=0.05)

    def test_different_style_is_farther(self, vgg, images, stylized):
        c, o = stylized["content"], stylized["output"]
        own = score(c, stylized["style"], o, size=64, vgg=vgg)
        other = score(c, images.checker(), o, size=64, vgg=vgg)
        assert other.style > own.style

    def test_exception(self, vgg):
        with pytest.raises(ShapeError):
            score(torch.rand(3, 32, 32), torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), vgg=vgg)
        with pytest.raises(TypeError):
            score(torch.rand(1, 3, 32, 32), [1, 2], torch.rand(1, 3, 32, 32), vgg=vgg)  # type: ignore[arg-type]
        x = torch.rand(1, 3, 32, 32)
        with pytest.raises(InputError, match="output holds NaN"):   # never a NaN score
            score(x, x, x * float("nan"), size=32, vgg=vgg)

    def test_no_grad(self, vgg):
        x = torch.rand(1, 3, 32, 32, requires_grad=True)
        score(x, x, x, size=32, vgg=vgg)
        assert x.grad is None


class TestScoreCli:
    def test_json(self, tmp_path, capsys, vgg, stylized):
        paths = {}
        for k in ("content", "style", "output"):
            paths[k] = tmp_path / f"{k}.png"
            save_image(stylized[k], paths[k])
        rc = main(["score", str(paths["content"]), str(paths["style"]), str(paths["output"]),
                   "--size", "64", "--device", "cpu", "--json"])
        out = capsys.readouterr().out
        assert rc == 0
        d = json.loads(out)
        assert set(d) == {"content_distance", "style_distance", "style_per_layer", "eval_size"}
        assert d["eval_size"] == 64
        assert d["content_distance"] > 0 and d["style_distance"] > 0
        # The same numbers as the library on the (8-bit) images read back.
        from warpaint.io import load_image

        ref = score(*(load_image(paths[k]) for k in ("content", "style", "output")), size=64, vgg=vgg)
        assert d["content_distance"] == pytest.approx(ref.content, rel=1e-5)
        assert d["style_distance"] == pytest.approx(ref.style, rel=1e-5)

    def test_text(self, tmp_path, capsys, stylized):
        save_image(stylized["content"], tmp_path / "c.png")
        rc = main(["score", str(tmp_path / "c.png"), str(tmp_path / "c.png"), str(tmp_path / "c.png"),
                   "--size", "32", "--device", "cpu"])
        out = capsys.readouterr().out
        assert rc == 0
        assert out.startswith("content distance 0.0000  style distance 0.0000")

    @pytest.mark.parametrize("extra", [["--size", "8"], ["--device", "nonsense"]])
    def test_bad_options(self, tmp_path, capsys, stylized, extra):
        save_image(stylized["content"], tmp_path / "c.png")
        c = str(tmp_path / "c.png")
        rc = main(["score", c, c, c, *extra])
        err = capsys.readouterr().err
        assert rc == 2
        assert err.startswith("warpaint: error:") and err.count("\n") == 1

    def test_missing_file(self, tmp_path, capsys, stylized):
        save_image(stylized["content"], tmp_path / "c.png")
        c = str(tmp_path / "c.png")
        rc = main(["score", c, c, str(tmp_path / "missing.png"), "--size", "32"])
        err = capsys.readouterr().err
        assert rc == 2 and "missing.png" in err and err.count("\n") == 1


class TestPictureMeasures:
    def test_palette_size_counts_equal_colours(self):
        from warpaint.score import palette_size

        four = torch.zeros(1, 3, 8, 8)
        four[..., :4, :4] = torch.tensor([1.0, 0, 0]).view(3, 1, 1)
        four[..., :4, 4:] = torch.tensor([0, 1.0, 0]).view(3, 1, 1)
        four[..., 4:, :4] = torch.tensor([0, 0, 1.0]).view(3, 1, 1)
        assert palette_size(four) == pytest.approx(4.0)
        four[..., 7, 7] = 0.5                  # one pixel of a fifth colour: a little more than 4
        assert 4.0 < palette_size(four) < 5.0
        assert palette_size(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))) > 400

    def test_detail_energy_orders_smooth_and_busy(self):
        from warpaint.score import detail_energy

        ramp = torch.linspace(0, 1, 64).expand(1, 3, 64, 64)
        noise = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        assert detail_energy(torch.full((1, 3, 64, 64), 0.4)) < 1e-6
        assert detail_energy(ramp) < 0.01
        assert detail_energy(noise) > 0.1

    def test_color_distance_ignores_layout_not_colour(self):
        from warpaint.score import color_distance

        x = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
        assert color_distance(x, x.flip(-1).flip(-2)) < 1e-3       # same colours, moved
        darker, much_darker = color_distance(x, x * 0.8), color_distance(x, x * 0.5)
        assert 1.0 < darker < much_darker
        assert color_distance(x, x * 0.8) == color_distance(x, x * 0.8)   # seeded

    def test_color_distance_samples_pixels_of_images_of_other_sizes(self):
        """With fewer samples than pixels (and two sizes) the distance is an estimate close to
        the one from every pixel of a same-size pair."""
        from warpaint.score import color_distance

        g = torch.Generator().manual_seed(1)
        x, y = torch.rand(1, 3, 96, 96, generator=g), 0.7 * torch.rand(1, 3, 96, 96, generator=g)
        whole = color_distance(x, y)
        estimate = color_distance(x, y[..., :64, :80], samples=2000)
        assert estimate == pytest.approx(whole, rel=0.15)
        assert estimate != whole

    @pytest.mark.parametrize("call, match", [
        (lambda m, x: m.palette_size(x * float("nan")), "NaN"),
        (lambda m, x: m.palette_size(x.expand(2, -1, -1, -1)), "batch"),
        (lambda m, x: m.palette_size(x, bins=0), "bins"),
        (lambda m, x: m.detail_energy(x, factor=0.5), "factor"),
        (lambda m, x: m.color_distance(x, x, samples=0), "samples"),
        (lambda m, x: m.color_distance(x, x, projections=0), "projections"),
        (lambda m, x: m.color_distance(x, 2 * x + 0.1), "values in"),
    ])
    def test_bad_input_is_refused(self, call, match):
        import importlib

        from warpaint.errors import WarpaintError

        m = importlib.import_module("warpaint.score")      # the module (the package exports a function)

        with pytest.raises(WarpaintError, match=match):
            call(m, torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5)
