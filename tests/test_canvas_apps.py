"""STN applications on cluttered digit canvases: data, box and mask mapping, the detector
and segmenter wrappers, the shared training loop and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from warpaint import training
from warpaint.apps import canvas, detection, segmentation
from warpaint.apps.canvas import boxes_from_masks
from warpaint.stn import SpatialTransformer
from warpaint.stn.geometry import affine_grid, sample

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"


def _fake_digits(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Stand-in MNIST: bright bars and rings of different shapes (labels 0..9)."""
    g = torch.Generator().manual_seed(0)
    imgs = torch.zeros(n, 28, 28, dtype=torch.uint8)
    yy, xx = torch.meshgrid(torch.arange(28), torch.arange(28), indexing="ij")
    for i in range(n):
        w = int(torch.randint(3, 7, (1,), generator=g))
        imgs[i, 5:23, 14 - w: 14 + w] = 255
        if i % 2:
            imgs[i][((yy - 14) ** 2 + (xx - 14) ** 2 - 40).abs() < 12] = 255
    return imgs, torch.arange(n) % 10


@pytest.fixture(scope="module")
def digits_data():
    if MNIST.is_dir():
        from warpaint.apps.digits import load_mnist

        return load_mnist(MNIST)
    return _fake_digits()


def _set_transform(stn: SpatialTransformer, values: list[float]) -> None:
    """Make the transformer output fixed parameters (its last layer's weights are zero)."""
    last = [m for m in stn.localization.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias.copy_(torch.tensor(values))


def _rot_theta(deg: float, scale: float = 1.0, shift=(0.0, 0.0)) -> torch.Tensor:
    a = math.radians(deg)
    c, s = math.cos(a) * scale, math.sin(a) * scale
    return torch.tensor([[[c, -s, shift[0]], [s, c, shift[1]]]])


# -- boxes ----------------------------------------------------------------------------------
class TestBoxMapping:
    # (theta, box in the output, input (H, W), output (H, W), expected box in the input)
    HAND_CASES = {
        # theta maps output (x, y) to input (-y, x); output box edges 10..30 x 20..60 of 128 px
        # -> normalized x in {-0.84375, -0.53125}, y in {-0.6875, -0.0625}
        # -> input x = -y in {0.0625, 0.6875} = px 68..108, y = x = px 10..30
        "quarter_turn": ([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]], [10.0, 20.0, 30.0, 60.0],
                         (128, 128), (128, 128), [68.0, 10.0, 108.0, 30.0]),
        # x_in = 0.5 x + 0.25, y_in = 0.5 y: the whole output is input px 48..112 x 32..96
        "zoom_and_shift": ([[0.5, 0.0, 0.25], [0.0, 0.5, 0.0]], [0.0, 0.0, 128.0, 128.0],
                           (128, 128), (128, 128), [48.0, 32.0, 112.0, 96.0]),
        # H = 64, W = 128; x_in = 0.5 x + 0.5, y_in = y: the whole output is input px 64..128 x 0..64
        "wide_image": ([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]], [0.0, 0.0, 128.0, 64.0],
                       (64, 128), (64, 128), [64.0, 0.0, 128.0, 64.0]),
        # identity from a 32 x 64 output onto a 64 x 128 input: pixel edges scale by 2
        "between_sizes": ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [8.0, 4.0, 20.0, 30.0],
                          (64, 128), (32, 64), [16.0, 8.0, 40.0, 60.0]),
    }

    @pytest.mark.parametrize("case", list(HAND_CASES))
    def test_by_hand(self, case):
        theta, box, src_size, dst_size, expected = self.HAND_CASES[case]
        out = detection.boxes_to_source(torch.tensor([box]), torch.tensor(theta), src_size, dst_size)
        torch.testing.assert_close(out, torch.tensor([expected]), atol=1e-4, rtol=0)

    def test_turned_box_grows_to_its_corners(self):
        # a centred 32 px square turned 45 degrees spans +-16 sqrt 2 around the centre
        out = detection.boxes_to_source(torch.tensor([[48.0, 48.0, 80.0, 80.0]]), _rot_theta(45)[0],
                                        (128, 128), (128, 128))
        r = 16 * math.sqrt(2)
        torch.testing.assert_close(out, torch.tensor([[64 - r, 64 - r, 64 + r, 64 + r]]), atol=1e-3, rtol=0)

    def test_agrees_with_the_image_warp(self):
        # a filled rectangle in the input; the view samples it with theta; the view's tight box
        # mapped back through theta covers the rectangle to within a pixel
        img = torch.zeros(1, 1, 128, 128)
        img[..., 40:70, 30:90] = 1.0
        theta = _rot_theta(0, 0.7, (0.1, -0.15))
        view = sample(img, affine_grid(theta, (128, 128), align_corners=False), padding_mode="zeros")
        box = boxes_from_masks(view[:, 0] > 0.5)
        back = detection.boxes_to_source(box, theta[0], (128, 128), (128, 128))
        torch.testing.assert_close(back, torch.tensor([[30.0, 40.0, 90.0, 70.0]]), atol=1.0, rtol=0)

    def test_boxes_from_masks(self):
        m = torch.zeros(2, 10, 12, dtype=torch.bool)
        m[0, 2:5, 3:9] = True
        m[1, 9, 11] = True
        assert boxes_from_masks(m).tolist() == [[3.0, 2.0, 9.0, 5.0], [11.0, 9.0, 12.0, 10.0]]
        assert boxes_from_masks(m[:0]).shape == (0, 4)


# -- masks ----------------------------------------------------------------------------------
class TestUnwarp:
    def test_restores_a_known_mask(self):
        yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
        mask = ((xx - 60) ** 2 + (yy - 66) ** 2 < 25 ** 2) | ((xx - 70).abs() < 6) & ((yy - 50).abs() < 35)
        m = mask.float()[None, None]
        theta = _rot_theta(30, 0.9, (0.05, -0.08))
        view = sample(m, affine_grid(theta, (128, 128), align_corners=False), padding_mode="zeros")
        back = segmentation.unwarp(view, theta, padding_mode="zeros")[0, 0] > 0.5
        iou = (back & mask).sum() / (back | mask).sum()
        assert iou > 0.98
        assert not torch.equal(view[0, 0] > 0.5, mask)      # the view really moved the mask

    def test_segmenter_output_lines_up_with_the_input(self):
        # a U-Net stand-in that returns its input: the segmenter's output must be the input
        # itself (wherever the turned view saw it), whatever the transformer does
        class Echo(torch.nn.Module):
            def forward(self, x):
                return x

        stn = SpatialTransformer(1, kind="rigid")
        _set_transform(stn, [math.cos(0.5), math.sin(0.5), 0.05, 0.0])
        model = segmentation.STNSegmenter(Echo(), stn)  # type: ignore[arg-type]
        x = torch.zeros(1, 1, 96, 96)
        x[..., 30:60, 40:55] = 1.0
        out, params = model(x)
        assert not torch.allclose(model.transform(x)[0], x, atol=0.1)
        centre = (slice(None), slice(None), slice(20, 76), slice(20, 76))
        assert (out[centre] - x[centre]).abs().mean() < 0.03
        assert params.shape == (1, 2, 3)

    @pytest.mark.parametrize("stn, match", [
        (SpatialTransformer(1, kind="tps"), "masks cannot be mapped back through a thin-plate spline"),
        (SpatialTransformer(1, kind="affine", output_size=(32, 32)), "must keep the input size"),
    ])
    def test_segmenter_refuses_a_transformer_it_cannot_undo(self, stn, match):
        with pytest.raises(ValueError, match=match):
            segmentation.STNSegmenter(torch.nn.Identity(), stn)  # type: ignore[arg-type]


class TestRigidKind:
    def test_rotation_without_zoom(self):
        stn = SpatialTransformer(1, kind="rigid")
        _set_transform(stn, [3.0, 4.0, 0.1, 0.2])
        _, theta = stn(torch.rand(2, 1, 20, 20))
        torch.testing.assert_close(torch.linalg.det(theta[:, :, :2]), torch.ones(2))
        torch.testing.assert_close(theta[0, :, 2], torch.tensor([0.1, 0.2]))

    def test_inverse(self):
        stn = SpatialTransformer(1, kind="similarity")
        theta = _rot_theta(20, 1.3, (0.1, -0.2))
        both = torch.linalg.inv(torch.cat([stn.inverse(theta), torch.tensor([[[0.0, 0.0, 1.0]]])], 1))
        torch.testing.assert_close(both[:, :2], theta, atol=1e-5, rtol=0)
        with pytest.raises(ValueError):
            SpatialTransformer(1, kind="tps").inverse(torch.zeros(1, 16, 2))


# -- data -----------------------------------------------------------------------------------
class TestCanvases:
    def test_ground_truth_is_exact(self, digits_data):
        c = canvas.make_canvases(*digits_data, 6, torch.Generator().manual_seed(3))
        assert c.images.shape == (6, 1, 128, 128) and c.semantic.shape == (6, 128, 128)
        for i in range(6):
            assert 1 <= len(c.boxes[i]) <= 3
            for box, mask, lab in zip(c.boxes[i], c.masks[i], c.labels[i], strict=True):
                x1, y1, x2, y2 = box.long().tolist()
                assert mask.sum() > 20
                assert mask[y1:y2, x1:x2].sum() == mask.sum()          # the box holds the strokes
                assert mask[y1, x1:x2].any() and mask[y2 - 1, x1:x2].any()  # and is tight
                assert (c.images[i, 0][mask] > canvas.STROKE).float().mean() > 0.9
                assert (c.semantic[i][mask] == lab + 1).float().mean() > 0.9
            assert torch.equal(c.semantic[i] > 0, c.masks[i].any(0))

    def test_undistorted_twin_has_the_same_layout(self, digits_data):
        a = canvas.make_canvases(*digits_data, 4, torch.Generator().manual_seed(5))
        b = canvas.make_canvases(*digits_data, 4, torch.Generator().manual_seed(5), distorted=False)
        torch.testing.assert_close(b.theta, torch.eye(2, 3).expand(4, 2, 3))
        assert not torch.allclose(a.theta, b.theta)
        assert [t.tolist() for t in a.labels] == [t.tolist() for t in b.labels]
        assert not torch.equal(a.images, b.images)
        # the distorted boxes are those of the undistorted masks under the sheet's distortion
        grid = affine_grid(a.theta, (128, 128), align_corners=False)
        for i in range(4):
            m = sample(b.masks[i][:, None].float(), grid[i: i + 1].expand(len(b.masks[i]), -1, -1, -1),
                       padding_mode="zeros")[:, 0] > 0.5
            torch.testing.assert_close(boxes_from_masks(m), a.boxes[i], atol=1.5, rtol=0)

    def test_seeded(self, digits_data):
        a = canvas.make_canvases(*digits_data, 3, torch.Generator().manual_seed(1))
        b = canvas.make_canvases(*digits_data, 3, torch.Generator().manual_seed(1))
        assert torch.equal(a.images, b.images) and torch.equal(a.semantic, b.semantic)


# -- the wrappers ---------------------------------------------------------------------------
class TestWrappers:
    @pytest.mark.parametrize("stn", [False, True])
    def test_detector_any_size_and_batch(self, stn):
        model = detection.make_model(detection.Config(stn=stn, size=64, width=8)).eval()
        model.detector.roi_heads.score_thresh = 0.0      # untrained: keep whatever it finds
        if stn:
            _set_transform(model.stn, [math.cos(0.6), math.sin(0.6), 0.1, -0.05])
        for shape in ((1, 1, 64, 64), (3, 1, 50, 90)):
            dets = model(torch.rand(*shape))
            assert len(dets) == shape[0]
            assert sum(len(d["boxes"]) for d in dets) > 0
            for d in dets:
                b = d["boxes"]
                assert b.shape[1] == 4 and len(d["labels"]) == len(d["scores"]) == len(b)
                assert (b[:, :2] >= 0).all() and (b[:, 2] <= shape[3]).all() and (b[:, 3] <= shape[2]).all()
                assert (b[:, 2:] >= b[:, :2]).all()

    def test_transformer_must_be_affine_family_for_equivariance(self):
        from warpaint.errors import InputError

        with pytest.raises(InputError):
            detection.make_model(detection.Config(stn=True, stn_kind="projective"))
        detection.make_model(detection.Config(stn=True, stn_kind="projective", equivariance=0.0, width=8))
        with pytest.raises(InputError):
            segmentation.make_model(segmentation.Config(equivariance=-1.0))

    @pytest.mark.parametrize("stn,encoder", [(False, False), (True, False), (True, True)])
    def test_segmenter_any_size_and_batch(self, stn, encoder):
        model = segmentation.make_model(segmentation.Config(stn=stn, stn_encoder=encoder, width=4)).eval()
        for shape in ((1, 1, 32, 32), (2, 1, 37, 53)):
            logits, params = model(torch.rand(*shape))
            assert logits.shape == (shape[0], canvas.N_CLASSES, *shape[2:])
            assert (params is None) != stn

    def test_detector_targets_follow_the_view(self, digits_data):
        # a transformer turned by 20 degrees: training targets in its view are the tight
        # boxes of the masks warped into the view, and they differ from the originals
        model = detection.make_model(detection.Config(stn=True, size=128, width=8))
        _set_transform(model.stn, [math.cos(0.35), math.sin(0.35), 0.0, 0.0])
        c = canvas.make_canvases(*digits_data, 2, torch.Generator().manual_seed(2))
        _, params = model.transform(c.images)
        view_targets = model.targets_in_view(c.targets(), params, (128, 128))
        for t, orig, p in zip(view_targets, c.targets(), params.detach(), strict=True):
            assert len(t["boxes"]) == len(orig["boxes"])
            assert not torch.allclose(t["boxes"], orig["boxes"], atol=2)
            # mapped back, each view box covers the original tight box (to a pixel)
            back = detection.boxes_to_source(t["boxes"], p, (128, 128), (128, 128))
            assert (back[:, :2] <= orig["boxes"][:, :2] + 1).all()
            assert (back[:, 2:] >= orig["boxes"][:, 2:] - 1).all()
        # without masks, boxes are mapped through the inverse transform: they contain the
        # tight boxes of the warped masks
        no_masks = [{"boxes": t["boxes"], "labels": t["labels"]} for t in c.targets()]
        for t, loose in zip(view_targets, model.targets_in_view(no_masks, params, (128, 128)), strict=True):
            assert (loose["boxes"][:, :2] <= t["boxes"][:, :2] + 1).all()
            assert (loose["boxes"][:, 2:] >= t["boxes"][:, 2:] - 1).all()


# -- training -------------------------------------------------------------------------------
class TestTraining:
    def test_stop_request_flags_the_first_ctrl_c_and_raises_on_the_second(self):
        import os
        import signal

        before = signal.getsignal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            with training.StopRequest(second_press_raises=True) as stop:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):          # let the handler run
                    if stop.requested:
                        break
                assert stop.requested
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(10_000):
                    pass
        assert signal.getsignal(signal.SIGINT) is before
        with training.StopRequest() as stop:  # without second_press_raises: only the flag
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
        assert stop.requested

    def test_detector_steps_lower_the_loss(self, digits_data):
        torch.manual_seed(0)
        model = detection.make_model(detection.Config(stn=True, size=64, width=8))
        c = canvas.make_canvases(*digits_data, 4, torch.Generator().manual_seed(0),
                                 canvas.CanvasConfig(size=64, digit_scale=(0.6, 0.8)))

        def loss_of():
            losses = model(c.images, c.targets())
            losses.pop("stn_params")
            return sum(losses.values())

        history, _ = training.fit(model, lambda g: (loss_of(), {}), steps=25, lr=3e-3, seed=0,
                                  config={}, progress=False)
        first, last = history[0]["total"], sum(h["total"] for h in history[-3:]) / 3
        assert last < 0.7 * first, (first, last)

    def test_segmenter_steps_lower_the_loss(self, digits_data):
        model = segmentation.make_model(segmentation.Config(stn=True, width=4))
        c = canvas.make_canvases(*digits_data, 4, torch.Generator().manual_seed(0),
                                 canvas.CanvasConfig(size=48, digit_scale=(0.5, 0.7)))

        def loss_of():
            return torch.nn.functional.cross_entropy(model(c.images)[0], c.semantic)

        history, _ = training.fit(model, lambda g: (loss_of(), {}), steps=25, lr=1e-2, seed=0,
                                  config={}, progress=False)
        assert history[-1]["total"] < 0.8 * history[0]["total"]

    def test_detector_resume_gives_the_same_losses(self, tmp_path, digits_data, ctrl_c_at_step):
        # torchvision samples proposals with torch's global generator: fit reseeds it per step
        cfg = detection.Config(stn=True, width=8, size=64, steps=4, batch_size=2)
        _, full = detection.train(cfg, digits_data, progress=False)
        ck = tmp_path / "det.pt"
        ctrl_c_at_step(2)
        with pytest.raises(KeyboardInterrupt):
            detection.train(cfg, digits_data, checkpoint=ck, progress=False)
        _, resumed = detection.train(cfg, digits_data, checkpoint=ck, progress=False)
        assert [h["total"] for h in resumed["history"]] == pytest.approx(
            [h["total"] for h in full["history"]], rel=1e-5)

    def test_resume_gives_the_same_losses(self, tmp_path, digits_data, ctrl_c_at_step):
        cfg = segmentation.Config(stn=True, width=4, size=32, steps=6, batch_size=2)
        _, full = segmentation.train(cfg, digits_data, progress=False)
        # the same run, interrupted (Ctrl-C) at step 3 and resumed from its checkpoint
        ck = tmp_path / "seg.pt"
        ctrl_c_at_step(3)
        with pytest.raises(KeyboardInterrupt):
            segmentation.train(cfg, digits_data, checkpoint=ck, progress=False)
        assert torch.load(ck, weights_only=False)["step"] == 3
        _, resumed = segmentation.train(cfg, digits_data, checkpoint=ck, progress=False)
        assert [h["total"] for h in resumed["history"]] == pytest.approx(
            [h["total"] for h in full["history"]], rel=1e-5)


# -- command line ---------------------------------------------------------------------------
@pytest.mark.skipif(not MNIST.is_dir(), reason="../shared/datasets/mnist not found")
class TestCLI:
    def test_seg_train_and_eval(self, tmp_path, capsys):
        from warpaint.cli import main

        out = tmp_path / "seg"
        assert main(["stn", "seg-train", "--data", str(MNIST), "--model", "stn", "--steps", "2",
                     "--batch-size", "2", "--test-canvases", "5", "--out", str(out), "-q"]) == 0
        assert (out / "seg_stn.pt").exists() and (out / "seg_stn_loss.png").exists()
        assert main(["stn", "seg-eval", "--data", str(MNIST), "--model", "stn", "--out", str(out), "-q"]) == 0
        res = json.loads((out / "seg_results.json").read_text())["stn"]
        for name in ("undistorted", "distorted"):
            assert 0 <= res["eval"][name]["miou"] <= 1
        assert res["train"]["steps"] == 2 and (out / "seg_stn_predictions.png").exists()
        # retrained with other settings: the old model's evaluation goes with it
        assert main(["stn", "seg-train", "--data", str(MNIST), "--model", "stn", "--steps", "3",
                     "--batch-size", "2", "--test-canvases", "5", "--out", str(out), "-q"]) == 0
        res = json.loads((out / "seg_results.json").read_text())["stn"]
        assert res["train"]["steps"] == 3 and "eval" not in res
        assert not (out / "seg_stn_predictions.png").exists()
        assert main(["stn", "seg-eval", "--data", str(MNIST), "--model", "stn", "--out", str(out), "-q"]) == 0
        res = json.loads((out / "seg_results.json").read_text())["stn"]
        assert res["eval"]["config"] == res["train"]["config"]

    def test_bad_input(self, tmp_path, capsys):
        from warpaint.cli import main

        assert main(["stn", "detect-eval", "--data", str(MNIST), "--out", str(tmp_path), "-q"]) == 2
        assert "no checkpoint" in capsys.readouterr().err
        (tmp_path / "seg_stn.pt").write_bytes(b"")
        assert main(["stn", "seg-eval", "--data", str(MNIST), "--model", "stn", "--out", str(tmp_path)]) == 2
        assert "not a readable checkpoint" in capsys.readouterr().err
        assert main(["stn", "seg-train", "--data", str(MNIST), "--model", "stn", "--out", str(tmp_path)]) == 2
        assert main(["stn", "seg-train", "--data", str(MNIST), "--equivariance", "-1",
                     "--out", str(tmp_path)]) == 2
        assert main(["stn", "detect-train", "--data", str(MNIST), "--stn-kind", "projective",
                     "--out", str(tmp_path)]) == 2
        assert main(["stn", "seg-train", "--data", str(MNIST), "--out", str(tmp_path / "seg_stn.pt")]) == 2
        assert "Traceback" not in capsys.readouterr().err
        assert main(["stn", "seg-train", "--data", str(MNIST), "--steps", "0", "--out", str(tmp_path)]) == 2
        assert main(["stn", "seg-train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
