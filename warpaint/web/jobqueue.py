"""The web page's job queue: one worker thread per server (one run at a time on its device).

Each browser's run is a :class:`WebJob`. The worker takes the oldest queued job, builds its
method with :func:`warpaint.jobs.make_method` and runs it with :func:`warpaint.jobs.run_job`,
whose per-step callback (:class:`Progress`) records the progress and, at most every
``frame_interval`` seconds and at the start of every scale, a PNG of the current image. The
page reads all of it through :meth:`JobQueue.snapshot`. A job's files (result, JSON, warp
pictures) live in its own folder under the queue's private temporary folder, removed when the
page is closed, when the job has been kept ``keep_minutes``, and when the server stops.
"""

from __future__ import annotations

import io
import json
import logging
import math
import secrets
import shutil
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from torch import Tensor

from ..errors import WarpaintError
from ..extras import Extras, write_extras
from ..io import save_image
from ..jobs import Job, Outcome, make_method, run_job, summary_of
from ..stylize import Iterate, StylizeConfig

log = logging.getLogger("warpaint.web")

#: States a job does not leave.
TERMINAL = frozenset({"done", "stopped", "error", "cancelled"})


@dataclass(frozen=True)
class Settings:
    """Limits and defaults of a server (``warpaint serve``'s flags are generated from these)."""

    upload_mb: float = field(default=25.0, metadata={"help": "largest upload per file, MB"})
    max_pixels: int = field(default=100_000_000, metadata={
        "help": "largest image, pixels, before decoding (the CLI's bomb guard)"})
    max_styles: int = field(default=4, metadata={"help": "style images per run at most"})
    max_size: int = field(default=1024,
                          metadata={"help": "largest result side, px (uploads are shrunk to it)"})
    max_steps: int = field(default=1000,
                           metadata={"help": "optimizer steps per scale at most, coarse scales included"})
    max_queue: int = field(default=8, metadata={"help": "runs waiting at most, all browsers together"})
    per_client: int = field(default=4, metadata={"help": "runs waiting or running per client address"})
    max_kept: int = field(default=50, metadata={"help": "finished runs kept (the oldest go first)"})
    keep_minutes: float = field(default=60.0, metadata={"help": "how long a finished result is kept"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N or mps"})
    frame_interval: float = field(default=0.5,
                                  metadata={"help": "seconds between live frames (plus one per scale)"})
    allowed_hosts: tuple[str, ...] = field(default=(), metadata={
        "help": "Host headers served (empty: any; serve() sets the loopback names)"})

    def __post_init__(self) -> None:
        from ..device import check_device_name
        from ..errors import check_number

        for name, lo, hi in (("upload_mb", 0.001, 1e4), ("max_pixels", 1, 10**10), ("max_styles", 1, 16),
                             ("max_size", 32, 16384), ("max_steps", 1, 100_000), ("max_queue", 1, 10**4),
                             ("per_client", 1, 10**4), ("max_kept", 1, 10**4), ("keep_minutes", 0, 1e6),
                             ("frame_interval", 0.01, 60)):
            check_number(name, getattr(self, name), lo=lo, hi=hi)
        check_device_name(self.device)

    @property
    def upload_bytes(self) -> int:
        return int(self.upload_mb * 1024 * 1024)


class QueueFull(WarpaintError):
    """No room for another run (the whole queue, or this client's share)."""


@dataclass(eq=False)   # a job is itself: compared by identity, never by its images
class WebJob:
    """One run requested by a page; changed by the worker, read through snapshots."""

    client: str
    cfg: StylizeConfig
    content: Image.Image
    styles: list[Image.Image]
    names: dict[str, Any]            # uploaded file names, for the JSON
    fast: bool = False
    strength: float = 1.0
    id: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    state: str = "queued"
    message: str | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    frame: bytes | None = None       # PNG of the latest image
    frame_no: int = 0
    version: int = 0                 # bumped on every change
    warp: list[str] = field(default_factory=list)   # names of the warp pictures
    stop: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.time)   # seconds since the epoch
    started: float | None = None
    finished: float | None = None
    folder: Path | None = None
    closed: bool = False             # its page is gone: forget it as soon as it ends


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity (in dicts and lists too) as None: strict JSON.

    Example:
        >>> finite({"style": float("nan"), "steps": [1, float("inf")]})
        {'style': None, 'steps': [1, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def png_bytes(image: Tensor | Image.Image) -> bytes:
    buf = io.BytesIO()
    save_image(image, buf)
    return buf.getvalue()


class Progress:
    """``on_step`` of a run: fraction done (the engine's steps weighted by their pixels), ETA,
    live frames."""

    def __init__(self, job: WebJob, queue: JobQueue) -> None:
        self.job, self.queue = job, queue
        self.t0 = time.monotonic()
        self.last_frame, self.last_scale = 0.0, -1

    def __call__(self, it: Iterate) -> None:
        now = time.monotonic()
        f, elapsed = min(1.0, it.work), now - self.t0
        progress = {"scale": it.scale + 1, "scales": it.scales, "size": [it.size[1], it.size[0]],
                    "step": it.step, "steps": it.steps, "done": it.done, "total": it.total, "tiles": it.tiles,
                    "fraction": round(f, 4), "elapsed": round(elapsed, 2),
                    "eta": round(elapsed * (1 - f) / f, 1) if f > 0 else None,
                    "losses": finite({k: round(v, 6) for k, v in it.losses.items()})}
        frame = None
        if (it.scale != self.last_scale or it.done == it.total
                or now - self.last_frame >= self.queue.settings.frame_interval):
            frame, self.last_frame, self.last_scale = png_bytes(it.image), now, it.scale
        self.queue.update(self.job, progress=progress, frame=frame)


class JobQueue:
    """Jobs by id, the waiting line, and the worker thread that runs them one at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jobs: dict[str, WebJob] = {}
        self.waiting: deque[WebJob] = deque()
        self.cond = threading.Condition()
        self.closing = False
        self.root: Path | None = None
        self.worker: threading.Thread | None = None

    # -- life --------------------------------------------------------------------------------
    def start(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="warpaint-web-"))   # mode 0700: private
        self.worker = threading.Thread(target=self._work, name="warpaint-web-worker", daemon=True)
        self.worker.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the running job (after its current step), cancel the rest, remove every file."""
        with self.cond:
            self.closing = True
            for job in self.jobs.values():
                job.stop.set()
            self.cond.notify_all()
        if self.worker is not None:
            self.worker.join(timeout)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- requests ----------------------------------------------------------------------------
    def submit(self, job: WebJob) -> None:
        s = self.settings
        with self.cond:
            self._sweep()
            mine = sum(j.client == job.client and j.state not in TERMINAL for j in self.jobs.values())
            if mine >= s.per_client:
                raise QueueFull(f"you already have {mine} run(s) waiting or running (the limit is "
                                f"{s.per_client}); stop one or wait for it to finish")
            if len(self.waiting) >= s.max_queue:
                raise QueueFull(f"the queue is full ({s.max_queue} runs waiting); try again later")
            job.folder = Path(tempfile.mkdtemp(prefix="job-", dir=self.root))
            self.jobs[job.id] = job
            self.waiting.append(job)
            self.cond.notify_all()

    def get(self, job_id: str) -> WebJob | None:
        with self.cond:
            return self.jobs.get(job_id)

    def stop(self, job: WebJob) -> None:
        """Stop a running job after its current step (it keeps its current image); cancel a
        queued one."""
        with self.cond:
            job.stop.set()
            if job in self.waiting:
                self.waiting.remove(job)
                self._end(job, "cancelled", "cancelled before it started")

    def discard(self, job: WebJob) -> None:
        """The page was closed: stop the job and forget it with its files."""
        self.stop(job)
        with self.cond:
            job.closed = True
            if job.state in TERMINAL:
                self._forget(job)

    def snapshot(self, job: WebJob) -> tuple[dict[str, Any], bytes | None, int]:
        """What the page shows: state, place in the queue, progress, message, warp pictures;
        the latest frame and its number."""
        with self.cond:
            place = self.waiting.index(job) + 1 if job in self.waiting else 0
            info = {"id": job.id, "state": job.state, "position": place, "waiting": len(self.waiting),
                    "message": job.message, "progress": job.progress, "warp": list(job.warp),
                    "result": job.state in ("done", "stopped") and job.frame is not None,
                    "times": {"submitted": job.submitted, "started": job.started, "finished": job.finished},
                    "version": job.version}
            return info, job.frame, job.frame_no

    # -- worker side -------------------------------------------------------------------------
    def update(self, job: WebJob, *, progress: dict | None = None, frame: bytes | None = None) -> None:
        with self.cond:
            if progress is not None:
                job.progress = progress
            if frame is not None:
                job.frame, job.frame_no = frame, job.frame_no + 1
            job.version += 1

    def _end(self, job: WebJob, state: str, message: str | None = None) -> None:
        """(Lock held.) A job reaches a terminal state; everyone's place in the line moves."""
        job.state, job.message, job.finished = state, message, time.time()
        for j in (job, *self.waiting):
            j.version += 1
        self.cond.notify_all()

    def _forget(self, job: WebJob) -> None:
        """(Lock held.) Drop a finished job and its folder."""
        self.jobs.pop(job.id, None)
        if job.folder is not None:
            shutil.rmtree(job.folder, ignore_errors=True)

    def _sweep(self) -> None:
        """(Lock held.) Remove finished jobs past ``keep_minutes``, then the oldest beyond ``max_kept``."""
        finished = sorted((j for j in self.jobs.values() if j.state in TERMINAL), key=lambda j: j.finished)
        limit = time.time() - 60 * self.settings.keep_minutes
        for i, job in enumerate(finished):
            if job.finished < limit or len(finished) - i > self.settings.max_kept:
                self._forget(job)

    def _next(self) -> WebJob | None:
        with self.cond:
            while not self.waiting and not self.closing:
                self.cond.wait(timeout=30)
                self._sweep()
            if self.closing:
                return None
            job = self.waiting.popleft()
            job.state, job.started = "running", time.time()
            for j in (job, *self.waiting):
                j.version += 1
            return job

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                state, message = self._run(job)
            except Exception as e:  # noqa: BLE001 - the worker must outlive any one job
                log.exception("run %s failed", job.id)
                state, message = "error", f"internal error: {type(e).__name__}: {e}"
            with self.cond:
                self._end(job, state, message)
                if job.closed:
                    self._forget(job)
        with self.cond:   # closing: what still waits is cancelled
            while self.waiting:
                self._end(self.waiting.popleft(), "cancelled", "the server is shutting down")

    def _run(self, job: WebJob) -> tuple[str, str | None]:
        """Build the method, run the job, keep its files; the final state and message."""
        try:
            method = make_method(job.cfg, job.styles, fast=job.fast, strength=job.strength)
        except WarpaintError as e:
            return "error", str(e)
        if job.stop.is_set():
            return "cancelled", "stopped before it started"
        outcome = run_job(Job(job.content, None), method, on_step=Progress(job, self), stop=job.stop)
        if outcome.status == "error":
            return "error", outcome.error
        if outcome.image is None:
            return "stopped", "stopped before the first step: there is no image yet"
        self._keep(job, outcome, method)
        return ("done", None) if outcome.status == "ok" else \
            ("stopped", f"stopped after {len(outcome.history)} steps; the current image is kept")

    def _keep(self, job: WebJob, outcome: Outcome, method: Any) -> None:
        """Write result.png, result.json and (with a warp) its pictures into the job's folder."""
        assert job.folder is not None
        frame = png_bytes(outcome.image)
        (job.folder / "result.png").write_bytes(frame)
        job.warp = [p.name for p in write_extras(Extras(save_warp=job.folder / "warp"), outcome, method)]
        summary = {**summary_of(outcome), **job.names}
        text = json.dumps(finite(summary), indent=2, default=str, allow_nan=False)
        (job.folder / "result.json").write_text(text + "\n")
        self.update(job, frame=frame)
