"""The training loop shared by the STN canvas applications and feed-forward style transfer.

Step-based, since the data is drawn fresh every step: Adam with a one-cycle schedule, a
progress bar, atomic checkpoints (every ``every`` steps, at the end and on Ctrl-C) and exact
resume: step ``t`` always draws its data from a generator seeded with ``(seed, t)``.
"""

from __future__ import annotations

import io
import logging
import math
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import InputError, Interrupted, NumericalError
from .io import write_bytes_atomic

log = logging.getLogger("warpaint")

#: One training step's losses: the total to minimize and named parts to report.
StepLoss = Callable[[torch.Generator], tuple[Tensor, dict[str, float]]]

#: Called with a step's number (see :func:`fit`).
StepHook = Callable[[int], None]


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator for one step's data (so a resumed run draws the same data)."""
    return torch.Generator().manual_seed(_step_seed(seed, step))


def _step_seed(seed: int, step: int, offset: int = 0) -> int:
    """``seed * 1_000_003 + step + offset`` as a generator seed (modulo 2**64, so a seed up
    to 2**63 - 1 is fine)."""
    return (seed * 1_000_003 + step + offset) % 2**64


def save_checkpoint(state: dict, path: Path) -> None:
    """``torch.save`` atomically (:func:`~warpaint.io.write_bytes_atomic`: a unique temporary
    file, fsync, rename), so a checkpoint is never half written, even by two processes."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(buf.getvalue(), path)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint dict written by :func:`fit` (or a model file), or a one-line InputError.

    Loaded with ``weights_only=True``: tensors, numbers, strings and containers only, so a
    planted file cannot run code.
    """
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: checkpoint not found") from None
    except pickle.UnpicklingError:
        raise InputError(f"{path}: refused: the file holds Python objects other than tensors and "
                         "plain data (it could run code); not a warpaint checkpoint") from None
    except Exception as e:  # noqa: BLE001 - empty, truncated or foreign files are bad input
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__}); move it away to "
                         "start over") from None
    if not isinstance(ck, dict) or "format" not in ck:
        raise InputError(f"{path}: not a warpaint checkpoint")
    return ck


def check_finite_state(state: dict, path: Path | str) -> None:
    """An InputError when a state dict holds a non-finite weight (a model that diverged)."""
    for name, t in state.items():
        if isinstance(t, Tensor) and torch.is_floating_point(t) and not bool(torch.isfinite(t).all()):
            raise InputError(f"{path}: weight {name!r} holds NaN or infinite values; the model is unusable")


def move_aside(path: Path) -> Path:
    """Rename ``path`` to a free ``NAME.stale-N`` beside it (never deleting it); return the new name."""
    n = 1
    while (aside := path.with_name(f"{path.name}.stale-{n}")).exists():
        n += 1
    os.replace(path, aside)
    return aside


def restore(path: Path, fmt: str, what: str, build: Callable[[dict], nn.Module]) -> tuple[nn.Module, dict]:
    """The model in a finished or interrupted :func:`fit` checkpoint of format ``fmt``, in
    eval mode, and the checkpoint; ``build(config)`` makes the untrained model. Anything
    that does not fit is a one-line InputError naming ``what`` the file should be."""
    ck = load_checkpoint(path)
    if ck.get("format") != fmt:
        raise InputError(f"{path}: not a warpaint {what} checkpoint")
    try:
        model = build(ck["config"])
        check_finite_state(ck["model"], path)
        model.load_state_dict(ck["model"])
    except (TypeError, KeyError, RuntimeError, AttributeError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: checkpoint does not fit this version of warpaint "
                         f"({type(e).__name__})") from None
    return model.eval(), ck


def summary(model: nn.Module, config: dict, history: list[dict[str, float]], seconds: float) -> dict:
    """What a training run reports: time, parameters, steps, losses, configuration, threads."""
    return {"train_seconds": round(seconds, 1), "parameters": count_parameters(model),
            "steps": config["steps"], "history": history, "config": config,
            "threads": torch.get_num_threads()}


class StopRequest:
    """Turns Ctrl-C (SIGINT) and SIGTERM into a flag checked between steps, so a checkpoint is
    never taken in the middle of an update, and the signal never lands in a finalizer, where
    Python would swallow it (outside the main thread, signals are left alone). ``signum`` is
    the signal received; :meth:`raise_if_requested` raises :class:`~warpaint.errors.Interrupted`.

    With ``second_press_raises``, a second signal before the flag is acted on raises
    :class:`~warpaint.errors.Interrupted` at once (for work that may take long before its
    first step).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, *, second_press_raises: bool = False) -> None:
        self.signum: int | None = None
        self.previous: dict[int, object] = {}
        self.second_press_raises = second_press_raises

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and self.second_press_raises:
            raise Interrupted(signum)
        self.signum = signum

    def raise_if_requested(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]


def param_groups(model: nn.Module, lr: float, lr_scales: dict[str, float] | None = None) -> list[dict]:
    """Optimizer parameter groups: everything at ``lr``, then one group per submodule named
    in ``lr_scales`` (e.g. ``{"stn": 0.1}``) at ``lr`` times its factor."""
    scales = lr_scales or {}
    scaled = {name: list(model.get_submodule(name).parameters()) for name in scales}
    ids = {id(p) for ps in scaled.values() for p in ps}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids], "lr": lr}]
    return groups + [{"params": ps, "lr": lr * scales[name]} for name, ps in scaled.items() if ps]


def _one_cycle_adam(model: nn.Module, lr: float, steps: int, lr_scales: dict[str, float] | None = None,
                   pct_start: float = 0.15) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.OneCycleLR]:
    """Adam over :func:`param_groups` and a one-cycle schedule over ``steps`` steps peaking at
    each group's rate after ``pct_start`` of them."""
    groups = param_groups(model, lr, lr_scales)
    opt = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=steps,
                                                pct_start=pct_start)
    return opt, sched


def fit(model: nn.Module, step_loss: StepLoss, *, steps: int, lr: float, seed: int, config: dict,
        checkpoint: Path | None = None, every: int = 250, progress: bool = True, desc: str = "train",
        fmt: str = "warpaint.app", on_step: StepHook | None = None, before_step: StepHook | None = None,
        lr_scales: dict[str, float] | None = None, resume_ignores: tuple[str, ...] = (),
        pct_start: float = 0.15, max_grad_norm: float | None = 10.0) -> tuple[list[dict[str, float]], float]:
    """Train ``model`` for ``steps`` steps of ``step_loss``; return (loss history, seconds).

    A checkpoint whose ``config`` equals ``config`` (up to the keys in ``resume_ignores``,
    which do not change training) is resumed from: model, optimizer, schedule, history.
    ``on_step(n)`` is called after step ``n`` (1-based), e.g. to save sample pictures, and
    ``before_step(t)`` before step ``t`` (0-based), e.g. to pick the data of ``t``'s epoch.
    ``lr_scales`` maps a submodule's name (e.g. ``"stn"``) to a factor on its learning rate;
    ``pct_start`` is the one-cycle schedule's warm-up fraction; gradients are clipped to the
    norm ``max_grad_norm`` (``None``: not clipped). Ctrl-C or SIGTERM
    stops after the current step, saves the checkpoint and raises
    :class:`~warpaint.errors.Interrupted` (a ``KeyboardInterrupt``; its ``saved`` says
    where). A checkpoint of another configuration is moved aside (``NAME.stale-N``), never
    destroyed. A non-finite loss or gradient raises :class:`~warpaint.errors.NumericalError`
    before the update, with no checkpoint written.

    Step ``t`` draws its data from ``step_generator(seed, t)`` and reseeds torch's global
    generator (used inside some models, e.g. torchvision's proposal sampling) from
    ``(seed, t)`` too, so a resumed run repeats the uninterrupted one exactly.
    """
    opt, sched = _one_cycle_adam(model, lr, steps, lr_scales, pct_start)
    start, history, seconds = _resume_fit(checkpoint, fmt, config, resume_ignores, model, opt, sched)

    def save(step: int, spent: float) -> None:
        if checkpoint is not None:
            save_checkpoint({"format": fmt, "version": 1, "step": step, "config": config,
                             "model": model.state_dict(), "optimizer": opt.state_dict(),
                             "scheduler": sched.state_dict(), "history": history,
                             "seconds": spent}, checkpoint)

    bar = progress_bar(steps, start, desc, "step") if progress else None
    t0 = time.perf_counter()
    try:
        with StopRequest() as stop:
            for step in range(start, steps):
                if before_step is not None:
                    before_step(step)
                history.append(_fit_step(model, step_loss, opt, sched, seed, step, max_grad_norm))
                if bar is not None:
                    bar.set_postfix_str(f"loss={history[-1]['total']:.3f}", refresh=False)
                    bar.update(1)
                if (step + 1) % every == 0 or step + 1 == steps:   # the last before on_step
                    save(step + 1, seconds + time.perf_counter() - t0)
                if on_step is not None:
                    on_step(step + 1)
                stop.raise_if_requested()
    except KeyboardInterrupt as e:
        # raised between steps (above), or inside step_loss before any update: consistent
        save(len(history), seconds + time.perf_counter() - t0)
        if checkpoint is not None:   # for the front end's message
            e.saved = f"saved the training state at step {len(history)} of {steps} to {checkpoint}"  # type: ignore[attr-defined]
        raise
    finally:
        if bar is not None:
            bar.close()
    return history, seconds + time.perf_counter() - t0


def progress_bar(total: int, initial: int, desc: str, unit: str):
    """The progress bar of a training run (tqdm), starting at ``initial`` when resumed."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit)


def load_training_state(ck: dict, path: Path, model: nn.Module, opt, sched) -> None:
    """Put a checkpoint's model, optimizer and schedule states into ``model``, ``opt`` and
    ``sched`` (for resuming); a damaged or non-finite state is a one-line InputError."""
    try:
        check_finite_state(ck["model"], path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: damaged checkpoint ({type(e).__name__}); move it away to start "
                         "over") from None


def _resume_fit(checkpoint: Path | None, fmt: str, config: dict, ignores: tuple[str, ...], model: nn.Module,
                opt, sched) -> tuple[int, list[dict[str, float]], float]:
    """Load a :func:`fit` checkpoint of this configuration (up to ``ignores``) into the model,
    optimizer and schedule; return (step, history, seconds) to continue from. A checkpoint
    of another configuration is moved aside, never destroyed."""
    if checkpoint is None or not checkpoint.exists():
        return 0, [], 0.0
    ck = load_checkpoint(checkpoint)

    def kept(d: dict) -> dict:
        return {k: v for k, v in d.items() if k not in ignores}

    if ck.get("format") == fmt and isinstance(ck.get("config"), dict) and kept(ck["config"]) == kept(config):
        load_training_state(ck, checkpoint, model, opt, sched)
        try:
            return int(ck["step"]), list(ck["history"]), float(ck["seconds"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{checkpoint}: damaged checkpoint ({type(e).__name__}); move it away to start "
                             "over") from None
    aside = move_aside(checkpoint)
    log.warning("%s: its configuration differs from this run's; kept as %s, training from scratch",
                checkpoint, aside)
    return 0, [], 0.0


def _fit_step(model: nn.Module, step_loss: StepLoss, opt, sched, seed: int, step: int,
              max_grad_norm: float | None) -> dict[str, float]:
    """One update of :func:`fit` (step ``step``, 0-based); its losses. A non-finite loss or
    gradient raises NumericalError before the update."""
    model.train()
    torch.manual_seed(_step_seed(seed, step, 7_777_777))
    loss, parts = step_loss(step_generator(seed, step))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    limit = math.inf if max_grad_norm is None else max_grad_norm     # inf: measured, not clipped
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), limit)
    value = float(loss.detach())
    if not (math.isfinite(value) and math.isfinite(float(norm))):
        raise NumericalError(f"the training loss or its gradient became non-finite at step {step + 1} "
                             f"(loss {value:.3g}); lower the learning rate or the loss weights (the last "
                             "checkpoint is kept)")
    opt.step()
    sched.step()
    return {"total": value, **parts}


def count_parameters(*modules: nn.Module | None) -> int:
    """Parameters of the modules together (``None`` entries are skipped)."""
    return sum(p.numel() for m in modules if m is not None for p in m.parameters())
