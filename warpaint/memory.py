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
#: A tiled scale, per pixel of a tile: the VGG19 pass with gradients (ENGINE_PER_PIXEL less
#: its L-BFGS history of 50 steps, which a tiled scale keeps for the whole image instead).
TILE_PER_PIXEL = 1700
#: A tiled scale, per pixel of the whole scale: the image, its gradient, the content, the
#: last good copy, the snapshot and the blend buffers (float32 RGB), beside L-BFGS's vectors;
#: the +250 calibrated on measured peaks of tiled runs (3840x2160, bench_tiling.py: 6.96 GB
#: where 5.95 GB was planned; 2048x1536 in 3 GB, bench_memory.py: 3.36 GB where 2.98 GB was).
SCALE_PER_PIXEL = 8 * 12 + 250
#: L-BFGS keeps 2 vectors per history step and about 4 more, each float32 RGB per pixel.
LBFGS_VECTOR = 12
#: The smallest tile core worth running (below it most of a tile is overlap).
MIN_CORE = 192


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


def budget_bytes(max_memory_gb: float, device: torch.device) -> int:
    """The memory budget in bytes: ``max_memory_gb`` when given, else what ``device`` has free."""
    return int(max_memory_gb * GB) if max_memory_gb > 0 else available_bytes(device)


def plan_scale(hw: tuple[int, int], budget: int, *, fixed: int = 0, style: int = 0, passes: int = 1,
               tile: int = 0, history: int = 50, lbfgs: bool = True):
    """How an engine scale of ``hw`` = (H, W) runs within ``budget`` bytes.

    Whole when its estimate ``fixed + style + passes * ENGINE_PER_PIXEL * H * W`` fits (and
    ``tile`` does not ask for tiles); else in the largest square tiles that fit beside the
    whole-image state, the L-BFGS history shortened (50 -> 5 steps) before tiles shrink below
    512 px. ``fixed``: bytes held whatever the plan (the process, full-resolution images);
    ``style``: the style images' VGG passes, which a tiled scale also runs in tiles (then they
    come before the optimization, not beside it). ``tile`` > 0: tiles of that core whenever
    the long side exceeds it. Returns a :class:`~warpaint.tiling.ScalePlan` whose ``need`` is
    the estimate; one whose ``need`` exceeds ``budget`` cannot run (the caller refuses it).

    Example:
        >>> plan_scale((2160, 3840), 6 * 10**9, fixed=10**9).tiled
        True
        >>> plan_scale((540, 960), 6 * 10**9, fixed=10**9).tiled
        False
    """
    from .tiling import ScalePlan

    px = hw[0] * hw[1]
    whole = fixed + style + passes * ENGINE_PER_PIXEL * px
    if (whole <= budget and tile == 0) or 0 < max(hw) <= tile:
        return ScalePlan(need=whole, history=history)

    def state(h: int) -> int:   # the whole-image tensors and L-BFGS's vectors
        return fixed + (SCALE_PER_PIXEL + (2 * h + 4) * LBFGS_VECTOR * lbfgs) * px

    def tiled(core: int, h: int) -> ScalePlan:
        margin = max(32, core // 8 // 16 * 16)
        rows, cols = (min(d, core + 2 * margin) for d in hw)
        return ScalePlan(core, margin, h, state(h) + TILE_PER_PIXEL * rows * cols)

    if tile > 0:
        return tiled(tile, history)
    core = 0
    for h in sorted({history, 30, 20, 10, 5} & set(range(1, history + 1)), reverse=True):
        # a tile's side is about 1.25 core (its margins)
        core = int((max(budget - state(h), 0) / TILE_PER_PIXEL) ** 0.5 / 1.25) // 16 * 16
        if core >= 512:
            return tiled(core, h)
    core = max(MIN_CORE, core)
    return tiled(core, min(5, history))


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


def plan_fast(hw: tuple[int, int], work_size: int | None, budget: int, *, blend_full: bool = False,
              tile: int = 0) -> tuple[int, int]:
    """How a feed-forward stylization with result size ``hw`` fits in ``budget`` bytes:
    ``(tile, need)``. ``tile == 0``: the network runs whole (``need`` is
    :func:`fast_peak_bytes`); else in tiles of ``tile`` px (at most 2048), beside the
    float32 content and result at the network's size and its features at 1/8 resolution
    held whole (:func:`~warpaint.feedforward.nets.tiled_forward`). ``tile`` > 0 asks for
    tiles of that size whenever the network's long side exceeds it. A ``need`` above
    ``budget`` cannot run.

    Example:
        >>> plan_fast((5461, 8192), None, 4 * 10**9)[0]
        832
        >>> plan_fast((1536, 2048), 480, 4 * 10**9)[0]
        0
    """
    whole = fast_peak_bytes(hw, work_size, blend_full=blend_full)
    scale = 1.0 if work_size is None else min(1.0, work_size / max(hw))
    net_hw = (round(hw[0] * scale), round(hw[1] * scale))
    net_px = net_hw[0] * net_hw[1]
    if (whole <= budget and tile == 0) or max(net_hw) <= tile:
        return 0, whole
    fixed = whole - FAST_PER_PIXEL * net_px + FAST_TILED_PER_PIXEL * net_px
    fits = int((max(budget - fixed, 0) / FAST_PER_PIXEL) ** 0.5 / 1.1) // 64 * 64   # a tile's side: 1.1 core
    core = tile or max(MIN_CORE, min(2048, fits))
    side = min(core + 128, max(net_hw))
    return core, int(fixed + FAST_PER_PIXEL * side * min(side, min(net_hw)))


#: A tiled feed-forward run, per pixel of the network's size: the float32 result
#: and the features at 1/8 resolution held whole through the residual blocks, then the
#: one-channel luma maps of the detail step (the content is in IMAGE_PER_PIXEL).
FAST_TILED_PER_PIXEL = 12 + 16 + 12


def training_peak_bytes(batch: int, size: int, style_size: int) -> int:
    """Estimated peak of one feed-forward training step: a batch of ``size`` crops through the
    network and VGG19 with gradients, and the style crops through VGG19."""
    per_sample = ENGINE_PER_PIXEL * size * size + STYLE_PER_PIXEL * style_size * style_size
    return int(ENGINE_BASE + batch * per_sample)


def check_budget(need: int, max_memory_gb: float, device: torch.device, what: str, *,
                 budget: int | None = None) -> None:
    """Refuse ``what`` with a :class:`~warpaint.errors.ResourceError` when its estimated peak
    ``need`` (bytes) exceeds ``max_memory_gb`` (0: what ``device`` has free, or ``budget``
    when the caller measured it already)."""
    if max_memory_gb > 0:
        budget, source = int(max_memory_gb * GB), "the max_memory budget"
    else:
        budget = available_bytes(device) if budget is None else budget
        source = f"what the {device.type} has free"
    if need > budget:
        raise ResourceError(f"{what} needs about {need / GB:.3g} GB, more than {source} "
                            f"({budget / GB:.3g} GB); lower the size (or raise max_memory)")
