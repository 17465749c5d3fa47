"""Synthetic cluttered canvases of MNIST digits with exact ground truth.

Each canvas is a grey "sheet" with 1 to ``max_digits`` MNIST digits (each at its own random
position, scale and small rotation, never overlapping) and pieces of other digits as
clutter. The whole sheet is then put under one random affine distortion (rotation, zoom,
shear, shift), as if photographed at an angle; outside the sheet the canvas is black.

Ground truth comes from rendering each digit on its own and warping it with the same grid
as the canvas, so boxes (tight boxes of each digit's stroke pixels), instance masks and the
semantic class map are exact for the distorted canvas.

Box coordinates are torchvision's: ``x1, y1, x2, y2`` in pixels, where pixel ``i`` covers
``[i, i + 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..stn.geometry import affine_grid, invert_affine, rotation_matrix, sample

#: Stroke threshold: a rendered digit pixel above it belongs to the digit.
STROKE = 0.35
N_CLASSES = 11          # background + digits 0..9 (class = digit + 1)


@dataclass(frozen=True)
class CanvasConfig:
    """How canvases are drawn; sizes in pixels unless said otherwise."""

    size: int = 128
    max_digits: int = 3
    digit_scale: tuple[float, float] = (0.8, 1.3)   # MNIST 28 px box -> 22-36 px
    digit_degrees: float = 15.0                     # each digit's own rotation, +-
    clutter: int = 8                                # digit fragments per canvas
    distort_degrees: float = 40.0                   # the sheet's rotation, +-
    distort_zoom: tuple[float, float] = (0.8, 1.0)
    distort_shear: float = 0.1
    distort_shift: float = 0.08                     # normalized units (1 = half the canvas)


@dataclass
class Canvases:
    """A batch of canvases and their ground truth."""

    images: Tensor          # (B, 1, S, S) in [0, 1]
    boxes: list[Tensor]     # per canvas (n, 4) float, x1 y1 x2 y2
    labels: list[Tensor]    # per canvas (n,) int64, digit 0..9
    masks: list[Tensor]     # per canvas (n, S, S) bool, stroke pixels of each digit
    semantic: Tensor        # (B, S, S) int64: 0 background, 1 + digit on its strokes
    theta: Tensor           # (B, 2, 3) the sheet's distortion, output -> input (normalized)

    def targets(self) -> list[dict[str, Tensor]]:
        """torchvision detection targets (labels shifted by 1: 0 is background there)."""
        return [{"boxes": b, "labels": lab + 1, "masks": m}
                for b, lab, m in zip(self.boxes, self.labels, self.masks, strict=True)]


def boxes_from_masks(masks: Tensor) -> Tensor:
    """Tight boxes (n, 4) ``x1, y1, x2, y2`` of (n, H, W) boolean masks (each non-empty).

    Example:
        >>> m = torch.zeros(1, 5, 6, dtype=torch.bool); m[0, 1:3, 2:5] = True
        >>> boxes_from_masks(m).tolist()
        [[2.0, 1.0, 5.0, 3.0]]
    """
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, 4)
    cols, rows = masks.any(1), masks.any(2)                      # (n, W), (n, H)
    xs = torch.arange(w, dtype=torch.float32)
    ys = torch.arange(h, dtype=torch.float32)
    big = float(max(h, w)) + 1
    x1 = torch.where(cols, xs, big).amin(1)
    x2 = torch.where(cols, xs, -1.0).amax(1) + 1
    y1 = torch.where(rows, ys, big).amin(1)
    y2 = torch.where(rows, ys, -1.0).amax(1) + 1
    return torch.stack([x1, y1, x2, y2], 1)


def _place(n: int, cfg: CanvasConfig, g: torch.Generator) -> list[tuple[float, float, float, float]]:
    """Up to ``n`` non-overlapping digits: (cx, cy, half-width, angle) in normalized units."""
    placed: list[tuple[float, float, float, float]] = []
    for _ in range(n * 20):
        if len(placed) == n:
            break
        u = torch.rand(5, generator=g).tolist()
        half = (cfg.digit_scale[0] + u[0] * (cfg.digit_scale[1] - cfg.digit_scale[0])) * 28 / cfg.size
        r, phi = 0.45 * math.sqrt(u[1]), 2 * math.pi * u[2]      # uniform in a disk of radius 0.45
        cx, cy = r * math.cos(phi), r * math.sin(phi)
        angle = math.radians((2 * u[3] - 1) * cfg.digit_degrees)
        # strokes fill about the middle 20 of MNIST's 28 px: keep those areas apart
        if all(max(abs(cx - px), abs(cy - py)) > 0.75 * (half + ph) for px, py, ph, _ in placed):
            placed.append((cx, cy, half, angle))
    return placed


def _render(sources: Tensor, centre: Tensor, half: Tensor, angle: Tensor, size: int,
            window: Tensor | None = None, offset: Tensor | None = None) -> Tensor:
    """Draw (D, 1, 28, 28) sources onto (D, 1, size, size) canvases.

    Canvas point ``p`` shows the source at ``offset + R(-angle) (p - centre) / half * window``
    (normalized units): ``window`` (D,) is the half-width of the source region shown (1 = the
    whole source; anything outside a smaller window is blanked), ``offset`` (D, 2) its centre
    in the source, ``centre`` (D, 2) and ``half`` (D,) its place and half-width on the canvas.
    """
    d = sources.shape[0]
    win = torch.ones(d) if window is None else window
    off = torch.zeros(d, 2) if offset is None else offset
    lin = rotation_matrix(-angle) * (win / half)[:, None, None]
    theta = torch.cat([lin, off[..., None] - lin @ centre[..., None]], -1)
    grid = affine_grid(theta, (size, size), align_corners=False)
    out = sample(sources, grid, padding_mode="zeros", align_corners=False)
    if window is not None:
        out = out * ((grid - off[:, None, None]).abs() <= win[:, None, None, None]).all(-1)[:, None]
    return out


def _distortions(b: int, cfg: CanvasConfig, g: torch.Generator) -> Tensor:
    """(B, 2, 3) random sheet distortions, output -> input."""
    u = torch.rand(b, 5, generator=g)
    angle = torch.deg2rad((2 * u[:, 0] - 1) * cfg.distort_degrees)
    zoom = cfg.distort_zoom[0] + u[:, 1] * (cfg.distort_zoom[1] - cfg.distort_zoom[0])
    shear = torch.zeros(b, 2, 2)
    shear[:, 0, 0] = shear[:, 1, 1] = 1
    shear[:, 0, 1] = (2 * u[:, 2] - 1) * cfg.distort_shear
    shift = (2 * u[:, 3:5] - 1) * cfg.distort_shift
    forward = torch.cat([zoom[:, None, None] * rotation_matrix(angle) @ shear, shift[..., None]], -1)
    return invert_affine(forward)


def make_canvases(images: Tensor, labels: Tensor, n: int, generator: torch.Generator,
                  cfg: CanvasConfig = CanvasConfig(), *, distorted: bool = True) -> Canvases:
    """Draw ``n`` canvases from MNIST ``images`` (N, 28, 28) uint8 and ``labels`` (N,).

    With the same generator state, ``distorted=False`` gives the same canvases without the
    sheet distortion (the random numbers are drawn either way).
    """
    g, s = generator, cfg.size
    src = images.float()[:, None] / 255.0

    def pick(k: int) -> Tensor:
        return torch.randint(0, images.shape[0], (k,), generator=g)

    # digits
    layout = [_place(int(torch.randint(1, cfg.max_digits + 1, (1,), generator=g)), cfg, g)
              for _ in range(n)]
    owner = torch.tensor([i for i, lay in enumerate(layout) for _ in lay], dtype=torch.long)
    params = torch.tensor([p for lay in layout for p in lay]).reshape(-1, 4)
    idx = pick(len(owner))
    digits = _render(src[idx], params[:, :2], params[:, 2], params[:, 3], s)      # (D, 1, S, S)
    # clutter: 9x9 px pieces of random digits, scaled by 1-1.5, anywhere on the sheet
    k = n * cfg.clutter
    u = torch.rand(k, 6, generator=g)
    piece = _render(src[pick(k)], u[:, :2] * 1.8 - 0.9, (1 + 0.5 * u[:, 2]) * 4.5 / (s / 2),
                    (u[:, 3] * 2 - 1) * math.pi, s, window=torch.full((k,), 4.5 / 14),
                    offset=(u[:, 4:6] * 2 - 1) * 0.35)
    clutter = piece.reshape(n, cfg.clutter, 1, s, s).amax(1)
    noise = torch.nn.functional.avg_pool2d(torch.rand(n, 1, s // 8, s // 8, generator=g), 3, 1, 1)
    sheet = 0.08 + 0.1 * torch.nn.functional.interpolate(noise, size=(s, s), mode="bilinear")
    # the sheet's distortion, applied to every digit alone (for the ground truth) and later
    # to the whole canvas
    theta = _distortions(n, cfg, g)
    if not distorted:
        theta = torch.eye(2, 3).expand(n, 2, 3).clone()
    grid = affine_grid(theta, (s, s), align_corners=False)
    warped = sample(digits, grid[owner], padding_mode="zeros", align_corners=False)[:, 0]  # (D, S, S)
    strokes = warped > STROKE
    area_before = (digits[:, 0] > STROKE).sum((1, 2)).float() * torch.linalg.det(
        torch.linalg.inv(theta[owner][:, :, :2]))
    # a digit mostly pushed off the canvas is not drawn at all (no unlabelled digits)
    keep = strokes.sum((1, 2)) >= 0.5 * area_before.clamp_min(1)
    drawn = torch.zeros(n, 1, s, s)
    for i in range(n):
        mine = (owner == i) & keep
        if mine.any():
            drawn[i] = digits[mine].amax(0)
    canvas = torch.maximum(torch.maximum(sheet, clutter), drawn)
    out = sample(canvas, grid, padding_mode="zeros", align_corners=False)
    return Canvases(out, *_truth(labels[idx].long(), owner, keep, warped, strokes, n), theta)


def _truth(labels: Tensor, owner: Tensor, keep: Tensor, warped: Tensor, strokes: Tensor,
           n: int) -> tuple[list[Tensor], list[Tensor], list[Tensor], Tensor]:
    """Per canvas: boxes, labels and stroke masks of its drawn digits, and the semantic map
    (0 = background, 1 + digit where a digit's stroke is strongest). ``labels``, ``owner``
    (canvas index), ``keep`` (drawn or not): one entry per placed digit (D,); ``warped``
    (D, S, S) digits after the sheet's distortion and ``strokes`` their masks."""
    semantic = torch.zeros(n, *warped.shape[-2:], dtype=torch.long)
    boxes, labs, masks = [], [], []
    for i in range(n):
        mine = ((owner == i) & keep).nonzero()[:, 0]
        m = strokes[mine]
        lab = labels[mine]
        if len(mine):
            strongest = warped[mine].argmax(0)
            on = m.any(0)
            semantic[i][on] = lab[strongest[on]] + 1
        boxes.append(boxes_from_masks(m))
        labs.append(lab)
        masks.append(m)
    return boxes, labs, masks, semantic


Digits = tuple[Tensor, Tensor]


def split_digits(data: Digits, n_test: int, seed: int) -> tuple[Digits, Digits]:
    """MNIST (images, labels) split with a fixed seed into training and test digits."""
    from .common import split

    images, labels = data
    train_idx, test_idx = split(images.shape[0], n_test, seed)
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


def held_out_sets(test_digits: tuple[Tensor, Tensor], n: int, seed: int,
              cfg: CanvasConfig = CanvasConfig()) -> dict[str, Canvases]:
    """The fixed test canvases from held-out digits: the same ``n`` layouts once without and
    once with the sheet distortion."""
    return {name: make_canvases(*test_digits, n, torch.Generator().manual_seed(seed + 7_000), cfg,
                                distorted=name == "distorted")
            for name in ("undistorted", "distorted")}
