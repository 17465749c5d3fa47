"""Distorted MNIST: a plain CNN against an ST-CNN (Jaderberg et al. 2015, section 4.1).

Data: the 10,000 MNIST test digits in IDX format (``../shared/datasets/mnist``), split with a
fixed seed into 8,000 for training and 2,000 for testing. Distortions are generated on the
fly (fresh ones every training batch; fixed ones, from the seed, for the test set):

* ``R``: rotation uniform in +-90 degrees, 28x28.
* ``RTS``: rotation +-45 degrees, scale 0.7-1.2, digit placed at a random position of a
  42x42 canvas.
* ``P``: projective: the digit scaled by 0.75, its four corners moved by Gaussian offsets
  (sd 0.1 of the half-width), then a random translation of up to +-0.15 (normalized units).
* ``E``: elastic: a thin-plate spline on a 4x4 control grid, points moved with sd 1.5 px.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError, check_number
from ..stn.geometry import affine_grid, control_grid, rotation_angle, rotation_matrix, sample, tps_grid
from ..stn.transformer import (
    SpatialTransformer,
    TransformKind,
    equivariance_error,
    localization_net,
    n_transform_params,
    turn_batch,
)
from ..stn.transformer import rotation_equivariance_loss as equivariance_loss  # noqa: F401  (re-exported)
from ..training import count_parameters, fit, restore, step_generator
from .common import check_split, load_mnist, read_idx, split  # noqa: F401  (re-exported: the data of the digits app)

Distortion = Literal["R", "RTS", "P", "E"]
DISTORTIONS: tuple[str, ...] = ("R", "RTS", "P", "E")


# -- distortions ----------------------------------------------------------------------------
def canvas_size(distortion: Distortion) -> int:
    return 42 if distortion == "RTS" else 28


def _projective_from_corners(src: Tensor, dst: Tensor) -> Tensor:
    """(B, 3, 3) homographies mapping the 4 ``dst`` corners (B, 4, 2) onto ``src``."""
    import kornia.geometry.transform as KT

    return KT.get_perspective_transform(dst, src)


def distort(images: Tensor, distortion: Distortion, generator: torch.Generator) -> tuple[Tensor, dict]:
    """Apply random distortions to (B, 1, 28, 28) images in [0, 1].

    Returns:
        distorted (B, 1, S, S) images (S = 42 for RTS, else 28) and the applied parameters
        (``angle`` in radians and ``scale`` for R and RTS).
    """
    b, dev = images.shape[0], images.device
    size = canvas_size(distortion)

    def uniform(lo: float, hi: float) -> Tensor:
        return torch.rand(b, generator=generator).to(dev) * (hi - lo) + lo

    info: dict[str, Tensor] = {}
    if distortion in ("R", "RTS"):
        max_angle, (s_lo, s_hi) = (90.0, (1.0, 1.0)) if distortion == "R" else (45.0, (0.7, 1.2))
        angle = uniform(-max_angle, max_angle) * math.pi / 180
        scale = uniform(s_lo, s_hi)
        half = scale * 28 / size                                   # digit half-width, output units
        room = (1 - half).clamp_min(0)
        centre = torch.stack([uniform(-1, 1) * room, uniform(-1, 1) * room], -1) \
            if distortion == "RTS" else torch.zeros(b, 2, device=dev)
        # output point p samples the digit at R(-a) (p - c) / half
        a_inv = rotation_matrix(-angle) / half[:, None, None]
        theta = torch.cat([a_inv, -(a_inv @ centre[..., None])], -1)
        grid = affine_grid(theta, (size, size), align_corners=False)
        info = {"angle": angle, "scale": scale}
    elif distortion == "P":
        corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=dev)
        moved = corners * 0.75 + 0.1 * torch.randn(b, 4, 2, generator=generator).to(dev)
        moved = moved + (torch.rand(b, 1, 2, generator=generator).to(dev) * 0.3 - 0.15)
        h = _projective_from_corners(corners.expand(b, 4, 2), moved)   # output -> input
        grid = affine_grid(h, (size, size), align_corners=False)
    else:  # E
        dst = control_grid(4, device=dev)
        sd = 1.5 / 14.0                                            # 1.5 px in normalized units
        src = dst + sd * torch.randn(b, 16, 2, generator=generator).to(dev)
        grid = tps_grid(src, dst, (size, size), align_corners=False)
    return sample(images, grid, padding_mode="zeros", align_corners=False), info


# -- models ---------------------------------------------------------------------------------
class DigitCNN(nn.Module):
    """Two conv blocks + adaptive pooling + two linear layers; any input size."""

    def __init__(self, in_channels: int = 1, *, width: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 5), nn.MaxPool2d(2), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 5), nn.MaxPool2d(2), nn.ReLU(inplace=True),
            nn.AdaptiveMaxPool2d(4), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(2 * width * 16, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(0.3), nn.Linear(hidden, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def digit_localization_net(in_channels: int, n_params: int) -> nn.Sequential:
    """The ST-CNN's localization network: four 3x3 conv layers (16, 32, 64, 64 channels)
    with three 2x2 max pools, adaptive average pooling to 3x3, two linear layers.

    Deeper than :func:`~warpaint.stn.transformer.localization_net` (which has two 7x7 and
    5x5 layers) for a more precise angle, and cheaper on a 42x42 canvas. The last layer
    starts at zero weight (identity start).
    """
    net = nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(3), nn.Flatten(),
        nn.Linear(64 * 9, 32), nn.ReLU(inplace=True), nn.Linear(32, n_params))
    nn.init.zeros_(net[-1].weight)
    return net


#: The ST-CNN's localization networks: name -> (factory(in_channels, n_params), hidden
#: width of the classifier behind it, chosen so the ST-CNN has about the CNN's parameters).
LOCALIZATION_NETS = {
    "deep": (digit_localization_net, 60),
    "small": (localization_net, 104),
}


class STCNN(nn.Module):
    """A :class:`SpatialTransformer` in front of a narrower :class:`DigitCNN`, so both
    models have about the same parameter count.

    ``localization``: ``"deep"`` (:func:`digit_localization_net`) or ``"small"``
    (:func:`~warpaint.stn.transformer.localization_net`).
    """

    def __init__(self, in_channels: int = 1, *, output_size: int | None = None,
                 kind: TransformKind = "affine", iterations: int = 1, localization: str = "deep") -> None:
        super().__init__()
        if localization not in LOCALIZATION_NETS:
            raise InputError(f"localization must be one of {', '.join(LOCALIZATION_NETS)}, "
                             f"got {localization!r}")
        make_loc, hidden = LOCALIZATION_NETS[localization]
        out = (output_size, output_size) if output_size else None
        self.stn = SpatialTransformer(in_channels, kind=kind, output_size=out, iterations=iterations,
                                      localization=make_loc(in_channels, n_transform_params(kind)))
        self.cnn = DigitCNN(in_channels, hidden=hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.cnn(self.stn(x)[0])


def make_model(kind: Literal["cnn", "stcnn"], *, stn_output: int = 0, stn_kind: TransformKind = "affine",
               stn_iterations: int = 1, stn_localization: str = "deep") -> nn.Module:
    """The two compared models; their parameter counts differ by under 5 %.

    ``stn_output``: side of the ST-CNN's transformer output (0 keeps the input size);
    ``stn_kind``: its transform; ``stn_localization``: its localization network.
    """
    if kind == "cnn":
        return DigitCNN()
    return STCNN(output_size=stn_output or None, kind=stn_kind, iterations=stn_iterations,
                 localization=stn_localization)


# -- training -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DigitsConfig:
    """One digits run (the CLI's flags are generated from these; see :data:`STN_SETTINGS` and
    :data:`EPOCHS` for the values each distortion uses)."""

    distortion: str = field(default="RTS", metadata={"help": "R, RTS, P or E", "choices": DISTORTIONS})
    model: str = field(default="stcnn", metadata={"help": "cnn or stcnn", "choices": ("cnn", "stcnn")})
    epochs: int = field(default=30,
                        metadata={"help": "training epochs"})
    batch_size: int = field(default=128, metadata={"help": "batch size"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate"})
    stn_lr_scale: float = field(default=1.0,
                                metadata={"help": "learning-rate factor of the localization net"})
    stn_output: int = field(default=0,
                            metadata={"help": "side of the transformer's output, px; 0 = input size"})
    stn_kind: str = field(default="affine", metadata={
        "help": "the ST-CNN's transform", "choices": ("affine", "similarity", "projective", "tps")})
    equivariance: float = field(default=0.0, metadata={"help": "weight of the rotation-equivariance term"})
    stn_iterations: int = field(default=1, metadata={"help": "localization passes, composed"})
    stn_localization: str = field(default="deep", metadata={
        "help": "the ST-CNN's localization network (see docs/stn.md)", "choices": ("deep", "small")})
    rotation_prior: float = field(default=0.0, metadata={"help": "weight of the squared rotation angle"})
    turned_view: bool = field(default=False, metadata={
        "help": "train the classifier on the equivariance term's turned batch too"})
    turn_degrees: float = field(default=30.0, metadata={
        "help": "range of the equivariance term's extra turns, +- degrees"})
    n_test: int = field(default=2000, metadata={"help": "digits held out for the test set"})
    seed: int = field(default=0, metadata={"help": "seed of the split and the distortions"})

    def __post_init__(self) -> None:
        check_digits_config(self)


def check_digits_config(cfg: DigitsConfig) -> None:
    """Every field finite, in range and of a known choice, or an InputError naming it."""
    for name, choices in (("distortion", DISTORTIONS), ("model", ("cnn", "stcnn")),
                          ("stn_kind", ("affine", "similarity", "projective", "tps")),
                          ("stn_localization", ("deep", "small"))):
        if getattr(cfg, name) not in choices:
            raise InputError(f"{name} must be one of {', '.join(choices)}, got {getattr(cfg, name)!r}")
    for name, lo, hi in (("epochs", 1, 1000), ("batch_size", 1, 4096), ("stn_output", 0, 256),
                         ("stn_iterations", 1, 8), ("n_test", 1, 1_000_000), ("seed", 0, 2**63 - 1)):
        check_number(name, getattr(cfg, name), lo=lo, hi=hi, integer=True)
    if 0 < cfg.stn_output < 16:   # the classifier's convolutions and poolings need 16 px a side
        raise InputError(f"stn_output must be 0 (the input size) or 16 to 256 px, got {cfg.stn_output}")
    check_number("lr", cfg.lr, lo=0, lo_open=True, hi=1)
    check_number("stn_lr_scale", cfg.stn_lr_scale, lo=0, lo_open=True, hi=100)
    check_number("turn_degrees", cfg.turn_degrees, lo=0, lo_open=True, hi=180)
    for name in ("equivariance", "rotation_prior"):
        check_number(name, getattr(cfg, name), lo=0, hi=1e4)
    if cfg.model == "stcnn" and cfg.turned_view and cfg.equivariance <= 0:
        raise InputError("the turned view comes from the equivariance term: give equivariance > 0 "
                         "or turned_view off")


#: The ST-CNN's transformer per distortion (see docs/stn.md for the measurements behind it).
STN_SETTINGS: dict[str, dict] = {
    "R": {"stn_kind": "similarity", "equivariance": 20.0, "turned_view": True},
    "RTS": {"stn_kind": "similarity", "stn_output": 28, "equivariance": 20.0, "rotation_prior": 1.0,
            "turned_view": True, "stn_lr_scale": 3.0},
    "P": {"stn_kind": "affine"},
    "E": {"stn_kind": "affine", "stn_localization": "small"},
}

#: Training epochs per distortion, for both models (each run stays under 10 minutes on two
#: CPU cores; see docs/stn.md).
EPOCHS: dict[str, int] = {"R": 40, "RTS": 30, "P": 25, "E": 25}


#: Checkpoints of another version (another architecture or training loop) are not resumed
#: from: :func:`train` gives it to :func:`~warpaint.training.fit` as part of the configuration,
#: so such a checkpoint is moved aside and the run starts over. Version 3: trained by ``fit``.
CHECKPOINT_VERSION = 3

#: Warm-up fraction of the one-cycle schedule (torch's default; the numbers in docs/stn.md
#: were measured with it).
WARMUP = 0.3

#: The options that only concern the ST-CNN's transformer.
STN_OPTIONS = ("stn_lr_scale", "stn_output", "stn_kind", "equivariance", "stn_iterations", "stn_localization",
               "rotation_prior", "turned_view", "turn_degrees")


def config_for(distortion: str, model: str, **overrides) -> DigitsConfig:
    """The configuration used for ``distortion``: :data:`STN_SETTINGS` for the ST-CNN, then
    ``overrides`` (``None`` values are ignored, and so are transformer options for the
    plain CNN)."""
    base = dict(STN_SETTINGS.get(distortion, {})) if model == "stcnn" else {}
    base["epochs"] = EPOCHS.get(distortion, DigitsConfig.epochs)
    base.update({k: v for k, v in overrides.items()
                 if v is not None and (model == "stcnn" or k not in STN_OPTIONS)})
    return DigitsConfig(distortion=distortion, model=model, **base)


def default_text(name: str) -> str | None:
    """What ``--help`` shows as the default of the option ``name`` when it depends on the
    distortion (``None`` when it does not): the values :func:`config_for` uses."""
    values = {d: getattr(config_for(d, "stcnn"), name) for d in DISTORTIONS}
    if len(set(values.values())) == 1 and next(iter(values.values())) == getattr(DigitsConfig(), name):
        return None
    text = "per distortion: " + ", ".join(f"{d} {str(v).lower() if isinstance(v, bool) else v}"
                                          for d, v in values.items())
    return text if name == "epochs" else f"{text} for the ST-CNN"


@torch.no_grad()
def evaluate(model: nn.Module, images: Tensor, labels: Tensor, *, batch: int = 500) -> float:
    """Error rate in percent."""
    model.eval()
    wrong = 0
    for i in range(0, images.shape[0], batch):
        wrong += int((model(images[i: i + batch]).argmax(1) != labels[i: i + batch]).sum())
    return 100.0 * wrong / images.shape[0]


def make_test_set(images: Tensor, labels: Tensor, distortion: Distortion,
                  seed: int) -> tuple[Tensor, Tensor, dict]:
    """The fixed distorted test set (same for both models).

    ``info`` also holds ``undistorted``: the same digits upright, unscaled and centred on
    the canvas (what the transformer does to those is each digit's own pose).
    """
    g = torch.Generator().manual_seed(seed + 1_000)
    clean = images.float()[:, None] / 255.0
    x, info = distort(clean, distortion, g)
    pad = (canvas_size(distortion) - 28) // 2
    return x, labels, {**info, "undistorted": F.pad(clean, (pad, pad, pad, pad))}


@dataclass(frozen=True)
class EvalSet:
    """The fixed distorted test set of a run (the same for both models)."""

    images: Tensor      # (N, 1, S, S) in [0, 1]
    labels: Tensor      # (N,)
    info: dict          # applied parameters (``angle``, ``scale`` for R and RTS), ``undistorted``


def _digits_loss(model: nn.Module, cfg: DigitsConfig, x: Tensor, y: Tensor, gen: torch.Generator) -> Tensor:
    """One batch's training loss: cross-entropy, plus the ST-CNN's self-supervised terms.

    For the ST-CNN two self-supervised terms can join the cross-entropy (neither looks at
    the distortions' parameters): ``equivariance`` weighs
    :func:`~warpaint.stn.transformer.rotation_equivariance_loss` (turn the batch by a random
    extra angle; the transformer must turn by as much more), and ``rotation_prior`` the mean
    squared rotation angle of the transformer (the smallest turn that works: with the
    equivariance term, each digit's upright becomes the centre of the rotations it was seen
    under, i.e. MNIST's own upright). With ``turned_view`` the turned batch of the
    equivariance term also goes through the classifier (one pass over both batches): every
    step then trains the classifier on two views of each digit.
    """
    if not isinstance(model, STCNN):
        return F.cross_entropy(model(x), y)
    if cfg.equivariance > 0 and cfg.turned_view:      # both views in one pass
        x2, rot = turn_batch(x, gen, cfg.turn_degrees)
        warped, params = model.stn(torch.cat([x, x2]))
        theta = params[:len(y)]
        loss = 2 * F.cross_entropy(model.cnn(warped), y.repeat(2))   # summed over the views
        loss = loss + cfg.equivariance * equivariance_error(theta, params[len(y):], rot)
    else:
        warped, theta = model.stn(x)
        loss = F.cross_entropy(model.cnn(warped), y)
        if cfg.equivariance > 0:
            loss = loss + cfg.equivariance * equivariance_loss(model.stn, x, theta, gen, cfg.turn_degrees)
    if cfg.rotation_prior > 0:
        loss = loss + cfg.rotation_prior * rotation_angle(theta).pow(2).mean()
    return loss


def _split_data(cfg: DigitsConfig, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, EvalSet]:
    """Training digits (N, 1, 28, 28) in [0, 1] with their labels, and the fixed test set."""
    train_idx, test_idx = split(images.shape[0], cfg.n_test, cfg.seed, name="n_test")
    x_test, y_test, info = make_test_set(images[test_idx], labels[test_idx], cfg.distortion,  # type: ignore[arg-type]
                                         cfg.seed)
    return images[train_idx].float()[:, None] / 255.0, labels[train_idx], EvalSet(x_test, y_test, info)


def _build(cfg: DigitsConfig) -> nn.Module:
    """The untrained model of ``cfg`` (seeded), channels-last."""
    torch.manual_seed(cfg.seed)
    model = make_model(cfg.model, stn_output=cfg.stn_output, stn_kind=cfg.stn_kind,  # type: ignore[arg-type]
                       stn_iterations=cfg.stn_iterations, stn_localization=cfg.stn_localization)
    # Channels-last: oneDNN's kernels for these few-channel convolutions and max pools train
    # 20-40 % faster on a CPU (and cuDNN likes the layout too); same numbers to float rounding.
    return model.to(memory_format=torch.channels_last)


def epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """The order in which epoch ``epoch`` (0-based) visits the ``n`` training digits: a
    permutation drawn from ``step_generator(seed, -1 - epoch)``, a generator that no training
    step uses (steps count from 0), so it depends on the seed and the epoch alone."""
    return torch.randperm(n, generator=step_generator(seed, -1 - epoch))


def train(cfg: DigitsConfig, data: tuple[Tensor, Tensor], *, checkpoint: Path | None = None,
          progress: bool = True, on_epoch=None) -> tuple[nn.Module, dict, EvalSet]:
    """Train one model on one distortion with :func:`~warpaint.training.fit`; return it, a
    results dict (error %, time, parameters, configuration) and the test set it was
    evaluated on.

    ``epochs * ceil(train digits / batch_size)`` steps. The ``b``-th step of epoch ``e``
    takes the ``b``-th batch of ``epoch_order(.., e)`` (so every training digit once per
    epoch; the last batch may be short), distorts it and draws the equivariance term's turns
    with fit's generator for that step, and is scored by :func:`_digits_loss`. Adam with a one-cycle
    schedule (warm-up :data:`WARMUP`), the localization net at ``stn_lr_scale`` times the
    rate, no gradient clipping; a checkpoint every epoch. Ctrl-C or SIGTERM saves the state
    after the current step and a rerun resumes there exactly. ``on_epoch(epoch, model)`` is
    called after each epoch (1-based).
    """
    images, labels = data
    if not 0 < cfg.n_test < images.shape[0]:
        raise InputError(f"n_test must be between 1 and {images.shape[0] - 1} (the digits given), "
                         f"got {cfg.n_test}")
    x_train, y_train, test = _split_data(cfg, images, labels)
    model = _build(cfg)
    n, size = x_train.shape[0], cfg.batch_size
    per_epoch = math.ceil(n / size)
    batch: dict = {}

    def pick(step: int) -> None:                       # fit's before_step: this step's digits
        epoch, b = divmod(step, per_epoch)
        batch["idx"] = epoch_order(n, cfg.seed, epoch)[b * size: (b + 1) * size]

    def step_loss(g: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        x, _ = distort(x_train[batch["idx"]], cfg.distortion, g)  # type: ignore[arg-type]
        return _digits_loss(model, cfg, x.contiguous(memory_format=torch.channels_last),
                            y_train[batch["idx"]], g), {}

    def epoch_done(step: int) -> None:
        if on_epoch is not None and step % per_epoch == 0:
            on_epoch(step // per_epoch, model)

    _, seconds = fit(model, step_loss, steps=cfg.epochs * per_epoch, lr=cfg.lr, seed=cfg.seed,
                     config={"version": CHECKPOINT_VERSION, **asdict(cfg)}, checkpoint=checkpoint,
                     every=per_epoch, progress=progress, desc=f"{cfg.model} {cfg.distortion}",
                     fmt="warpaint.digits", before_step=pick, on_step=epoch_done, pct_start=WARMUP,
                     lr_scales={"stn": cfg.stn_lr_scale} if isinstance(model, STCNN) else None,
                     max_grad_norm=None)
    result = {"distortion": cfg.distortion, "model": cfg.model,
              "error_pct": evaluate(model, test.images, test.labels), "train_seconds": round(seconds, 1),
              "parameters": count_parameters(model), "epochs": cfg.epochs,
              "train_digits": n, "test_digits": int(test.images.shape[0]),
              "threads": torch.get_num_threads(), "config": asdict(cfg)}
    return model, result, test


def load(checkpoint: Path) -> tuple[nn.Module, DigitsConfig]:
    """A model trained by :func:`train` (in eval mode) and its configuration, from its checkpoint."""
    def config(c: dict) -> DigitsConfig:
        return DigitsConfig(**{k: v for k, v in c.items() if k != "version"})

    model, ck = restore(checkpoint, "warpaint.digits", "digits", lambda c: _build(config(c)))
    return model, config(ck["config"])


def run_experiments(configs: list[DigitsConfig], data: tuple[Tensor, Tensor], out: Path, *,
                    progress: bool = True, report=None) -> dict:
    """Train and evaluate each configuration into ``out``: checkpoints, the transformer's
    pictures, and its entry (``DISTORTION/MODEL``) in ``results.json``. Returns the results."""
    from .common import read_results, write_results

    results_path = out / "results.json"
    results = read_results(results_path)
    for cfg in configs:   # a refused split before anything is made
        check_split(data[0].shape[0], cfg.n_test, name="n_test")
    out.mkdir(parents=True, exist_ok=True)
    for cfg in configs:
        name, kind = cfg.distortion, cfg.model
        model, res, test = train(cfg, data, checkpoint=out / f"{name}_{kind}.pt", progress=progress)
        if kind == "stcnn":
            save_alignment_grid(model, test.images, out / f"{name}_stn_grid.png")
            if name in ("R", "RTS"):
                res.update(rotation_check(model, test, plot=out / f"{name}_rotation.png"))
        results[f"{name}/{kind}"] = res
        if report is not None:
            report(res)
        write_results(results, results_path)
    return results


def recovered_rotation(model: STCNN, x: Tensor) -> tuple[Tensor, Tensor]:
    """Rotation (radians) and scale that the STN applies to each input (from its theta).

    ``theta`` maps output to input coordinates, so a digit rotated by ``a`` in the input is
    straightened by a theta whose linear part rotates by ``a``.
    """
    with torch.no_grad():
        _, theta = model.stn(x)
    return rotation_angle(theta), torch.linalg.det(theta[:, :, :2]).abs().sqrt()


def correlation(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two 1-D tensors."""
    return float(torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1])


# -- checks people look at ----------------------------------------------------------------
@torch.no_grad()
def save_alignment_grid(model: STCNN, x: Tensor, path: Path, *, n: int = 16) -> None:
    """PNG with the inputs (top row) and the STN's outputs (bottom row) of ``n`` digits."""
    from torchvision.utils import make_grid

    from ..io import save_image

    model.eval()
    x = x[:n]
    y = model.stn(x)[0]
    if y.shape[-1] != x.shape[-1]:
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
    grid = make_grid(torch.cat([x, y]).clamp(0, 1), nrow=n, padding=2, pad_value=0.4)
    big = F.interpolate(grid[None], scale_factor=2, mode="nearest")
    save_image(big.expand(-1, 3, -1, -1), path)


def rotation_check(model: STCNN, test: EvalSet, plot: Path | None = None) -> dict:
    """On an R or RTS test set: how the rotation and scale the transformer applies track the
    applied ones.

    Returns the correlations of applied vs recovered rotation and scale, the slope of
    recovered on applied rotation, the spread of the rotation the transformer gives the
    undistorted digits (``own_pose_sd_deg``: its notion of upright differs from MNIST's by
    this much, digit to digit) and the rotation correlation once that own pose is
    subtracted (``rotation_correlation_own_pose_removed``).
    """
    x, info = test.images, test.info
    model.eval()
    angle, scale = recovered_rotation(model, x)
    applied = info["angle"]
    scaled = bool(info["scale"].std() > 0)           # R only turns the digits
    out = {"rotation_correlation": round(correlation(applied, angle), 4),
           "rotation_slope": round(float(torch.cov(torch.stack([applied, angle]))[0, 1] / applied.var()), 3)}
    if scaled:
        out["scale_correlation"] = round(correlation(info["scale"], scale), 4)
    if "undistorted" in info:
        own, _ = recovered_rotation(model, info["undistorted"])
        out["own_pose_sd_deg"] = round(float(own.rad2deg().std()), 2)
        out["rotation_correlation_own_pose_removed"] = round(correlation(applied, angle - own), 4)
    if plot is not None:
        from ..plots import pyplot, save_figure

        fig, ax = pyplot().subplots(1, 2 if scaled else 1, figsize=(8 if scaled else 4.4, 3.6), dpi=100,
                                    squeeze=False)
        ax[0, 0].scatter(applied.rad2deg(), angle.rad2deg(), s=3)
        ax[0, 0].set(xlabel="applied rotation (deg)", ylabel="STN rotation (deg)",
                     title=f"r = {out['rotation_correlation']:.3f}")
        if scaled:
            ax[0, 1].scatter(info["scale"], scale, s=3)
            ax[0, 1].set(xlabel="applied scale", ylabel="STN scale (sqrt det)",
                         title=f"r = {out['scale_correlation']:.3f}")
        side = x.shape[-1]
        fig.suptitle(f"{x.shape[0]} test digits, {side}x{side}, CPU float32", fontsize=9)
        fig.tight_layout()
        save_figure(fig, plot)
    return out
