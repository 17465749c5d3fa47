"""Code-scale calibration (``warpaint calibrate``): the linear map, its fold into the
encoder, a whole calibration on small synthetic images, and the command's refusals."""

from __future__ import annotations

import random

import pytest
import torch

from warpaint.cli import main
from warpaint.errors import InputError
from warpaint.feedforward import build, load
from warpaint.feedforward.calibrate import (
    CalibrationConfig,
    calibrate,
    code_error,
    fit_scale_map,
    fold_into_encoder,
    random_views,
    view_shapes,
)
from warpaint.feedforward.nets import STAT_DIM, StyleEncoder
from warpaint.io import save_image


def _encoder(seed: int = 0) -> StyleEncoder:
    torch.manual_seed(seed)
    enc = StyleEncoder(8, 16)
    with torch.no_grad():
        enc.center.normal_(0, 1)
        enc.spread.uniform_(0.5, 2)
    return enc


def test_fold_computes_the_encoder_on_the_mapped_statistics():
    enc = _encoder()
    g = torch.Generator().manual_seed(1)
    A = torch.eye(STAT_DIM, dtype=torch.float64) + 0.01 * torch.randn(STAT_DIM, STAT_DIM, generator=g,
                                                                         dtype=torch.float64)
    a = 0.1 * torch.randn(STAT_DIM, generator=g, dtype=torch.float64)
    logs = torch.rand(5, STAT_DIM, generator=g, dtype=torch.float64)
    with torch.no_grad():
        want = enc.net(((logs @ A.T + a).float() - enc.center) / enc.spread)
        fold_into_encoder(enc, A, a)
        got = enc.net((logs.float() - enc.center) / enc.spread)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_fit_recovers_a_map_and_the_ridge_shrinks_it():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(400, 6, generator=g, dtype=torch.float64)
    true = torch.randn(6, 6, generator=g, dtype=torch.float64)
    y = x @ true.T + 3
    A, a = fit_scale_map(x, y, ridge=1e-8)
    assert torch.allclose(A, true, atol=1e-5)
    assert torch.allclose(a, torch.full((6,), 3.0, dtype=a.dtype), atol=1e-5)
    A_big, _ = fit_scale_map(x, y, ridge=1e6)
    assert A_big.abs().max() < 0.1 * true.abs().max()


def test_code_error_is_zero_for_the_same_reading_and_grows_with_the_difference():
    enc = _encoder()
    logs = torch.rand(6, STAT_DIM)
    assert code_error(enc, logs, enc, logs) == 0
    assert 0 < code_error(enc, logs + 0.01, enc, logs) < code_error(enc, logs + 0.1, enc, logs)


def test_views_have_the_shapes_and_are_reproducible():
    from PIL import Image

    im = Image.new("RGB", (300, 200), (200, 30, 30))
    a = random_views(im, 12, 64, random.Random(5))
    b = random_views(im, 12, 64, random.Random(5))
    shapes = set(view_shapes(64))
    assert all((v.height, v.width) in shapes and max(v.size) == 64 for v in a)
    assert [v.tobytes() for v in a] == [v.tobytes() for v in b]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Ten small paintings (coarse random blocks) and ten photos (smooth gradients)."""
    t = tmp_path_factory.mktemp("cal")
    (t / "s").mkdir(), (t / "c").mkdir()
    g = torch.Generator().manual_seed(3)
    for i in range(10):
        blocks = torch.rand(1, 3, 6, 8, generator=g)
        painting = torch.nn.functional.interpolate(blocks, size=(96, 128), mode="nearest")
        save_image(painting, t / "s" / f"s{i}.png")
        smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 3, 3, generator=g), size=(96, 96),
                                                 mode="bicubic", align_corners=False).clamp(0, 1)
        save_image(smooth, t / "c" / f"c{i}.png")
    return t


def _model(tmp_path, vgg):
    model = build("arbitrary", code_dim=8, width=4, blocks=1)
    model.vgg = vgg
    torch.manual_seed(0)
    for p in model.encoder.parameters():
        torch.nn.init.normal_(p, std=0.05)
    model.style_size = 64
    path = tmp_path / "m.pt"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def vgg():
    from warpaint.vgg import VGGFeatures

    return VGGFeatures()


def test_calibration_brings_the_small_reading_to_the_large_one(folders, tmp_path, vgg):
    model = load(_model(tmp_path, vgg))
    model.vgg = vgg
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    cfg = CalibrationConfig(read_at=32, like=64, views_per_painting=6, views_per_photo=2, ridge=10.0)
    paintings, photos = sorted((folders / "s").iterdir()), sorted((folders / "c").iterdir())
    summary = calibrate(model, paintings, photos, cfg, progress=False)
    assert summary["views"] == 80 and summary["images"] == 20 and summary["held_out_images"] == 2
    assert summary["code_error_after"] < 0.5 * summary["code_error_before"]
    assert summary["held_out_code_error_after"] < summary["held_out_code_error_before"]
    assert model.style_size == 32 and model.training["code_calibration"]["like"] == 64
    assert not torch.equal(model.encoder.net[0].weight, before["net.0.weight"])
    assert torch.equal(model.encoder.center, before["center"])     # the standardization stays


def test_command_writes_a_model_that_reads_small_and_refuses_bad_input(folders, tmp_path, vgg, capsys):
    src = _model(tmp_path, vgg)
    out = tmp_path / "cal.pt"
    common = ["--content-dir", str(folders / "c"), "--style-dir", str(folders / "s"), "--read-at", "32",
              "--like", "64", "--views-per-painting", "3", "--views-per-photo", "1", "-q"]
    assert main(["calibrate", str(src), *common, "-o", str(out)]) == 0
    assert "held-out" in capsys.readouterr().err
    m = load(out)
    assert m.style_size == 32 and m.training["code_calibration"]["views"] == 40
    # never over a finished model or an input; bad options and files: exit 2, one line
    assert main(["calibrate", str(src), *common, "-o", str(out)]) == 2
    assert "add --overwrite" in capsys.readouterr().err
    stamp = out.stat().st_mtime_ns
    assert main(["calibrate", str(src), *common, "-o", str(out), "--overwrite"]) == 0
    assert out.stat().st_mtime_ns != stamp and load(out).style_size == 32
    assert main(["calibrate", str(src), *common, "-o", str(src), "--overwrite"]) == 2   # never an input
    assert main(["calibrate", str(tmp_path / "none.pt"), *common, "-o", str(tmp_path / "n.pt")]) == 2
    assert main(["calibrate", str(src), *common, "--like", "16", "-o", str(tmp_path / "n.pt")]) == 2
    assert main(["calibrate", str(src), *common, "-o", str(tmp_path / "n.png")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and not (tmp_path / "n.pt").exists()


def test_a_single_style_model_is_refused(folders):
    with pytest.raises(InputError, match="arbitrary-style"):
        calibrate(build("single", width=4, blocks=1), [], [], CalibrationConfig())


def test_a_worse_calibration_is_said(folders, tmp_path, vgg, monkeypatch, caplog):
    """When the held-out code error grows, the model is still written, with a warning."""
    from warpaint.feedforward import calibrate as module

    worse = {"held_out_code_error_before": 0.2, "held_out_code_error_after": 0.3, "held_out_images": 1}
    monkeypatch.setattr(module, "calibrate", lambda *a, **kw: worse)
    src = _model(tmp_path, vgg)
    out = tmp_path / "cal.pt"
    with caplog.at_level("WARNING", logger=module.__name__):
        assert module.calibrate_to_file(src, folders / "c", folders / "s", out, CalibrationConfig(),
                                        progress=False) == worse
    assert out.exists() and "reads the held-out images worse than" in caplog.text
