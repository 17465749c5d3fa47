"""A U-Net with spatial transformers, on cluttered digit canvases (semantic segmentation).

:class:`STNSegmenter` runs a :class:`~warpaint.stn.SpatialTransformer` on the image, the
U-Net on the transformed image, and warps the predicted class scores back with the inverse
transform (:func:`unwarp`) before the loss and at inference, so the mask always lines up
with the original pixels. Optionally a second transformer sits inside the encoder: it turns
the deepest features, the bottleneck works on them, and its inverse turns them back before
the decoder, so the skip connections stay aligned.

Classes: 0 background (sheet, clutter, outside the sheet), 1 + d for the strokes of digit d.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..stn.geometry import affine_grid, to_matrix
from ..stn.transformer import SpatialTransformer, rotation_equivariance_loss
from ..training import fit, restore, summary
from . import canvas
from .canvas import CanvasConfig
from .common import SegmentationConfig as Config  # noqa: F401  (the app's options)
from .common import check_config, check_invertible_transformer, input_transformer, resume_ignores


def unwarp(y: Tensor, theta: Tensor, *, mode: Literal["bilinear", "nearest"] = "bilinear",
           padding_mode: Literal["zeros", "border"] = "border", align_corners: bool = False) -> Tensor:
    """Bring (B, C, H, W) maps made in a transformer's output frame back onto its input.

    ``theta`` (B, 2, 3) or (B, 3, 3) is the transformer's output -> input map (what it
    sampled with); the map back samples the output at ``theta^-1`` of each input pixel.
    Input pixels the transformer never showed get the nearest border value.
    """
    inv = torch.linalg.inv(to_matrix(theta))[:, : theta.shape[1]]
    grid = affine_grid(inv, (y.shape[-2], y.shape[-1]), align_corners=align_corners)
    return F.grid_sample(y, grid.to(y.dtype), mode=mode, padding_mode=padding_mode,
                         align_corners=align_corners)


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) for any input size: padded to a multiple of
    ``2 ** depth`` and cropped back. Upsampling is bilinear + 1x1 conv.

    Args:
        encoder_stn: optional transformer on the deepest encoder features (its inverse is
            applied after the bottleneck).
    """

    def __init__(self, in_channels: int = 1, classes: int = canvas.N_CLASSES, *, width: int = 16,
                 depth: int = 3, encoder_stn: SpatialTransformer | None = None) -> None:
        super().__init__()
        chans = [width * 2 ** i for i in range(depth + 1)]
        self.depth = depth
        self.down = nn.ModuleList([_double_conv(c_in, c) for c_in, c in zip([in_channels, *chans[:-2]],
                                                                            chans[:-1], strict=True)])
        self.bottom = _double_conv(chans[-2], chans[-1])
        self.reduce = nn.ModuleList([nn.Conv2d(chans[i + 1], chans[i], 1) for i in reversed(range(depth))])
        self.up = nn.ModuleList([_double_conv(2 * chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], classes, 1)
        self.encoder_stn = encoder_stn

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        m = 2 ** self.depth
        x = F.pad(x, (0, (-w) % m, 0, (-h) % m))
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        theta = None
        if self.encoder_stn is not None:
            x, theta = self.encoder_stn(x)
        x = self.bottom(x)
        if theta is not None:
            x = unwarp(x, theta, align_corners=self.encoder_stn.align_corners)
        for reduce, block, skip in zip(self.reduce, self.up, reversed(skips), strict=True):
            x = reduce(F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False))
            x = block(torch.cat([x, skip], 1))
        return self.head(x)[..., :h, :w]


class STNSegmenter(nn.Module):
    """Optional input :class:`SpatialTransformer` + :class:`UNet`; scores in input pixels.

    ``forward(x)`` takes (B, C, H, W) images of any size and returns ``(logits, params)``:
    (B, classes, H, W) class scores aligned with ``x``, and the transformer's parameters
    (``None`` without one).
    """

    def __init__(self, unet: UNet, stn: SpatialTransformer | None = None) -> None:
        super().__init__()
        check_invertible_transformer(stn, "masks")
        self.unet = unet
        self.stn = stn

    def transform(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """The transformer's view of ``x`` and its parameters (``None`` without one)."""
        return (x, None) if self.stn is None else self.stn(x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        view, params = self.transform(x)
        logits = self.unet(view)
        if params is not None:
            logits = unwarp(logits, params, align_corners=self.stn.align_corners)
        return logits, params


# -- training and evaluation ----------------------------------------------------------------
def make_model(cfg: Config) -> STNSegmenter:
    check_config(cfg)
    torch.manual_seed(cfg.seed)
    unet = UNet(1, canvas.N_CLASSES, width=cfg.width)
    if cfg.stn and cfg.stn_encoder:      # on the deepest encoder features (the bottleneck's input)
        unet.encoder_stn = SpatialTransformer(unet.bottom[0].in_channels, kind=cfg.stn_kind)  # type: ignore[arg-type]
    return STNSegmenter(unet, input_transformer(cfg.stn_kind) if cfg.stn else None)


def train(cfg: Config, data: tuple[Tensor, Tensor], *, checkpoint: Path | None = None,
          progress: bool = True) -> tuple[STNSegmenter, dict]:
    """Train on fresh distorted canvases every step; return the model and a summary."""
    (images, labels), _ = canvas.split_digits(data, cfg.n_test_digits, cfg.seed)
    model = make_model(cfg)
    ccfg = CanvasConfig(size=cfg.size)
    # strokes are a few percent of the pixels: without a lower background weight the
    # network learns to call everything background
    class_weights = torch.ones(canvas.N_CLASSES)
    class_weights[0] = cfg.background_weight

    def step_loss(g: torch.Generator):
        c = canvas.make_canvases(images, labels, cfg.batch_size, g, ccfg)
        logits, params = model(c.images)
        ce = F.cross_entropy(logits, c.semantic, weight=class_weights)
        total, parts = ce, {"cross_entropy": float(ce.detach())}
        if params is not None and cfg.equivariance > 0:
            eq = rotation_equivariance_loss(model.stn, c.images, params, g)
            total = total + cfg.equivariance * eq
            parts["equivariance"] = float(eq.detach())
        return total, parts

    history, seconds = fit(model, step_loss, steps=cfg.steps, lr=cfg.lr, seed=cfg.seed,
                           config=asdict(cfg), checkpoint=checkpoint, progress=progress,
                           desc=f"seg {'stn' if cfg.stn else 'plain'}", fmt="warpaint.seg",
                           lr_scales=_stn_lr_scales(model, cfg.stn_lr_scale),
                           resume_ignores=resume_ignores(cfg))
    return model.eval(), summary(model, asdict(cfg), history, seconds)


def _stn_lr_scales(model: STNSegmenter, scale: float) -> dict[str, float]:
    names = [n for n, m in model.named_modules() if isinstance(m, SpatialTransformer)]
    return {n: scale for n in names}


def load(checkpoint: Path) -> tuple[STNSegmenter, dict]:
    """A trained model and its checkpoint (config, history, seconds) from ``seg-train``."""
    return restore(checkpoint, "warpaint.seg", "segmentation", lambda config: make_model(Config(**config)))  # type: ignore[return-value]


@torch.no_grad()
def predict(model: STNSegmenter, images: Tensor, *, batch: int = 50) -> Tensor:
    """Class maps (B, H, W) int64 for (B, C, H, W) images."""
    model.eval()
    return torch.cat([model(images[i: i + batch])[0].argmax(1) for i in range(0, images.shape[0], batch)])


@torch.no_grad()
def evaluate(model: STNSegmenter, canvases: canvas.Canvases) -> dict:
    """Mean IoU over the 11 classes (torchmetrics, accumulated over all canvases) and the
    IoU of "any digit" against background."""
    from torchmetrics.classification import BinaryJaccardIndex, MulticlassJaccardIndex

    pred = predict(model, canvases.images)
    miou = MulticlassJaccardIndex(num_classes=canvas.N_CLASSES, average="macro")(pred, canvases.semantic)
    fg = BinaryJaccardIndex()(pred > 0, canvases.semantic > 0)
    return {"miou": round(float(miou), 4), "digit_iou": round(float(fg), 4)}


#: Colours of the classes in pictures: black background, then one per digit.
PALETTE = torch.tensor([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                        [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230],
                        [210, 245, 60], [250, 190, 212]], dtype=torch.float32) / 255


@torch.no_grad()
def save_predictions(model: STNSegmenter, canvases: canvas.Canvases, path: Path, *, n: int = 6) -> None:
    """PNG: rows of inputs, true class maps, predicted class maps (and, with a transformer,
    its view of each input)."""
    from torchvision.utils import make_grid

    from ..io import save_image

    x = canvases.images[:n]
    rows = [x.expand(-1, 3, -1, -1), PALETTE[canvases.semantic[:n]].permute(0, 3, 1, 2),
            PALETTE[predict(model, x)].permute(0, 3, 1, 2)]
    if model.stn is not None:
        rows.append(model.transform(x)[0].clamp(0, 1).expand(-1, 3, -1, -1))
    grid = make_grid(torch.cat(rows), nrow=x.shape[0], padding=2, pad_value=0.5)
    save_image(F.interpolate(grid[None], scale_factor=2, mode="nearest"), path)
