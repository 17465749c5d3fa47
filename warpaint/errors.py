"""The one error family of warpaint.

Every error a user can cause derives from :class:`WarpaintError`, and each also subclasses
the matching built-in exception, so ``except ValueError`` keeps working. The CLI turns any
``WarpaintError`` into a one-line message and exit code 2.
"""

from __future__ import annotations

import torch
from torch import Tensor


class WarpaintError(Exception):
    """Base class of every error that bad input can cause."""


class InputError(WarpaintError, ValueError):
    """An input file or argument cannot be used (missing, not an image, too large...)."""


class OutputError(WarpaintError, OSError):
    """An output cannot be written (unwritable folder, output equal to an input...)."""


class ShapeError(WarpaintError, ValueError):
    """A tensor argument has the wrong shape."""


def check_image(x: object, name: str = "image") -> None:
    """Check the library's image contract: a float tensor of shape (B, 3, H, W).

    Example:
        >>> check_image(torch.zeros(1, 3, 4, 4))
        >>> check_image(torch.zeros(3, 4, 4))
        Traceback (most recent call last):
        ...
        warpaint.errors.ShapeError: image must have shape (B, 3, H, W), got (3, 4, 4)
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ShapeError(f"{name} must have shape (B, 3, H, W), got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor in [0, 1], got {x.dtype}")
