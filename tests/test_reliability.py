"""Reliability and security: nothing unsafe loads, nothing is silently lost, no black images.

One test (or a few) per fault of the hardening issue; each failed before its fix.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import signal
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# the CLI tests' helpers: a tiny run's options, an in-process call, the one-line error check
from test_cli import TINY, cli  # noqa: E402
from test_cli import assert_one_line_error as one_line_error  # noqa: E402

from warpaint import api
from warpaint.errors import InputError, NumericalError, ResourceError
from warpaint.feedforward import build
from warpaint.io import tensor_to_pil
from warpaint.jobs import batch_names, partial_path
from warpaint.stylize import StylizeConfig, Stylizer
from warpaint.training import fit, load_checkpoint, save_checkpoint


class _Planted:
    """A pickle whose loading would create ``marker`` (what an attacker's .pt would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def plant(path: Path, marker: Path) -> None:
    torch.save({"format": "warpaint.app", "payload": _Planted(marker)}, path)


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST-style IDX files (gzip) of uint8 images (N, 28, 28) and labels (N,)."""
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, *images.shape) + images.astype(np.uint8).tobytes())
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


@pytest.fixture
def mnist(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    write_idx(folder, rng.integers(0, 255, (60, 28, 28)), rng.integers(0, 10, 60))
    return folder


# -- 1. code execution from a checkpoint --------------------------------------------------------
class TestPlantedCheckpoints:
    def test_load_checkpoint_refuses(self, tmp_path):
        marker = tmp_path / "owned"
        plant(tmp_path / "evil.pt", marker)
        with pytest.raises(InputError, match="refused"):
            load_checkpoint(tmp_path / "evil.pt")
        assert not marker.exists()

    def test_from_checkpoint_refuses(self, tmp_path):
        from warpaint.feedforward.train import from_checkpoint

        marker = tmp_path / "owned"
        plant(tmp_path / "evil.ckpt", marker)
        with pytest.raises(InputError):
            from_checkpoint(tmp_path / "evil.ckpt")
        assert not marker.exists()

    @pytest.mark.parametrize("app", ["detect", "seg"])
    def test_stn_eval_on_a_planted_folder(self, capsys, tmp_path, mnist, app):
        out = tmp_path / "theirs"
        out.mkdir()
        marker = tmp_path / "owned"
        plant(out / f"{app}_plain.pt", marker)
        rc, _, err = cli(capsys, "stn", f"{app}-eval", "--data", mnist, "--out", out, "--model", "plain",
                         "-q")
        one_line_error(rc, err, "refused")
        assert not marker.exists()

    def test_train_with_a_planted_checkpoint(self, capsys, tmp_path, image_files):
        marker = tmp_path / "owned"
        plant(tmp_path / "m.pt.ckpt", marker)
        rc, _, err = cli(capsys, "train", "--content-dir", tmp_path, "--style", image_files["style"],
                         "-o", tmp_path / "m.pt", "--steps", "1", "--size", "32", "--style-size", "32",
                         "--sample-every", "0", "-q", "--device", "cpu")
        one_line_error(rc, err, "refused")
        assert not marker.exists() and not (tmp_path / "m.pt").exists()

    def test_model_file_refuses(self, capsys, tmp_path, image_files):
        marker = tmp_path / "owned"
        plant(tmp_path / "evil.pt", marker)
        rc, _, err = cli(capsys, "stylize", image_files["content"], "--model", tmp_path / "evil.pt",
                         "-o", tmp_path / "o.png", "--size", "32", "-q", "--device", "cpu")
        one_line_error(rc, err, "evil.pt")
        assert not marker.exists()

    def test_real_checkpoints_still_load(self, tmp_path):
        model = torch.nn.Linear(3, 2)
        fit(model, lambda g: (model(torch.randn(4, 3, generator=g)).pow(2).mean(), {}), steps=3, lr=0.01,
            seed=0, config={"a": 1}, checkpoint=tmp_path / "c.pt", progress=False)
        ck = load_checkpoint(tmp_path / "c.pt")
        assert ck["step"] == 3 and "optimizer" in ck and "scheduler" in ck


# -- 2. NaN / inf never becomes an image ----------------------------------------------------------
class TestNonFinite:
    @pytest.mark.parametrize("flag, value", [
        ("--style-weight", "nan"), ("--content-weight", "nan"), ("--tv-weight", "inf"),
        ("--style-blend", "nan"), ("--style-layer-weights", "nan,1,1,1,1"), ("--lr", "1e9"),
        ("--style-scale", "nan"), ("--style-scale", "inf"), ("--style-blend", "-1"), ("--lr", "nan"),
        ("--seed", "99999999999999999999999"), ("--device", "meta")])
    def test_float_options_refused(self, capsys, image_files, tmp_path, flag, value):
        out = tmp_path / "o.png"
        rc, _, err = cli(capsys, "stylize", image_files["content"], image_files["style"], "-o", out,
                         *TINY, flag, value, "--json", tmp_path / "r.json")
        one_line_error(rc, err, "meta" if value == "meta" else flag)
        assert not out.exists() and not (tmp_path / "r.json").exists()

    def test_engine_stops_on_a_non_finite_loss(self, vgg_random, content_image, style_image, monkeypatch):
        s = Stylizer(StylizeConfig(size=32, min_size=32, steps=4, device="cpu", dtype="float32"),
                     pretrained=False)
        s.vgg = vgg_random
        real, calls = s.losses, []

        def poisoned(*a, **kw):
            out = real(*a, **kw)
            calls.append(1)
            if len(calls) >= 2:
                out["total"] = out["total"] * float("nan")
            return out

        monkeypatch.setattr(s, "losses", poisoned)
        with pytest.raises(NumericalError, match="non-finite"):
            s.run(content_image, [style_image])
        current = s.current_result()
        assert current is not None and bool(torch.isfinite(current).all())   # the last good one

    def test_cli_writes_nothing_on_a_non_finite_loss(self, capsys, image_files, tmp_path, monkeypatch):
        real = Stylizer.losses

        def poisoned(self, *a, **kw):
            out = real(self, *a, **kw)
            out["total"] = out["total"] + float("inf")
            return out

        monkeypatch.setattr(Stylizer, "losses", poisoned)
        out = tmp_path / "o.png"
        rc, _, err = cli(capsys, "stylize", image_files["content"], image_files["style"], "-o", out, *TINY)
        one_line_error(rc, err, "non-finite")
        assert not out.exists() and not Path(partial_path(str(out))).exists()

    def test_fit_stops_without_a_checkpoint(self, tmp_path):
        model = torch.nn.Linear(3, 1)
        ckpt = tmp_path / "c.pt"

        def loss(g):
            return model(torch.randn(2, 3, generator=g)).sum() * float("nan"), {}

        with pytest.raises(NumericalError):
            fit(model, loss, steps=5, lr=0.1, seed=0, config={}, checkpoint=ckpt, progress=False)
        assert not ckpt.exists()
        assert all(bool(torch.isfinite(p).all()) for p in model.parameters())

    def test_train_nan_weight_refused(self, capsys, tmp_path, image_files):
        rc, _, err = cli(capsys, "train", "--content-dir", tmp_path, "--style", image_files["style"],
                         "-o", tmp_path / "m.pt", "--style-weight", "nan", "-q")
        one_line_error(rc, err, "--style-weight")
        assert not (tmp_path / "m.pt").exists()

    def test_model_with_nan_weights_refused(self, tmp_path):
        from warpaint.feedforward import load

        m = build("single", width=8, blocks=1)
        with torch.no_grad():
            next(m.net.parameters()).fill_(float("nan"))
        m.save(tmp_path / "nan.pt")
        with pytest.raises(InputError, match="NaN"):
            load(tmp_path / "nan.pt")

    @pytest.mark.parametrize("bad", [float("nan"), 1.5, -0.2, float("inf")])
    def test_api_rejects_bad_tensors(self, bad, content_image, style_image):
        x = content_image.clone()
        x[0, 0, 0, 0] = bad
        with pytest.raises(InputError):
            api.stylize(x, style_image, size=32, min_size=32, steps=1, device="cpu")
        with pytest.raises(InputError):
            build("single", width=8, blocks=1).stylize(x)

    def test_flat_result_never_written(self, capsys, image_files, tmp_path, monkeypatch):
        from warpaint.stylize import Result

        monkeypatch.setattr(Stylizer, "run_detailed", lambda self, c, s, callback=None, init=None: Result(
            torch.zeros(1, 3, 24, 32), torch.zeros(1, 3, 24, 32), None, [], 0))
        out = tmp_path / "o.png"
        rc, _, err = cli(capsys, "stylize", image_files["content"], image_files["style"], "-o", out, *TINY)
        one_line_error(rc, err, "flat image")
        assert not out.exists()


def photo_folder(tmp_path: Path, images: dict) -> Path:
    """``tmp_path/photos`` holding the (1, 3, H, W) ``images`` under their names."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, image in images.items():
        tensor_to_pil(image).save(photos / name)
    return photos


# -- 3. folder batches -----------------------------------------------------------------------------
class TestBatch:
    def test_names_never_collide(self, capsys, tmp_path, content_image, style_image):
        photos = photo_folder(tmp_path, {"a.jpg": content_image, "a.png": content_image.flip(-1),
                                         "b.png": content_image})
        tensor_to_pil(style_image).save(tmp_path / "s.png")
        rc, _, err = cli(capsys, "stylize", photos, tmp_path / "s.png", "-o", tmp_path / "out", *TINY)
        assert rc == 0, err
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg.png", "a.png.png", "b.png"]
        assert batch_names([Path("x.JPG"), Path("x.jpeg")]) == ["x.JPG.png", "x.jpeg.png"]

    def test_bad_image_is_skipped_and_reported(self, capsys, tmp_path, content_image, style_image):
        photos = photo_folder(tmp_path, {"b.png": content_image})
        (photos / "a_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        tensor_to_pil(style_image).save(tmp_path / "s.png")
        summary = tmp_path / "run.json"
        rc, _, err = cli(capsys, "stylize", photos, tmp_path / "s.png", "-o", tmp_path / "out", *TINY,
                         "--json", summary)
        assert rc == 2
        assert "a_broken.png" in err and "Traceback" not in err
        assert (tmp_path / "out" / "b.png").is_file() and not (tmp_path / "out" / "a_broken.png").exists()
        items = json.loads(summary.read_text())
        assert [i["status"] for i in items] == ["error", "ok"]
        assert "a_broken.png" in items[0]["error"]

    def test_fast_on_a_one_pixel_line(self, capsys, tmp_path, image_files):
        Image.new("RGB", (5000, 1), (120, 30, 40)).save(tmp_path / "line.png")
        rc, _, err = cli(capsys, "stylize", tmp_path / "line.png", image_files["style"], "--fast",
                         "-o", tmp_path / "o.png", "-q", "--device", "cpu")
        one_line_error(rc, err, "short side")
        assert not (tmp_path / "o.png").exists()


def ctrl_c_in_engine(monkeypatch, at_step: int) -> None:
    """The engine's runs are interrupted as if by Ctrl-C after step ``at_step - 1``."""
    real = Stylizer._optimize

    def interrupted(self, *a, **kw):
        for i, losses in enumerate(real(self, *a, **kw), 1):
            if i == at_step:
                raise KeyboardInterrupt
            yield losses

    monkeypatch.setattr(Stylizer, "_optimize", interrupted)


# -- 4. finished results are never overwritten -----------------------------------------------------
class TestSideOutputsKeepInputs:
    """Snapshots, warp pictures and the demo's saved inputs never write over an input or an
    output of the run: one line, exit 2, nothing written."""

    def test_snapshots_over_an_input(self, capsys, image_files, tmp_path):
        snaps = tmp_path / "snaps"
        snaps.mkdir()
        content = snaps / "step_00001.png"
        content.write_bytes(image_files["content"].read_bytes())
        before = content.read_bytes()
        rc, _, err = cli(capsys, "stylize", content, image_files["style"], "-o", tmp_path / "o.png",
                         "--snapshot-every", "1", "--snapshot-dir", snaps, *TINY)
        one_line_error(rc, err, "step_00001.png")
        assert content.read_bytes() == before and not (tmp_path / "o.png").exists()

    def test_default_snapshot_folder_over_the_output(self, capsys, image_files, tmp_path):
        (tmp_path / "o_snapshots").mkdir()
        rc, _, err = cli(capsys, "stylize", image_files["content"], image_files["style"], "-o",
                         tmp_path / "o.png", "--snapshot-every", "1", "--json",
                         tmp_path / "o_snapshots" / "step_00002.png", *TINY)
        one_line_error(rc, err, "snapshot")

    def test_warp_pictures_over_an_input(self, capsys, image_files, tmp_path):
        pictures = tmp_path / "w"
        pictures.mkdir()
        content = pictures / "matches.png"
        content.write_bytes(image_files["content"].read_bytes())
        rc, _, err = cli(capsys, "stylize", content, image_files["style"], "-o", tmp_path / "o.png",
                         "--warp", "affine", "--save-warp", pictures, *TINY)
        one_line_error(rc, err, "matches.png")
        assert content.read_bytes() == image_files["content"].read_bytes()

    def test_demo_inputs_over_the_output_or_a_file(self, capsys, tmp_path):
        out = tmp_path / "demo_content.png"
        rc, _, err = cli(capsys, "demo", "-o", out, "--save-inputs", tmp_path, *TINY)
        one_line_error(rc, err, "--save-inputs")
        assert not out.exists() and not (tmp_path / "demo_style.png").exists()
        not_a_folder = tmp_path / "file.txt"
        not_a_folder.write_text("x")
        rc, _, err = cli(capsys, "demo", "-o", tmp_path / "o.png", "--save-inputs", not_a_folder, *TINY)
        one_line_error(rc, err, "must be a folder")
        assert not_a_folder.read_text() == "x"

    def test_per_image_loss_curves_over_an_input(self, capsys, image_files, tmp_path):
        photos = tmp_path / "photos"
        photos.mkdir()
        for name in ("a.png", "loss_a.png"):   # loss_a.png: what --loss-curve photos/loss.png writes for a
            (photos / name).write_bytes(image_files["content"].read_bytes())
        rc, _, err = cli(capsys, "stylize", photos, image_files["style"], "-o", tmp_path / "out",
                         "--loss-curve", photos / "loss.png", *TINY)
        one_line_error(rc, err, "loss_a.png")
        assert (photos / "loss_a.png").read_bytes() == image_files["content"].read_bytes()

    def test_demo_saves_its_inputs_only_after_the_checks(self, capsys, tmp_path):
        rc, _, err = cli(capsys, "demo", "-o", tmp_path / "o.png", "--save-inputs", tmp_path / "in",
                         "--snapshot-dir", tmp_path / "snaps", *TINY)
        one_line_error(rc, err, "--snapshot-every")
        assert not (tmp_path / "in").exists()

    def test_stylize_folder_into_a_folder_inside_it(self, capsys, image_files, tmp_path):
        """Into the folder itself is refused (tests/test_cli.py); a subfolder is not listed as input."""
        photos = tmp_path / "photos"
        photos.mkdir()
        (photos / "a.png").write_bytes(image_files["content"].read_bytes())
        for _ in range(2):   # a rerun reads the same one input
            rc, _, err = cli(capsys, "stylize", photos, image_files["style"], "-o", photos / "out", *TINY,
                             "--overwrite")
            assert rc == 0, err
            assert sorted(p.name for p in (photos / "out").iterdir()) == ["a.png"]
        assert sorted(p.name for p in photos.iterdir()) == ["a.png", "out"]


class TestFinishedResultsKept:
    def test_rerun_ctrl_c_keeps_the_finished_output(self, capsys, image_files, tmp_path, monkeypatch):
        out = tmp_path / "o.png"
        assert cli(capsys, "stylize", image_files["content"], image_files["style"], "-o", out, *TINY)[0] == 0
        finished = out.read_bytes()
        ctrl_c_in_engine(monkeypatch, at_step=2)
        rc, _, err = cli(capsys, "stylize", image_files["content"], image_files["style"], "-o", out, *TINY,
                         "--overwrite")
        assert rc == 130, err
        assert out.read_bytes() == finished
        with Image.open(tmp_path / "o.partial.png") as im:
            assert im.size == (32, 24)

    @pytest.mark.parametrize("args, needle", [
        (["stn", "digits", "--model", "stcnn", "--stn-output", "8", "--epochs", "1"], "--stn-output"),
        (["stn", "detect-train", "--n-test-digits", "{n}", "--steps", "1"], "--n-test-digits"),
        (["stn", "seg-train", "--n-test-digits", "{n}", "--steps", "1"], "--n-test-digits"),
        (["stn", "digits", "--n-test", "{n}", "--epochs", "1", "--model", "cnn"], "--n-test must"),
    ])
    def test_stn_options_beyond_the_data_or_the_net(self, capsys, tmp_path, mnist, args, needle):
        """Once tracebacks (a transformer output too small for the classifier; more test digits
        than the data has): one line, exit 2, before training, and no --out folder made."""
        from warpaint.apps.common import load_mnist

        n = str(load_mnist(mnist)[0].shape[0])
        rc, _, err = cli(capsys, *[a.format(n=n) for a in args], "--data", mnist, "--out", tmp_path / "o",
                         "-q")
        one_line_error(rc, err, needle)
        assert not (tmp_path / "o").exists()

    def test_demo_keeps_an_existing_output(self, capsys, tmp_path):
        out = tmp_path / "demo.png"
        out.write_bytes(b"a finished result")
        rc, _, err = cli(capsys, "demo", "-o", out, *TINY)
        one_line_error(rc, err, "--overwrite")
        assert out.read_bytes() == b"a finished result"

    def test_partial_result_has_the_final_colours(self, vgg_random, monkeypatch):
        """--preserve-color luminance: a stopped run's image is coloured, like a finished one."""
        s = Stylizer(StylizeConfig(size=32, min_size=32, steps=3, preserve_color="luminance", device="cpu",
                                   dtype="float32"), pretrained=False)
        s.vgg = vgg_random
        content = torch.zeros(1, 3, 24, 32)
        content[:, 0] = 0.8      # red content: its chroma must come back
        content[:, 2] = 0.1

        def stop(it):
            assert it.image[:, 0].mean() > it.image[:, 2].mean() + 0.3   # snapshots coloured too
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            s.run(content, [torch.rand(1, 3, 32, 32)], callback=stop)
        current = s.current_result()
        assert current.shape == (1, 3, 24, 32)
        assert current[:, 0].mean() > current[:, 2].mean() + 0.3

    def test_train_keeps_a_differing_checkpoint_and_the_finished_model(self, capsys, caplog, tmp_path,
                                                                       image_files, ctrl_c_at_step):
        photos = tmp_path / "photos"
        photos.mkdir()
        Image.open(image_files["content"]).resize((64, 64)).save(photos / "c.png")
        base = ["train", "--content-dir", photos, "--style", image_files["style"], "-o", tmp_path / "m.pt",
                "--size", "32", "--style-size", "32", "--sample-every", "0", "-q", "--device", "cpu"]
        assert cli(capsys, *base, "--steps", "2")[0] == 0
        finished = (tmp_path / "m.pt").read_bytes()
        ctrl_c_at_step(1)
        rc, _, err = cli(capsys, *base, "--steps", "3")      # a finished model is kept ...
        one_line_error(rc, err, "--overwrite")
        rc, _, err = cli(capsys, *base, "--steps", "3", "--overwrite")   # another configuration, interrupted
        assert rc == 130, err
        assert (tmp_path / "m.pt").read_bytes() == finished
        assert (tmp_path / "m.partial.pt").is_file()
        assert (tmp_path / "m.pt.ckpt.stale-1").is_file()    # the old checkpoint, moved aside
        assert "stale-1" in err + caplog.text                # and the user is told


# -- 5. checkpoints written by two processes at once ------------------------------------------------
def test_concurrent_checkpoint_saves(tmp_path):
    path = tmp_path / "c.pt"
    errors = []

    def writer(k: int) -> None:
        try:
            for i in range(5):
                save_checkpoint({"format": "x", "k": k, "i": i, "w": torch.full((2000,), float(k))}, path)
                load_checkpoint(path)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ck = load_checkpoint(path)
    assert bool((ck["w"] == ck["k"]).all())
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]     # no temporary file left


# -- 6. resource bounds ----------------------------------------------------------------------------
class TestResourceBounds:
    @pytest.mark.parametrize("extra, needle", [
        (["--size", "100000"], "--size must be <="), (["--warp-grid", "400"], "--warp-grid must be <="),
        (["--style-scale", "1000"], "--style-scale must be <="),
        (["--size", "16384", "--min-size", "16384"], "needs about")])
    def test_refused_before_work(self, capsys, image_files, tmp_path, extra, needle):
        out = tmp_path / "o.png"
        rc, _, err = cli(capsys, "stylize", image_files["content"], image_files["style"], "-o", out,
                         *TINY, *extra)
        one_line_error(rc, err, needle)
        assert not out.exists()

    def test_max_memory_budget(self, capsys, image_files, tmp_path):
        rc, _, err = cli(capsys, "stylize", image_files["content"], image_files["style"], "-o",
                         tmp_path / "o.png", *TINY, "--max-memory", "0.5")
        one_line_error(rc, err, "GB", "max_memory")

    def test_score_size_bounded(self, capsys, image_files):
        files = image_files["content"], image_files["style"], image_files["content"]
        rc, _, err = cli(capsys, "score", *files, "--size", "100000")
        one_line_error(rc, err, "--size")

    def test_model_shapes_bounded(self, tmp_path):
        from warpaint.feedforward import load

        m = build("single", width=8, blocks=1)
        m.save(tmp_path / "m.pt")
        ck = torch.load(tmp_path / "m.pt", weights_only=True)
        ck["net"]["width"] = 100_000
        torch.save(ck, tmp_path / "huge.pt")
        with pytest.raises(InputError, match="out of bounds"):
            load(tmp_path / "huge.pt")

    def test_estimate_grows_with_size(self):
        """The engine's plan of a whole run (budget large enough not to tile) grows with the
        pixels; the estimate at 4096 px would not fit in 8 GB."""
        from warpaint.stylize import Stylizer

        def need(size: int) -> int:
            cfg = StylizeConfig(size=size, min_size=size, max_memory=1000)
            return Stylizer(cfg, pretrained=False).plans((size * 3 // 4, size), [(512, 512)])[-1].need

        small, big = need(512), need(4096)
        assert 1e9 < small < 3e9 and big > 30e9
        with pytest.raises(ResourceError, match="needs about"):
            from warpaint.memory import check_budget

            check_budget(big, 8, torch.device("cpu"), "x")

    def test_fit_takes_the_largest_seed(self):
        """Configurations allow seeds up to 2**63 - 1: fit's per-step seeds wrap modulo 2**64
        instead of overflowing the generator."""
        model = torch.nn.Linear(3, 1)
        history, _ = fit(model, lambda g: (model(torch.randn(2, 3, generator=g)).pow(2).mean(), {}), steps=2,
                         lr=0.01, seed=2**63 - 1, config={}, progress=False)
        assert len(history) == 2 and all(math.isfinite(h["total"]) for h in history)

    def test_styles_shrunk_before_tensors(self, tmp_path):
        from warpaint.jobs import read_pil

        Image.new("RGB", (4000, 3000), (1, 2, 3)).save(tmp_path / "big.png")
        assert read_pil(str(tmp_path / "big.png"), long_side=512).size == (512, 384)


# -- 7. other outputs never overwrite inputs --------------------------------------------------------
class TestSideOutputs:
    @pytest.mark.parametrize("flag", ["--json", "--loss-curve"])
    def test_side_output_equal_to_an_input(self, capsys, image_files, tmp_path, flag):
        style = image_files["style"]
        before = style.read_bytes()
        if flag == "--loss-curve":
            target = image_files["content"]
            before = target.read_bytes()
        else:
            target = style
        rc, _, err = cli(capsys, "stylize", image_files["content"], style, "-o", tmp_path / "o.png", *TINY,
                         flag, target)
        assert rc == 2, err
        assert target.read_bytes() == before
        assert not (tmp_path / "o.png").exists()

    def test_fast_stdout_and_json_clash(self, capsys, image_files):
        rc, _, err = cli(capsys, "stylize", image_files["content"], image_files["style"], "--fast", "-o", "-",
                         "--json", "-q")
        one_line_error(rc, err, "stdout")


# -- 8. one-line errors where tracebacks were ----------------------------------------------------
class TestOneLineErrors:
    def test_fast_work_size_one(self, capsys, image_files, tmp_path):
        rc, _, err = cli(capsys, "stylize", image_files["content"], image_files["style"], "--fast",
                         "--work-size", "1", "-o", tmp_path / "o.png", "-q")
        one_line_error(rc, err, "--work-size")

    @pytest.mark.parametrize("damage", ["missing", "shape"])
    def test_damaged_model_file(self, capsys, image_files, tmp_path, damage):
        m = build("single", width=8, blocks=1)
        m.save(tmp_path / "m.pt")
        ck = torch.load(tmp_path / "m.pt", weights_only=True)
        key = next(iter(ck["state"]["net"]))
        if damage == "missing":
            del ck["state"]["net"][key]
        else:
            ck["state"]["net"][key] = torch.zeros(3, 3)
        torch.save(ck, tmp_path / "bad.pt")
        rc, _, err = cli(capsys, "stylize", image_files["content"], "--model", tmp_path / "bad.pt",
                         "-o", tmp_path / "o.png", "-q")
        one_line_error(rc, err, "bad.pt")

    def test_idx_short_header(self, capsys, tmp_path, mnist):
        with gzip.open(mnist / "t10k-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">III", 2051, 10, 28))      # three dimensions announced, two given
        rc, _, err = cli(capsys, "stn", "digits", "--data", mnist, "--out", tmp_path / "o", "-q")
        one_line_error(rc, err, "truncated IDX header")

    def test_mnist_label_out_of_range(self, capsys, tmp_path):
        folder = tmp_path / "m"
        write_idx(folder, np.zeros((5, 28, 28)), np.array([1, 2, 200, 3, 4]))
        rc, _, err = cli(capsys, "stn", "digits", "--data", folder, "--out", tmp_path / "o", "-q")
        one_line_error(rc, err, "label of 200")

    def test_corrupt_digits_results(self, capsys, tmp_path, mnist):
        out = tmp_path / "o"
        out.mkdir()
        (out / "results.json").write_text("{not json")
        rc, _, err = cli(capsys, "stn", "digits", "--data", mnist, "--out", out, "-q", "--epochs", "1")
        one_line_error(rc, err, "results.json")
        assert (out / "results.json").read_text() == "{not json"


# -- 9. signals (SIGTERM on stylize: test_cli.py::TestSubprocess::test_ctrl_c_writes_current_image) --
@pytest.mark.parametrize("stop", [3, 6])          # 4 steps an epoch: inside the first, the second
def test_digits_ctrl_c_saves_and_resumes_exactly(tmp_path, mnist, monkeypatch, stop):
    """Stopped inside an epoch, the digits run saves its state and resumes from that step
    to the same weights, bit for bit, as an uninterrupted run."""
    from warpaint.apps import digits

    images, labels = digits.load_mnist(mnist)
    cfg = digits.DigitsConfig(distortion="R", model="cnn", epochs=2, batch_size=16, n_test=10)
    whole, _, _ = digits.train(cfg, (images, labels), checkpoint=tmp_path / "a.pt", progress=False)

    calls = {"n": 0}
    real_loss = digits._digits_loss

    def stop_at_third(model, *a):
        calls["n"] += 1
        if calls["n"] == stop:
            os.kill(os.getpid(), signal.SIGINT)    # caught by StopRequest: acted on after this batch
        return real_loss(model, *a)

    monkeypatch.setattr(digits, "_digits_loss", stop_at_third)
    with pytest.raises(KeyboardInterrupt) as stopped:
        digits.train(cfg, (images, labels), checkpoint=tmp_path / "b.pt", progress=False)
    assert stopped.value.saved == f"saved the training state at step {stop} of 8 to {tmp_path / 'b.pt'}"
    ck = load_checkpoint(tmp_path / "b.pt")
    assert ck["step"] == stop and ck["seconds"] > 0   # time so far kept too
    monkeypatch.setattr(digits, "_digits_loss", real_loss)
    resumed, res, _ = digits.train(cfg, (images, labels), checkpoint=tmp_path / "b.pt", progress=False)
    assert res["train_seconds"] >= round(ck["seconds"], 1)   # both runs' time
    for p, q in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q)


def test_stn_app_ctrl_c_says_what_was_kept(capsys, tmp_path, mnist, monkeypatch):
    """The command line passes on where the interrupted training's state went."""
    from warpaint.apps import digits
    from warpaint.errors import Interrupted

    def interrupted(*a, **kw):
        e = Interrupted(signal.SIGINT)
        e.saved = "saved the training state at step 3 of 8 to o/R_cnn.pt"
        raise e

    monkeypatch.setattr(digits, "run_experiments", interrupted)
    rc, _, err = cli(capsys, "stn", "digits", "--data", mnist, "--out", tmp_path / "o", "-q")
    assert rc == 130
    assert err.strip() == ("warpaint: interrupted; saved the training state at step 3 of 8 to o/R_cnn.pt "
                           "(run the same command to resume)")


# -- 10. colour on the run's device ---------------------------------------------------------------
def test_match_color_builds_on_the_input_device(monkeypatch):
    from warpaint import color

    seen = []
    real = torch.eye

    def eye(*a, **kw):
        seen.append(kw.get("device"))
        return real(*a, **kw)

    monkeypatch.setattr(torch, "eye", eye)
    color.match_color(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    assert seen and all(d is not None for d in seen)


# -- 11. the training state's name --------------------------------------------------------------
def test_docs_name_the_checkpoint_file():
    from warpaint.cli import build_parser

    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]   # noqa: SLF001
    assert "OUTPUT.pt.ckpt" in train.description
    readme = Path(__file__).resolve().parents[1] / "README.md"
    assert "OUTPUT.ckpt" not in readme.read_text()


# -- found in review: interruptions between steps, names that could still collide -----------------
class TestReviewFindings:
    def test_a_partial_never_replaces_a_file(self, capsys, image_files, tmp_path, monkeypatch):
        out = tmp_path / "o.png"
        (tmp_path / "o.partial.png").write_bytes(b"a finished result of someone's")
        ctrl_c_in_engine(monkeypatch, at_step=2)
        rc, _, err = cli(capsys, "stylize", image_files["content"], image_files["style"], "-o", out, *TINY)
        assert rc == 130, err
        assert (tmp_path / "o.partial.png").read_bytes() == b"a finished result of someone's"
        assert (tmp_path / "o.partial-2.png").is_file() and "o.partial-2.png" in err

    def test_signal_during_a_fast_run_keeps_the_result_and_stops(self, capsys, image_files, tmp_path,
                                                               monkeypatch):
        """--fast has no steps: a Ctrl-C during it is acted on after the image is written."""
        from warpaint.feedforward.model import FastStylizer

        real = FastStylizer.stylize_image

        def signalled(self, *a, **kw):
            os.kill(os.getpid(), signal.SIGINT)      # recorded by the job's StopRequest
            return real(self, *a, **kw)

        monkeypatch.setattr(FastStylizer, "stylize_image", signalled)
        photos = tmp_path / "photos"
        photos.mkdir()
        for name in ("a.png", "b.png"):
            Image.open(image_files["content"]).save(photos / name)
        rc, _, err = cli(capsys, "stylize", photos, image_files["style"], "--fast", "-o", tmp_path / "out",
                         "--size", "32", "-q", "--device", "cpu", "--json", tmp_path / "r.json")
        assert rc == 130, err
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]   # the batch stopped
        assert [i["status"] for i in json.loads((tmp_path / "r.json").read_text())] == ["ok"]

    def test_init_file_is_an_input(self, capsys, image_files, tmp_path):
        start = tmp_path / "start.png"
        start.write_bytes(image_files["content"].read_bytes())
        rc, _, err = cli(capsys, "stylize", image_files["content"], image_files["style"], "--init", start,
                         "-o", start, *TINY)
        one_line_error(rc, err, "input")
        assert start.read_bytes() == image_files["content"].read_bytes()

    @pytest.mark.parametrize("flag", ["--json", "--loss-curve"])
    def test_side_output_equal_to_the_image_output(self, capsys, image_files, tmp_path, flag):
        out = tmp_path / "r.png"
        rc, _, err = cli(capsys, "stylize", image_files["content"], image_files["style"], "-o", out, *TINY,
                         flag, out)
        one_line_error(rc, err, "side output")
        assert not out.exists()

    def test_batch_snapshots_per_image(self, capsys, tmp_path, content_image, style_image):
        photos = photo_folder(tmp_path, {"a.png": content_image, "b.png": content_image.flip(-1)})
        tensor_to_pil(style_image).save(tmp_path / "s.png")
        rc, _, err = cli(capsys, "stylize", photos, tmp_path / "s.png", "-o", tmp_path / "out", *TINY,
                         "--snapshot-every", "1", "--snapshot-dir", tmp_path / "snaps")
        assert rc == 0, err
        for stem in ("a", "b"):
            assert sorted(p.name for p in (tmp_path / "snaps" / stem).iterdir()) == ["step_00001.png",
                                                                                   "step_00002.png"]

    def test_negative_snapshot_every(self, capsys, image_files, tmp_path):
        rc, _, err = cli(capsys, "stylize", image_files["content"], image_files["style"], "-o",
                         tmp_path / "o.png", *TINY, "--snapshot-every", "-5")
        one_line_error(rc, err, "--snapshot-every")
