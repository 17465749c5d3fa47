"""Tests of ``warpaint batch`` (:mod:`warpaint.batch`): in this process, and on a local Ray
of two workers where one worker is killed mid-batch.

Runs use the shipped feed-forward model at 32-64 px. Ray is started once for the module
(about ten seconds); its tests skip when Ray is not installed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_cli import cli
from warpaint import batch
from warpaint.batch import MANIFEST

FAST = ["--fast", "--size", "32", "--device", "cpu", "-q"]


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warpaint: error: "), err
    for n in needles:
        assert n in err, (n, err)


def write_photos(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> list[Path]:
    """Random RGB photos of (W, H) ``sizes`` as p0.png, p1.png, ... in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (w, h) in enumerate(sizes):
        paths.append(folder / f"p{i}.png")
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.fixture
def world(tmp_path, image_files) -> dict[str, Path]:
    """photos/ (three images of different sizes), style.png and out/ (not yet made)."""
    write_photos(tmp_path / "photos", [(64, 48), (48, 64), (40, 40)])
    return {"photos": tmp_path / "photos", "style": image_files["style"], "out": tmp_path / "out",
            "json": tmp_path / "run.json"}


def run(capsys, world, *extra) -> tuple[int, list[dict], str]:
    rc, _, err = cli(capsys, "batch", world["photos"], world["style"], "-o", world["out"], *FAST,
                     "--json", world["json"], *extra)
    items = json.loads(world["json"].read_text()) if world["json"].exists() else []
    return rc, items, err


def stamps(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")}


# -- in this process --------------------------------------------------------------------------
class TestInProcess:
    def test_outputs_and_summary_like_stylize(self, capsys, world, tmp_path):
        rc, items, err = run(capsys, world)
        assert rc == 0, err
        assert sorted(p.name for p in world["out"].glob("*.png")) == ["p0.png", "p1.png", "p2.png"]
        for name, size in (("p0.png", (32, 24)), ("p1.png", (24, 32)), ("p2.png", (32, 32))):
            with Image.open(world["out"] / name) as im:
                assert im.size == size
        assert [i["status"] for i in items] == ["ok"] * 3
        assert [Path(i["output"]).name for i in items] == ["p0.png", "p1.png", "p2.png"]
        rc, _, err = cli(capsys, "stylize", world["photos"], world["style"], "-o", tmp_path / "s", *FAST,
                         "--json", tmp_path / "s.json")
        assert rc == 0, err
        same = json.loads((tmp_path / "s.json").read_text())
        assert [set(i) for i in items] == [set(i) for i in same]   # the same summary, item by item
        assert [i["styles"] for i in items] == [i["styles"] for i in same]

    def test_resume_skips_finished_outputs(self, capsys, world):
        assert run(capsys, world)[0] == 0
        before = stamps(world["out"])
        rc, items, err = run(capsys, world)
        assert rc == 0, err
        assert [i["status"] for i in items] == ["skipped"] * 3
        assert stamps(world["out"]) == before            # nothing was written again
        keys = json.loads((world["out"] / MANIFEST).read_text())["outputs"]
        assert sorted(keys) == ["p0.png", "p1.png", "p2.png"] and len(set(keys.values())) == 3

    def test_changed_content_or_settings_are_redone(self, capsys, world):
        assert run(capsys, world)[0] == 0
        write_photos(world["photos"], [(64, 48)], seed=1)   # p0.png has new pixels
        kept = (world["out"] / "p0.png").read_bytes()
        rc, items, err = run(capsys, world)                # a finished output is kept ...
        assert rc == 2 and "add --overwrite" in err
        assert [i["status"] for i in items] == ["error", "skipped", "skipped"]
        assert (world["out"] / "p0.png").read_bytes() == kept
        rc, items, err = run(capsys, world, "--overwrite")  # ... unless the user asks
        assert rc == 0, err
        assert [i["status"] for i in items] == ["ok", "skipped", "skipped"]
        kept = [(world["out"] / f"p{i}.png").read_bytes() for i in range(3)]
        rc, items, err = run(capsys, world, "--strength", "0.5")     # other settings: kept ...
        assert rc == 2 and [i["status"] for i in items] == ["error"] * 3
        assert [(world["out"] / f"p{i}.png").read_bytes() for i in range(3)] == kept
        rc, items, err = run(capsys, world)                          # ... and still resumable as made
        assert rc == 0 and [i["status"] for i in items] == ["skipped"] * 3, err
        rc, items, err = run(capsys, world, "--strength", "0.5", "--overwrite")
        assert rc == 0, err
        assert [i["status"] for i in items] == ["ok"] * 3
        assert all(i["strength"] == 0.5 for i in items)
        rc, items, err = run(capsys, world, "--strength", "0.5", "--detail", "1.2", "--overwrite")
        assert rc == 0, err
        assert [i["status"] for i in items] == ["ok"] * 3 and all(i["detail"] == 1.2 for i in items)

    def test_damaged_or_unrecorded_output_is_redone(self, capsys, world):
        assert run(capsys, world)[0] == 0
        data = (world["out"] / "p1.png").read_bytes()
        (world["out"] / "p1.png").write_bytes(data[: len(data) // 2])     # truncated
        manifest = json.loads((world["out"] / MANIFEST).read_text())
        del manifest["outputs"]["p2.png"]
        (world["out"] / MANIFEST).write_text(json.dumps(manifest))
        rc, items, err = run(capsys, world)   # (unrecorded: a run killed before its manifest was saved)
        assert rc == 0, err
        assert [i["status"] for i in items] == ["skipped", "ok", "ok"]
        with Image.open(world["out"] / "p1.png") as im:
            im.load()

    def test_ctrl_c_keeps_what_finished_and_resumes(self, capsys, world, monkeypatch):
        real = batch.BatchWorker.run
        calls = []

        def interrupting(self, job, known_key=None):
            calls.append(job)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real(self, job, known_key)

        monkeypatch.setattr(batch.BatchWorker, "run", interrupting)
        rc, items, err = run(capsys, world)
        assert rc == 130, err
        assert "interrupted" in err and "Traceback" not in err
        assert [(Path(i["output"]).name, i["status"]) for i in items] == [("p0.png", "ok")]
        assert sorted(p.name for p in world["out"].glob("*.png")) == ["p0.png"]
        monkeypatch.setattr(batch.BatchWorker, "run", real)
        rc, items, err = run(capsys, world)
        assert rc == 0, err
        assert [i["status"] for i in items] == ["skipped", "ok", "ok"]

    def test_a_bad_image_fails_alone(self, capsys, world):
        (world["photos"] / "broken.png").write_bytes(b"not a png")
        rc, items, err = run(capsys, world)
        assert rc == 2
        assert [i["status"] for i in items] == ["error", "ok", "ok", "ok"]
        assert "broken.png" in items[0]["error"] and "broken.png" in err
        assert not (world["out"] / "broken.png").exists()


class TestBadInput:
    def test_missing_folder(self, capsys, world, tmp_path):
        rc, _, err = cli(capsys, "batch", tmp_path / "nope", world["style"], "-o", world["out"], *FAST)
        assert_one_line_error(rc, err, "nope", "not found")
        assert not world["out"].exists()

    def test_file_instead_of_folder(self, capsys, world):
        rc, _, err = cli(capsys, "batch", world["style"], world["style"], "-o", world["out"], *FAST)
        assert_one_line_error(rc, err, "not a folder")

    @pytest.mark.parametrize("where", [".", "sub"])
    def test_output_in_input(self, capsys, world, where):
        out = world["photos"] / where
        rc, _, err = cli(capsys, "batch", world["photos"], world["style"], "-o", out, *FAST)
        assert_one_line_error(rc, err, "inside")
        assert sorted(p.name for p in world["photos"].iterdir()) == ["p0.png", "p1.png", "p2.png"]

    def test_no_images(self, capsys, world, tmp_path):
        (tmp_path / "empty").mkdir()
        rc, _, err = cli(capsys, "batch", tmp_path / "empty", world["style"], "-o", world["out"], *FAST)
        assert_one_line_error(rc, err, "no images")

    def test_no_style(self, capsys, world):
        rc, _, err = cli(capsys, "batch", world["photos"], "-o", world["out"], "--size", "32", "-q")
        assert_one_line_error(rc, err, "style")

    def test_workers_without_ray(self, capsys, world):
        rc, _, err = cli(capsys, "batch", world["photos"], world["style"], "-o", world["out"], *FAST,
                         "--workers", "2")
        assert_one_line_error(rc, err, "--workers", "--ray")

    def test_ray_not_installed(self, capsys, world, monkeypatch):
        monkeypatch.setitem(sys.modules, "ray", None)    # import ray raises ImportError
        rc, _, err = cli(capsys, "batch", world["photos"], world["style"], "-o", world["out"], *FAST, "--ray")
        assert_one_line_error(rc, err, 'pip install -e ".[ray]"')
        assert not list(world["out"].glob("*.png"))

    def test_zero_workers(self, capsys, world):
        rc, _, err = cli(capsys, "batch", world["photos"], world["style"], "-o", world["out"], *FAST,
                         "--ray", "--workers", "0")
        assert_one_line_error(rc, err, "--workers")


# -- on Ray -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with two CPUs (two workers), started once for the module."""
    ray = pytest.importorskip("ray", reason='Ray is not installed (pip install -e ".[ray]")')
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             object_store_memory=80 * 1024**2)
    yield ray
    ray.shutdown()


def test_actor_options_follow_the_cluster():
    assert batch.actor_options({"CPU": 2.0}, 2) == {"num_cpus": 1, "max_restarts": -1, "max_task_retries": 3}
    gpu = batch.actor_options({"CPU": 64.0, "GPU": 8.0}, 16, [32.0, 32.0])
    assert gpu["num_gpus"] == 0.5 and gpu["num_cpus"] == 4
    assert batch.actor_options({"CPU": 64.0}, 2, [8.0] * 8)["num_cpus"] == 8   # no node has 32
    assert batch.default_workers({"CPU": 64.0, "GPU": 8.0}) == 8


def test_unreachable_address(local_ray, capsys, world):
    rc, _, err = cli(capsys, "batch", world["photos"], world["style"], "-o", world["out"], *FAST,
                     "--address", "127.0.0.1:1")
    assert_one_line_error(rc, err, "--address 127.0.0.1:1", "no Ray cluster")
    assert not list(world["out"].glob("*.png"))


def test_ray_batch_survives_a_killed_worker(local_ray, capsys, tmp_path, image_files, monkeypatch):
    """Eight images on two workers; the worker that returns the first result is killed
    (SIGKILL). Ray restarts it and retries its tasks: every output exists once, whole, and
    the summary has one ``ok`` per image; a rerun skips them all."""
    photos = tmp_path / "photos"
    sizes = [(64, 48), (48, 64)] * 4
    write_photos(photos, sizes)
    out, report = tmp_path / "out", tmp_path / "run.json"
    pids: list[int] = []
    real = batch.run_batch

    def killing(*args, on_result=None, **kw):
        def hook(index, done):
            if not pids:
                os.kill(done.pid, signal.SIGKILL)
            pids.append(done.pid)
            on_result(index, done)
        return real(*args, on_result=hook, **kw)

    monkeypatch.setattr(batch, "run_batch", killing)
    argv = ["batch", photos, image_files["style"], "-o", out, "--fast", "--size", "64", "--device", "cpu",
            "-q", "--ray", "--json", report]
    rc, _, err = cli(capsys, *argv)
    assert rc == 0, err
    assert len(set(pids)) >= 3, pids          # two workers and the restarted one
    names = [f"p{i}.png" for i in range(8)]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, MANIFEST])   # each once, nothing else
    for name, (w, h) in zip(names, sizes, strict=True):
        with Image.open(out / name) as im:
            im.load()
            assert im.size == (64 * w // max(w, h), 64 * h // max(w, h))
    items = json.loads(report.read_text())
    assert [(Path(i["output"]).name, i["status"]) for i in items] == [(n, "ok") for n in names]
    assert all(i["torch_threads"] == 1 for i in items)
    rc, _, err = cli(capsys, *argv)
    assert rc == 0, err
    assert [i["status"] for i in json.loads(report.read_text())] == ["skipped"] * 8


def test_video_frames_on_ray_match_in_process(local_ray, tmp_path, image_files):
    """``warpaint video --ray``: the frames stylized by two Ray workers come back in order and
    equal the in-process ones (the flow, the blend and the encoding stay in the driver)."""
    pytest.importorskip("av", reason="PyAV is a dependency of warpaint: pip install -e .")
    from tests.test_video import moving_frames, write_test_video
    from warpaint.batch import BatchSpec, stylize_frames_on_ray
    from warpaint.stylize import StylizeConfig
    from warpaint.video import VideoConfig, run_video
    from warpaint.videoio import read_frames

    clip = write_test_video(tmp_path / "clip.mp4", moving_frames(8))
    cfg = StylizeConfig(size=48, device="cpu")
    spec = BatchSpec.from_files(cfg, [str(image_files["style"])], fast=True)
    method = spec.build()
    vcfg = VideoConfig(crf=0)
    here = run_video(str(clip), str(tmp_path / "here.mp4"), method, vcfg)
    there = run_video(str(clip), str(tmp_path / "ray.mp4"), method, vcfg,
                      stylized=lambda frames: stylize_frames_on_ray(frames, spec, workers=2))
    assert here.summary["frames"] == there.summary["frames"] == 8
    a, b = list(read_frames(tmp_path / "here.mp4")), list(read_frames(tmp_path / "ray.mp4"))
    assert len(a) == len(b) == 8
    for x, y in zip(a, b, strict=True):
        assert float((x - y).abs().mean()) < 0.01
    assert float((a[0] - a[7]).abs().mean()) > 0.02     # (the frames differ: order matters)


def test_settings_digest_follows_fineness_and_the_shipped_model(image_files, monkeypatch, tmp_path):
    """A batch's resume key changes with --fineness and with the shipped model file (whose
    run settings change between releases), so a resumed batch never reuses an old result."""
    import warpaint.feedforward as ff
    from warpaint.batch import BatchSpec
    from warpaint.stylize import StylizeConfig

    cfg, style = StylizeConfig(size=48, device="cpu"), [str(image_files["style"])]
    key = BatchSpec.from_files(cfg, style, fast=True).settings_digest()
    assert BatchSpec.from_files(cfg, style, fast=True, fineness=0.5).settings_digest() != key
    assert BatchSpec.from_files(cfg, style, fast=True).settings_digest() == key
    other = tmp_path / "other.pt"
    other.write_bytes(ff.shipped_model_path().read_bytes() + b"\0")
    monkeypatch.setattr(ff, "shipped_model_path", lambda: other)
    assert BatchSpec.from_files(cfg, style, fast=True).settings_digest() != key
