"""Code-scale calibration: read a painting small, get the code of reading it large.

An arbitrary-style model reads a painting's style code from VGG19 statistics of the whole
painting resized to its ``style_size`` (128 px for the shipped model). Read at 256 px the
same model is far better (docs/fast.md, issue 23's second diagnosis: a painting shrunk to
128 px has few of its strokes left), but the VGG pass then costs four times as much.

The statistics at the two sizes are related closely enough that a linear map predicts the
large reading from the small one: a ridge regression (in standardized units, intercept
free) fitted on random views of the training images, from the log statistics at
``read_at`` px to those at ``like`` px. The encoder standardizes the log statistics and
applies a linear layer first, so the map folds into that layer
(:func:`fold_into_encoder`): the calibrated model reads at ``read_at`` px, at that cost,
and nothing changes in how it runs.

Data flow: images -> random views (:func:`random_views`) -> VGG statistics at both sizes
(:func:`view_statistics`) -> map (:func:`fit_scale_map`) -> encoder (:func:`fold_into_encoder`).
"""

from __future__ import annotations

import copy
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from ..errors import InputError, check_number
from ..io import list_images, load_pil, pil_to_tensor
from ..vgg import VGGFeatures
from .model import FastStylizer, style_inputs
from .nets import STAT_LAYERS, StyleEncoder, feature_statistics

log = logging.getLogger(__name__)

#: Aspect ratios (height, width) of the views: square, 3:4, 5:8, 9:16, 7:8, both ways.
ASPECTS = ((1, 1), (3, 4), (4, 3), (5, 8), (8, 5), (9, 16), (16, 9), (7, 8), (8, 7))


@dataclass(frozen=True)
class CalibrationConfig:
    """How a model's encoder is calibrated (``warpaint calibrate``'s options)."""

    read_at: int = field(default=128, metadata={
        "help": "long side the calibrated model reads paintings at, px"})
    like: int = field(default=256, metadata={"help": "long side whose reading it imitates, px"})
    views_per_painting: int = field(default=40, metadata={"help": "random views of each painting"})
    views_per_photo: int = field(default=3, metadata={"help": "random views of each photo"})
    ridge: float = field(default=100.0, metadata={"help": "ridge penalty of the linear map"})
    seed: int = field(default=0, metadata={"help": "seed of the views"})

    def __post_init__(self) -> None:
        check_number("read_at", self.read_at, lo=32, hi=1024, integer=True)
        check_number("like", self.like, lo=32, hi=2048, integer=True)
        check_number("views_per_painting", self.views_per_painting, lo=0, hi=10_000, integer=True)
        check_number("views_per_photo", self.views_per_photo, lo=0, hi=10_000, integer=True)
        check_number("ridge", self.ridge, lo=0, lo_open=True, hi=1e9)
        check_number("seed", self.seed, lo=0, hi=2**63 - 1, integer=True)
        if self.like <= self.read_at:
            raise InputError(f"like ({self.like} px) must be larger than read_at ({self.read_at} px)")


def view_shapes(like: int) -> list[tuple[int, int]]:
    """(H, W) of the views: each of :data:`ASPECTS` with its long side ``like`` px."""
    return [(round(like * h / max(h, w)), round(like * w / max(h, w))) for h, w in ASPECTS]


def random_views(image: Image.Image, n: int, like: int, rng: random.Random) -> list[Image.Image]:
    """``n`` random views of an RGB image, each with its long side ``like`` px: a crop of a
    random shape of :func:`view_shapes` (60 % of the time a random 70-100 % of the largest
    that fits, else the largest, at a random place), flipped left-right half the time and
    colour-jittered (brightness, contrast, saturation, hue) 40 % of the time."""
    from torchvision.transforms import ColorJitter

    jitter = ColorJitter(0.3, 0.3, 0.4, 0.08)
    image = image.copy()
    image.thumbnail((round(2.5 * like), round(2.5 * like)), Image.Resampling.BICUBIC)
    shapes = view_shapes(like)
    views = []
    for _ in range(n):
        h, w = rng.choice(shapes)
        k = min(image.width / w, image.height / h) * (rng.uniform(0.7, 1.0) if rng.random() < 0.6 else 1.0)
        cw, ch = max(1, int(w * k)), max(1, int(h * k))
        x0, y0 = rng.randint(0, image.width - cw), rng.randint(0, image.height - ch)
        view = image.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if rng.random() < 0.4:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(rng.randrange(2**30))
                view = jitter(view)
        views.append(view)
    return views


@torch.no_grad()
def view_statistics(vgg: VGGFeatures, views: Tensor, read_at: int) -> tuple[Tensor, Tensor]:
    """Log VGG statistics (``log1p`` of :func:`~.nets.feature_statistics`, what the encoder
    standardizes) of a batch of same-shape views (B, 3, H, W) as they are and resized to
    ``read_at`` px on the long side: (small, large), each (B, 1920)."""
    small = style_inputs(vgg, views, read_at)[0]        # as a calibrated model reads a painting
    large = feature_statistics(vgg(views.contiguous(memory_format=torch.channels_last), STAT_LAYERS))
    return torch.log1p(small), torch.log1p(large)


def fit_scale_map(small: Tensor, large: Tensor, ridge: float) -> tuple[Tensor, Tensor]:
    """The ridge-regression map from log statistics ``small`` (N, D) to ``large`` (N, D):
    ``large ~ small @ A.T + a``; returns ``A`` (D, D) and ``a`` (D,) in float64.

    Fitted in units standardized by ``small``'s mean and spread (so one ``ridge`` suits
    every layer), with an unpenalized intercept.

    Example:
        >>> x = torch.randn(200, 3, dtype=torch.float64)
        >>> A, a = fit_scale_map(x, 2 * x + 1, ridge=1e-6)
        >>> torch.allclose(A, 2 * torch.eye(3, dtype=torch.float64), atol=1e-4)
        True
    """
    small, large = small.double(), large.double()
    center, spread = small.mean(0), small.std(0).clamp_min(1e-3)
    x, y = (small - center) / spread, (large - center) / spread
    xa = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    penalty = ridge * torch.eye(xa.shape[1], dtype=x.dtype)
    penalty[-1, -1] = 0
    w = torch.linalg.solve(xa.T @ xa + penalty, xa.T @ y)      # y = x @ w[:-1] + w[-1]
    A = spread[:, None] * w[:-1].T / spread[None, :]
    return A, spread * w[-1] + center - A @ center


@torch.no_grad()
def fold_into_encoder(encoder: StyleEncoder, A: Tensor, a: Tensor) -> None:
    """Make ``encoder`` compute on log statistics ``l`` what it computed on ``A l + a``.

    The encoder's first layer reads ``u = (l - c) / s``; with ``l = s u + c`` the map is
    ``(A (s u + c) + a - c) / s``, linear in ``u``, so it folds into that layer's weight and
    bias (the standardization buffers stay as they are).
    """
    first = encoder.net[0]
    c, s = encoder.center.double(), encoder.spread.double()
    weight = first.weight.double()
    first.bias.copy_((first.bias.double() + weight @ ((A @ c + a - c) / s)).to(first.bias.dtype))
    first.weight.copy_((weight @ (A * s[None, :] / s[:, None])).to(first.weight.dtype))


def code_error(reader: StyleEncoder, small: Tensor, reference: StyleEncoder, large: Tensor, *,
               spread: float | None = None) -> float:
    """Mean squared difference between the codes ``reader`` gives the log statistics
    ``small`` and those ``reference`` gives ``large`` (row by row), relative to ``spread``
    (default: the variance of the reference codes over the rows, averaged over the code;
    0: the same codes)."""
    with torch.no_grad():
        target = reference.net((large - reference.center) / reference.spread)
        got = reader.net((small - reader.center) / reader.spread)
        if spread is None:
            spread = float(target.var(0, unbiased=False).mean())
        return float((got - target).pow(2).mean()) / max(spread, 1e-12)


def collect_statistics(vgg: VGGFeatures, images: list[tuple[Path, int]], cfg: CalibrationConfig, *,
                       progress: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Log statistics at ``read_at`` and ``like`` px of the random views of each image
    (path, number of views), and the image index of each view: (N, 1920), (N, 1920), (N,).

    Views are grouped by shape into batches of 16 so VGG runs batched.
    """
    from tqdm import tqdm

    device = next(vgg.parameters()).device
    rng = random.Random(cfg.seed)
    small, large, owner = [], [], []
    pending: dict[tuple[int, int], list[tuple[Tensor, int]]] = {}

    def flush(shape: tuple[int, int]) -> None:
        batch = pending.pop(shape, [])
        if batch:
            s, l_ = view_statistics(vgg, torch.cat([t for t, _ in batch]).to(device), cfg.read_at)
            small.append(s.cpu()), large.append(l_.cpu()), owner.extend(i for _, i in batch)

    total = sum(n for _, n in images)
    with tqdm(total=total, desc="calibrate: views", unit="view", disable=not progress,
              dynamic_ncols=True) as bar:
        for index, (path, n) in enumerate(images):
            for view in random_views(load_pil(path), n, cfg.like, rng):
                shape = (view.height, view.width)
                pending.setdefault(shape, []).append((pil_to_tensor(view), index))
                if len(pending[shape]) == 16:
                    flush(shape)
                bar.update(1)
        for shape in list(pending):
            flush(shape)
    return torch.cat(small), torch.cat(large), torch.tensor(owner)


def calibrate(model: FastStylizer, paintings: list[Path], photos: list[Path], cfg: CalibrationConfig, *,
              progress: bool = True) -> dict:
    """Calibrate ``model``'s encoder to read paintings at ``cfg.read_at`` px as it reads them
    at ``cfg.like`` px, in place (``model.style_size`` becomes ``read_at``).

    Returns a summary: the number of views, and the code error of reading small instead of
    large (:func:`code_error`, relative to the spread of all views' codes read large) before
    and after calibration, on the views of a held-out tenth of the images (the map fitted
    without them) and on all views (the map that is folded in, fitted on every view).
    """
    if model.encoder is None:
        raise InputError("calibration is for arbitrary-style models (a single-style model reads no style)")
    images = [(p, cfg.views_per_painting) for p in paintings] + [(p, cfg.views_per_photo) for p in photos]
    images = [(p, n) for p, n in images if n > 0]
    if len(images) < 10:
        raise InputError(f"calibration needs views of at least 10 images, got {len(images)}")
    small, large, owner = collect_statistics(model._vgg(), images, cfg, progress=progress)
    original = copy.deepcopy(model.encoder)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(cfg.seed))
    held = torch.zeros(len(images), dtype=torch.bool)
    held[order[:len(images) // 10]] = True
    test = held[owner]
    trial = copy.deepcopy(original)
    fold_into_encoder(trial, *fit_scale_map(small[~test], large[~test], cfg.ridge))
    fold_into_encoder(model.encoder, *fit_scale_map(small, large, cfg.ridge))
    with torch.no_grad():     # errors relative to the spread of the codes of all views read large
        spread = float(original.net((large - original.center) / original.spread).var(0).mean())
    summary = {"views": len(small), "images": len(images), "held_out_images": int(held.sum()),
               "held_out_code_error_before": code_error(original, small[test], original, large[test],
                                                        spread=spread),
               "held_out_code_error_after": code_error(trial, small[test], original, large[test],
                                                       spread=spread),
               "code_error_before": code_error(original, small, original, large, spread=spread),
               "code_error_after": code_error(model.encoder, small, original, large, spread=spread)}
    model.style_size = cfg.read_at
    model.training = dict(model.training, code_calibration={**asdict(cfg), **summary})
    return summary


def calibrate_to_file(model_path: Path, content_dir: Path, style_dir: Path, output: Path,
                      cfg: CalibrationConfig, *, progress: bool = True, overwrite: bool = False) -> dict:
    """:func:`calibrate` the model file ``model_path`` on the paintings in ``style_dir`` and
    the photos in ``content_dir`` (both searched recursively) and write it to ``output``
    (atomically; never over an input, nor over an existing file unless ``overwrite``).
    Returns the summary; a warning is logged when the held-out code error got worse."""
    from ..io import check_not_there, guard_output
    from .model import load

    if output.suffix != ".pt":
        raise InputError(f"{output}: the model file must end in .pt")
    paintings, photos = list_images(style_dir, recursive=True), list_images(content_dir, recursive=True)
    guard_output(output, [str(model_path), *map(str, paintings), *map(str, photos)], what="model file",
                 formats=(".pt",))
    if not overwrite:
        check_not_there([output])
    model = load(model_path)
    summary = calibrate(model, paintings, photos, cfg, progress=progress)
    model.save(output)
    if summary["held_out_code_error_after"] > summary["held_out_code_error_before"]:
        log.warning("warning: the calibrated model reads the held-out images worse than %s did; keep the "
                    "original, or calibrate on more paintings and photos", model_path)
    return summary
