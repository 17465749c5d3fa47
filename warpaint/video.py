"""Stylize a video frame by frame with temporal consistency (Ruder et al. 2016), on the job
layer's methods.

Per frame, the method of :mod:`warpaint.jobs` runs: the feed-forward model by default, or the
optimization engine. From the second frame on, the previous *stylized* frame is warped into
the current one by the optical flow of the *input* frames (:mod:`warpaint.flow`: OpenCV DIS,
backward flow, an occlusion mask from forward-backward consistency), and then

- ``fast``: the new frame is blended with it, ``out = s + blend * mask * (warped - s)``, where
  the flow holds (the feed-forward model has no loss to add a term to);
- ``optimize``: the engine starts from it (warm start, one scale, ``frame_steps`` steps) and
  its loss gains Ruder's temporal term, ``temporal_weight * mean(mask * (x - warped)^2)``.

Frames stream through (one in memory at a time), the output is H.264 with the source's audio
copied (:mod:`warpaint.videoio`), written atomically. Ctrl-C or SIGTERM keeps the frames done
as a valid shorter video under a ``.partial`` name.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import torch
from torch import Tensor

from .errors import InputError, Interrupted, NumericalError, check_number
from .flow import DIS_PRESETS, pair_mask, warp
from .io import fit_long_side, free_partial_path, pil_to_tensor, resize
from .jobs import EngineMethod, FastMethod
from .stylize import Iterate, Temporal
from .training import StopRequest
from .videoio import VideoInfo, VideoWriter, probe, read_frames


@dataclass(frozen=True)
class VideoConfig:
    """How a video is run, beside the stylization options. The CLI's flags come from these."""

    method: Literal["fast", "optimize"] = field(default="fast", metadata={
        "help": "per frame: the feed-forward model (fast) or the optimization engine, warm-started "
                "from the previous frame", "choices": ("fast", "optimize")})
    temporal: bool = field(default=True, metadata={
        "help": "temporal consistency: carry the previous stylized frame along the optical flow "
                "(--no-temporal: every frame on its own)"})
    blend: float = field(default=0.8, metadata={
        "help": "fast: weight of the previous stylized frame, warped, where the flow holds "
                "(0 = none, below 1)"})
    detail_sigma: float = field(default=1.5, metadata={
        "help": "fast: after the blend, fine detail (finer than a Gaussian of this sigma, px) is "
                "scaled back to the energy of the frame's own stylization (0 = off)"})
    temporal_weight: float = field(default=200.0, metadata={
        "help": "optimize: weight of the temporal loss (difference from the warped previous frame)"})
    frame_steps: int = field(default=5, metadata={
        "help": "optimize: optimizer steps per frame after the first (one scale, warm-started); the "
                "first frame runs the full --steps schedule"})
    flow_preset: Literal["ultrafast", "fast", "medium"] = field(default="medium", metadata={
        "help": "OpenCV DIS optical-flow preset", "choices": tuple(DIS_PRESETS)})
    max_frames: int = field(default=0, metadata={"help": "stop after this many frames (0 = all)"})
    fps: float = field(default=0.0, metadata={
        "help": "output frame rate, at most the source's: frames are dropped to reach it (0 = the source's)"})
    crf: int = field(default=18, metadata={"help": "H.264 quality, 0-51 (lower: better, larger)"})

    def __post_init__(self) -> None:
        if self.method not in ("fast", "optimize"):
            raise InputError(f"method must be fast or optimize, got {self.method!r}")
        if self.flow_preset not in DIS_PRESETS:
            raise InputError(f"flow_preset must be one of {', '.join(DIS_PRESETS)}, got {self.flow_preset!r}")
        check_number("blend", self.blend, lo=0, hi=0.99)
        check_number("detail_sigma", self.detail_sigma, lo=0, hi=20)
        check_number("temporal_weight", self.temporal_weight, lo=0, hi=1e9)
        check_number("frame_steps", self.frame_steps, lo=1, hi=10_000, integer=True)
        check_number("max_frames", self.max_frames, lo=0, hi=10_000_000, integer=True)
        check_number("fps", self.fps, lo=0, hi=1000)
        check_number("crf", self.crf, lo=0, hi=51, integer=True)


@dataclass
class FrameReport:
    """What a video run tells its caller after each frame (and each engine step)."""

    frame: int                 # frames written so far
    total: int                 # frames planned
    seconds: float             # since the run started
    step: Iterate | None = None   # the engine's step inside the current frame (optimize)


@dataclass
class VideoOutcome:
    """How a video run ended: ``status`` ``ok`` or ``interrupted`` (then ``output`` is the
    partial file, or None when no frame was done)."""

    status: str
    output: str | None
    summary: dict[str, Any]


def restore_detail(blended: Tensor, reference: Tensor, sigma: float) -> Tensor:
    """``blended`` with its fine detail (what a Gaussian blur of ``sigma`` px removes) scaled
    up to the energy of ``reference``'s: averaging two frames' textures, and resampling them
    along the flow, soften them; this gives the frame back the detail of its own stylization
    without bringing back its flicker.

    Args:
        blended: (1, 3, H, W) the blended frame; reference: (1, 3, H, W) the frame as the model
            made it.
    Returns:
        (1, 3, H, W) in [0, 1] (the detail gain is at most 4; never below 1; ``sigma`` 0: as is).
    Example:
        >>> x = torch.rand(1, 3, 16, 16)
        >>> torch.allclose(restore_detail(x, x, 1.5), x, atol=1e-5)
        True
    """
    if sigma <= 0:
        return blended
    import kornia

    k = 2 * math.ceil(2 * sigma) + 1
    def smooth(x: Tensor) -> Tensor:
        return kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="replicate")

    base = smooth(blended)
    detail, wanted = blended - base, reference - smooth(reference)
    gain = (wanted.pow(2).mean() / detail.pow(2).mean().clamp_min(1e-12)).sqrt().clamp(1, 4)
    return (base + gain * detail).clamp(0, 1)


def plan_frames(info: VideoInfo, cfg: VideoConfig) -> tuple[Fraction, int]:
    """The output frame rate and the number of frames a run is expected to write (for the
    progress bar: the count comes from the container and may be an estimate; the run goes on
    to the last frame, or to ``max_frames``). A rate within 0.1 % of the source's is the
    source's.

    Example:
        >>> info = VideoInfo("v.mp4", 640, 360, Fraction(24), 240, 10.0, True)
        >>> plan_frames(info, VideoConfig(fps=12, max_frames=100)), plan_frames(info, VideoConfig(fps=10))
        ((Fraction(12, 1), 100), (Fraction(10, 1), 100))
    """
    fps = info.fps
    if cfg.fps and abs(cfg.fps / float(info.fps) - 1) > 1e-3:
        if cfg.fps > float(info.fps):
            raise InputError(f"--fps {cfg.fps:g} is above the source's {float(info.fps):.3g} fps; frames "
                             "are only dropped, never invented")
        fps = Fraction(cfg.fps).limit_denominator(1001)
    total = max(1, math.floor((info.frames - 1) * fps / info.fps) + 1)
    return fps, min(total, cfg.max_frames) if cfg.max_frames else total


def check_video_flags(cfg: VideoConfig, *, model_given: bool, styles: int, ray: bool) -> None:
    """An InputError, before any work, for command-line choices that do not go together:
    ``--fast``/``--model`` (``model_given``) with ``--method optimize``, the engine without
    style images, ``--ray`` without ``--method fast``."""
    fast = cfg.method == "fast"
    if model_given and not fast:
        raise InputError("--fast / --model go with --method fast, not --method optimize")
    if not fast and not styles:
        raise InputError("--method optimize needs at least one style image")
    if ray and not fast:
        raise InputError("--ray works with --method fast (optimized frames depend on the previous one)")


def check_video_method(method: EngineMethod | FastMethod, cfg: VideoConfig) -> None:
    """An InputError for a method the video run cannot use with ``cfg``."""
    if cfg.method == "optimize" and not isinstance(method, EngineMethod):
        raise InputError("--method optimize takes style images, not --fast / --model")
    if isinstance(method, EngineMethod):
        c = method.cfg
        if c.warp != "none" or c.align_style != "none" or c.mask:
            raise InputError("video works without --warp, --align-style and --mask")
        if cfg.temporal and c.preserve_color == "luminance":
            raise InputError("video with --method optimize: use --preserve-color histogram or none "
                             "(luminance is not supported with temporal consistency)")


class _Frames:
    """Stylizes one frame after another, each linked to the previous result."""

    def __init__(self, method: EngineMethod | FastMethod, cfg: VideoConfig,
                 report: Callable[[Iterate], None]) -> None:
        self.method, self.cfg, self.report = method, cfg, report
        self.later = method
        if isinstance(method, EngineMethod) and cfg.temporal:   # warm-started frames: one scale
            later = dataclasses.replace(method.cfg, min_size=method.cfg.size, steps=cfg.frame_steps,
                                        detail_steps=-1)
            self.later = EngineMethod(later, method.styles, mask=method.mask)
        self.previous: tuple[Tensor, Tensor] | None = None   # (input frame, result) at the output size

    def hw(self, frame: Tensor) -> tuple[int, int]:
        return fit_long_side(tuple(frame.shape[-2:]), self.method.cfg.size if isinstance(
            self.method, EngineMethod) else self.method.size)   # type: ignore[arg-type]

    def check(self, frame: Tensor) -> None:
        """The memory plans of both methods, on the first frame, before any work."""
        self.method.check(frame)
        if self.later is not self.method:
            self.later.check(frame)

    def next(self, frame: Tensor, stylized: Tensor | None = None) -> Tensor:
        """The result for ``frame`` (1, 3, h, w) in [0, 1]; ``stylized``: the frame as the
        feed-forward model made it elsewhere (a Ray worker), else it is stylized here."""
        small = resize(frame, self.hw(frame))
        link = None
        if self.cfg.temporal and self.previous is not None:
            before, result = self.previous
            backward, mask = pair_mask(before, small, preset=self.cfg.flow_preset)
            link = (warp(result, backward).clamp(0, 1), mask)
        out = self._stylize(frame, link) if stylized is None else stylized
        if out.shape[-2:] != small.shape[-2:]:
            out = resize(out, tuple(small.shape[-2:]))
        if link is not None and isinstance(self.method, FastMethod):
            warped, mask = link
            out = restore_detail(out + self.cfg.blend * mask * (warped - out), out, self.cfg.detail_sigma)
        if not bool(torch.isfinite(out).all()):
            raise NumericalError("a stylized frame has NaN or infinite values; nothing more is written")
        self.previous = (small, out)
        return out

    def _stylize(self, frame: Tensor, link: tuple[Tensor, Tensor] | None) -> Tensor:
        if isinstance(self.method, FastMethod):
            image, _ = self.method.run(frame, self.report)
            return pil_to_tensor(image)
        method = self.method if link is None else self.later
        method.temporal = None if link is None else Temporal(link[0], link[1], self.cfg.temporal_weight)
        image, _ = method.run(frame, self.report)
        return image.float()


def _summary(info: VideoInfo, cfg: VideoConfig, method, out_fps: Fraction, written: int,
             seconds: float, hw: tuple[int, int] | None, output: str | None, status: str) -> dict[str, Any]:
    return {"input": info.path, "output": output, "status": status, "method": cfg.method,
            "temporal": cfg.temporal, "frames": written, "source_fps": float(info.fps),
            "output_fps": float(out_fps),
            "size": None if hw is None else [hw[1] - hw[1] % 2, hw[0] - hw[0] % 2],   # (as encoded)
            "seconds": round(seconds, 3),
            "frames_per_second": round(written / seconds, 3) if seconds else 0.0,
            "audio": info.audio, "device": str(method.device), "dtype": method.dtype,
            "torch_threads": torch.get_num_threads(),
            "flow": f"OpenCV DIS ({cfg.flow_preset})" if cfg.temporal else None,
            "config": dataclasses.asdict(cfg)}


def run_video(source: str, dest: str, method: EngineMethod | FastMethod, cfg: VideoConfig = VideoConfig(), *,
              on_frame: Callable[[FrameReport], None] | None = None,
              stylized: Callable[[Iterator[Tensor]], Iterator[tuple[Tensor, Tensor]]] | None = None,
              ) -> VideoOutcome:
    """Stylize the video ``source`` into ``dest`` (.mp4, .mov, .mkv) with ``method``
    (:func:`warpaint.jobs.make_method`), frame by frame, linked as ``cfg`` says.

    ``stylized`` (fast method only) maps the frames to ``(frame, stylized frame)`` pairs made
    elsewhere, in order (:func:`warpaint.batch.stylize_frames_on_ray`); the flow, the blend and
    the encoding stay here.

    ``on_frame`` is called after each frame and each engine step. Ctrl-C or SIGTERM commits
    the frames done to a free ``.partial`` name (nothing when no frame was done) and raises
    :class:`~warpaint.errors.Interrupted` with the :class:`VideoOutcome` as ``.outcome``.

    Raises:
        InputError: an unreadable video, options the method cannot honour.
        NumericalError: a non-finite loss or frame; the temporary file is deleted.
    """
    check_video_method(method, cfg)
    if stylized is not None and not isinstance(method, FastMethod):
        raise InputError("frames stylized elsewhere (--ray) need the fast method")
    info = probe(source)
    fps, total = plan_frames(info, cfg)
    frames = read_frames(source, fps=fps if fps != info.fps else None, max_frames=cfg.max_frames or None)
    first = next(frames, None)
    if first is None:
        raise InputError(f"{source}: no frame could be decoded")
    t0 = time.perf_counter()
    state = {"written": 0, "hw": None}
    signals = StopRequest()   # a flag, acted on between frames and steps: the file stays whole

    def report(it: Iterate | None = None) -> None:
        signals.raise_if_requested()
        if on_frame is not None:
            on_frame(FrameReport(state["written"], total, time.perf_counter() - t0, it))

    runner = _Frames(method, cfg, report)
    runner.check(first)
    writer = VideoWriter(dest, fps=fps, size=runner.hw(first), audio_from=source if info.audio else None,
                         start=info.start, crf=cfg.crf)
    todo = _chain(first, frames)
    pairs = ((f, None) for f in todo) if stylized is None else stylized(todo)
    try:
        with signals:
            for frame, done in pairs:
                out = runner.next(frame, done)
                writer.write(out)
                state["written"], state["hw"] = writer.frames, tuple(out.shape[-2:])
                report()
            _close(pairs, todo, frames)   # (Ray: its workers stop now)
            writer.finish(whole_audio=not cfg.max_frames or writer.frames < cfg.max_frames)
            writer.commit(dest)
    except (KeyboardInterrupt, Interrupted) as e:
        _close(pairs, todo, frames)
        err = e if isinstance(e, Interrupted) else Interrupted(2)
        err.outcome = _interrupted(writer, dest, info, cfg, method, fps, state,  # type: ignore[attr-defined]
                                   time.perf_counter() - t0)
        raise err from None
    except BaseException:
        _close(pairs, todo, frames)
        writer.discard()
        raise
    seconds = time.perf_counter() - t0
    outcome = VideoOutcome("ok", dest, _summary(info, cfg, method, fps, writer.frames, seconds, state["hw"],
                                                dest, "ok"))
    if signals.requested:     # a signal while the file was finished: it is kept, then we stop
        err = Interrupted(signals.signum or 2)
        err.outcome = outcome  # type: ignore[attr-defined]
        raise err
    return outcome


def _close(*generators) -> None:
    for g in generators:
        g.close()


def _chain(first: Tensor, rest: Iterator[Tensor]) -> Iterator[Tensor]:
    yield first
    yield from rest


def _interrupted(writer: VideoWriter, dest: str, info: VideoInfo, cfg: VideoConfig, method,
                 fps: Fraction, state: dict, seconds: float) -> VideoOutcome:
    """Commit the frames done (if any) under a free partial name; the outcome."""
    partial = None
    try:
        if writer.frames:
            writer.finish(whole_audio=False)
            partial = writer.commit(free_partial_path(dest))
    finally:
        if partial is None:
            writer.discard()
    return VideoOutcome("interrupted", partial, _summary(info, cfg, method, fps, writer.frames, seconds,
                                                         state["hw"], partial, "interrupted"))
