"""warpaint: neural style transfer with spatial transformer networks.

Public API::

    import warpaint
    img = warpaint.stylize("photo.jpg", "painting.jpg", size=512)   # -> PIL.Image
    engine = warpaint.Stylizer(warpaint.StylizeConfig(size=768))    # reusable, with callback
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import stylize  # noqa: E402
from .errors import InputError, OutputError, ShapeError, WarpaintError  # noqa: E402
from .io import load_image, save_image  # noqa: E402
from .score import Score, score  # noqa: E402
from .stylize import Iterate, StylizeConfig, Stylizer  # noqa: E402

__all__ = [
    "InputError", "Iterate", "OutputError", "Score", "ShapeError", "StylizeConfig", "Stylizer",
    "WarpaintError", "__version__", "load_image", "save_image", "score", "stylize",
]
