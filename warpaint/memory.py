"""Peak-memory estimates, checked before big work starts.

The estimates are linear in the pixels of the largest tensors, with constants measured on
the CPU in float32 (peak resident memory of a whole process, ``benchmarks/bench_memory.py``,
results in ``docs/reliability.md``); they err on the high side. :func:`check_budget` refuses
work whose estimate exceeds the budget: ``max_memory`` GB when given, else what the device has
free (``MemAvailable`` on the CPU, free GPU memory on CUDA).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import ResourceError

GB = 1e9
#: The process with torch, the VGG19 weights and the feature extractor loaded (bytes).
ENGINE_BASE = 1.0e9
#: One optimizer step at one pixel of the current scale: VGG19 activations kept for the
#: backward pass, their gradients, L-BFGS history (bytes per pixel, float32).
ENGINE_PER_PIXEL = 2900
#: A style image's forward pass through VGG19 without gradients, per pixel.
STYLE_PER_PIXEL = 300
#: A feed-forward model's forward pass, per pixel of the size it runs at (no gradients).
FAST_BASE = 0.85e9
FAST_PER_PIXEL = 300
#: Full-resolution images held beside the work (float32 RGB tensor plus 8-bit copies).
IMAGE_PER_PIXEL = 24


def available_bytes(device: torch.device) -> int:
    """Memory free for new work on ``device`` (the CPU's ``MemAvailable``)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import os

    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62   # unknown: no limit


def engine_peak_bytes(cfg, hw: tuple[int, int], content_hw: tuple[int, int],
                      style_hws: list[tuple[int, int]]) -> int:
    """Estimated peak of one optimization run whose final scale is ``hw`` = (H, W).

    A run with a warp optimized at its final scale (a single scale) pays for two VGG passes
    per step there.
    """
    passes = 2 if cfg.warp != "none" and len(cfg.scales(content_hw)) == 1 else 1
    style_long = max(16, round(max(hw) * cfg.style_scale))
    style_px = sum(style_long * style_long * min(h, w) // max(h, w) for h, w in style_hws)
    images = IMAGE_PER_PIXEL * (content_hw[0] * content_hw[1] + sum(h * w for h, w in style_hws))
    return int(ENGINE_BASE + passes * ENGINE_PER_PIXEL * hw[0] * hw[1] + STYLE_PER_PIXEL * style_px + images)


def score_peak_bytes(hw: tuple[int, int]) -> int:
    """Estimated peak of a quality report at evaluation size ``hw``: three VGG19 passes
    without gradients, well under half an optimization step's cost per pixel."""
    return int(ENGINE_BASE + ENGINE_PER_PIXEL // 2 * hw[0] * hw[1])


def fast_peak_bytes(hw: tuple[int, int], work_size: int | None, *, blend_full: bool = False) -> int:
    """Estimated peak of one feed-forward stylization with result size ``hw`` = (H, W), the
    network run at ``work_size`` on the long side (``None``: at full size)."""
    scale = 1.0 if work_size is None else min(1.0, work_size / max(hw))
    net_px = hw[0] * hw[1] * scale * scale
    full = IMAGE_PER_PIXEL * hw[0] * hw[1] * (3 if blend_full else 1)
    return int(FAST_BASE + FAST_PER_PIXEL * net_px + full)


def training_peak_bytes(batch: int, size: int, style_size: int) -> int:
    """Estimated peak of one feed-forward training step: a batch of ``size`` crops through the
    network and VGG19 with gradients, and the style crops through VGG19."""
    per_sample = ENGINE_PER_PIXEL * size * size + STYLE_PER_PIXEL * style_size * style_size
    return int(ENGINE_BASE + batch * per_sample)


def check_budget(need: int, max_memory_gb: float, device: torch.device, what: str) -> None:
    """Refuse ``what`` with a :class:`~warpaint.errors.ResourceError` when its estimated peak
    ``need`` (bytes) exceeds ``max_memory_gb`` (0: what ``device`` has free)."""
    if max_memory_gb > 0:
        budget, source = int(max_memory_gb * GB), "the max_memory budget"
    else:
        budget, source = available_bytes(device), f"what the {device.type} has free"
    if need > budget:
        raise ResourceError(f"{what} needs about {need / GB:.1f} GB, more than {source} "
                            f"({budget / GB:.1f} GB); lower the size (or raise max_memory)")
