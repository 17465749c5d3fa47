"""Feed-forward style transfer: a style encoder and a transformer network, trained by
warpaint with the engine's losses, stylizing in one forward pass (``--fast``, ``--model``)."""

from __future__ import annotations

from .model import FastStylizer, build, load, shipped_model_path
from .nets import ConditionalInstanceNorm, StyleEncoder, TransformerNet, feature_statistics

__all__ = ["ConditionalInstanceNorm", "FastStylizer", "StyleEncoder", "TransformerNet", "build",
           "feature_statistics", "load", "shipped_model_path"]
