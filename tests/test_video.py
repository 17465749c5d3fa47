"""Video: optical flow, warping, occlusion masks, video files in and out (audio kept, atomic,
partial on Ctrl-C), temporal consistency with both methods, and the ``warpaint video`` command."""

from __future__ import annotations

import math
import signal
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", reason="PyAV is a dependency of warpaint: pip install -e .")
pytest.importorskip("cv2", reason="OpenCV is a dependency of warpaint: pip install -e .")

from tests.test_cli import assert_one_line_error, cli  # noqa: E402
from warpaint.errors import InputError, Interrupted  # noqa: E402
from warpaint.flow import occlusion_mask, optical_flow, pair_mask, warp, warping_error  # noqa: E402
from warpaint.io import save_image  # noqa: E402
from warpaint.jobs import make_method  # noqa: E402
from warpaint.stylize import StylizeConfig, Stylizer, Temporal  # noqa: E402
from warpaint.video import VideoConfig, plan_frames, restore_detail, run_video  # noqa: E402
from warpaint.videoio import VideoWriter, probe, read_frames  # noqa: E402

FPS = 12


def texture(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth random texture (1, 3, h, w) in [0, 1] that flow can follow."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 4 + 2, w // 4 + 2, generator=g)
    big = torch.nn.functional.interpolate(coarse, size=(h + 8, w + 8), mode="bicubic", align_corners=False)
    return big[..., 4:4 + h, 4:4 + w].clamp(0, 1)


def moving_frames(n: int, h: int = 72, w: int = 96, speed: int = 2) -> list[np.ndarray]:
    """``n`` frames of a texture panning right by ``speed`` px per frame, as (h, w, 3) uint8."""
    big = texture(h, w + speed * n)
    return [(big[0, :, :, speed * (n - i):speed * (n - i) + w].permute(1, 2, 0).numpy() * 255)
            .round().astype(np.uint8) for i in range(n)]


def write_test_video(path: Path, frames: list[np.ndarray], *, fps: int = FPS, audio: bool = True) -> Path:
    """An H.264 video with a 440 Hz AAC tone as long as the video (PyAV directly, not warpaint)."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.height, vs.width = frames[0].shape[:2]
        vs.pix_fmt = "yuv420p"
        a_s = out.add_stream("aac", rate=44100, layout="mono") if audio else None
        for f in frames:
            for p in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        if a_s is not None:
            samples = int(44100 * len(frames) / fps)
            tone = (0.2 * np.sin(2 * math.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="flt",
                                                   layout="mono")
                chunk.sample_rate, chunk.pts = 44100, start
                for p in a_s.encode(chunk):
                    out.mux(p)
            for p in a_s.encode(None):
                out.mux(p)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """12 frames (1 s) of a panning texture, 96x72, with audio."""
    return write_test_video(tmp_path_factory.mktemp("video") / "clip.mp4", moving_frames(12))


@pytest.fixture
def style_file(tmp_path) -> Path:
    from tests.conftest import make_stripes

    path = tmp_path / "style.png"
    save_image(make_stripes(), path)
    return path


def streams(path: Path) -> dict[str, float]:
    """Duration in seconds of each stream type of a file: the end of its last packet."""
    ends: dict[str, float] = {}
    with av.open(str(path)) as c:
        for p in c.demux():
            if p.pts is not None:
                end = float((p.pts + (p.duration or 0)) * p.time_base)
                ends[p.stream.type] = max(ends.get(p.stream.type, 0.0), end)
    return ends


# -- flow -----------------------------------------------------------------------------------------
class TestFlow:
    def test_warp_identity_and_shift(self):
        img = torch.rand(1, 3, 10, 12)
        assert torch.allclose(warp(img, torch.zeros(1, 2, 10, 12)), img, atol=1e-6)
        shift = torch.zeros(1, 2, 10, 12)
        shift[:, 1] = -2                                  # read two rows up
        assert torch.allclose(warp(img, shift)[..., 2:, :], img[..., :-2, :], atol=1e-5)

    def test_dis_finds_a_translation(self):
        frames = [torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255 for f in moving_frames(2, speed=3)]
        flow = optical_flow(frames[1], frames[0])        # current -> previous: it came from 3 px left
        inner = flow[..., 8:-8, 8:-8]
        assert abs(float(inner[:, 0].median()) + 3) < 0.5
        assert abs(float(inner[:, 1].median())) < 0.5
        assert float(warping_error(frames[0], frames[1], flow, torch.ones(1, 1, 72, 96))) < 2e-3

    def test_occlusion_mask_drops_what_comes_into_view_and_disagreement(self):
        b = torch.zeros(1, 2, 16, 16)
        b[:, 0] = 3.0                                      # every pixel came from 3 px to its right
        f = -b                                             # consistent forward flow
        mask = occlusion_mask(f, b)
        assert mask[..., :, -3:].sum() == 0                # x + 3 leaves the frame: new pixels
        assert mask[..., :, :-4].min() == 1
        wrong = torch.zeros_like(b)                        # forward says nothing moved
        assert occlusion_mask(wrong, b)[..., :, :-4].max() == 0

    def test_flow_refuses_mismatched_frames(self):
        with pytest.raises(InputError, match="one size"):
            optical_flow(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))


# -- files ------------------------------------------------------------------------------------------
class TestVideoFiles:
    def test_probe_and_read(self, clip):
        info = probe(clip)
        assert (info.width, info.height, info.fps, info.frames, info.audio) == \
            (96, 72, Fraction(FPS), 12, True)
        frames = list(read_frames(clip))
        assert len(frames) == 12 and frames[0].shape == (1, 3, 72, 96)
        assert 0 <= float(frames[0].min()) and float(frames[0].max()) <= 1
        assert len(list(read_frames(clip, fps=Fraction(6)))) == 6
        assert len(list(read_frames(clip, max_frames=5))) == 5

    def test_not_a_video(self, tmp_path):
        bad = tmp_path / "notes.mp4"
        bad.write_text("hello")
        with pytest.raises(InputError, match="not a readable video"):
            probe(bad)
        with pytest.raises(InputError, match="not a readable video"):
            probe(tmp_path / "missing.mp4")

    def test_writer_copies_audio_and_cuts_it_for_a_shorter_video(self, clip, tmp_path):
        w = VideoWriter(tmp_path / "short.mp4", fps=Fraction(FPS), size=(72, 96), audio_from=clip)
        for f in list(read_frames(clip))[:6]:
            w.write(f)
        w.finish(whole_audio=False)
        assert not (tmp_path / "short.mp4").exists()       # nothing under the name until committed
        w.commit(tmp_path / "short.mp4")
        d = streams(tmp_path / "short.mp4")
        assert d["video"] == pytest.approx(0.5, abs=0.01)
        assert d["audio"] == pytest.approx(0.5, abs=0.05)   # cut at the video's end (AAC frames: 23 ms)
        assert [p.name for p in tmp_path.iterdir()] == ["short.mp4"]
        with av.open(str(tmp_path / "short.mp4")) as c:
            assert [s.type for s in c.streams] == ["video", "audio"]

    def test_writer_discard_leaves_nothing(self, clip, tmp_path):
        w = VideoWriter(tmp_path / "gone.mp4", fps=Fraction(FPS), size=(72, 96), audio_from=clip)
        w.write(next(read_frames(clip)))
        w.discard()
        assert list(tmp_path.iterdir()) == []


# -- temporal consistency ---------------------------------------------------------------------------
def test_plan_frames_refuses_a_higher_rate():
    from warpaint.videoio import VideoInfo

    info = VideoInfo("v.mp4", 96, 72, Fraction(12), 12, 1.0, False)
    assert plan_frames(info, VideoConfig(fps=6)) == (Fraction(6), 6)
    with pytest.raises(InputError, match="above the source"):
        plan_frames(info, VideoConfig(fps=24))


def test_restore_detail_gives_back_lost_detail():
    sharp = texture(32, 32, seed=3)
    noise = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ref = (0.5 * sharp + 0.5 * noise)
    soft = (0.5 * sharp + 0.25 * noise + 0.125)            # half the fine detail
    out = restore_detail(soft, ref, 1.0)
    k = lambda x: (x - torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)).pow(2).mean()  # noqa: E731
    assert k(out) > 1.5 * k(soft)
    assert restore_detail(soft, ref, 0.0) is soft


def _fast(size: int = 64):
    return make_method(StylizeConfig(size=size, device="cpu"), [texture(64, 64, seed=5)], fast=True)


def test_temporal_blend_lowers_the_warping_error(clip, tmp_path):
    """The fast model's frames flicker; linked frames flicker less (same flow-based metric as
    the benchmark, on the input frames with Farneback's flow)."""
    method = _fast()
    errors = {}
    for temporal in (False, True):
        dest = tmp_path / f"{temporal}.mp4"
        outcome = run_video(str(clip), str(dest), method, VideoConfig(temporal=temporal, crf=0))
        assert outcome.status == "ok" and outcome.summary["frames"] == 12
        outs = list(read_frames(dest))
        ins = [torch.nn.functional.interpolate(f, size=outs[0].shape[-2:], mode="area")
               for f in read_frames(clip)]
        e = []
        for t in range(1, len(outs)):
            b, m = pair_mask(ins[t - 1], ins[t], method="farneback")
            e.append(warping_error(outs[t - 1], outs[t], b, m))
        errors[temporal] = sum(e) / len(e)
    assert errors[True] < 0.8 * errors[False], errors


def test_run_video_fps_max_frames_and_audio(clip, tmp_path):
    dest = tmp_path / "out.mkv"
    outcome = run_video(str(clip), str(dest), _fast(48), VideoConfig(fps=6, max_frames=4))
    info = probe(dest)
    assert (info.fps, info.frames, info.audio) == (Fraction(6), 4, True)
    assert outcome.summary["size"] == [48, 36] and outcome.summary["output_fps"] == 6
    assert streams(dest)["audio"] == pytest.approx(4 / 6, abs=0.06)


def test_ctrl_c_keeps_a_valid_shorter_video(clip, tmp_path):
    dest = tmp_path / "out.mp4"
    dest_done = tmp_path / "out.partial.mp4"
    dest_done.write_bytes(b"an earlier partial: never replaced")

    def interrupt(report):
        if report.frame == 5:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as e:
        run_video(str(clip), str(dest), _fast(48), on_frame=interrupt)
    partial = tmp_path / "out.partial-2.mp4"
    assert e.value.outcome.output == str(partial) and e.value.outcome.summary["frames"] == 5
    assert not dest.exists()
    assert dest_done.read_bytes() == b"an earlier partial: never replaced"
    assert probe(partial).frames == 5 and len(list(read_frames(partial))) == 5
    assert streams(partial)["audio"] == pytest.approx(5 / FPS, abs=0.06)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.partial-2.mp4", "out.partial.mp4"]


def test_engine_temporal_loss_pulls_toward_the_warped_frame(vgg_random):
    content, style = texture(32, 32, seed=1), texture(32, 32, seed=2)
    target = texture(32, 32, seed=3)
    cfg = StylizeConfig(size=32, min_size=32, steps=4, device="cpu", dtype="float32")
    stylizer = Stylizer(cfg, pretrained=False)
    mask = torch.ones(1, 1, 32, 32)
    loose = stylizer.run(content, [style])
    seen = []
    tight = stylizer.run_detailed(content, [style], temporal=Temporal(target, mask, 1e4),
                                  callback=lambda it: seen.append(it.losses)).image
    assert (tight - target).abs().mean() < 0.5 * (loose - target).abs().mean()
    assert all("temporal" in losses for losses in seen) and len(seen) == 4
    with pytest.raises(InputError, match="temporal target"):
        stylizer.run_detailed(content, [style], temporal=Temporal(target * 2, mask, 1.0))


def test_optimize_method_runs_linked_frames(clip, tmp_path):
    method = make_method(StylizeConfig(size=32, min_size=32, steps=2, device="cpu", dtype="float32"),
                         [texture(32, 32, seed=5)])
    steps = []
    dest = tmp_path / "opt.mp4"
    outcome = run_video(str(clip), str(dest), method,
                        VideoConfig(method="optimize", max_frames=3, frame_steps=1),
                        on_frame=lambda r: steps.append(r.step))
    assert outcome.summary["frames"] == 3 and probe(dest).frames == 3
    per_frame = [s.steps for s in steps if s is not None]
    assert per_frame.count(2) >= 1 and per_frame.count(1) == 2      # first frame: --steps; later: frame_steps
    assert all("temporal" in s.losses for s in steps if s is not None and s.steps == 1)


# -- the command ------------------------------------------------------------------------------------
class TestCommand:
    def test_fast_writes_the_video(self, capsys, clip, style_file, tmp_path):
        dest = tmp_path / "out.mp4"
        rc, _, err = cli(capsys, "video", clip, style_file, "-o", dest, "--size", "48", "--max-frames", "3",
                         "-q", "--json", tmp_path / "run.json")
        assert rc == 0, err
        import json

        summary = json.loads((tmp_path / "run.json").read_text())
        assert summary["frames"] == 3 and summary["status"] == "ok" and summary["temporal"] is True
        assert probe(dest).frames == 3

    @pytest.mark.parametrize("args, needle", [
        (["{missing}", "{style}", "-o", "{out}"], "not a readable video"),
        (["{text}", "{style}", "-o", "{out}"], "not a readable video"),
        (["{clip}", "{style}", "-o", "{tmp}/out.avi"], "extension"),
        (["{clip}", "{style}", "-o", "{clip}"], "input"),
        (["{clip}", "{style}", "-o", "{out}", "--fps", "100"], "above the source"),
        (["{clip}", "--method", "optimize", "-o", "{out}"], "style image"),
        (["{clip}", "{style}", "--method", "optimize", "--fast", "-o", "{out}"], "--method fast"),
        (["{clip}", "{style}", "--method", "optimize", "--ray", "-o", "{out}"], "--ray works with"),
        (["{clip}", "{style}", "-o", "{out}", "--blend", "1.5"], "blend"),
        (["{clip}", "{style}", "-o", "{out}", "--workers", "2"], "--workers works with --ray"),
        (["{clip}", "{style}", "-o", "{tmp}/finished.mp4"], "--overwrite"),
    ])
    def test_bad_input_is_one_line(self, capsys, clip, style_file, tmp_path, args, needle):
        (tmp_path / "notes.mp4").write_text("hello")
        (tmp_path / "finished.mp4").write_bytes(b"a finished video")
        fill = {"missing": tmp_path / "missing.mp4", "text": tmp_path / "notes.mp4", "clip": clip,
                "out": tmp_path / "out.mp4", "tmp": tmp_path, "style": style_file}
        rc, _, err = cli(capsys, "video", *[a.format(**fill) for a in args], "-q")
        assert_one_line_error(rc, err, needle)
        assert not (tmp_path / "out.mp4").exists()
        assert (tmp_path / "finished.mp4").read_bytes() == b"a finished video"

    def test_sigint_exits_130_with_a_partial_video(self, python, subprocess_env, tmp_path, style_file):
        src = write_test_video(tmp_path / "long.mp4", moving_frames(120, 96, 128, speed=1))
        dest = tmp_path / "out.mp4"
        cmd = [python, "-m", "warpaint", "video", str(src), str(style_file), "-o", str(dest), "--method",
               "optimize", "--size", "64", "--min-size", "64", "--steps", "3", "--frame-steps", "3",
               "--device", "cpu", "--dtype", "float32"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=subprocess_env)
        try:
            deadline = time.monotonic() + 120
            buf = b""
            while b" 2/120" not in buf:         # the progress bar shows 2 frames done
                chunk = proc.stderr.read1(4096)
                if not chunk and proc.poll() is not None:
                    pytest.fail(f"exited early ({proc.returncode}): {buf.decode(errors='replace')}")
                buf += chunk
                if time.monotonic() > deadline:
                    pytest.fail("no progress within 120 s")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = (buf + err).decode(errors="replace")
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "interrupted" in err
        assert not dest.exists()
        partial = tmp_path / "out.partial.mp4"
        frames = probe(partial).frames
        assert 2 <= frames < 120 and len(list(read_frames(partial))) == frames
        assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4", "out.partial.mp4", "style.png"]


def test_bunny_sample(shared_image, tmp_path):
    """The shared sample video: 640x360 at 24 fps with AAC audio, 6 frames at 12 fps."""
    src = shared_image("video/bunny.mp4")
    dest = tmp_path / "bunny.mp4"
    outcome = run_video(str(src), str(dest), _fast(128), VideoConfig(fps=12, max_frames=6))
    info = probe(dest)
    assert (info.width, info.height, info.fps, info.frames, info.audio) == (128, 72, Fraction(12), 6, True)
    assert outcome.summary["audio"] is True


def test_a_wrong_frame_count_in_the_container_does_not_cut_the_video(clip, tmp_path, monkeypatch):
    """The container's frame count only sizes the progress bar: the run goes to the last frame."""
    import dataclasses

    from warpaint import video

    real = video.probe
    monkeypatch.setattr(video, "probe", lambda path: dataclasses.replace(real(path), frames=1))
    reports = []
    outcome = run_video(str(clip), str(tmp_path / "out.mp4"), _fast(48), on_frame=reports.append)
    assert outcome.summary["frames"] == 12 and probe(tmp_path / "out.mp4").frames == 12
    assert reports[-1].frame == 12


def test_a_failing_finish_leaves_no_file(clip, tmp_path, monkeypatch):
    from warpaint.errors import OutputError
    from warpaint.videoio import VideoWriter as Writer

    def broken(self, **kw):
        raise OutputError("disk full")

    monkeypatch.setattr(Writer, "finish", broken)
    with pytest.raises(OutputError, match="disk full"):
        run_video(str(clip), str(tmp_path / "out.mp4"), _fast(48), VideoConfig(max_frames=3))
    assert list(tmp_path.iterdir()) == []


def test_frames_too_small_for_h264_are_refused_and_leave_no_file(tmp_path):
    from warpaint.errors import OutputError
    from warpaint.videoio import VideoWriter as Writer

    with pytest.raises(OutputError, match="too small for H.264"):
        Writer(tmp_path / "out.mp4", fps=Fraction(12), size=(1, 1))
    assert list(tmp_path.iterdir()) == []
