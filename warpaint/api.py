"""The small public Python API: ``warpaint.stylize(content, style, **options) -> PIL.Image``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, Union

from PIL import Image
from torch import Tensor

from .errors import InputError
from .io import load_image, pil_to_tensor, tensor_to_pil
from .stylize import Callback, StylizeConfig

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
    """Stylize one image and return it as a Pillow image (through the job layer, as the CLI).

    Args:
        content: path, Pillow image or (1, 3, H, W) tensor in [0, 1].
        style: one style image or a list of them (blended, see ``style_blend``).
        callback: called after every optimizer step with a :class:`warpaint.Iterate`.
        original_size: upsample the result to the content image's own resolution.
        **options: any field of :class:`warpaint.StylizeConfig` (``size``, ``steps``,
            ``style_weight``, ``preserve_color``, ...).
    Returns:
        the stylized image (RGB), long side ``size`` (or the content's size).
    Raises:
        WarpaintError: bad input (the outcome's one-line message).
    """
    from .jobs import EngineMethod, Job, read_init, run_job

    cfg = make_config(**options)
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    method = EngineMethod(cfg, [as_tensor(s) for s in styles], init=read_init(cfg))
    outcome = run_job(Job(as_tensor(content), None), method, original_size=original_size,
                      on_step=callback)
    if outcome.exception is not None:
        raise outcome.exception
    return tensor_to_pil(outcome.image)  # type: ignore[arg-type]
