"""Training feed-forward stylizers with the engine's losses.

Each step: a batch of random crops (with random flips) of the content photos and of the
style images. For an arbitrary-style model the style code of each sample is read the way
:meth:`FastStylizer.style_code` reads it at inference: from the whole painting (a random
70-100 % crop of it, flipped at random, for variety) resized to ``code_size`` on its long
side (with ``color_transfer`` the code also carries that image's colour moments, which the
output is moved to); the Gram targets come from the style crop. With probability ``identity_prob`` the
content crop is its own style, so strength 0 reproduces the content. The loss is the
engine's: relative content error at relu4_2, relative Gram error over relu1_1..relu5_1,
total variation.

Images are loaded once, at the short sides ``content_scale`` and ``style_scale``, and kept in
memory; ``init`` starts from the weights of an earlier model (fine-tuning).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..errors import InputError, check_number, check_weights, comma_floats
from ..io import list_images as io_list_images
from ..io import load_image, resize
from ..losses import gram_matrix, layers_content_loss, layers_style_loss, total_variation
from ..training import check_finite_state, fit, load_checkpoint
from ..vgg import CONTENT_LAYERS, STYLE_LAYERS, VGGFeatures
from .model import MAX_BLOCKS, MAX_CODE_DIM, MAX_WIDTH, FastStylizer, Kind, build, style_inputs
from .nets import STAT_LAYERS, feature_statistics

CHECKPOINT_FORMAT = "warpaint.feedforward-train"
#: Upper bounds of the training options.
MAX_STEPS, MAX_BATCH, MAX_CROP, MAX_SCALE = 10_000_000, 256, 1024, 4096


@dataclass(frozen=True)
class TrainConfig:
    """Every option of ``warpaint train`` (the CLI's flags are generated from these)."""

    kind: str = field(default="arbitrary", metadata={"help": "arbitrary or single"})
    steps: int = field(default=2000, metadata={"help": "training steps", "group": "schedule"})
    batch_size: int = field(default=4, metadata={"help": "crops per step", "group": "schedule"})
    size: int = field(default=192, metadata={"help": "content crop side, px", "group": "data"})
    style_size: int = field(default=192, metadata={"help": "style crop side, px", "group": "data"})
    content_scale: int = field(default=0, metadata={
        "help": "short side the photos are loaded at, px; 0 = 1.25 x --size", "group": "data"})
    style_scale: int = field(default=0, metadata={
        "help": "short side the paintings are loaded at, px; 0 = 1.5 x --style-size", "group": "data"})
    code_size: int = field(default=128, metadata={
        "help": "long side at which a whole style image is encoded, px", "group": "data"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate", "group": "schedule"})
    content_weight: float = field(default=1.0, metadata={"help": "content loss weight", "group": "losses"})
    style_weight: float = field(default=4.0, metadata={"help": "style loss weight", "group": "losses"})
    tv_weight: float = field(default=0.0, metadata={"help": "total variation weight", "group": "losses"})
    style_layer_weights: tuple[float, ...] = field(default=(), metadata={
        "help": f"comma-separated weights of the style layers {','.join(STYLE_LAYERS)} (default: equal)",
        "group": "losses", "type": comma_floats})
    identity_prob: float = field(default=0.15, metadata={
        "help": "arbitrary-style models: chance that a content crop is its own style", "group": "data"})
    color_transfer: bool = field(default=False, metadata={
        "help": "arbitrary-style models: move the output to the style's colour mean and spread (in "
                "training and when stylizing)", "group": "network"})
    code_dim: int = field(default=64, metadata={"help": "size of the style code", "group": "network"})
    width: int = field(default=16, metadata={"help": "channels of the network's first layer",
                                             "group": "network"})
    blocks: int = field(default=5, metadata={"help": "residual blocks of the network", "group": "network"})
    seed: int = field(default=0, metadata={"help": "seed of crops and initialization", "group": "schedule"})
    init: str = field(default="", metadata={
        "help": "start from this model file's weights (fine-tuning; same kind and shape)", "group": "network",
        "metavar": "MODEL.pt"})

    def __post_init__(self) -> None:
        check_train_config(self)

    def scales(self) -> tuple[int, int]:
        """Short sides (content, style) at which the images are loaded."""
        whole = self.kind == "single"      # one style: the whole painting, not crops of it
        style = self.style_scale or (self.style_size if whole else round(self.style_size * 1.5))
        return self.content_scale or round(self.size * 1.25), style


#: Options added after checkpoints were first written, with the value those runs had: left out
#: of the resume key while they have it, so an older run's checkpoint still resumes.
ADDED_LATER: dict[str, object] = {"style_layer_weights": ()}


def resume_key(cfg: TrainConfig) -> dict:
    """The configuration a checkpoint must match to be resumed (:func:`~warpaint.training.fit`)."""
    return {k: v for k, v in asdict(cfg).items() if k not in ADDED_LATER or v != ADDED_LATER[k]}


def check_train_config(cfg: TrainConfig) -> None:
    """Every field finite and in range, or an InputError naming it."""
    if cfg.kind not in ("arbitrary", "single"):
        raise InputError(f"kind must be arbitrary or single, got {cfg.kind!r}")
    for name, lo, hi in (("steps", 1, MAX_STEPS), ("batch_size", 1, MAX_BATCH), ("size", 32, MAX_CROP),
                         ("style_size", 32, MAX_CROP), ("code_size", 32, MAX_CROP),
                         ("content_scale", 0, MAX_SCALE), ("style_scale", 0, MAX_SCALE),
                         ("code_dim", 1, MAX_CODE_DIM), ("width", 4, MAX_WIDTH), ("blocks", 1, MAX_BLOCKS),
                         ("seed", 0, 2**63 - 1)):
        check_number(name, getattr(cfg, name), lo=lo, hi=hi, integer=True)
    check_number("lr", cfg.lr, lo=0, lo_open=True, hi=1)
    for name in ("content_weight", "style_weight", "tv_weight"):
        check_number(name, getattr(cfg, name), lo=0, hi=1e6)
    check_number("identity_prob", cfg.identity_prob, lo=0, hi=1)
    if not isinstance(cfg.style_layer_weights, tuple | list):
        raise InputError(f"style_layer_weights must be a sequence of {len(STYLE_LAYERS)} numbers, "
                         f"got {cfg.style_layer_weights!r}")
    if cfg.style_layer_weights and len(cfg.style_layer_weights) != len(STYLE_LAYERS):
        raise InputError(f"style_layer_weights needs {len(STYLE_LAYERS)} weights "
                         f"({', '.join(STYLE_LAYERS)}), got {len(cfg.style_layer_weights)}")
    check_weights("style_layer_weights", cfg.style_layer_weights)
    content_short, style_short = cfg.scales()
    if content_short < cfg.size or style_short < cfg.style_size:
        raise InputError("content_scale and style_scale must be at least size and style_size (or 0)")


def list_images(folder: Path) -> list[Path]:
    """The training images in ``folder`` and its subfolders."""
    return io_list_images(folder, recursive=True)


def load_pool(paths: list[Path], short_side: int) -> list[Tensor]:
    """Images (3, H, W) with their short side at ``short_side`` (aspect kept)."""
    pool = []
    for p in paths:
        img = load_image(p)
        h, w = img.shape[-2:]
        k = short_side / min(h, w)
        pool.append(resize(img, (max(short_side, round(h * k)), max(short_side, round(w * k))))[0])
    return pool


def _crop(img: Tensor, hw: tuple[int, int], g: torch.Generator) -> Tensor:
    """A random ``hw`` crop of (3, H, W), flipped left-right at random."""
    h, w = img.shape[-2:]
    y = int(torch.randint(0, h - hw[0] + 1, (1,), generator=g))
    x = int(torch.randint(0, w - hw[1] + 1, (1,), generator=g))
    crop = img[:, y: y + hw[0], x: x + hw[1]]
    return crop.flip(-1) if torch.rand(1, generator=g).item() < 0.5 else crop


def random_crops(pool: list[Tensor], n: int, size: int, g: torch.Generator,
                 index: list[int] | None = None) -> Tensor:
    """``n`` random ``size`` x ``size`` crops (of the images ``index``, default random), each
    flipped left-right at random, (n, 3, S, S)."""
    index = index if index is not None else torch.randint(0, len(pool), (n,), generator=g).tolist()
    return torch.stack([_crop(pool[i], (size, size), g) for i in index])


def code_inputs(vgg: VGGFeatures, images: list[Tensor], code_size: int,
                g: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Feature statistics (B, 1920) and colour moments (B, 6) of whole images (3, H, W)
    resized to ``code_size`` on their long side, as :meth:`FastStylizer.style_code` reads
    them; with a generator, each is first cropped to a random 70-100 % of its height and
    width and flipped at random."""
    read = []
    for img in images:
        if g is not None:
            h, w = img.shape[-2:]
            k = 0.7 + 0.3 * torch.rand(2, generator=g)
            img = _crop(img, (max(1, int(h * k[0])), max(1, int(w * k[1]))), g)
        read.append(style_inputs(vgg, img[None], code_size))
    return torch.cat([r[0] for r in read]), torch.cat([r[1] for r in read])


def style_targets(vgg: VGGFeatures, styles: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """Gram targets of each style layer and the feature statistics, for a batch of styles."""
    feats = vgg(styles, tuple(dict.fromkeys((*STYLE_LAYERS, *STAT_LAYERS))))
    return {n: gram_matrix(feats[n]) for n in STYLE_LAYERS}, feature_statistics(feats)


def losses(vgg: VGGFeatures, out: Tensor, content: Tensor, grams: dict[str, Tensor],
           cfg: TrainConfig) -> tuple[Tensor, dict[str, float]]:
    """The engine's weighted losses of a batch of outputs."""
    with torch.no_grad():
        target = vgg(content, CONTENT_LAYERS)
    feats = vgg(out, tuple(dict.fromkeys((*CONTENT_LAYERS, *STYLE_LAYERS))))
    c = layers_content_loss(feats, target, CONTENT_LAYERS)
    s = layers_style_loss(feats, grams, STYLE_LAYERS, cfg.style_layer_weights or None)
    total = cfg.content_weight * c + cfg.style_weight * s
    parts = {"content": float(c.detach()), "style": float(s.detach())}
    if cfg.tv_weight:
        tv = total_variation(out)
        total = total + cfg.tv_weight * tv
        parts["tv"] = float(tv.detach())
    return total, parts


class _Both(torch.nn.Module):
    """The trained modules as one (for the optimizer and checkpoints)."""

    def __init__(self, model: FastStylizer) -> None:
        super().__init__()
        self.net = model.net
        self.encoder = model.encoder


def train(cfg: TrainConfig, content_pool: list[Tensor], style_pool: list[Tensor], *,
          checkpoint: Path | None = None, samples: Path | None = None, sample_every: int = 200,
          device: torch.device | str = "cpu", progress: bool = True) -> tuple[FastStylizer, dict]:
    """Train a model; return it and a summary (history, seconds, configuration).

    ``checkpoint`` holds the full training state (resumed from when its configuration
    matches); ``samples`` is a folder for sample grids every ``sample_every`` steps.
    """
    for name, pool, side in (("content", content_pool, cfg.size), ("style", style_pool, cfg.style_size)):
        if not pool:
            raise InputError(f"no {name} images")
        if min(min(p.shape[-2:]) for p in pool) < side:
            raise InputError(f"{name} images must be at least {side} px on their short side")
    torch.manual_seed(cfg.seed)
    kind: Kind = cfg.kind  # type: ignore[assignment]
    model = _build(cfg)
    if cfg.init:
        _start_from(model, Path(cfg.init))
    model.to(device)
    vgg = VGGFeatures().to(device)
    model.vgg = vgg
    if model.encoder is not None:      # standardize the encoder's inputs over (up to 256) styles
        pick = torch.randperm(len(style_pool), generator=torch.Generator().manual_seed(cfg.seed))[:256]
        with torch.no_grad():
            stats = code_inputs(vgg, [style_pool[i].to(device) for i in pick.tolist()], cfg.code_size)[0]
        model.encoder.set_normalization(stats)
    step_loss = _step_loss(cfg, model, vgg, content_pool, style_pool, torch.device(device))
    sample_set = None
    if samples is not None:
        samples.mkdir(parents=True, exist_ok=True)
        g = torch.Generator().manual_seed(cfg.seed + 99)
        sample_set = (random_crops(content_pool, 4, cfg.size, g),
                      random_crops(style_pool, 4, cfg.style_size, g))

    def on_step(n: int) -> None:
        if sample_set is not None and (n % sample_every == 0 or n == cfg.steps):
            save_samples(model, *sample_set, samples / f"step_{n:06d}.png")

    history, seconds = fit(_Both(model), step_loss, steps=cfg.steps, lr=cfg.lr, seed=cfg.seed,
                           config=resume_key(cfg),
                           checkpoint=checkpoint, progress=progress, desc=f"train {kind}",
                           fmt=CHECKPOINT_FORMAT, on_step=on_step)
    model.net.eval()
    model.training = {"config": asdict(cfg), "seconds": round(seconds, 1), "steps": cfg.steps,
                      "device": str(torch.device(device)), "threads": torch.get_num_threads(),
                      "final_losses": history[-1] if history else {}}
    return model, {"history": history, "seconds": seconds}


def _step_loss(cfg: TrainConfig, model: FastStylizer, vgg: VGGFeatures, content_pool: list[Tensor],
               style_pool: list[Tensor], device: torch.device):
    """The loss of one training step (for :func:`~warpaint.training.fit`): a batch of content
    crops, each with a style (crops of the one painting, or of a random painting, or with
    ``identity_prob`` the content crop itself), through the network and the engine's losses."""
    fixed_grams = None
    if cfg.kind == "single":               # one style: its Gram targets never change
        fixed_grams = style_targets(vgg, style_pool[0][None].to(device))[0]

    def step_loss(g: torch.Generator):
        content = random_crops(content_pool, cfg.batch_size, cfg.size, g).to(device)
        if fixed_grams is not None:
            out = model.net(content)
            grams = {n: t.expand(cfg.batch_size, -1, -1) for n, t in fixed_grams.items()}
        else:
            index = torch.randint(0, len(style_pool), (cfg.batch_size,), generator=g).tolist()
            styles = random_crops(style_pool, cfg.batch_size, cfg.style_size, g, index).to(device)
            own = (torch.rand(cfg.batch_size, generator=g) < cfg.identity_prob).tolist()
            if cfg.size != cfg.style_size:
                own = [False] * cfg.batch_size
            with torch.no_grad():
                mask = torch.tensor(own, device=device)
                styles[mask] = content[mask]
                grams = style_targets(vgg, styles)[0]
                stats, moments = code_inputs(vgg, [content[b] if own[b] else style_pool[i].to(device)
                                                   for b, i in enumerate(index)], cfg.code_size, g)
            out = model.render(content, model.encode(stats, moments))
        return losses(vgg, out, content, grams, cfg)

    return step_loss


@torch.no_grad()
def save_samples(model: FastStylizer, contents: Tensor, styles: Tensor, path: Path) -> None:
    """PNG grid: content crops (row 1), style crops (row 2, arbitrary models), results."""
    from torchvision.utils import make_grid

    from ..io import save_image

    dev = model.device
    was = model.net.training
    model.net.eval()
    rows = [contents]
    if model.encoder is not None:
        styles = resize(styles, tuple(contents.shape[-2:]))
        code = model.encode(*code_inputs(model._vgg(), list(styles.to(dev)), model.style_size))
        rows += [styles, model.render(contents.to(dev), code).cpu()]
    else:
        rows.append(model.net(contents.to(dev)).cpu())
    model.net.train(was)
    save_image(make_grid(torch.cat(rows).clamp(0, 1), nrow=contents.shape[0], padding=2)[None], path)


def _build(cfg: TrainConfig) -> FastStylizer:
    """A new model of the configuration's shape, reading styles as it was trained to."""
    model = build(cfg.kind, code_dim=cfg.code_dim, width=cfg.width, blocks=cfg.blocks)  # type: ignore[arg-type]
    model.style_size, model.color_transfer = cfg.code_size, cfg.color_transfer and cfg.kind == "arbitrary"
    return model


def _start_from(model: FastStylizer, path: Path) -> None:
    """Copy the weights of the model file ``path`` into ``model`` (same kind and shape)."""
    from .model import load

    start = load(path)
    if start.kind != model.kind:
        raise InputError(f"{path}: {'an' if start.kind == 'arbitrary' else 'a'} {start.kind}-style model "
                         f"cannot start {'an' if model.kind == 'arbitrary' else 'a'} {model.kind}-style one")
    try:
        model.net.load_state_dict(start.net.state_dict())
        if model.encoder is not None and start.encoder is not None:
            model.encoder.load_state_dict(start.encoder.state_dict())
    except RuntimeError:
        raise InputError(f"{path}: its network shape differs from the one being trained "
                         f"(code_dim, width, blocks)") from None


def from_checkpoint(path: Path) -> FastStylizer:
    """The model in a training checkpoint (e.g. after an interrupted run); loaded with
    ``weights_only=True`` (:func:`~warpaint.training.load_checkpoint`)."""
    ck = load_checkpoint(path)
    if ck.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a warpaint training checkpoint")
    try:
        cfg = TrainConfig(**ck["config"])
        model = _build(cfg)
        check_finite_state(ck["model"], path)
        _Both(model).load_state_dict(ck["model"])
    except (TypeError, KeyError, RuntimeError, AttributeError) as e:
        raise InputError(f"{path}: checkpoint does not fit this version of warpaint "
                         f"({type(e).__name__})") from None
    model.training = {"config": ck["config"], "steps": ck["step"], "seconds": round(ck["seconds"], 1),
                      "interrupted": True}
    return model


def check_train_files(cfg: TrainConfig, content_dir: Path, style: Path, output: Path, *,
                      work_size: int | None, sample_every: int) -> tuple[list[Path], list[Path]]:
    """The content and style files of a training run, after checking every path and option
    that :class:`TrainConfig` does not hold; nothing is read or written yet."""
    from ..io import guard_output

    if output.suffix != ".pt":
        raise InputError(f"{output}: the model file must end in .pt")
    if cfg.kind == "single" and not style.is_file():
        raise InputError(f"{style}: style image not found")
    if cfg.kind == "single" and cfg.color_transfer:
        raise InputError("color_transfer is for arbitrary-style models (a folder of styles)")
    if work_size is not None:
        check_number("work_size", work_size, lo=32, hi=16384, integer=True)
    check_number("sample_every", sample_every, lo=0, integer=True)
    if cfg.init and not Path(cfg.init).is_file():
        raise InputError(f"{cfg.init}: model file not found")
    style_paths = [style] if cfg.kind == "single" else list_images(style)
    content_paths = list_images(content_dir)
    guard_output(output, [str(p) for p in (*style_paths, *content_paths, cfg.init) if p], what="model file",
                 formats=(".pt",))
    return content_paths, style_paths


def train_to_file(cfg: TrainConfig, content_dir: Path, style: Path, output: Path, *,
                  work_size: int | None = None, sample_every: int = 200, device: str = "auto",
                  max_memory: float = 0.0, progress: bool = True) -> dict:
    """Train a model from the photos in ``content_dir`` and ``style`` (one painting, or a
    folder of them for an arbitrary-style model) and write it to ``output``, with a loss
    curve (``OUTPUT_loss.png``), sample grids every ``sample_every`` steps and the training
    state in ``OUTPUT.pt.ckpt`` (resumed from). Returns the training summary.

    Ctrl-C or SIGTERM writes the model so far to ``OUTPUT.partial.pt`` (never over a
    finished model) and re-raises, with the path as the exception's ``partial``.
    """
    from ..device import pick_device
    from ..io import free_partial_path
    from ..memory import check_budget, training_peak_bytes
    from ..plots import save_loss_curve

    content_paths, style_paths = check_train_files(cfg, content_dir, style, output, work_size=work_size,
                                                   sample_every=sample_every)
    dev = pick_device(device)
    check_number("max_memory", max_memory, lo=0)
    check_budget(training_peak_bytes(cfg.batch_size, cfg.size, cfg.style_size), max_memory, dev,
                 f"training on {cfg.batch_size} crops of {cfg.size} px")
    content_short, style_short = cfg.scales()
    contents = load_pool(content_paths, content_short)
    styles = load_pool(style_paths, style_short)  # one style: the whole painting; else crops of each
    samples = output.with_name(output.stem + "_samples") if sample_every > 0 else None
    ckpt = output.with_name(output.name + ".ckpt")
    try:
        model, summary = train(cfg, contents, styles, checkpoint=ckpt, samples=samples,
                               sample_every=max(sample_every, 1), device=dev, progress=progress)
    except KeyboardInterrupt as e:
        if ckpt.exists():
            partial = from_checkpoint(ckpt)
            partial.work_size = work_size
            e.partial = free_partial_path(str(output))  # type: ignore[attr-defined]
            partial.save(e.partial)  # type: ignore[attr-defined]
        raise
    model.training.update(content_images=len(contents), style_images=len(styles))
    model.work_size = work_size
    model.save(output)
    save_loss_curve(summary["history"], output.with_name(output.stem + "_loss.png"),
                    title=f"{cfg.kind}: {cfg.steps} steps x {cfg.batch_size} crops of {cfg.size} px, "
                          f"{dev.type} float32", xlabel="training step")
    return summary
