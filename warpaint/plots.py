"""Figures people would rather see than read: the loss curve of a run; the PNG writer."""

from __future__ import annotations

import io as _io
import os
from collections.abc import Sequence

from .io import write_bytes_atomic


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike[str]) -> None:
    """Write a matplotlib figure to a PNG atomically and close it."""
    buf = _io.BytesIO()
    fig.savefig(buf, format="png")
    pyplot().close(fig)
    write_bytes_atomic(buf.getvalue(), path)


def save_loss_curve(history: Sequence[dict[str, float]], path: str | os.PathLike[str], *,
                    scale_starts: Sequence[int] = (), title: str = "",
                    xlabel: str = "optimizer step (dashed: next scale)") -> None:
    """Plot weighted losses per step (log scale) to a PNG, marking where each scale starts.

    Args:
        history: one dict of losses per step (keys such as "total", "content", "style").
        scale_starts: 0-based step indices where a new scale begins.
        title: figure title; put the image size, device and dtype here.
    """
    fig, ax = pyplot().subplots(figsize=(7, 4), dpi=100)
    keys = list(dict.fromkeys(k for h in history for k in h))
    for k in keys:
        ax.plot(range(1, len(history) + 1), [h.get(k, float("nan")) for h in history], label=k)
    for s in scale_starts[1:]:
        ax.axvline(s + 0.5, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("weighted loss")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
