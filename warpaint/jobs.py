"""The job layer: what every front end runs to stylize files.

A :class:`Job` is one content file (or stdin) and one output file (or stdout). :func:`run_jobs`
reads the inputs (keeping a content file's alpha channel and 16-bit samples), runs a method
(the optimization engine, :class:`EngineMethod`, or a feed-forward model, :class:`FastMethod`),
checks the result (finite, not flat), resizes it, writes it atomically and yields one
:class:`Outcome` per job. A job that fails on bad input is reported and the next one runs;
Ctrl-C or SIGTERM writes the current result under a ``.partial`` name and stops. The CLI only
parses options and prints.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .errors import InputError, Interrupted, NumericalError, OutputError, WarpaintError, check_number
from .io import (  # noqa: F401  (partial_path, read_pil, same_file: re-exported for front ends)
    ALPHA_FORMATS,
    DEEP_FORMATS,
    MIN_SIDE,
    BitDepth,
    Loaded,
    check_bit_depth,
    check_not_there,
    fit_long_side,
    free_partial_path,
    guard_output,
    list_images,
    output_format,
    partial_path,
    pil_to_tensor,
    read_content,
    read_pil,
    resize,
    resize_pil,
    resize_pil_long_side,
    same_file,
    save_image,
    tensor_to_pil,
)
from .masks import Mask
from .memory import budget_bytes, check_budget, plan_fast
from .stylize import Iterate, StylizeConfig, Stylizer, Temporal
from .training import StopRequest

STDIO = "-"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One stylization: a content file (``-``: stdin) or image to an output file (``-``:
    stdout; ``None``: not written, the result is only in the :class:`Outcome`)."""

    content: str | Image.Image | Tensor
    output: str | None


@dataclass
class Outcome:
    """How a job ended: ``status`` is ``ok``, ``error``, ``stopped`` (its ``stop`` event) or
    ``interrupted`` (Ctrl-C, SIGTERM). ``image`` is the result (the current one when stopped),
    a tensor (engine) or a Pillow image (fast)."""

    job: Job
    status: str
    summary: dict[str, Any] = field(default_factory=dict)
    image: Tensor | Image.Image | None = None
    exception: WarpaintError | None = None   # what made an ``error`` outcome
    alpha: Tensor | None = None         # (1, 1, H, W) transparency of ``image`` (content with alpha)
    error: str | None = None
    partial: str | None = None          # where the partial result went (interrupted jobs)
    history: list[dict[str, float]] = field(default_factory=list)
    scale_starts: list[int] = field(default_factory=list)


# -- planning -------------------------------------------------------------------------------
def batch_names(files: Sequence[Path]) -> list[str]:
    """Output names (PNG) for a folder batch: ``stem.png``, or ``name.ext.png`` for every file
    whose stem another file shares, so no two outputs collide.

    A name still taken (``a.png.jpg`` beside ``a.png`` and ``a.jpg``) gets a counter.

    Example:
        >>> batch_names([Path("a.jpg"), Path("a.png"), Path("b.jpg")])
        ['a.jpg.png', 'a.png.png', 'b.png']
        >>> batch_names([Path("a.jpg"), Path("a.png"), Path("a.png.jpg")])
        ['a.jpg.png', 'a.png.png', 'a.png-2.png']
    """
    stems = [f.stem.lower() for f in files]
    names, taken = [], set()
    for f in files:
        base = f.name if stems.count(f.stem.lower()) > 1 else f.stem
        name, n = f"{base}.png", 1
        while name.lower() in taken:
            n += 1
            name = f"{base}-{n}.png"
        taken.add(name.lower())
        names.append(name)
    return names


def plan(content: str, output: str) -> list[Job]:
    """The jobs for a content file or folder (then ``output`` is a folder, created if needed,
    other than the content folder; the folder's images are listed without its subfolders)."""
    if content != STDIO and Path(content).is_dir():
        out_dir = Path(output)
        if output == STDIO or (out_dir.exists() and not out_dir.is_dir()):
            raise OutputError(f"{output}: for a folder of content images, -o must be a folder")
        if out_dir.resolve() == Path(content).resolve():
            raise OutputError(f"{output}: the output folder may not be the input folder (a rerun would "
                              "read the results as inputs)")
        files = list_images(Path(content))
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{output}: cannot make the output folder ({e.strerror or e})") from None
        return [Job(str(c), str(out_dir / name)) for c, name in zip(files, batch_names(files), strict=True)]
    return [Job(content, output)]


def check_jobs_bit_depth(jobs: Sequence[Job], bit_depth: BitDepth, *, fast: bool = False) -> None:
    """An InputError, before any work, for ``bit_depth`` 16 that a job cannot write: with a
    feed-forward model (its result has 8 bits), or to a format other than PNG and TIFF."""
    if str(bit_depth) != "16":
        return
    if fast:
        raise InputError("bit_depth 16 works with the optimization engine, not with a feed-forward model "
                         "(its results have 8 bits per sample)")
    for job in jobs:
        if job.output is not None:
            check_bit_depth(16, job.output)


def guard_jobs(jobs: Sequence[Job], inputs: Sequence[str], *, overwrite: bool = True) -> None:
    """Check every job's output against every input (each content file of a batch too);
    without ``overwrite``, an OutputError when an output file exists (a finished result)."""
    everything = [*inputs, *(j.content for j in jobs if j.content not in inputs)]
    if everything.count(STDIO) > 1:
        raise InputError("only one input can be read from stdin (-)")
    for job in jobs:
        if job.output != STDIO:
            guard_output(job.output, everything)
    if not overwrite:
        check_not_there([j.output for j in jobs if j.output not in (None, STDIO)])


# -- reading and checking -----------------------------------------------------------------------
def read_init(cfg: StylizeConfig) -> Tensor | None:
    """The start image when ``cfg.init`` names a file, else None."""
    return None if cfg.init_file is None else pil_to_tensor(read_pil(cfg.init_file))


def read_mask(cfg: StylizeConfig, styles: int) -> Mask | None:
    """The regions of ``cfg.mask`` for ``styles`` style images, else None."""
    if not cfg.mask:
        return None
    from .masks import parse_mask

    return parse_mask(read_pil(cfg.mask), styles, name=cfg.mask)


def check_mask(mask: Mask | None, content: Image.Image | Tensor, name: str) -> None:
    """An InputError when a content image's aspect ratio does not fit the mask."""
    if mask is not None:
        from .masks import check_aspect

        check_aspect(tuple(mask.regions.shape[-2:]), _hw(content), name=name)  # type: ignore[arg-type]


def check_result(image: Tensor | Image.Image) -> None:
    """A NumericalError for a result no one should receive: non-finite values, or a flat
    (e.g. all-black) image."""
    a = np.asarray(image) if isinstance(image, Image.Image) else image.detach().float().cpu().numpy()
    if not np.isfinite(a).all():
        raise NumericalError("the result holds NaN or infinite values; nothing was written")
    span = float(a.max()) - float(a.min())
    if span <= (0.5 if isinstance(image, Image.Image) else 0.5 / 255):
        raise NumericalError("the result is a flat image of one colour (the optimization diverged); "
                             "nothing was written")


# -- methods ----------------------------------------------------------------------------------
class Method(Protocol):
    """A way to stylize: the engine or a feed-forward model."""

    name: str
    device: torch.device
    dtype: str

    def check(self, content: Image.Image) -> None: ...
    def run(self, content: Image.Image, on_step: Callable[[Iterate], None]) -> tuple[Any, dict]: ...
    def current(self) -> Tensor | None: ...


class EngineMethod:
    """The optimization engine (:class:`~warpaint.stylize.Stylizer`) with fixed styles."""

    name = "optimize"

    def __init__(self, cfg: StylizeConfig, styles: Sequence[Image.Image | Tensor], *,
                 init: Tensor | None = None, mask: Mask | None = None) -> None:
        self.cfg = cfg
        self.stylizer = Stylizer(cfg)
        self.device = self.stylizer.device
        self.dtype = str(self.stylizer.dtype).removeprefix("torch.")
        self.styles = [_as_tensor(s) for s in styles]
        self.init = init
        self.mask = read_mask(cfg, len(self.styles)) if mask is None else mask   # (cfg.mask: a file)
        self.temporal: Temporal | None = None   # (video) the next run's link to the previous frame

    def check(self, content: Image.Image | Tensor) -> None:
        check_mask(self.mask, content, self.cfg.mask)
        self.stylizer.plans(_hw(content), [tuple(s.shape[-2:]) for s in self.styles])  # type: ignore[misc]

    def run(self, content: Image.Image | Tensor, on_step: Callable[[Iterate], None]) -> tuple[Tensor, dict]:
        tensor = _as_tensor(content)
        masked: dict[str, Any] = {} if self.mask is None else {"mask": self.mask.regions}
        if self.temporal is not None:
            masked["temporal"] = self.temporal    # (without these: the call as before)
        detail = self.stylizer.run_detailed(tensor, self.styles, callback=on_step, init=self.init, **masked)
        scales = self.cfg.scales(_hw(content))
        # keys with "_" are for the caller (pictures of the warp), not for the JSON summary
        extra: dict[str, Any] = {"scales": [[w, h] for h, w in scales], "config": asdict(self.cfg),
                                 "_detail": detail, "_content": tensor}
        tiled = [{"size": [w, h], "tile": p.core, "overlap": 2 * p.margin, "lbfgs_history": p.history}
                 for (h, w), p in zip(scales, detail.plans, strict=False) if p.tiled]   # (none: a stub)
        if tiled:
            extra["tiled_scales"] = tiled
        if self.mask is not None:
            extra["mask_regions"] = self.mask.describe()
        if detail.final_losses is not None:   # (else the summary keeps the last step's)
            extra["final_losses"] = detail.final_losses
        return detail.image, extra

    def current(self) -> Tensor | None:
        return self.stylizer.current_result()


class FastMethod:
    """A feed-forward model (:mod:`warpaint.feedforward`): one forward pass."""

    name = "fast"
    dtype = "float32"

    def __init__(self, model, styles: Sequence[Image.Image], *, size: int, weights: list[float] | None,
                 strength: float, preserve_color: str, work_size: int | None, max_memory: float,
                 label: str, tile: int = 0, mask: Mask | None = None, feather: float = 0.0,
                 mask_name: str = "mask", style_detail: list[float] | None = None) -> None:
        self.model, self.styles, self.size, self.weights = model, list(styles), size, weights
        self.style_detail = style_detail     # the styles' painting_detail, read before they were shrunk
        self.strength, self.preserve_color, self.work_size = strength, preserve_color, work_size
        self.max_memory, self.label, self.tile = max_memory, label, tile
        self.mask, self.feather, self.mask_name = mask, feather, mask_name
        self.device = model.device
        self.plan = 0    # the tile size of the content last checked (0: whole)

    def check(self, content: Image.Image | Tensor) -> None:
        check_mask(self.mask, content, self.mask_name)
        hw = fit_long_side(_hw(content), self.size)
        blend = self.strength < 1 or self.preserve_color != "none"
        budget = budget_bytes(self.max_memory, self.device)
        tile, need = plan_fast(hw, self.work_size, budget, blend_full=blend, tile=self.tile)
        check_budget(need, self.max_memory, self.device, f"stylizing at {hw[1]}x{hw[0]} px", budget=budget)
        self.plan = tile

    def run(self, content: Image.Image | Tensor,
            on_step: Callable[[Iterate], None]) -> tuple[Image.Image, dict]:
        if isinstance(content, Tensor):
            content = tensor_to_pil(content)
        extra = {"model": self.label, "kind": self.model.kind, "strength": self.strength,
                 "work_size": self.work_size, "detail": self.model.detail, "fineness": self.model.fineness}
        if self.mask is not None:
            return self._run_masked(content), {**extra, "mask_regions": self.mask.describe()}
        out = self.model.stylize_image(content, self.styles, size=self.size, weights=self.weights,
                                       strength=self.strength, preserve_color=self.preserve_color,  # type: ignore[arg-type]
                                       work_size=self.work_size, tile=self.plan,
                                       style_detail=self.style_detail)
        if self.plan:
            extra["tile"] = self.plan
        return out, extra

    def _run_masked(self, content: Image.Image) -> Image.Image:
        """One render per style (a single-style model: its own), blended by the mask's soft
        weights at the output size; the no-style region takes the content."""
        from .masks import soft_weights

        per_style = [[s] for s in self.styles] if self.styles else [None]
        details = [None] * len(per_style) if self.style_detail is None else [[d] for d in self.style_detail]
        renders = [pil_to_tensor(self.model.stylize_image(
            content, s, size=self.size, strength=self.strength, preserve_color=self.preserve_color,  # type: ignore[arg-type]
            work_size=self.work_size, tile=self.plan, style_detail=d))
            for s, d in zip(per_style, details, strict=True)]
        hw = _hw(renders[0])
        weights = soft_weights(self.mask.regions, hw, self.feather)   # type: ignore[union-attr]  (1, S + 1, h, w)
        photo = pil_to_tensor(resize_pil(content, hw))
        out = sum(weights[:, k:k + 1] * r for k, r in enumerate(renders)) + weights[:, -1:] * photo
        return tensor_to_pil(out.clamp(0, 1))  # type: ignore[union-attr]

    def current(self) -> Tensor | None:
        return None


#: The StylizeConfig fields a feed-forward model honours (warp and align_style have their own
#: error in :func:`make_method`); any other one set for a feed-forward model would be ignored.
FAST_FIELDS = frozenset({"size", "style_blend", "mask", "mask_feather", "preserve_color", "device",
                         "max_memory", "tile", "warp", "align_style"})


#: How each front end names the two methods and an option (``cli``, ``video``: flags; ``web``:
#: the form's fields).
METHOD_WORDS = {"cli": ("--fast / --model", "the optimization engine"),
                "video": ("--method fast", "--method optimize"),
                "web": ("method fast", "method optimize")}


def check_method_options(cfg: StylizeConfig, *, fast: bool, strength: float = 1.0,
                         work_size: int | None = None, detail: float | None = None,
                         fineness: float | None = None, front: str = "cli") -> None:
    """An InputError for an option the chosen method would ignore: a feed-forward option
    (``strength``, ``work_size``, ``detail``, ``fineness``) for the engine, or an optimization
    setting of ``cfg`` (one not in :data:`FAST_FIELDS`, off its default) for a feed-forward
    model. The messages use the ``front`` end's words (:data:`METHOD_WORDS`)."""
    model, engine = METHOD_WORDS[front]

    def option(name: str) -> str:
        return name if front == "web" else "--" + name.replace("_", "-")

    if not fast:
        given = [name for name, value, default in (("strength", strength, 1.0),
                                                   ("work_size", work_size, None),
                                                   ("detail", detail, None), ("fineness", fineness, None))
                 if value != default]
        if given:
            raise InputError(f"{option(given[0])} works with {model}, not with {engine}")
        return
    default = StylizeConfig()
    for f in fields(StylizeConfig):
        if f.name not in FAST_FIELDS and getattr(cfg, f.name) != getattr(default, f.name):
            raise InputError(f"{option(f.name)} works with {engine}, not with {model}")


def make_method(cfg: StylizeConfig, styles: Sequence[Image.Image | Tensor], *, fast: bool = False,
                model: str | Path | None = None, strength: float = 1.0,
                work_size: int | None = None, detail: float | None = None,
                fineness: float | None = None) -> EngineMethod | FastMethod:
    """The method a front end asked for: the engine with ``cfg``, or (``fast``, or a
    ``model`` file) a feed-forward model (``None``: the shipped one) at ``strength``, run at
    ``work_size`` (``None``: the model's own; 0: full size), adding back ``detail`` of the
    photo and matching ``fineness`` of the painting's fine detail (``None``: the model's
    own). Style images (Pillow) are shrunk
    before they become tensors: to twice the long side the engine needs, to the size a model
    reads. Options the method cannot honour are InputErrors."""
    def shrink(im: Image.Image | Tensor, side: int) -> Image.Image | Tensor:
        return im if isinstance(im, Tensor) else resize_pil_long_side(im, side, enlarge=False)

    if cfg.style_blend and styles and len(cfg.style_blend) != len(styles):   # before any work, not per image
        raise InputError(f"style_blend has {len(cfg.style_blend)} weights for {len(styles)} style images")
    if not (fast or model is not None):
        if not styles:
            raise InputError("give at least one style image (or a feed-forward model)")
        # at most twice the long side the result needs: memory stays bounded, and a style up to
        # that size reaches the engine as it is (its own resize makes each scale's style)
        need = 2 * max(MIN_SIDE, round(cfg.size * cfg.style_scale))
        return EngineMethod(cfg, [shrink(s, need) for s in styles], init=read_init(cfg),
                            mask=read_mask(cfg, len(styles)))
    from .device import pick_device
    from .feedforward import load
    from .feedforward.model import painting_detail

    for name, used in (("warp", cfg.warp != "none"), ("align_style", cfg.align_style != "none")):
        if used:
            raise InputError(f"{name} works with the optimization engine, not with a feed-forward model")
    check_number("strength", strength, lo=0, hi=1)
    if work_size:
        check_number("work_size", work_size, lo=32, hi=16384, integer=True)
    for name, value in (("detail", detail), ("fineness", fineness)):
        if value is not None:
            check_number(name, value, lo=0, hi=2)
    ff = load(model, device=pick_device(cfg.device))
    if detail is not None:
        ff.detail = detail
    if fineness is not None:
        ff.fineness = fineness
    if ff.kind == "single" and styles:
        raise InputError(f"{model}: a single-style model takes no style image")
    if ff.kind == "single" and fineness:
        raise InputError(f"{model}: fineness needs an arbitrary-style model "
                         "(it matches the style image's detail)")
    if ff.kind == "arbitrary" and not styles:
        raise InputError("give at least one style image for an arbitrary-style model")
    detail_of = [painting_detail(s) for s in styles] if ff.fineness > 0 and ff.kind == "arbitrary" else None
    pils = [tensor_to_pil(s) if isinstance(s, Tensor) else shrink(s, ff.style_size) for s in styles]
    return FastMethod(ff, pils, style_detail=detail_of, size=cfg.size, weights=list(cfg.style_blend) or None,
                      strength=strength,
                      preserve_color=cfg.preserve_color, max_memory=cfg.max_memory,
                      label=str(model or "shipped"), tile=cfg.tile,
                      work_size=ff.work_size if work_size is None else (work_size or None),
                      mask=read_mask(cfg, max(1, len(pils))), feather=cfg.mask_feather, mask_name=cfg.mask)


# -- running ----------------------------------------------------------------------------------
def _write(image: Tensor | Image.Image, dest: str, alpha: Tensor | None = None, bits: int = 8) -> None:
    save_image(image, sys.stdout.buffer if dest == STDIO else dest, alpha=alpha, bit_depth=bits)


def _read(job: Job, loaded: dict[str, Image.Image] | None) -> Loaded:
    """A job's content: an image in memory as it is; a file with its alpha, 16 bits and ICC
    profile handled (:func:`~warpaint.io.read_content`)."""
    if not isinstance(job.content, str):
        return Loaded(job.content)
    if loaded and job.content in loaded:
        return Loaded(loaded[job.content])
    return read_content(job.content)


def _out_bits(bit_depth: BitDepth, source: Loaded, result: Tensor | Image.Image, dest: str | None) -> int:
    """Bits per sample to write: ``auto`` keeps 16 bits of a 16-bit content file when the
    result is a float tensor (the engine's) and the format holds them; else 8."""
    if str(bit_depth) == "16":
        if isinstance(result, Image.Image):
            raise InputError("bit_depth 16 needs a float result (the optimization engine's); "
                             "this one has 8 bits")
        return 16
    fmt = output_format(dest) if dest is not None else "PNG"
    deep = str(bit_depth) == "auto" and source.bit_depth == 16 and isinstance(result, Tensor)
    return 16 if deep and fmt in DEEP_FORMATS else 8


def _color(source: Loaded, bits: int, dest: str | None) -> dict[str, Any]:
    """The summary's ``color``: what became of the content's alpha, bits and ICC profile."""
    alpha = "none"
    if source.alpha is not None:
        fmt = output_format(dest) if dest is not None else "PNG"
        alpha = "kept" if fmt in ALPHA_FORMATS else "composited onto white"
    return {"alpha": alpha, "bit_depth": bits, "input_bit_depth": source.bit_depth, "icc": source.icc}


def color_note(summary: dict[str, Any]) -> str:
    """A few words on a summary's colour handling for a progress line ("" when plain).

    Example:
        >>> color_note({"color": {"alpha": "kept", "bit_depth": 16, "icc": "converted X -> sRGB"}})
        'ICC X -> sRGB, alpha kept, 16-bit'
    """
    c = summary.get("color") or {}
    words = []
    if str(c.get("icc") or "").startswith("converted "):
        words.append("ICC " + c["icc"].removeprefix("converted "))
    if c.get("alpha", "none") != "none":
        words.append(f"alpha {c['alpha']}")
    if c.get("bit_depth") == 16:
        words.append("16-bit")
    return ", ".join(words)


def _resize_to(image: Tensor | Image.Image, hw: tuple[int, int]) -> Tensor | Image.Image:
    if isinstance(image, Image.Image):
        return resize_pil(image, hw)
    return resize(image, hw)


def _size_of(image: Tensor | Image.Image) -> tuple[int, int]:
    """(W, H) of a tensor or a Pillow image."""
    return image.size if isinstance(image, Image.Image) else (int(image.shape[-1]), int(image.shape[-2]))


def _hw(image: Tensor | Image.Image) -> tuple[int, int]:
    """(H, W) of a tensor or a Pillow image."""
    w, h = _size_of(image)
    return h, w


def _as_tensor(image: Tensor | Image.Image) -> Tensor:
    return image if isinstance(image, Tensor) else pil_to_tensor(image)


def _save_partial(current: Tensor | None, job: Job, source: Loaded | None = None,
                  bit_depth: BitDepth = "auto") -> str | None:
    """Write the current result of a stopped job under a free ``.partial`` name (never over
    an existing file), with the content's alpha; None when there is nothing to write or it
    cannot be written."""
    if current is None or job.output in (None, STDIO):
        return None
    dest = free_partial_path(job.output)  # type: ignore[arg-type]
    source = source or Loaded(current)
    try:
        check_result(current)
        alpha = None if source.alpha is None else resize(source.alpha, _hw(current))
        _write(current, dest, alpha, _out_bits(bit_depth, source, current, dest))
    except WarpaintError as e:   # the interruption stays what is reported
        log.warning("the current image was not written: %s", e)
        return None
    return dest


class _Stop(Exception):
    """Raised between steps when a job's ``stop`` event is set."""


def _current(method: Method, content_hw: tuple[int, int], original_size: bool) -> Tensor | None:
    current = method.current()
    if current is not None and original_size:
        current = resize(current, content_hw)
    return current


def run_job(job: Job, method: Method, *, original_size: bool = False,
            on_step: Callable[[Iterate], None] | None = None, loaded: dict[str, Image.Image] | None = None,
            stop: threading.Event | None = None, bit_depth: BitDepth = "auto") -> Outcome:
    """Run one job: read, check the memory budget, stylize, check, resize, write atomically
    (unless ``job.output`` is None); the outcome holds the result image.

    A content file's transparency is kept: its colour is stylized as stored and its alpha
    channel, resized to the result, is written beside it (composited onto white for formats
    without alpha). ``bit_depth`` ``16`` writes 16 bits per sample (PNG, TIFF); ``auto`` does
    so for a 16-bit content file when the result is the engine's float tensor.

    ``loaded`` maps content names to images already in memory (the demo's). Bad input (a
    WarpaintError) gives an ``error`` outcome. ``stop`` (set from another thread, e.g. a web
    page's Stop button) ends the job after the current step with a ``stopped`` outcome that
    holds the current result. Ctrl-C or SIGTERM (main thread) writes the current result to a
    free ``.partial`` name (:func:`~warpaint.io.free_partial_path`) and raises
    :class:`~warpaint.errors.Interrupted` with the outcome attached as ``.outcome``; one that
    comes after the last step lets the finished result be written first.
    """
    history: list[dict[str, float]] = []
    scale_starts: list[int] = []
    try:
        source = _read(job, loaded)
        content = source.image
        method.check(content)
    except WarpaintError as e:
        return Outcome(job, "error", error=str(e), exception=e)
    content_hw = _hw(content)

    def step(it: Iterate) -> None:
        if it.step == 1:
            scale_starts.append(it.done - 1)
        history.append(it.losses)
        if on_step is not None:
            on_step(it)
        signals.raise_if_requested()
        if stop is not None and stop.is_set():
            raise _Stop

    t0 = time.perf_counter()
    try:
        with StopRequest(second_press_raises=True) as signals:
            result, extra = method.run(content, step)
    except (KeyboardInterrupt, _Stop) as e:
        current = _current(method, content_hw, original_size)
        outcome = Outcome(job, "stopped" if isinstance(e, _Stop) else "interrupted", history=history,
                          scale_starts=scale_starts, image=current,
                          partial=_save_partial(current, job, source, bit_depth))
        if isinstance(e, _Stop):
            return outcome
        raise _with_outcome(Interrupted(e.signum if isinstance(e, Interrupted) else 2), outcome) from None
    except WarpaintError as e:
        return Outcome(job, "error", error=str(e), history=history, exception=e)
    outcome = _finish(job, method, source, result, extra, time.perf_counter() - t0, original_size,
                      history, scale_starts, bit_depth)
    if signals.requested:   # a signal after the last step, or during a method without steps:
        raise _with_outcome(Interrupted(signals.signum or 2), outcome)   # the finished result is kept
    return outcome


def _finish(job: Job, method: Method, source: Loaded, result: Tensor | Image.Image,
            extra: dict, seconds: float, original_size: bool, history: list,
            scale_starts: list[int], bit_depth: BitDepth = "auto") -> Outcome:
    """Check, resize and write a finished job's result (with the content's alpha); its
    outcome and summary."""
    content = source.image
    try:
        check_result(result)
        if original_size:
            result = _resize_to(result, _hw(content))
        alpha = None if source.alpha is None else resize(source.alpha, _hw(result))
        bits = _out_bits(bit_depth, source, result, job.output)
        if job.output is not None:
            _write(result, job.output, alpha, bits)
    except WarpaintError as e:
        return Outcome(job, "error", error=str(e), history=history, exception=e)
    w, h = _size_of(result)
    name = job.content if isinstance(job.content, str) else "(image)"
    summary = {"content": name, "output": job.output, "status": "ok", "method": method.name,
               "content_size": list(_size_of(content)), "output_size": [w, h],
               "steps": len(history), "seconds": round(seconds, 4), "device": str(method.device),
               "dtype": method.dtype, "torch_threads": torch.get_num_threads(),
               "final_losses": history[-1] if history else {}, "color": _color(source, bits, job.output),
               **extra}
    return Outcome(job, "ok", summary, history=history, scale_starts=scale_starts, image=result, alpha=alpha)


def _with_outcome(e: Interrupted, outcome: Outcome) -> Interrupted:
    e.outcome = outcome  # type: ignore[attr-defined]
    return e


def run_jobs(jobs: Sequence[Job], method: Method, *, original_size: bool = False,
             on_step: Callable[[Job, Iterate], None] | None = None,
             loaded: dict[str, Image.Image] | None = None,
             stop: threading.Event | None = None, bit_depth: BitDepth = "auto") -> Iterator[Outcome]:
    """:func:`run_job` for each job in turn, yielding each outcome; a job that fails on bad
    input does not stop the others; a set ``stop`` ends the batch after the current job's step."""
    for job in jobs:
        hook = None if on_step is None else (lambda it, job=job: on_step(job, it))
        outcome = run_job(job, method, original_size=original_size, on_step=hook, loaded=loaded, stop=stop,
                          bit_depth=bit_depth)
        yield outcome
        if outcome.status == "stopped":
            return


def summary_of(outcome: Outcome) -> dict[str, Any]:
    """The JSON-ready summary of an outcome (per-item status, error or partial output)."""
    name = outcome.job.content if isinstance(outcome.job.content, str) else "(image)"
    base = {"content": name, "output": outcome.job.output, "status": outcome.status}
    if outcome.status == "ok":
        return {k: v for k, v in outcome.summary.items() if not k.startswith("_")}
    if outcome.error is not None:
        base["error"] = outcome.error
    if outcome.partial is not None:
        base["partial_output"] = outcome.partial
    base["steps"] = len(outcome.history)
    return base
