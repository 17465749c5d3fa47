"""What the STN applications share: MNIST's IDX files, the canvas apps' transformer and
configuration rules, and the results files. The apps import this module, never each other.
"""

from __future__ import annotations

import gzip
import json
import math
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import InputError, check_number
from ..io import write_bytes_atomic
from ..stn.transformer import KINDS, SpatialTransformer, localization_net


# -- data -----------------------------------------------------------------------------------
def read_idx(path: Path, magic: int) -> Tensor:
    """Read an IDX file (optionally gzip-compressed), checking its magic number."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"{path}: cannot read IDX file ({e})") from None
    if len(data) < 8 or struct.unpack(">I", data[:4])[0] != magic:
        raise InputError(f"{path}: not an IDX file with magic number {magic}")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise InputError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4: 4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    if len(body) != math.prod(dims):
        raise InputError(f"{path}: truncated IDX file")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)


def load_mnist(folder: str | Path) -> tuple[Tensor, Tensor]:
    """MNIST images (N, 28, 28) uint8 and labels (N,) int64 from an IDX folder.

    Looks for ``t10k-images-idx3-ubyte(.gz)`` and ``t10k-labels-idx1-ubyte(.gz)``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "not a folder" if folder.exists() else "folder not found"
        raise InputError(f"{folder}: {what} (--data wants a folder of MNIST IDX files, such as "
                         "../shared/datasets/mnist)")

    def find(stem: str) -> Path:
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
        raise InputError(f"{folder}: {stem}(.gz) not found")

    images = read_idx(find("t10k-images-idx3-ubyte"), 2051)
    labels = read_idx(find("t10k-labels-idx1-ubyte"), 2049).long()
    if images.ndim != 3 or tuple(images.shape[1:]) != (28, 28) or labels.ndim != 1:
        raise InputError(f"{folder}: expected 28x28 images and one label each, got image shape "
                         f"{tuple(images.shape)} and label shape {tuple(labels.shape)}")
    if images.shape[0] != labels.shape[0]:
        raise InputError(f"{folder}: {images.shape[0]} images but {labels.shape[0]} labels")
    if labels.numel() and int(labels.max()) > 9:
        raise InputError(f"{folder}: a label of {int(labels.max())}; MNIST labels are 0 to 9")
    return images, labels


def check_split(n: int, n_test: int, *, name: str = "n_test_digits") -> None:
    """An InputError (naming the option ``name``) unless holding ``n_test`` of ``n`` digits
    out leaves both parts non-empty."""
    if not 0 < n_test < n:
        raise InputError(f"{name} must be between 1 and {n - 1} (the digits given), got {n_test}")


def split(n: int, n_test: int, seed: int, *, name: str = "n_test_digits") -> tuple[Tensor, Tensor]:
    """Seeded permutation split of ``range(n)`` into (train, test) indices (checked by
    :func:`check_split`)."""
    check_split(n, n_test, name=name)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_test:], perm[:n_test]



# -- the canvas applications (detection, segmentation) -------------------------------------
@dataclass(frozen=True)
class CanvasAppConfig:
    """The options both canvas apps have (each app's ``Config`` adds its own and its defaults)."""

    stn: bool = field(default=True, metadata={"help": "with a spatial transformer in front"})
    stn_kind: str = field(default="rigid", metadata={
        "help": "the transformer's transform (rigid: turn and shift)",
        "choices": ("rigid", "similarity", "affine", "projective")})
    equivariance: float = field(default=1.0, metadata={
        "help": "weight of the self-supervised rotation-equivariance term"})
    steps: int = field(default=1200, metadata={"help": "training steps"})
    batch_size: int = field(default=8, metadata={"help": "canvases per step"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate"})
    width: int = field(default=16, metadata={"help": "channels of the first layer"})
    size: int = field(default=128, metadata={"help": "canvas side, px"})
    n_test_digits: int = field(default=2000, metadata={"help": "MNIST digits held out for the test canvases"})
    test_canvases: int = field(default=300, metadata={
        "help": "canvases in each test set (used by the eval command)"})
    seed: int = field(default=0, metadata={"help": "seed"})

    def __post_init__(self) -> None:
        check_config(self)


@dataclass(frozen=True)
class DetectionConfig(CanvasAppConfig):
    """The detector's options (the CLI's flags are generated from these)."""

    steps: int = field(default=1800, metadata={"help": "training steps"})
    width: int = field(default=32, metadata={"help": "channels of the first layer"})


@dataclass(frozen=True)
class SegmentationConfig(CanvasAppConfig):
    """The segmenter's options (the CLI's flags are generated from these)."""

    stn_encoder: bool = field(default=False, metadata={
        "help": "also a transformer on the deepest encoder features"})
    stn_lr_scale: float = field(default=0.1, metadata={"help": "learning-rate factor of the transformers"})
    background_weight: float = field(default=0.1, metadata={
        "help": "cross-entropy weight of background pixels (digits: 1)"})


def input_transformer(kind: str, in_channels: int = 1) -> SpatialTransformer:
    """The transformer in front of the canvas models: its localization net looks at the
    image at half resolution (enough to see the sheet's pose, at a quarter of the cost)."""
    n = {"affine": 6, "similarity": 4, "rigid": 4, "projective": 8}[kind]
    loc = nn.Sequential(nn.AvgPool2d(2, ceil_mode=True), localization_net(in_channels, n))
    return SpatialTransformer(in_channels, kind=kind, localization=loc)  # type: ignore[arg-type]


def check_invertible_transformer(stn: SpatialTransformer | None, what: str) -> None:
    """The checks of a model that maps its outputs (``what``: boxes, masks) back through its
    input transformer: an invertible (not thin-plate spline) transformer that keeps the size."""
    if stn is not None and stn.kind == "tps":
        raise ValueError(f"{what} cannot be mapped back through a thin-plate spline")
    if stn is not None and stn.output_size is not None:
        raise ValueError("the transformer must keep the input size (output_size=None)")


#: Configuration keys that do not change how a model trains (ignored when resuming).
EVAL_ONLY = ("test_canvases",)


def check_config(cfg) -> None:
    """One-line errors for impossible canvas-app configurations (detection and segmentation)."""
    if cfg.stn_kind not in KINDS or cfg.stn_kind == "tps":
        raise InputError(f"stn_kind must be affine, similarity, rigid or projective, got {cfg.stn_kind!r}")
    check_number("equivariance", cfg.equivariance, lo=0, hi=1e4)
    if cfg.stn and cfg.stn_kind == "projective" and cfg.equivariance > 0:
        raise InputError("the equivariance term needs an affine-family transformer: use equivariance 0 "
                         "with stn_kind projective")
    for name, lo, hi in (("steps", 1, 10_000_000), ("batch_size", 1, 1024), ("test_canvases", 1, 100_000),
                         ("width", 4, 256), ("size", 32, 512), ("n_test_digits", 1, 1_000_000),
                         ("seed", 0, 2**63 - 1)):
        check_number(name, getattr(cfg, name), lo=lo, hi=hi, integer=True)
    check_number("lr", cfg.lr, lo=0, lo_open=True, hi=1)
    for name, hi in (("stn_lr_scale", 100), ("background_weight", 100)):
        if hasattr(cfg, name):
            check_number(name, getattr(cfg, name), lo=0, lo_open=name == "stn_lr_scale", hi=hi)


def resume_ignores(cfg) -> tuple[str, ...]:
    """Keys of ``cfg`` that may change without retraining (the transformer's, without one)."""
    stn_keys = tuple(k for k in asdict(cfg) if k.startswith("stn_") or k == "equivariance")
    return EVAL_ONLY + (() if cfg.stn else stn_keys)



# -- results files ------------------------------------------------------------------------
def read_results(path: Path) -> dict:
    """The results recorded so far (``{}`` when there is no file), or a one-line InputError
    for a file that is not a JSON object."""
    if not path.exists():
        return {}
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read ({type(e).__name__}); move it away to start a new "
                         "one") from None
    if not isinstance(results, dict):
        raise InputError(f"{path}: not a results file (expected a JSON object); move it away to start "
                         "a new one")
    return results


def write_results(results: dict, path: Path) -> None:
    """Write the results atomically, as indented JSON."""
    write_bytes_atomic((json.dumps(results, indent=2, allow_nan=False) + "\n").encode(), path)


def check_out_folder(out: Path) -> None:
    """An app's ``--out`` may be a folder or not exist yet."""
    from ..errors import OutputError

    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
