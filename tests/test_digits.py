"""The distorted-digits application (warpaint.apps.digits)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch

from warpaint.apps import digits
from warpaint.errors import InputError

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
    def test_parameter_counts_close(self):
        a = digits.count_parameters(digits.make_model("cnn"))
        b = digits.count_parameters(digits.make_model("stcnn"))
        assert abs(a - b) / a < 0.05

    @pytest.mark.parametrize("size", [28, 42, 60])
    def test_any_size(self, size):
        for kind in ("cnn", "stcnn"):
            assert digits.make_model(kind)(torch.rand(2, 1, size, size)).shape == (2, 10)


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
