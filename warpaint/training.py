"""The training loop shared by the STN canvas applications and feed-forward style transfer.

Step-based, since the data is drawn fresh every step: Adam with a one-cycle schedule, a
progress bar, atomic checkpoints (every ``every`` steps, at the end and on Ctrl-C) and exact
resume: step ``t`` always draws its data from a generator seeded with ``(seed, t)``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

log = logging.getLogger("warpaint")

#: One training step's losses: the total to minimize and named parts to report.
StepLoss = Callable[[torch.Generator], tuple[Tensor, dict[str, float]]]


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator for one step's data (so a resumed run draws the same data)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def save_checkpoint(state: dict, path: Path) -> None:
    """``torch.save`` through a temporary file and a rename, so a checkpoint is never half written."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint dict written by :func:`fit` (or a model file), or a one-line InputError."""
    from .errors import InputError

    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise InputError(f"{path}: checkpoint not found") from None
    except Exception as e:  # noqa: BLE001 - empty, truncated or foreign files are bad input
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__}); delete it to "
                         "start over") from None
    if not isinstance(ck, dict) or "format" not in ck:
        raise InputError(f"{path}: not a warpaint checkpoint")
    return ck


def restore(path: Path, fmt: str, what: str, build: Callable[[dict], nn.Module]) -> tuple[nn.Module, dict]:
    """The model in a finished or interrupted :func:`fit` checkpoint of format ``fmt``, in
    eval mode, and the checkpoint; ``build(config)`` makes the untrained model. Anything
    that does not fit is a one-line InputError naming ``what`` the file should be."""
    from .errors import InputError

    ck = load_checkpoint(path)
    if ck.get("format") != fmt:
        raise InputError(f"{path}: not a warpaint {what} checkpoint")
    try:
        model = build(ck["config"])
        model.load_state_dict(ck["model"])
    except (TypeError, KeyError, RuntimeError) as e:
        raise InputError(f"{path}: checkpoint does not fit this version of warpaint "
                         f"({type(e).__name__})") from None
    return model.eval(), ck


def summary(model: nn.Module, config: dict, history: list[dict[str, float]], seconds: float) -> dict:
    """What a training run reports: time, parameters, steps, losses, configuration, threads."""
    return {"train_seconds": round(seconds, 1), "parameters": count_parameters(model),
            "steps": config["steps"], "history": history, "config": config,
            "threads": torch.get_num_threads()}


class StopRequest:
    """Turns Ctrl-C into a flag checked between steps, so a checkpoint is never taken in the
    middle of an update, and a Ctrl-C never lands in a finalizer, where Python would swallow
    it (outside the main thread, Ctrl-C is left alone).

    With ``second_press_raises``, a second Ctrl-C before the flag is acted on raises
    ``KeyboardInterrupt`` at once (for work that may take long before its first step).
    """

    def __init__(self, *, second_press_raises: bool = False) -> None:
        self.requested = False
        self.previous = None
        self.second_press_raises = second_press_raises

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and self.second_press_raises:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def param_groups(model: nn.Module, lr: float, lr_scales: dict[str, float] | None = None) -> list[dict]:
    """Optimizer parameter groups: everything at ``lr``, then one group per submodule named
    in ``lr_scales`` (e.g. ``{"stn": 0.1}``) at ``lr`` times its factor."""
    scales = lr_scales or {}
    scaled = {name: list(model.get_submodule(name).parameters()) for name in scales}
    ids = {id(p) for ps in scaled.values() for p in ps}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids], "lr": lr}]
    return groups + [{"params": ps, "lr": lr * scales[name]} for name, ps in scaled.items() if ps]


def fit(model: nn.Module, step_loss: StepLoss, *, steps: int, lr: float, seed: int, config: dict,
        checkpoint: Path | None = None, every: int = 250, progress: bool = True,
        desc: str = "train", fmt: str = "warpaint.app",
        on_step: Callable[[int], None] | None = None,
        lr_scales: dict[str, float] | None = None,
        resume_ignores: tuple[str, ...] = ()) -> tuple[list[dict[str, float]], float]:
    """Train ``model`` for ``steps`` steps of ``step_loss``; return (loss history, seconds).

    A checkpoint whose ``config`` equals ``config`` (up to the keys in ``resume_ignores``,
    which do not change training) is resumed from: model, optimizer, schedule, history. A
    checkpoint with another configuration is replaced, with a warning. ``on_step(n)`` is
    called after step ``n`` (1-based), e.g. to save sample pictures. ``lr_scales`` maps a
    submodule's name (e.g. ``"stn"``) to a factor on its learning rate. Ctrl-C stops after
    the current step, saves the checkpoint and raises ``KeyboardInterrupt``.

    Step ``t`` draws its data from ``step_generator(seed, t)`` and reseeds torch's global
    generator (used inside some models, e.g. torchvision's proposal sampling) from
    ``(seed, t)`` too, so a resumed run repeats the uninterrupted one exactly.
    """
    groups = param_groups(model, lr, lr_scales)
    opt = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=steps,
                                                pct_start=0.15)

    def same(a: dict) -> bool:
        return {k: v for k, v in a.items() if k not in resume_ignores} == \
            {k: v for k, v in config.items() if k not in resume_ignores}

    start, history, seconds = 0, [], 0.0
    if checkpoint is not None and checkpoint.exists():
        ck = load_checkpoint(checkpoint)
        if ck.get("format") == fmt and isinstance(ck.get("config"), dict) and same(ck["config"]):
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            start, history, seconds = ck["step"], ck["history"], ck["seconds"]
        else:
            log.warning("%s: its configuration differs; training from scratch (it will be replaced)",
                        checkpoint)

    def save(step: int, spent: float) -> None:
        if checkpoint is not None:
            save_checkpoint({"format": fmt, "version": 1, "step": step, "config": config,
                             "model": model.state_dict(), "optimizer": opt.state_dict(),
                             "scheduler": sched.state_dict(), "history": history,
                             "seconds": spent}, checkpoint)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=start, desc=desc, unit="step")
    t0 = time.perf_counter()
    try:
        with StopRequest() as stop:
            for step in range(start, steps):
                model.train()
                torch.manual_seed(seed * 1_000_003 + step + 7_777_777)
                loss, parts = step_loss(step_generator(seed, step))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                opt.step()
                sched.step()
                history.append({"total": float(loss.detach()), **parts})
                if bar is not None:
                    bar.set_postfix_str(f"loss={history[-1]['total']:.3f}", refresh=False)
                    bar.update(1)
                if (step + 1) % every == 0 and step + 1 < steps:
                    save(step + 1, seconds + time.perf_counter() - t0)
                if on_step is not None:
                    on_step(step + 1)
                if stop.requested:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        # raised between steps (above), or inside step_loss before any update: consistent
        save(len(history), seconds + time.perf_counter() - t0)
        raise
    finally:
        if bar is not None:
            bar.close()
    seconds += time.perf_counter() - t0
    save(steps, seconds)
    return history, seconds


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
