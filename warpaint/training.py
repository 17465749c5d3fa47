"""The training loop shared by the STN canvas applications and feed-forward style transfer.

Step-based, since the data is drawn fresh every step: Adam with a one-cycle schedule, a
progress bar, atomic checkpoints (every ``every`` steps, at the end and on Ctrl-C) and exact
resume: step ``t`` always draws its data from a generator seeded with ``(seed, t)``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

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


def fit(model: nn.Module, step_loss: StepLoss, *, steps: int, lr: float, seed: int, config: dict,
        checkpoint: Path | None = None, every: int = 250, progress: bool = True,
        desc: str = "train", fmt: str = "warpaint.app",
        on_step: Callable[[int], None] | None = None) -> tuple[list[dict[str, float]], float]:
    """Train ``model`` for ``steps`` steps of ``step_loss``; return (loss history, seconds).

    A checkpoint whose ``config`` equals ``config`` is resumed from (model, optimizer,
    schedule, history); anything else there is overwritten. ``on_step(n)`` is called after
    step ``n`` (1-based) is done, e.g. to save sample pictures.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    start, history, seconds = 0, [], 0.0
    if checkpoint is not None and checkpoint.exists():
        ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if ck.get("config") == config and ck.get("format") == fmt:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            start, history, seconds = ck["step"], ck["history"], ck["seconds"]

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
        for step in range(start, steps):
            model.train()
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
    except KeyboardInterrupt:
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
