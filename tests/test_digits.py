"""The distorted-digits application (warpaint.apps.digits)."""

from __future__ import annotations

import gzip
import json
import math
import struct
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from warpaint.apps import digits
from warpaint.errors import InputError
from warpaint.stn.geometry import rotation_angle
from warpaint.stn.transformer import equivariance_error, turn_batch

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"


def write_idx(path: Path, magic: int, array: torch.Tensor) -> None:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.to(torch.uint8).numpy().tobytes())


class TestIDX:
    def test_round_trip_and_magic(self, tmp_path):
        imgs = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
        labels = torch.tensor([0, 1, 2, 3, 4], dtype=torch.uint8)
        write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, imgs)
        write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, labels)
        x, y = digits.load_mnist(tmp_path)
        assert torch.equal(x, imgs) and y.tolist() == [0, 1, 2, 3, 4]

    def test_wrong_magic(self, tmp_path):
        write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2049, torch.zeros(2, 28, 28))
        write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, torch.zeros(2))
        with pytest.raises(InputError, match="magic"):
            digits.load_mnist(tmp_path)

    def test_missing_folder(self, tmp_path):
        with pytest.raises(InputError, match="not found"):
            digits.load_mnist(tmp_path / "nope")


class TestDistortions:
    @pytest.mark.parametrize("name,size", [("R", 28), ("RTS", 42), ("P", 28), ("E", 28)])
    def test_shapes_and_range(self, name, size):
        x = torch.rand(6, 1, 28, 28)
        y, info = digits.distort(x, name, torch.Generator().manual_seed(0))
        assert y.shape == (6, 1, size, size)
        assert 0.0 <= y.min() and y.max() <= 1.0
        if name in ("R", "RTS"):
            assert info["angle"].abs().max() <= (torch.pi / 2 if name == "R" else torch.pi / 4) + 1e-6

    def test_seeded(self):
        x = torch.rand(4, 1, 28, 28)
        a, _ = digits.distort(x, "P", torch.Generator().manual_seed(3))
        b, _ = digits.distort(x, "P", torch.Generator().manual_seed(3))
        c, _ = digits.distort(x, "P", torch.Generator().manual_seed(4))
        assert torch.equal(a, b) and not torch.equal(a, c)

    def test_rts_rotation_is_recoverable(self):
        """An STN whose theta equals the applied transform straightens the digit exactly."""
        x = torch.zeros(1, 1, 28, 28)
        x[..., 6:22, 12:16] = 1.0  # a vertical bar
        y, info = digits.distort(x, "R", torch.Generator().manual_seed(1))
        a = digits.rotation_matrix(info["angle"])  # output -> input rotation that undoes it
        theta = torch.cat([a, torch.zeros(1, 2, 1)], -1)
        from warpaint.stn.geometry import affine_grid, sample

        back = sample(y, affine_grid(theta, (28, 28), align_corners=False), padding_mode="zeros")
        assert (back - x).abs().mean() < 0.05


class TestModels:
    @pytest.mark.parametrize("localization", ["deep", "small"])
    @pytest.mark.parametrize("kind", ["similarity", "affine"])
    def test_parameter_counts_close(self, localization, kind):
        a = digits.count_parameters(digits.make_model("cnn"))
        b = digits.count_parameters(digits.make_model("stcnn", stn_kind=kind, stn_localization=localization))
        assert abs(a - b) / a < 0.05

    def test_unknown_localization_net(self):
        with pytest.raises(InputError, match="localization"):
            digits.make_model("stcnn", stn_localization="huge")

    def test_both_models_get_the_same_epochs_per_distortion(self):
        for name in digits.DISTORTIONS:
            cnn, st = digits.config_for(name, "cnn"), digits.config_for(name, "stcnn")
            assert cnn.epochs == st.epochs == digits.EPOCHS[name]
        assert digits.config_for("R", "stcnn", epochs=3).epochs == 3
        expected = digits.STN_SETTINGS["E"]["stn_localization"]
        assert digits.config_for("E", "stcnn").stn_localization == expected
        assert digits.config_for("RTS", "stcnn").rotation_prior > 0
        assert digits.config_for("RTS", "cnn", rotation_prior=3.0).rotation_prior == 0   # CNN: no transformer

    @pytest.mark.parametrize("size", [28, 42, 60])
    def test_any_size(self, size):
        for kind in ("cnn", "stcnn"):
            assert digits.make_model(kind)(torch.rand(2, 1, size, size)).shape == (2, 10)


class TestRotationCheck:
    @staticmethod
    def turning_model(turn: float) -> digits.STCNN:
        """An ST-CNN whose transformer always applies the same rotation ``turn``."""
        model = digits.STCNN(kind="similarity")
        last = model.stn.localization[-1]
        with torch.no_grad():
            last.bias.copy_(torch.tensor([math.cos(turn), math.sin(turn), 0.0, 0.0]))
        return model

    def test_tracking_and_own_pose(self):
        """A transformer that turns each digit by the applied angle plus the digit's own
        pose: the own pose is found and, once removed, the tracking is perfect."""
        x = torch.rand(60, 1, 28, 28)
        images, info = digits.distort(x, "R", torch.Generator().manual_seed(0))
        own = torch.randn(60, generator=torch.Generator().manual_seed(1)) * 0.2

        class Known(torch.nn.Module):
            def forward(self, batch):
                angle = own + (info["angle"] if batch is images else 0.0)
                rot = digits.rotation_matrix(angle)
                return batch, torch.cat([rot, torch.zeros(60, 2, 1)], -1)

        model = torch.nn.Module()
        model.stn = Known()
        test = digits.EvalSet(images, torch.zeros(60, dtype=torch.long), {**info, "undistorted": x})
        check = digits.rotation_check(model, test)  # type: ignore[arg-type]
        assert check["rotation_correlation_own_pose_removed"] == pytest.approx(1.0, abs=1e-4)
        assert check["own_pose_sd_deg"] == pytest.approx(float(own.rad2deg().std()), rel=1e-3)
        assert 0.5 < check["rotation_correlation"] < 0.999     # the own pose blurs the raw tracking
        assert check["rotation_slope"] == pytest.approx(1.0, abs=0.15)
        assert "scale_correlation" not in check           # R does not scale

    def test_recovered_angle_is_the_transformers_turn(self):
        angle, scale = digits.recovered_rotation(self.turning_model(0.3), torch.rand(3, 1, 28, 28))
        assert torch.allclose(angle, torch.full((3,), 0.3), atol=1e-5)
        assert torch.allclose(scale, torch.ones(3), atol=1e-5)

    def test_test_set_carries_the_undistorted_digits_centred(self):
        images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
        x, _, info = digits.make_test_set(images, torch.zeros(5, dtype=torch.long), "RTS", 0)
        clean = info["undistorted"]
        assert clean.shape == x.shape == (5, 1, 42, 42)
        assert torch.equal(clean[:, 0, 7:35, 7:35], images.float() / 255.0) and clean[..., :7, :].sum() == 0


class TestEquivariance:
    def test_identity_transformer_is_not_equivariant(self):
        """A transformer that ignores its input (theta = I) pays for every extra turn."""
        stn = digits.SpatialTransformer(1, kind="similarity")
        x = torch.rand(8, 1, 28, 28)
        _, theta = stn(x)
        loss = digits.equivariance_loss(stn, x, theta, torch.Generator().manual_seed(0))
        assert loss.item() > 1e-3

    def test_gradient_reaches_the_localization_net(self):
        stn = digits.SpatialTransformer(1, kind="affine")
        x = torch.rand(4, 1, 28, 28)
        _, theta = stn(x)
        digits.equivariance_loss(stn, x, theta, torch.Generator().manual_seed(0)).backward()
        assert stn.localization[-1].weight.grad.abs().sum() > 0

    def test_turned_batch_moves_points_by_the_returned_rotation(self):
        """A blob at p in the input lies at R(d) p in the turned image."""
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, 41), torch.linspace(-1, 1, 41), indexing="ij")
        p = torch.tensor([0.5, 0.1])
        x = torch.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / 0.005)[None, None].repeat(6, 1, 1, 1)
        x2, rot = turn_batch(x, torch.Generator().manual_seed(1), max_degrees=60)
        w = x2[:, 0] / x2[:, 0].sum((1, 2), keepdim=True)
        centre = torch.stack([(w * xx).sum((1, 2)), (w * yy).sum((1, 2))], 1)
        assert torch.allclose(centre, rot @ p, atol=0.02)
        assert (rotation_angle(torch.cat([rot, torch.zeros(6, 2, 1)], -1)).abs() > 0.05).any()

    def test_error_is_zero_only_for_the_turned_transform(self):
        theta = torch.tensor([[[0.6, -0.2, 0.1], [0.2, 0.6, -0.3]]]).repeat(3, 1, 1)
        rot = digits.rotation_matrix(torch.tensor([0.3, -0.5, 0.2]))
        assert equivariance_error(theta, rot @ theta, rot).item() < 1e-10
        assert equivariance_error(theta, theta, rot).item() > 0.01


class TestRotationPrior:
    def test_prior_turns_the_transformer_back_towards_upright(self):
        """The term train() adds for ``rotation_prior``: its gradient step shrinks the turn."""
        model = TestRotationCheck.turning_model(0.5)
        x = torch.rand(4, 1, 28, 28)
        opt = torch.optim.SGD(model.stn.parameters(), lr=0.1)
        before = digits.recovered_rotation(model, x)[0]
        _, theta = model.stn(x)
        digits.rotation_angle(theta).pow(2).mean().backward()
        opt.step()
        after = digits.recovered_rotation(model, x)[0]
        assert torch.all(after.abs() < before.abs() - 0.01)


@pytest.mark.skipif(not MNIST.is_dir(), reason="MNIST not found at ../shared/datasets/mnist")
class TestTinyTraining:
    def test_beats_chance(self, tmp_path):
        images, labels = digits.load_mnist(MNIST)
        data = (images[:700], labels[:700])
        cfg = digits.DigitsConfig(distortion="R", model="stcnn", epochs=4, batch_size=50, n_test=200)
        model, res, test = digits.train(cfg, data, checkpoint=tmp_path / "ck.pt", progress=False)
        # 500 training digits, 4 epochs: chance is 90 % error; require under 60 %.
        assert res["error_pct"] < 60.0, res
        assert res["parameters"] == digits.count_parameters(model)
        assert (tmp_path / "ck.pt").exists()
        assert test.images.shape == (200, 1, 28, 28) and res["config"]["distortion"] == "R"
        digits.save_alignment_grid(model, test.images, tmp_path / "grid.png")
        assert (tmp_path / "grid.png").stat().st_size > 1000
        rts = digits.EvalSet(*digits.make_test_set(images[:64], labels[:64], "RTS", 0))
        check = digits.rotation_check(model, rts, plot=tmp_path / "rot.png")
        assert -1 <= check["rotation_correlation"] <= 1 and (tmp_path / "rot.png").exists()

    def test_turned_view_trains(self):
        """The equivariance term's turned batch also feeds the classifier."""
        images, labels = digits.load_mnist(MNIST)
        cfg = digits.DigitsConfig(distortion="R", model="stcnn", epochs=4, batch_size=50, n_test=200,
                                  stn_kind="similarity", equivariance=20.0, turned_view=True)
        _, res, _ = digits.train(cfg, (images[:700], labels[:700]), progress=False)
        assert res["error_pct"] < 60.0, res
        with pytest.raises(InputError, match="turned view"):
            digits.train(digits.DigitsConfig(distortion="R", model="stcnn", turned_view=True),
                         (images[:700], labels[:700]), progress=False)
        with pytest.raises(InputError, match="turn_degrees"):
            digits.train(digits.DigitsConfig(distortion="R", model="stcnn", equivariance=1.0, turn_degrees=0),
                         (images[:700], labels[:700]), progress=False)
        with pytest.raises(InputError, match="stn_lr_scale"):
            digits.train(digits.DigitsConfig(distortion="R", model="stcnn", stn_lr_scale=0),
                         (images[:700], labels[:700]), progress=False)


class TestSampling:
    def test_every_training_digit_once_an_epoch(self, monkeypatch):
        """Each digit's pixels hold its number; the batches of each epoch (3 steps of 35, the
        last short) are a permutation of the 90 training digits, in a new order every epoch."""
        images = torch.arange(110, dtype=torch.uint8)[:, None, None].expand(110, 28, 28).contiguous()
        cfg = digits.DigitsConfig(distortion="R", model="cnn", epochs=2, batch_size=35, n_test=20)
        seen, real = [], digits.distort

        def recording(x, *a):
            seen.append((x[:, 0, 0, 0] * 255).round().long())
            return real(x, *a)

        monkeypatch.setattr(digits, "distort", recording)
        digits.train(cfg, (images, torch.randint(0, 10, (110,))), progress=False)
        train_ids = sorted(digits.split(110, 20, 0)[0].tolist())
        seen = seen[1:]                                    # the first: the fixed test set's
        assert [len(b) for b in seen] == [35, 35, 20] * 2
        first, second = torch.cat(seen[:3]), torch.cat(seen[3:])
        assert sorted(first.tolist()) == train_ids and sorted(second.tolist()) == train_ids
        assert not torch.equal(first, second)
        train_idx = digits.split(110, 20, 0)[0]             # the visiting order is epoch_order's
        assert torch.equal(first, train_idx[digits.epoch_order(90, cfg.seed, 0)])
        assert torch.equal(second, train_idx[digits.epoch_order(90, cfg.seed, 1)])


class TestCheckpoints:
    def test_load_gives_the_trained_model_and_its_config(self, tmp_path):
        data = (torch.randint(0, 256, (90, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (90,)))
        cfg = digits.DigitsConfig(distortion="P", model="stcnn", epochs=1, batch_size=35, n_test=20)
        model, _, test = digits.train(cfg, data, checkpoint=tmp_path / "ck.pt", progress=False)
        loaded, loaded_cfg = digits.load(tmp_path / "ck.pt")
        assert loaded_cfg == cfg and not loaded.training
        model.eval()
        with torch.no_grad():
            assert torch.equal(loaded(test.images[:8]), model(test.images[:8]))

    def test_other_version_is_not_resumed(self, tmp_path):
        """A checkpoint of an older architecture starts the run over instead of failing."""
        data = (torch.randint(0, 256, (90, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (90,)))
        cfg = digits.DigitsConfig(distortion="P", model="stcnn", epochs=1, batch_size=35, n_test=20)
        ck = tmp_path / "ck.pt"
        digits.train(cfg, data, checkpoint=ck, progress=False)
        state = torch.load(ck, weights_only=False)
        assert state["config"]["version"] == digits.CHECKPOINT_VERSION and state["step"] == 2   # 1 epoch
        state["config"]["version"], state["model"] = 1, {"old.weight": torch.zeros(1)}
        torch.save(state, ck)
        steps = []
        digits.train(cfg, data, checkpoint=ck, progress=False, on_epoch=lambda e, m: steps.append(e))
        assert steps == [1]                                  # trained its epoch again
        assert torch.load(ck, weights_only=False)["config"]["version"] == digits.CHECKPOINT_VERSION
        assert (tmp_path / "ck.pt.stale-1").exists()         # the old one kept aside

    def test_checkpoint_of_the_former_loop_is_not_resumed(self, tmp_path):
        """A checkpoint of the digits app's own loop (before it ran on training.fit: version 2,
        ``epoch`` instead of ``step``) is kept aside and the run starts over."""
        data = (torch.randint(0, 256, (90, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (90,)))
        cfg = digits.DigitsConfig(distortion="R", model="cnn", epochs=1, batch_size=35, n_test=20)
        ck = tmp_path / "ck.pt"
        torch.save({"format": "warpaint.digits", "version": 2, "epoch": 1, "config": asdict(cfg),
                    "model": digits.make_model("cnn").state_dict(), "optimizer": {}, "scheduler": {},
                    "seconds": 1.0}, ck)
        epochs = []
        digits.train(cfg, data, checkpoint=ck, progress=False, on_epoch=lambda e, m: epochs.append(e))
        assert epochs == [1] and torch.load(ck, weights_only=False)["step"] == 2
        assert torch.load(tmp_path / "ck.pt.stale-1", weights_only=False)["version"] == 2


class TestCLI:
    def test_help_shows_the_defaults_each_distortion_uses(self, capsys):
        """Unset options take each distortion's values: the help says those, not the dataclass's."""
        from warpaint.cli import main

        with pytest.raises(SystemExit):
            main(["stn", "digits", "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for name in ("epochs", "stn_output", "stn_kind", "turned_view"):
            shown = digits.default_text(name)
            assert shown is not None and f"(default: {shown})" in text
        assert f"(default: per distortion: R {digits.EPOCHS['R']}, RTS {digits.EPOCHS['RTS']}" in text
        assert digits.default_text("batch_size") is None and "batch size (default: 128)" in text
        assert text.count("options:") == 1          # one heading per group

    def test_both_models_on_R_write_results_and_pictures(self, tmp_path):
        """Synthetic digits (2,000 are held out for the test set): one short epoch each."""
        from warpaint.cli import main

        n = 2100
        write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, torch.randint(0, 256, (n, 28, 28)))
        write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, torch.randint(0, 10, (n,)))
        out = tmp_path / "out"
        assert main(["stn", "digits", "--data", str(tmp_path), "--distortion", "R", "--epochs", "1",
                     "--batch-size", "50", "--stn-localization", "small", "--out", str(out), "-q"]) == 0
        res = json.loads((out / "results.json").read_text())
        assert set(res) == {"R/cnn", "R/stcnn"} and res["R/stcnn"]["config"]["stn_localization"] == "small"
        assert 0 <= res["R/cnn"]["error_pct"] <= 100 and "rotation_correlation" in res["R/stcnn"]
        assert "scale_correlation" not in res["R/stcnn"]          # R does not scale
        assert (out / "R_rotation.png").exists() and (out / "R_stn_grid.png").exists()

    def test_bad_input_exits_2(self, tmp_path, capsys):
        from warpaint.cli import main

        assert main(["stn", "digits", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
        assert main(["stn", "digits", "--distortion", "X", "--out", str(tmp_path)]) == 2
        assert main(["stn", "digits", "--epochs", "0", "--out", str(tmp_path)]) == 2
        assert "Traceback" not in capsys.readouterr().err
