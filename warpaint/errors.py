"""The one error family of warpaint.

Every error a user can cause derives from :class:`WarpaintError`, and each also subclasses
the matching built-in exception, so ``except ValueError`` keeps working. The CLI turns any
``WarpaintError`` into a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

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


class ListError(InputError, argparse.ArgumentTypeError):
    """A comma-separated list that does not parse; as an argparse ``type``, its message is
    shown as it is (not argparse's "invalid <function name> value")."""


class NumericalError(WarpaintError, FloatingPointError):
    """A loss or a result became non-finite (NaN or infinity): nothing is written."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM, acted on between steps; ``exit_code`` is 128 + the signal."""

    def __init__(self, signum: int = 2) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class ResourceError(InputError):
    """The work asked for would need more memory than the device has (or than allowed)."""


def comma_names(value: str | Sequence[str]) -> tuple[str, ...]:
    """A comma-separated string (as from the CLI or a web form) as a tuple of names; a
    sequence is kept as it is."""
    return tuple(v for v in value.split(",") if v) if isinstance(value, str) else tuple(value)


def comma_floats(value: str | Sequence[float]) -> tuple[float, ...]:
    """A comma-separated string of numbers as a tuple of floats; a sequence is kept as it is.

    Example:
        >>> comma_floats("0.7,0.3")
        (0.7, 0.3)
        >>> comma_floats("0.7,x")
        Traceback (most recent call last):
        ...
        warpaint.errors.ListError: expected comma-separated numbers, got '0.7,x'
    """
    if not isinstance(value, str):
        return tuple(value)
    try:
        return tuple(float(v) for v in value.split(",") if v)
    except ValueError:
        raise ListError(f"expected comma-separated numbers, got {value!r}") from None


def check_number(name: str, value: object, *, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, integer: bool = False) -> None:
    """A finite number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``), or an InputError naming it.

    Example:
        >>> check_number("style_weight", 12.0, lo=0)
        >>> check_number("style_weight", float("nan"), lo=0)
        Traceback (most recent call last):
        ...
        warpaint.errors.InputError: style_weight must be a finite number, got nan
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise InputError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise InputError(f"{name} must be {'>' if lo_open else '>='} {lo:g}, got {value:g}")
    if hi is not None and value > hi:
        raise InputError(f"{name} must be <= {hi:g}, got {value:g}")


def check_weights(name: str, values: Sequence[float], *, hi: float = 1e6) -> None:
    """Each of ``values`` a number in [0, ``hi``] and, unless there are none, a positive sum,
    or an InputError naming ``name``: a list of relative weights (layers, styles)."""
    for v in values:
        check_number(name, v, lo=0, hi=hi)
    if values and sum(values) <= 0:
        raise InputError(f"{name} must have a positive sum")


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


def check_pixels(x: object, name: str = "image") -> None:
    """:func:`check_image`, and every value finite and in [0, 1] (what the engine and the
    models take from a caller).

    Example:
        >>> check_pixels(torch.full((1, 3, 2, 2), 0.5))
        >>> check_pixels(torch.full((1, 3, 2, 2), 2.0))
        Traceback (most recent call last):
        ...
        warpaint.errors.InputError: image must hold values in [0, 1], got values in [2, 2]
    """
    check_image(x, name)
    assert isinstance(x, Tensor)
    if x.numel() == 0:
        raise ShapeError(f"{name} is empty: shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{name} holds NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise InputError(f"{name} must hold values in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
