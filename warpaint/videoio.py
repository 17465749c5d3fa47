"""Video files in and out, on PyAV (FFmpeg's libraries): frames as tensors, H.264 out, the
audio copied, the file written atomically.

The only module that reads or writes video files (as :mod:`warpaint.io` is for images).
Frames are (1, 3, H, W) float32 RGB in [0, 1]. :class:`VideoWriter` encodes into a temporary
file beside the destination and renames it when told to (:meth:`VideoWriter.commit`), so a
destination is never half-written; a run that stops early commits what it has under a
``.partial`` name, a valid shorter video with the audio cut to its length.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import InputError, OutputError

VIDEO_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds (its first video stream)."""

    path: str
    width: int
    height: int
    fps: Fraction              # average frame rate
    frames: int                # frame count (from the container; estimated from the duration if absent)
    duration: float            # seconds
    audio: bool                # has an audio stream (copied into the output)
    start: float = 0.0         # time of the video stream's first frame, s (the audio is shifted by it)


def _open(path: str | Path):
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable video ({getattr(e, 'strerror', None) or e})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: has no video stream")
    return container


def probe(path: str | Path) -> VideoInfo:
    """The size, frame rate, frame count and duration of a video file.

    Raises:
        InputError: a missing or unreadable file, or one without a video stream.
    """
    with _open(path) as container:
        vs = container.streams.video[0]
        fps = Fraction(vs.average_rate or vs.guessed_rate or 0)
        if fps <= 0:
            raise InputError(f"{path}: the video stream has no frame rate")
        if vs.duration is not None and vs.time_base is not None:
            duration = float(vs.duration * vs.time_base)
        else:
            duration = (container.duration or 0) / 1e6
        frames = vs.frames or round(duration * fps)
        width, height = vs.codec_context.width, vs.codec_context.height
        if width < 2 or height < 2:
            raise InputError(f"{path}: not a readable video (its video stream has no frame size, "
                             f"{width}x{height})")
        start = float(vs.start_time * vs.time_base) if vs.start_time is not None and vs.time_base else 0.0
        return VideoInfo(str(path), width, height, fps, int(frames), duration, bool(container.streams.audio),
                         start)


def read_frames(path: str | Path, *, fps: Fraction | None = None,
                max_frames: int | None = None) -> Iterator[Tensor]:
    """The frames of a video's first video stream, as (1, 3, H, W) float32 RGB in [0, 1].

    ``fps`` (at most the source's rate) keeps one frame per ``1 / fps`` seconds (the first
    at or after each tick); ``max_frames`` stops after that many frames are yielded.
    """
    import av

    with _open(path) as container:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        start, next_tick, count = None, 0, 0
        try:
            for decoded, frame in enumerate(container.decode(vs)):
                t = frame.time if frame.time is not None else decoded / float(vs.average_rate or 1)
                start = t if start is None else start
                if fps is not None:
                    tick = int((t - start) * fps + 1e-6)
                    if tick < next_tick:
                        continue
                    next_tick = tick + 1
                if max_frames is not None and count >= max_frames:
                    return
                rgb = frame.to_ndarray(format="rgb24")
                yield torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div_(255)
                count += 1
        except av.error.FFmpegError as e:
            raise InputError(f"{path}: the video could not be decoded after {count} frames ({e})") from None


def to_uint8(frame: Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (frame[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()


def even_size(hw: tuple[int, int]) -> tuple[int, int]:
    """The largest even (H, W) within ``hw`` (H.264 in 4:2:0 needs even sides).

    Example:
        >>> even_size((361, 640))
        (360, 640)
    """
    return hw[0] - hw[0] % 2, hw[1] - hw[1] % 2


def check_video_output(dest: str | Path, source: str | Path, *, overwrite: bool = True) -> None:
    """Refuse an output that is the source, has an extension other than .mp4, .mov, .mkv,
    lies in a missing folder, or (without ``overwrite``) exists."""
    from .io import check_not_there, guard_output

    guard_output(dest, [str(source)], formats=tuple(VIDEO_FORMATS))
    if not overwrite:
        check_not_there([dest])


class VideoWriter:
    """H.264 (libx264, yuv420p) frames of ``size`` (H, W; an odd side loses its last pixel row
    or column) into ``dest``'s format, with ``audio_from``'s first audio stream copied (not
    re-encoded) alongside, into a temporary file beside ``dest``.

    Use :meth:`write` per frame, then :meth:`finish` and :meth:`commit` (to ``dest`` or a
    partial name), or :meth:`discard`.
    """

    def __init__(self, dest: str | Path, *, fps: Fraction, size: tuple[int, int],
                 audio_from: str | Path | None = None, start: float = 0.0, crf: int = 18) -> None:
        import av

        self.dest = Path(dest)
        fmt = VIDEO_FORMATS.get(self.dest.suffix.lower())
        if fmt is None:
            raise OutputError(f"{dest}: unknown video extension; use one of {', '.join(VIDEO_FORMATS)}")
        self.tmp = self.dest.with_name(f".{self.dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        self.fps, self.frames, self.start = fps, 0, start
        try:
            self.out = av.open(str(self.tmp), mode="w", format=fmt)
        except (av.error.FFmpegError, OSError) as e:
            raise OutputError(f"{dest}: cannot write here ({getattr(e, 'strerror', None) or e})") from None
        self.audio_in, self.audio_out, self.packets = None, None, iter(())
        h, w = even_size(size)
        if min(h, w) < 2:
            self.discard()
            raise OutputError(f"{dest}: frames of {size[1]}x{size[0]} px are too small for H.264")
        try:
            self.video = self.out.add_stream("libx264", rate=fps)   # the first stream, then the audio
        except (av.error.FFmpegError, ValueError) as e:
            self.discard()
            raise OutputError(f"{dest}: this FFmpeg build cannot encode H.264 ({e})") from None
        self.video.width, self.video.height, self.video.pix_fmt = w, h, "yuv420p"
        self.video.options = {"crf": str(crf)}
        if audio_from is not None:
            self._open_audio(audio_from)

    def _open_audio(self, source: str | Path) -> None:
        import av

        container = av.open(str(source))
        if not container.streams.audio:
            container.close()
            return
        stream = container.streams.audio[0]
        try:
            self.audio_out = self.out.add_stream_from_template(stream)
        except (av.error.FFmpegError, ValueError) as e:
            log.warning("%s: the audio (%s) cannot go into %s and is left out (%s)", source,
                        stream.codec_context.name, self.dest.suffix, e)
            container.close()
            return
        self.audio_in = container
        self.packets = (p for p in container.demux(stream) if p.dts is not None)
        self.pending = None

    def _mux_audio(self, until: float | None) -> None:
        """Copy the source's audio packets that start before ``until`` seconds of the output
        (None: all), on the output's clock: shifted by the video's ``start``; packets that end
        before the video starts are dropped."""
        if self.audio_out is None:
            return
        while True:
            packet = self.pending if self.pending is not None else next(self.packets, None)
            self.pending = None
            if packet is None:
                return
            if packet.pts is not None:
                t = float(packet.pts * packet.time_base) - self.start
                if until is not None and t >= until:
                    self.pending = packet
                    return
                if self.start:
                    shift = round(self.start / packet.time_base)
                    if packet.pts + (packet.duration or 0) <= shift:
                        continue
                    packet.pts -= shift
                    packet.dts -= shift
            packet.stream = self.audio_out
            self._mux(packet)

    def _mux(self, packet) -> None:
        import av

        try:
            self.out.mux(packet)
        except (av.error.FFmpegError, ValueError) as e:
            raise OutputError(f"{self.dest}: writing the video failed ({e})") from None

    def write(self, frame: Tensor) -> None:
        """Encode one (1, 3, H, W) frame in [0, 1] of the writer's size."""
        import av

        rgb = to_uint8(frame)
        h, w = even_size(rgb.shape[:2])
        if (h, w) != (self.video.height, self.video.width):
            raise OutputError(f"frame {self.frames}: {w}x{h} px, the video is "
                              f"{self.video.width}x{self.video.height}")
        image = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")
        image.pts = self.frames
        image.time_base = 1 / self.fps
        for packet in self._encode(image):
            self._mux(packet)
        self.frames += 1
        self._mux_audio(self.frames / self.fps)

    def finish(self, *, whole_audio: bool = True) -> None:
        """Flush the encoder, copy the rest of the audio (all of it, or with ``whole_audio``
        False only up to the end of the video), close the file and sync it to disk."""
        for packet in self._encode(None):
            self._mux(packet)
        self._mux_audio(None if whole_audio else self.frames / self.fps)
        try:
            self.out.close()
        except (OSError, ValueError) as e:
            raise OutputError(f"{self.dest}: finishing the video failed ({e})") from None
        if self.audio_in is not None:
            self.audio_in.close()
        fd = os.open(self.tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _encode(self, image):
        import av

        try:
            return self.video.encode(image)
        except (av.error.FFmpegError, ValueError) as e:
            raise OutputError(f"{self.dest}: encoding frame {self.frames} failed ({e})") from None

    def commit(self, dest: str | Path) -> str:
        """Rename the finished file to ``dest`` (atomic on one file system); its path."""
        os.replace(self.tmp, dest)
        return str(dest)

    def discard(self) -> None:
        """Close and delete the temporary file (a run that wrote nothing or failed)."""
        try:
            self.out.close()
        except Exception:  # noqa: BLE001  (an encoder in a bad state: the file goes anyway)
            pass
        if self.audio_in is not None:
            self.audio_in.close()
        self.tmp.unlink(missing_ok=True)
