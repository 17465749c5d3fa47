"""A spatial transformer ahead of torchvision's Faster R-CNN, on cluttered digit canvases.

:class:`STNDetector` runs a :class:`~warpaint.stn.SpatialTransformer` on the image, the
detector on the transformed image, and maps the predicted boxes back to the original
image through the transform (a turned box becomes the axis-aligned box of its corners), so
callers only ever see original-image coordinates. No pretrained weights exist here: the
backbone is small and trained from scratch (:func:`make_detector`).

Training targets in the transformer's frame are exact: each digit's stroke mask is warped
with the transformer's own sampling grid and its tight box taken (boxes alone are mapped
through the transform when masks are not given).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.rpn import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from ..stn.geometry import sample, to_pixel_transform, transform_boxes
from ..stn.transformer import SpatialTransformer, rotation_equivariance_loss
from ..training import fit, restore, summary
from . import canvas
from .canvas import STROKE, CanvasConfig, boxes_from_masks
from .common import DetectionConfig as Config  # noqa: F401  (the app's options)
from .common import (  # noqa: F401  (check_config, input_transformer, resume_ignores: re-exported)
    check_config,
    check_invertible_transformer,
    input_transformer,
    resume_ignores,
)


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


def small_backbone(in_channels: int = 1, width: int = 32) -> nn.Sequential:
    """A from-scratch backbone with stride 8 and ``3 * width`` output channels."""
    net = nn.Sequential(_conv(in_channels, width, 2), _conv(width, width),
                        _conv(width, 2 * width, 2), _conv(2 * width, 2 * width),
                        _conv(2 * width, 3 * width, 2), _conv(3 * width, 3 * width))
    net.out_channels = 3 * width  # type: ignore[assignment]
    return net


def make_detector(in_channels: int = 1, *, size: int = 128, num_classes: int = canvas.N_CLASSES,
                  width: int = 32) -> FasterRCNN:
    """torchvision's Faster R-CNN with :func:`small_backbone`, sized for digits of 15-40 px.

    Images are resized so their short side is ``size`` (at most ``4 * size`` long).
    """
    backbone = small_backbone(in_channels, width)
    anchors = AnchorGenerator(sizes=((16, 24, 36),), aspect_ratios=((0.5, 1.0, 2.0),))
    c = backbone.out_channels
    return FasterRCNN(
        backbone, num_classes=None, min_size=size, max_size=4 * size,
        image_mean=[0.5] * in_channels, image_std=[0.25] * in_channels,
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=1),
        box_head=TwoMLPHead(c * 49, 256), box_predictor=FastRCNNPredictor(256, num_classes),
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=150,
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=128, box_batch_size_per_image=32,
        box_detections_per_img=20, box_score_thresh=0.01)


def boxes_to_source(boxes: Tensor, theta: Tensor, src_size: tuple[int, int],
                    dst_size: tuple[int, int], *, align_corners: bool = False) -> Tensor:
    """Map boxes (N, 4) of a transformer's output back into its input image.

    ``theta`` (2, 3) or (3, 3) maps normalized output coordinates to input coordinates (the
    transformer's parameters), so it is applied to the corners directly; boxes use pixel
    edges (pixel ``i`` covers ``[i, i + 1)``), matrices pixel centres, hence the half pixel.
    The result is the axis-aligned box of the four moved corners.
    """
    m = to_pixel_transform(theta[None].to(boxes.dtype), src_size, dst_size, align_corners=align_corners)
    return transform_boxes(m, boxes[None] - 0.5)[0] + 0.5


def clip_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    h, w = size
    return torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                        boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], 1)


class STNDetector(nn.Module):
    """Optional :class:`SpatialTransformer` + Faster R-CNN, in original-image coordinates.

    ``forward(images, targets=None)`` takes (B, C, H, W) images (any size, any batch). In
    training mode it returns torchvision's loss dict (plus ``"stn_params"``, the
    transformer's parameters, when there is one); in eval mode a list of
    ``{"boxes", "labels", "scores"}`` in original-image pixels, as torchvision's detector.
    """

    def __init__(self, detector: FasterRCNN, stn: SpatialTransformer | None = None) -> None:
        super().__init__()
        check_invertible_transformer(stn, "boxes")
        self.detector = detector
        self.stn = stn

    def transform(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """The transformer's view of ``images`` and its parameters (``None`` without one)."""
        if self.stn is None:
            return images, None
        return self.stn(images)

    def targets_in_view(self, targets: list[dict[str, Tensor]], params: Tensor,
                        size: tuple[int, int]) -> list[dict[str, Tensor]]:
        """Targets in the transformer's output frame: the tight boxes of the masks warped with
        the transformer's grid (to about a pixel: the 0/1 masks are resampled), or, without
        masks, each box mapped through the inverse transform (the box of its corners)."""
        assert self.stn is not None
        params = params.detach()
        grid, out = self.stn.grid(params, size), []
        for i, t in enumerate(targets):
            if "masks" in t:
                m = sample(t["masks"][:, None].float(), grid[i: i + 1].expand(len(t["masks"]), -1, -1, -1),
                           padding_mode="zeros", align_corners=self.stn.align_corners)[:, 0] > STROKE
                keep = m.flatten(1).sum(1) >= 4
                boxes, labels = boxes_from_masks(m[keep]), t["labels"][keep]
            else:
                inv = self.stn.inverse(params[i: i + 1])[0]
                boxes = clip_boxes(boxes_to_source(t["boxes"], inv, size, size), size)
                keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
                boxes, labels = boxes[keep], t["labels"][keep]
            out.append({"boxes": boxes.to(grid.device), "labels": labels.to(grid.device)})
        return out

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None):
        view, params = self.transform(images)
        size = (images.shape[-2], images.shape[-1])
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            if params is not None:
                targets = self.targets_in_view(targets, params, size)
            else:
                targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
            losses = self.detector(list(view), targets)
            if params is not None:
                losses["stn_params"] = params
            return losses
        dets = self.detector(list(view))
        if params is None:
            return dets
        view_size = (view.shape[-2], view.shape[-1])
        return [{**d, "boxes": clip_boxes(boxes_to_source(d["boxes"], p, size, view_size,
                                                          align_corners=self.stn.align_corners), size)}
                for d, p in zip(dets, params.detach(), strict=True)]


# -- training and evaluation ----------------------------------------------------------------
def make_model(cfg: Config) -> STNDetector:
    check_config(cfg)
    torch.manual_seed(cfg.seed)
    stn = input_transformer(cfg.stn_kind) if cfg.stn else None
    return STNDetector(make_detector(1, size=cfg.size, width=cfg.width), stn)


def train(cfg: Config, data: tuple[Tensor, Tensor], *, checkpoint: Path | None = None,
          progress: bool = True) -> tuple[STNDetector, dict]:
    """Train on fresh distorted canvases every step; return the model and a summary."""
    (images, labels), _ = canvas.split_digits(data, cfg.n_test_digits, cfg.seed)
    model = make_model(cfg)
    ccfg = CanvasConfig(size=cfg.size)

    def step_loss(g: torch.Generator):
        c = canvas.make_canvases(images, labels, cfg.batch_size, g, ccfg)
        losses = model(c.images, c.targets())
        params = losses.pop("stn_params", None)
        total = sum(losses.values())
        parts = {k.removeprefix("loss_"): float(v.detach()) for k, v in losses.items()}
        if params is not None and cfg.equivariance > 0:
            eq = rotation_equivariance_loss(model.stn, c.images, params, g)
            total = total + cfg.equivariance * eq
            parts["equivariance"] = float(eq.detach())
        return total, parts

    history, seconds = fit(model, step_loss, steps=cfg.steps, lr=cfg.lr, seed=cfg.seed,
                           config=asdict(cfg), checkpoint=checkpoint, progress=progress,
                           desc=f"detect {'stn' if cfg.stn else 'plain'}", fmt="warpaint.detect",
                           resume_ignores=resume_ignores(cfg))
    return model.eval(), summary(model, asdict(cfg), history, seconds)


def load(checkpoint: Path) -> tuple[STNDetector, dict]:
    """A trained model and its checkpoint (config, history, seconds) from ``detect-train``."""
    return restore(checkpoint, "warpaint.detect", "detection", lambda config: make_model(Config(**config)))  # type: ignore[return-value]


@torch.no_grad()
def evaluate(model: STNDetector, canvases: canvas.Canvases, *, batch: int = 25) -> dict:
    """mAP@0.5 (torchmetrics, COCO-style 101-point interpolation) over the canvases."""
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(iou_type="bbox", iou_thresholds=[0.5])
    model.eval()
    for i in range(0, canvases.images.shape[0], batch):
        dets = model(canvases.images[i: i + batch])
        truth = [{"boxes": b, "labels": lab + 1}
                 for b, lab in zip(canvases.boxes[i: i + batch], canvases.labels[i: i + batch], strict=True)]
        metric.update([{k: d[k] for k in ("boxes", "scores", "labels")} for d in dets], truth)
    out = metric.compute()
    return {"map_50": round(float(out["map_50"]), 4), "mar_100": round(float(out["mar_100"]), 4)}


@torch.no_grad()
def save_predictions(model: STNDetector, canvases: canvas.Canvases, path: Path, *, n: int = 6,
                     min_score: float = 0.5) -> None:
    """PNG: the canvases with true boxes (green) and predictions (red, with labels); with a
    transformer, a second row shows its view of each canvas."""
    from torchvision.utils import draw_bounding_boxes, make_grid

    from ..io import save_image

    model.eval()
    x = canvases.images[:n]
    dets = model(x)
    tiles = []
    for i in range(x.shape[0]):
        img = (x[i].expand(3, -1, -1) * 255).to(torch.uint8)
        img = draw_bounding_boxes(img, canvases.boxes[i], colors="lime")
        keep = dets[i]["scores"] >= min_score
        names = [str(int(v) - 1) for v in dets[i]["labels"][keep]]
        tiles.append(draw_bounding_boxes(img, dets[i]["boxes"][keep], names, colors="red").float() / 255)
    if model.stn is not None:
        view = model.transform(x)[0].clamp(0, 1)
        tiles += [v.expand(3, -1, -1) for v in view]
    grid = make_grid(tiles, nrow=x.shape[0], padding=2, pad_value=0.5)
    save_image(torch.nn.functional.interpolate(grid[None], scale_factor=2, mode="nearest"), path)
