"""Built-in default images for ``warpaint demo``: nothing is downloaded.

* content: ``grace_hopper.jpg``, the portrait photo that ships inside matplotlib (a
  dependency) as sample data;
* style: a "swirling night" painting that warpaint paints itself: thousands of short
  brush strokes that follow a field of vortices, in a blue and yellow palette.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from torch import Tensor

from .io import load_image, pil_to_tensor

_PALETTE = np.array([
    (16, 36, 92), (28, 62, 140), (46, 94, 170), (84, 132, 196), (150, 182, 210),
    (232, 212, 92), (246, 232, 150), (200, 160, 40), (20, 28, 40),
], dtype=np.float64)


def demo_content_path() -> Path:
    """Path of the default content photo (matplotlib's sample ``grace_hopper.jpg``)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def demo_content() -> Tensor:
    """The default content photo as a (1, 3, H, W) tensor."""
    return load_image(demo_content_path())


def _flow(x: np.ndarray, y: np.ndarray, vortices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit direction of a field made of a few vortices plus a gentle horizontal drift."""
    u = np.full_like(x, 0.35)
    v = 0.15 * np.sin(x * 6.0)
    for cx, cy, strength, radius in vortices:
        dx, dy = x - cx, y - cy
        r2 = dx * dx + dy * dy + 1e-4
        k = strength * np.exp(-r2 / (2 * radius * radius)) / np.sqrt(r2)
        u, v = u - k * dy, v + k * dx
    n = np.sqrt(u * u + v * v) + 1e-9
    return u / n, v / n


def make_style_image(width: int = 640, height: int = 480, *, seed: int = 0,
                     strokes: int = 9000) -> Image.Image:
    """Paint the default style image: brush strokes along a vortex field.

    Deterministic for a given seed and size.

    Example:
        >>> make_style_image(64, 48, strokes=50).size
        (64, 48)
    """
    rng = np.random.default_rng(seed)
    aspect = width / height
    vortices = np.array([(rng.uniform(0.1, aspect - 0.1), rng.uniform(0.15, 0.6),
                          rng.choice([-1.0, 1.0]) * rng.uniform(0.8, 1.6), rng.uniform(0.08, 0.2))
                         for _ in range(5)])
    yy, xx = np.mgrid[0:height, 0:width] / height
    sky = 1.0 - yy  # darker towards the bottom
    base = (_PALETTE[0] * (1 - sky[..., None]) + _PALETTE[2] * sky[..., None]).astype(np.uint8)
    im = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(im)
    scale = height / 480
    # Integrate every stroke along the field at once: (strokes, points) arrays.
    n_pts = 9
    xs = np.empty((strokes, n_pts))
    ys = np.empty((strokes, n_pts))
    xs[:, 0], ys[:, 0] = rng.uniform(0, aspect, strokes), rng.uniform(0, 1, strokes)
    step = rng.uniform(3, 7, strokes) * scale / height
    for k in range(1, n_pts):
        u, v = _flow(xs[:, k - 1], ys[:, k - 1], vortices)
        xs[:, k], ys[:, k] = xs[:, k - 1] + u * step, ys[:, k - 1] + v * step
    lengths = rng.integers(5, n_pts + 1, strokes)
    widths = np.maximum(1, (rng.uniform(2, 5, strokes) * scale).astype(int))
    # Colour: yellows near vortex centres, near-black low down, blues elsewhere.
    d = np.min([np.hypot(xs[:, 0] - cx, ys[:, 0] - cy) / r for cx, cy, _, r in vortices], axis=0)
    pick = np.where((d < 0.6) & (rng.random(strokes) < 0.8), rng.integers(5, 8, strokes),
                    np.where((ys[:, 0] > 0.8) & (rng.random(strokes) < 0.6), 8,
                             rng.integers(0, 5, strokes)))
    cols = np.clip(_PALETTE[pick] + rng.normal(0, 12, (strokes, 3)), 0, 255).astype(int)
    for i in range(strokes):
        pts = list(zip((xs[i, :lengths[i]] * height).tolist(), (ys[i, :lengths[i]] * height).tolist(),
                       strict=True))
        draw.line(pts, fill=tuple(cols[i].tolist()), width=int(widths[i]), joint="curve")
    return im.filter(ImageFilter.SMOOTH)


def demo_style() -> Tensor:
    """The default style painting as a (1, 3, H, W) tensor."""
    return pil_to_tensor(make_style_image())


def save_demo_inputs(folder: Path, content: Image.Image, style: Image.Image, *,
                     keep: list[str | Path]) -> list[Path]:
    """Write the demo's two images into ``folder`` (made if needed) as ``demo_content.png``
    and ``demo_style.png``; an OutputError, before anything is written, when ``folder`` is a
    file or either name is one of the ``keep`` files (the run's outputs)."""
    from .errors import OutputError
    from .io import guard_output, same_file, save_image

    paths = [folder / "demo_content.png", folder / "demo_style.png"]
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: --save-inputs must be a folder, not a file")
    for p in paths:
        if any(k != "-" and same_file(p, k) for k in keep):
            raise OutputError(f"{p}: --save-inputs would write over an output of this run; "
                              "choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    for p in paths:
        guard_output(p, [])
    save_image(content, paths[0])
    save_image(style, paths[1])
    return paths
