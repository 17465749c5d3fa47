"""Optical flow between video frames, warping by a flow, occlusion masks and the warping error.

Conventions: a flow is a ``float32`` tensor (B, 2, H, W) in pixels, ``(dx, dy)`` in the
channel dimension. ``flow_ab = optical_flow(a, b)`` maps frame ``a``'s pixels into frame ``b``:
``a(x) ~ b(x + flow_ab(x))``, so ``warp(b, flow_ab)`` is ``b`` seen from ``a``. Temporal
consistency uses the *backward* flow ``optical_flow(frame_t, frame_t-1)`` to bring the previous
stylized frame into the current one (Ruder et al. 2016), and the forward flow to find where
that is unreliable (occlusions and motion boundaries).

The flow is OpenCV's DIS (Kroeger et al. 2016), a classical method that needs no weights:
torchvision's RAFT would be more accurate, but its weights are a download, which warpaint
never does. :func:`warping_error` (Lai et al. 2018) takes whatever flow it is given; the tests
and ``benchmarks/bench_video.py`` give it Farneback's, a different algorithm from the one the
temporal blend relies on, so the metric does not simply reward agreeing with the flow that
made the video.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import InputError

FlowMethod = Literal["dis", "farneback"]
DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}


def _gray(image: Tensor) -> np.ndarray:
    """(1, 3, H, W) RGB in [0, 1] -> (H, W) uint8 luma, what OpenCV's flows read."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype, device=image.device)
    luma = (image[0].clamp(0, 1) * weights[:, None, None]).sum(0)
    return (luma * 255).round().to(torch.uint8).cpu().numpy()


def optical_flow(a: Tensor, b: Tensor, *, method: FlowMethod = "dis", preset: str = "medium") -> Tensor:
    """Dense flow from frame ``a`` to frame ``b`` (``a(x) ~ b(x + flow(x))``).

    Args:
        a, b: (1, 3, H, W) RGB frames in [0, 1] of the same size.
        method: ``dis`` (OpenCV's DIS at ``preset``: ``ultrafast``, ``fast``, ``medium``) or
            ``farneback``.
    Returns:
        (1, 2, H, W) float32 flow in pixels, on the CPU.
    Example:
        >>> a = torch.rand(1, 3, 32, 48)
        >>> optical_flow(a, a).abs().max().item() < 0.5
        True
    """
    import cv2

    if a.shape != b.shape or a.ndim != 4 or a.shape[:2] != (1, 3):
        raise InputError(f"flow needs two (1, 3, H, W) frames of one size, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    ga, gb = _gray(a), _gray(b)
    try:
        flow = _cv_flow(ga, gb, method, preset)
    except cv2.error as e:
        raise InputError(f"optical flow failed on {ga.shape[1]}x{ga.shape[0]} px frames "
                         f"({str(e).strip().splitlines()[-1]})") from None
    return torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1)[None].float()


def _cv_flow(ga: np.ndarray, gb: np.ndarray, method: str, preset: str) -> np.ndarray:
    import cv2

    if method == "dis":
        if preset not in DIS_PRESETS:
            raise InputError(f"unknown DIS preset {preset!r}; use one of {', '.join(DIS_PRESETS)}")
        flow = cv2.DISOpticalFlow_create(DIS_PRESETS[preset]).calc(ga, gb, None)
    elif method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 4, 15, 3, 5, 1.2, 0)
    else:
        raise InputError(f"unknown flow method {method!r}; use dis or farneback")
    return flow


def _sample_grid(flow: Tensor) -> Tensor:
    """(B, 2, H, W) flow in px -> (B, H, W, 2) grid of ``x + flow(x)`` in [-1, 1]
    (``align_corners=True``: -1 and 1 are the centres of the border pixels)."""
    _, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device),
                            torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij")
    x = (xs + flow[:, 0]) * (2 / max(w - 1, 1)) - 1
    y = (ys + flow[:, 1]) * (2 / max(h - 1, 1)) - 1
    return torch.stack([x, y], dim=-1)


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """``image`` sampled at ``x + flow(x)`` (bilinear; outside the frame: the border pixel).

    Args:
        image: (B, C, H, W).
        flow: (B, 2, H, W) in pixels, e.g. ``optical_flow(current, previous)`` to bring the
            previous frame into the current one.
    Returns:
        (B, C, H, W).
    Example:
        >>> img = torch.arange(12.).reshape(1, 1, 3, 4)
        >>> shift = torch.zeros(1, 2, 3, 4); shift[:, 0] = 1       # read one pixel to the right
        >>> warp(img, shift)[0, 0, 0].tolist()
        [1.0, 2.0, 3.0, 3.0]
    """
    grid = _sample_grid(flow.to(image.device, torch.float32))
    return F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border",
                         align_corners=True).to(image.dtype)


def occlusion_mask(forward: Tensor, backward: Tensor) -> Tensor:
    """Where the backward flow can be trusted, following Ruder et al. (2016).

    A pixel ``x`` of the current frame is kept (1) unless

    - forward and backward flows disagree: ``|f(x + b(x)) + b(x)|^2 > 0.01 (|f(x + b(x))|^2 +
      |b(x)|^2) + 0.5`` (it was occluded in the previous frame),
    - it lies on a motion boundary: ``|grad b_x|^2 + |grad b_y|^2 > 0.01 |b|^2 + 0.002``, or
    - ``x + b(x)`` falls outside the previous frame (it just came into view).

    Args:
        forward: (B, 2, H, W) flow previous -> current.
        backward: (B, 2, H, W) flow current -> previous.
    Returns:
        (B, 1, H, W) float32 weights in {0, 1}.
    Example:
        >>> still = torch.zeros(1, 2, 8, 8)
        >>> occlusion_mask(still, still).mean().item()
        1.0
    """
    _, _, h, w = backward.shape
    f_at = warp(forward, backward)                         # f(x + b(x))
    disagree = ((f_at + backward) ** 2).sum(1) > 0.01 * ((f_at ** 2).sum(1) + (backward ** 2).sum(1)) + 0.5
    gx = F.pad(backward[..., :, 1:] - backward[..., :, :-1], (0, 1))
    gy = F.pad(backward[..., 1:, :] - backward[..., :-1, :], (0, 0, 0, 1))
    boundary = (gx ** 2 + gy ** 2).sum(1) > 0.01 * (backward ** 2).sum(1) + 0.002
    grid = _sample_grid(backward)
    outside = (grid.abs() > 1 + 1e-6).any(-1)
    return (~(disagree | boundary | outside)).float()[:, None]


def warping_error(previous: Tensor, current: Tensor, backward: Tensor, mask: Tensor) -> float:
    """Lai et al. (2018)'s warping error of one frame pair: the mean, over the pixels ``mask``
    keeps, of the squared RGB difference between ``current`` and ``previous`` warped into it.

    Args:
        previous, current: (1, 3, H, W) stylized frames in [0, 1].
        backward: (1, 2, H, W) flow current -> previous (of the *input* frames).
        mask: (1, 1, H, W) weights (:func:`occlusion_mask`).
    Returns:
        the error (mean over pixels and channels; 0 when the mask keeps nothing).
    Example:
        >>> f = torch.rand(1, 3, 8, 8)
        >>> warping_error(f, f, torch.zeros(1, 2, 8, 8), torch.ones(1, 1, 8, 8)) < 1e-12
        True
    """
    diff = ((current.float() - warp(previous, backward).float()) ** 2).mean(1, keepdim=True)
    kept = float(mask.sum())
    return float((diff * mask).sum()) / kept if kept else 0.0


def pair_mask(previous: Tensor, current: Tensor, *, method: FlowMethod = "dis",
              preset: str = "medium") -> tuple[Tensor, Tensor]:
    """The backward flow of two frames and its occlusion mask.

    Args:
        previous, current: (1, 3, H, W) frames in [0, 1].
    Returns:
        ``(backward, mask)``: (1, 2, H, W) flow current -> previous and its (1, 1, H, W) mask.
    """
    backward = optical_flow(current, previous, method=method, preset=preset)
    forward = optical_flow(previous, current, method=method, preset=preset)
    return backward, occlusion_mask(forward, backward)
