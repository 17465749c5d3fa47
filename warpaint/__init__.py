"""warpaint: neural style transfer with spatial transformer networks.

Public API::

    import warpaint
    img = warpaint.stylize("photo.jpg", "painting.jpg", size=512)   # -> PIL.Image
    engine = warpaint.Stylizer(warpaint.StylizeConfig(size=768))    # reusable, with callback
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import stylize  # noqa: E402
from .errors import (  # noqa: E402
    InputError,
    Interrupted,
    NumericalError,
    OutputError,
    ResourceError,
    ShapeError,
    WarpaintError,
)
from .io import load_image, save_image  # noqa: E402
from .score import Score, score  # noqa: E402
from .stylize import Iterate, StylizeConfig, Stylizer  # noqa: E402

__all__ = [
    "InputError", "Interrupted", "Iterate", "NumericalError", "OutputError", "ResourceError", "Score",
    "ShapeError", "StylizeConfig", "Stylizer",
    "WarpaintError", "__version__", "load_image", "save_image", "score", "stylize",
]
