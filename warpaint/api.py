"""The small public Python API: ``warpaint.stylize(content, style, **options) -> PIL.Image``."""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any, Sequence, Union

from PIL import Image
from torch import Tensor

from .errors import InputError
from .io import load_image, pil_to_tensor, resize, tensor_to_pil
from .stylize import Callback, StylizeConfig, Stylizer

ImageLike = Union[str, "os.PathLike[str]", Image.Image, Tensor]


def as_tensor(image: ImageLike) -> Tensor:
    """A path, Pillow image or (1, 3, H, W) tensor as a (1, 3, H, W) float tensor in [0, 1]."""
    if isinstance(image, Tensor):
        return image if image.ndim == 4 else image.unsqueeze(0)
    if isinstance(image, Image.Image):
        return pil_to_tensor(image)
    return load_image(image)


def make_config(**options: Any) -> StylizeConfig:
    """A :class:`StylizeConfig` from keyword options, rejecting unknown names clearly."""
    known = {f.name for f in fields(StylizeConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"unknown option(s) {unknown}; known: {sorted(known)}")
    return StylizeConfig(**options)


def stylize(content: ImageLike, style: ImageLike | Sequence[ImageLike], *,
            callback: Callback | None = None, original_size: bool = False,
            **options: Any) -> Image.Image:
    """Stylize one image and return it as a Pillow image.

    Args:
        content: path, Pillow image or (1, 3, H, W) tensor in [0, 1].
        style: one style image or a list of them (blended, see ``style_blend``).
        callback: called after every optimizer step with a :class:`warpaint.Iterate`.
        original_size: upsample the result to the content image's own resolution.
        **options: any field of :class:`warpaint.StylizeConfig` (``size``, ``steps``,
            ``style_weight``, ``preserve_color``, ...).
    Returns:
        the stylized image (RGB), long side ``size`` (or the content's size).
    """
    cfg = make_config(**options)
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    c = as_tensor(content)
    out = Stylizer(cfg).run(c, [as_tensor(s) for s in styles], callback=callback)
    if original_size:
        out = resize(out, tuple(c.shape[-2:]))  # type: ignore[arg-type]
    return tensor_to_pil(out)
