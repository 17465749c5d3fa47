"""Running a planned batch of jobs (``warpaint batch``): in this process, or as Ray tasks.

The jobs come from :func:`warpaint.jobs.plan` and each one is run by :func:`warpaint.jobs.run_job`
in a :class:`BatchWorker`, which builds the method once (one model load per worker). Without Ray
one worker runs in this process; with Ray (:func:`run_batch` with ``use_ray``) each worker is an
actor, and :func:`ray_map` keeps the actors busy, restarts a worker that dies and retries its
task. Either way the batch is resumable: a job's *key* is the SHA-256 of its content file, its
style files and the settings that change the result (:meth:`BatchSpec.settings_digest`), and
the output folder's manifest (:data:`MANIFEST`) maps each output name to the key it was made
with. A job whose output is a readable image made with the same key is ``skipped``; any other
output (a different key, or none recorded) is made again and replaces the old file atomically.

Ray is optional (``pip install -e ".[ray]"``); it is imported only when asked for.
"""

from __future__ import annotations

import hashlib
import io as _io
import json
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from .errors import InputError, Interrupted, WarpaintError, check_number
from .io import load_pil, write_bytes_atomic
from .jobs import Job, make_method, run_job, summary_of
from .stylize import StylizeConfig

#: The manifest in the output folder: ``{"format", "version", "outputs": {name: key}}``.
MANIFEST = ".warpaint-batch.json"
#: Tasks queued per Ray actor: one running and one waiting, so no worker idles between tasks.
IN_FLIGHT_PER_WORKER = 2
log = logging.getLogger(__name__)


# -- what a worker needs -------------------------------------------------------------------------
def _digest(path: str | Path | None) -> str:
    """SHA-256 of a file's bytes ("" for None); an InputError when it cannot be read."""
    if path is None or str(path) == "":
        return ""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None


@dataclass(frozen=True)
class BatchSpec:
    """Everything a worker needs to build the method and run jobs: plain values and bytes,
    so it pickles to a Ray worker on another machine (the style files travel as bytes)."""

    cfg: StylizeConfig
    styles: tuple[bytes, ...]              # the style files' bytes, in order
    style_names: tuple[str, ...]           # as given (the summary's "styles")
    fast: bool = False
    model: str | None = None               # a model file (implies fast); None: the shipped one
    strength: float = 1.0
    work_size: int | None = None
    detail: float | None = None            # None: the model's own
    fineness: float | None = None          # None: the model's own
    original_size: bool = False
    bit_depth: str = "auto"
    file_digests: dict[str, str] = field(default_factory=dict)   # model, init, mask: SHA-256
    overwrite: bool = True                 # replace a finished output not made with these settings

    @classmethod
    def from_files(cls, cfg: StylizeConfig, styles: Sequence[str], **options: Any) -> BatchSpec:
        """The spec for style files ``styles`` (read now: a missing one is an InputError)."""
        data = []
        for s in styles:
            load_pil(s)   # an unreadable or non-image style is refused here, with its name
            data.append(Path(s).read_bytes())
        model = options.get("model")
        if model is None and options.get("fast"):     # the shipped model: its settings change with releases
            from .feedforward import shipped_model_path

            model_file: str | Path | None = shipped_model_path()
        else:
            model_file = model
        digests = {"model": _digest(model_file), "init": _digest(cfg.init_file), "mask": _digest(cfg.mask)}
        return cls(cfg, tuple(data), tuple(map(str, styles)), file_digests=digests,
                   **{**options, "model": None if model is None else str(model)})

    def settings_digest(self) -> str:
        """SHA-256 of what changes a result besides the content: the style files, the whole
        StylizeConfig, the method options and the model, init and mask files' bytes."""
        h = hashlib.sha256()
        for data in self.styles:
            h.update(hashlib.sha256(data).digest())
        settings = {"config": asdict(self.cfg), "fast": self.fast or self.model is not None,
                    "strength": self.strength, "work_size": self.work_size, "files": self.file_digests,
                    **({} if self.detail is None else {"detail": self.detail}),
                    **({} if self.fineness is None else {"fineness": self.fineness}),
                    "original_size": self.original_size, "bit_depth": str(self.bit_depth)}
        h.update(json.dumps(settings, sort_keys=True, default=str).encode())
        return h.hexdigest()

    def build(self, *, device: str | None = None):
        """The job layer's method (:func:`warpaint.jobs.make_method`), on ``device`` if given."""
        cfg = self.cfg if device is None else replace(self.cfg, device=device)
        styles = [load_pil(_io.BytesIO(b)) for b in self.styles]
        return make_method(cfg, styles, fast=self.fast or self.model is not None, model=self.model,
                           strength=self.strength, work_size=self.work_size, detail=self.detail,
                           fineness=self.fineness)


@dataclass(frozen=True)
class Done:
    """What a worker returns for a job: its summary (the shape of
    :func:`warpaint.jobs.summary_of`, ``status`` ``skipped`` too), the key its output was made
    with (None when there is no finished output) and the worker's process id."""

    summary: dict[str, Any]
    key: str | None
    pid: int


def _failed(job: Job, error: str) -> dict[str, Any]:
    """An ``error`` item of the summary (the shape of :func:`warpaint.jobs.summary_of`'s)."""
    return {"content": job.content, "output": job.output, "status": "error", "error": error, "steps": 0}


def finished(output: str | None) -> bool:
    """Whether ``output`` is a whole, readable image file."""
    try:
        with Image.open(output) as im:  # type: ignore[arg-type]
            im.verify()
        return True
    except Exception:   # noqa: BLE001 (missing, truncated, not an image: not finished)
        return False


class BatchWorker:
    """Runs the jobs of one batch with one method (one model load), in this process or as a
    Ray actor (:class:`_RayWorker`). ``threads``: torch's intra-op threads (None: as is)."""

    def __init__(self, spec: BatchSpec, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.spec = spec
        self.settings = spec.settings_digest()
        self.method = spec.build()

    def key_of(self, job: Job) -> str:
        """The job's key: SHA-256 of its content file's digest and the settings digest."""
        return hashlib.sha256(f"{_digest(job.content)}:{self.settings}".encode()).hexdigest()

    def run(self, job: Job, known_key: str | None = None) -> Done:
        """Skip the job when its output is finished and ``known_key`` (the manifest's) is its
        key; else run it (:func:`warpaint.jobs.run_job`, which writes the output atomically)."""
        try:
            key = self.key_of(job)
        except WarpaintError as e:
            return Done(_failed(job, str(e)), None, os.getpid())
        if key == known_key and finished(job.output):
            return Done({"content": job.content, "output": job.output, "status": "skipped"}, key, os.getpid())
        if not self.spec.overwrite and known_key is not None and finished(job.output):
            # (an unrecorded output is this batch's, from a run stopped before its manifest was
            # saved: made again, as a damaged one is; the record stays for the files and settings
            # that made it)
            return Done(_failed(job, f"{job.output}: exists, made from other files or settings; add "
                                     "--overwrite to replace it"), known_key, os.getpid())
        outcome = run_job(job, self.method, original_size=self.spec.original_size,
                          bit_depth=self.spec.bit_depth)  # type: ignore[arg-type]
        summary = summary_of(outcome)
        if outcome.status == "ok":
            summary["styles"] = list(self.spec.style_names)
        return Done(summary, key if outcome.status == "ok" else None, os.getpid())


class _RayWorker(BatchWorker):
    """A :class:`BatchWorker` as a Ray actor: jobs run off the main thread, so Ray's own
    SIGTERM handling stays in charge (no ``.partial`` files from a worker being stopped);
    a method that cannot be built becomes an error per job instead of endless restarts."""

    def __init__(self, spec: BatchSpec, threads: int | None = None) -> None:
        try:
            super().__init__(spec, threads)
            self.error = None
        except WarpaintError as e:
            self.error = str(e)
        # torch's thread count is per thread under OpenMP: set it in the thread that runs the jobs
        self.pool = ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(threads or 1,))

    def run(self, job: Job, known_key: str | None = None) -> Done:
        if self.error is not None:
            return Done(_failed(job, self.error), None, os.getpid())
        return self.pool.submit(super().run, job, known_key).result()


# -- Ray -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskFailed:
    """An item of :func:`ray_map` whose task failed even after its retries."""

    error: str


def _ray():
    try:
        import ray
    except ImportError:
        raise InputError('--ray needs Ray, which is not installed: pip install -e ".[ray]"') from None
    return ray


def actor_options(resources: dict[str, float], workers: int, node_cpus: Sequence[float] = ()) -> dict:
    """Ray options for each of ``workers`` actors on a cluster with ``resources``
    (``ray.cluster_resources()``): an equal share of the CPUs (at least one, at most the
    smallest node's ``node_cpus``), a share of the GPUs when there are any (a fraction packs
    several workers on one GPU), restarts without end and three retries of a task.

    Example:
        >>> actor_options({"CPU": 16.0, "GPU": 2.0}, 4)["num_gpus"]
        0.5
        >>> actor_options({"CPU": 2.0}, 2)["num_cpus"]
        1
    """
    cpus = max(1, int(resources.get("CPU", 1) // workers))
    if node_cpus:
        cpus = max(1, min(cpus, int(min(node_cpus))))
    options: dict[str, Any] = {"num_cpus": cpus, "max_restarts": -1, "max_task_retries": 3}
    gpus = resources.get("GPU", 0)
    if gpus:
        options["num_gpus"] = min(1.0, math.floor(100 * gpus / workers) / 100) or 0.01
    return options


def ray_map(worker_cls: type, init_args: tuple, items: Sequence[tuple], *, workers: int,
            options: dict[str, Any], method: str = "run") -> Iterator[tuple[int, Any]]:
    """Run ``worker.method(*items[i])`` for every item on ``workers`` Ray actors of
    ``worker_cls(*init_args)`` (each built once: one model load per worker), yielding
    ``(i, result)`` in order of completion; a task that failed after its retries gives
    ``(i, TaskFailed(message))``. Ray must be initialised.

    ``options`` are the actors' ``ray.remote`` options (:func:`actor_options`): with
    ``max_restarts`` and ``max_task_retries`` a worker that dies is restarted and its tasks
    run again. Each actor has :data:`IN_FLIGHT_PER_WORKER` tasks queued. Closing the generator
    (a Ctrl-C in the consumer, ``break``) submits nothing more and kills the actors; finished
    tasks' effects stand.
    """
    ray = _ray()
    actors = [ray.remote(**options)(worker_cls).remote(*init_args) for _ in range(workers)]
    queue = iter(enumerate(items))
    pending: dict[Any, tuple[int, Any]] = {}

    def submit(actor) -> None:
        nxt = next(queue, None)
        if nxt is not None:
            pending[getattr(actor, method).remote(*nxt[1])] = (nxt[0], actor)

    try:
        for actor in actors * IN_FLIGHT_PER_WORKER:
            submit(actor)
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            index, actor = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as e:
                result = TaskFailed(f"the worker failed after its retries: {str(e).strip().splitlines()[0]}")
            submit(actor)   # before the consumer's turn: the actor is never idle
            yield index, result
    finally:
        for ref in pending:   # queued behind the running ones: never started
            ray.cancel(ref)
        for actor in actors:
            ray.kill(actor)


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """An InputError when nothing listens at a ``HOST:PORT`` address (Ray itself would retry
    for minutes); other forms (``auto``, ``ray://...``) are left to Ray."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise InputError(f"address {address}: no Ray cluster answers there ({e.strerror or e})") from None


def _connect(address: str | None, workers: int | None) -> bool:
    """Connect to the cluster at ``address``, or start a local Ray with ``workers`` CPUs (the
    machine's by default) unless one is running in this process; True when we started it."""
    ray = _ray()
    if address:
        check_reachable(address)
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
            return False
        ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise InputError(f"cannot start or reach Ray at {address or 'this machine'}: "
                         f"{str(e).strip().splitlines()[0]}") from None
    return True


def default_workers(resources: dict[str, float]) -> int:
    """The workers on a cluster (a local Ray started by the batch has one per CPU): one per
    GPU when it has GPUs, else one per CPU."""
    return max(1, int(resources.get("GPU", 0) or resources.get("CPU", 1)))


def _run_on_ray(jobs: Sequence[Job], spec: BatchSpec, known: Sequence[str | None], address: str | None,
                workers: int | None) -> Iterator[tuple[int, Done]]:
    """Check the options, start or reach Ray, then (a generator) run the jobs on its actors."""
    ray = _ray()
    spec.build(device="cpu")   # bad options are refused here, before any worker starts
    started = _connect(address, workers)
    try:
        count, options = _pool(workers, started)
        init = (spec, options["num_cpus"])   # by value: a restarted actor gets it again
    except BaseException:
        if started:
            ray.shutdown()
        raise
    return _ray_results(jobs, list(zip(jobs, known, strict=True)), init, count, options, started)


def _pool(workers: int | None, started: bool) -> tuple[int, dict[str, Any]]:
    """The number of actors (``workers``, else one per CPU of a Ray we ``started``, else
    :func:`default_workers`) and their options (:func:`actor_options`, capped at the smallest
    live node's CPUs)."""
    ray = _ray()
    resources = ray.cluster_resources()
    count = workers or (int(resources.get("CPU", 1)) if started else default_workers(resources))
    node_cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return count, actor_options(resources, count, [c for c in node_cpus if c])


def _ray_results(jobs: Sequence[Job], items: list[tuple], init: tuple, count: int, options: dict,
                 started: bool) -> Iterator[tuple[int, Done]]:
    ray = _ray()
    try:
        for index, result in ray_map(_RayWorker, init, items, workers=count, options=options):
            yield index, result if isinstance(result, Done) else Done(_failed(jobs[index], result.error),
                                                                      None, 0)
    finally:
        if started:
            ray.shutdown()


class _FrameWorker:
    """A Ray actor that stylizes video frames with one method (one model load):
    (H, W, 3) uint8 in, (h, w, 3) uint8 out (numpy travels through Ray's object store)."""

    def __init__(self, spec: BatchSpec, threads: int | None = None) -> None:
        self.pool = ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(threads or 1,))
        self.method = self.pool.submit(spec.build).result()
        self.checked = False     # the memory plan, on this worker's first frame

    def _stylize(self, frame):
        from .io import pil_to_tensor
        from .videoio import to_uint8

        tensor = torch.from_numpy(frame.copy()).permute(2, 0, 1)[None].float().div_(255)
        if not self.checked:
            self.method.check(tensor)
            self.checked = True
        image, _ = self.method.run(tensor, None)
        return to_uint8(pil_to_tensor(image) if isinstance(image, Image.Image) else image)

    def run(self, frame):
        return self.pool.submit(self._stylize, frame).result()


def stylize_frames_on_ray(frames: Iterator[Tensor], spec: BatchSpec, *, address: str | None = None,
                          workers: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """``(frame, stylized)`` for each (1, 3, H, W) frame, in order, the stylization done by
    Ray actors (:func:`ray_map`, a few frames in flight per worker, so memory stays bounded);
    Ray is started (or joined at ``address``) on the first ``next`` and stopped at the end if
    it was started here. A frame whose task failed after its retries is an InputError.
    ``spec``'s options are not checked here: :func:`warpaint.video.run_video` needs the method
    they build anyway (the caller's), and builds it before any frame is sent."""
    from .videoio import to_uint8

    ray = _ray()
    started = _connect(address, workers)
    held: dict[int, Tensor] = {}

    def items() -> Iterator[tuple]:
        for i, frame in enumerate(frames):
            held[i] = frame
            yield (to_uint8(frame),)

    try:
        count, options = _pool(workers, started)
        ready: dict[int, Any] = {}
        nxt = 0
        for index, result in ray_map(_FrameWorker, (spec, options["num_cpus"]), items(), workers=count,
                                     options=options):
            if isinstance(result, TaskFailed):
                raise InputError(f"frame {index}: {result.error}")
            ready[index] = result
            while nxt in ready:    # in order: at most a few frames wait here
                out = torch.from_numpy(ready.pop(nxt).copy()).permute(2, 0, 1)[None].float().div_(255)
                yield held.pop(nxt), out
                nxt += 1
    finally:
        if started:
            ray.shutdown()


def _run_here(jobs: Sequence[Job], spec: BatchSpec,
              known: Sequence[str | None]) -> Iterator[tuple[int, Done]]:
    """Build the worker (bad options are refused now), then (a generator) run the jobs in turn."""
    worker = BatchWorker(spec)

    def results() -> Iterator[tuple[int, Done]]:
        for index, job in enumerate(jobs):
            yield index, worker.run(job, known[index])

    return results()


# -- the batch --------------------------------------------------------------------------------------
class Manifest:
    """The output folder's record of which key made each output (written atomically)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / MANIFEST
        self.outputs: dict[str, str] = {}
        self.saved = time.monotonic()
        try:
            data = json.loads(self.path.read_text())
            self.outputs = {str(k): str(v) for k, v in data["outputs"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass   # none yet, or unreadable: every output is made again

    def key(self, job: Job) -> str | None:
        return self.outputs.get(Path(job.output).name)  # type: ignore[arg-type]

    def record(self, job: Job, key: str | None) -> None:
        name = Path(job.output).name  # type: ignore[arg-type]
        if key is None:
            self.outputs.pop(name, None)
        else:
            self.outputs[name] = key

    def save_now_and_then(self, seconds: float = 5.0) -> None:
        """Save when the last save is ``seconds`` old (a driver killed outright loses less)."""
        if time.monotonic() - self.saved > seconds:
            self.save()

    def save(self) -> None:
        self.saved = time.monotonic()
        text = json.dumps({"format": "warpaint.batch", "version": 1, "outputs": self.outputs}, indent=1,
                          sort_keys=True)
        write_bytes_atomic((text + "\n").encode(), self.path)


def remove_leftovers(folder: Path, jobs: Sequence[Job]) -> list[Path]:
    """Remove the temporary files of the jobs' outputs (``.NAME.XXXX.tmp``) that a killed
    worker left in ``folder``; call it only when no worker of the batch is writing."""
    names = {Path(j.output).name for j in jobs} | {MANIFEST}  # type: ignore[arg-type]
    gone = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")
            and p.name[1:-4].rpartition(".")[0] in names]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


@dataclass
class BatchResult:
    """The per-item summaries in job order (jobs not reached are absent) and the interruption
    that ended the batch early, if any."""

    items: list[dict[str, Any]]
    interrupted: Interrupted | KeyboardInterrupt | None = None

    def count(self, status: str) -> int:
        return sum(item["status"] == status for item in self.items)


def check_folders(input_dir: str | Path, output_dir: str | Path) -> None:
    """An InputError for a missing input folder, a file in its place, or an output folder
    that is the input folder or inside it (a rerun would read the outputs as inputs)."""
    src, out = Path(input_dir), Path(output_dir)
    if not src.exists():
        raise InputError(f"{src}: input folder not found")
    if not src.is_dir():
        raise InputError(f"{src}: not a folder (batch stylizes a folder of images; use stylize for one file)")
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise InputError(f"{out}: the output folder may not be the input folder or inside it")


def run_batch(jobs: Sequence[Job], spec: BatchSpec, out_dir: Path, *, use_ray: bool = False,
              address: str | None = None, workers: int | None = None, quiet: bool = False,
              on_result: Callable[[int, Done], None] | None = None) -> BatchResult:
    """Run the jobs (in this process, or on Ray with ``use_ray``: the cluster at ``address``,
    else a local one), skipping finished outputs made with the same key; one progress bar
    for the whole batch. ``on_result(i, done)`` is called as each job ends. Ctrl-C or
    SIGTERM stops the batch: what finished stands and is in the result."""
    if workers is not None:
        check_number("workers", workers, lo=1, hi=100_000, integer=True)
    manifest = Manifest(out_dir)
    known = [manifest.key(j) for j in jobs]
    results = _run_on_ray(jobs, spec, known, address, workers) if use_ray else _run_here(jobs, spec, known)
    items: dict[int, dict[str, Any]] = {}
    stopped = None
    with _bar(len(jobs), quiet) as bar:
        try:
            for index, done in results:
                items[index] = done.summary
                manifest.record(jobs[index], done.key)
                manifest.save_now_and_then()
                bar.update(1)
                if on_result is not None:
                    on_result(index, done)
        except KeyboardInterrupt as e:   # Ctrl-C, SIGTERM (Interrupted): keep what finished
            stopped = e
            _record_interrupted(e, jobs, items)
        finally:
            results.close()   # Ray: kill the actors (and stop Ray if we started it)
            manifest.save()
            remove_leftovers(out_dir, jobs)
    return BatchResult([items[i] for i in sorted(items)], stopped)


def _record_interrupted(e: KeyboardInterrupt, jobs: Sequence[Job], items: dict[int, dict]) -> None:
    """The summary of the job an in-process interruption stopped (its ``.partial`` output)."""
    outcome = getattr(e, "outcome", None)
    if outcome is not None:
        items[jobs.index(outcome.job)] = summary_of(outcome)


def _bar(total: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="batch", file=sys.stderr, disable=quiet, dynamic_ncols=True)
