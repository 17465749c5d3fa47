"""Image files <-> tensors. The only module that touches image files.

Inside warpaint an image is always a float32 tensor of shape (1, 3, H, W), RGB, sRGB-encoded,
in [0, 1]. This module converts from every mode Pillow reads (grayscale, palette, RGBA, CMYK,
16-bit, EXIF-rotated) and writes outputs atomically.
"""

from __future__ import annotations

import io as _io
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from .errors import InputError, OutputError, check_image

PathLike = str | os.PathLike[str]

#: The shortest image side anything in warpaint works on (sizes below it are refused).
MIN_SIDE = 16

#: Default limit on decoded pixels (a guard against decompression bombs): 100 megapixels.
MAX_PIXELS = 100_000_000

#: Extensions of the image files a folder is searched for (content batches, training sets).
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})

#: Extensions we can write, mapped to Pillow format names.
WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                 ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited onto white."""
    if im.mode == "RGB" and "transparency" not in im.info:
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if im.mode in ("P", "L", "RGB") and "transparency" in im.info:  # tRNS chunk / GIF key
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im).convert("RGB")
    return im.convert("RGB")


def pil_to_tensor(im: Image.Image) -> Tensor:
    """A Pillow image of any mode as a (1, 3, H, W) float32 tensor in [0, 1]."""
    a = np.asarray(_to_rgb(im), dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(255.0).unsqueeze(0).contiguous()


def tensor_to_pil(image: Tensor) -> Image.Image:
    """The first image of a (B, 3, H, W) tensor in [0, 1] as an 8-bit RGB Pillow image."""
    check_image(image)
    a = image[0].detach().float().mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0)), "RGB")


def _open(source: PathLike | BinaryIO, max_pixels: int) -> Image.Image:
    # The path as given (a Path's ``.name`` would be the bare file name); a stream's own name.
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else \
        getattr(source, "name", None) or str(source)
    if not isinstance(source, (str, os.PathLike)):
        data = source.read()
        if not data:
            raise InputError(f"{name}: empty input")
        source = _io.BytesIO(data)
    else:
        p = Path(source)
        if not p.exists():
            raise InputError(f"{p}: no such file")
        if p.is_dir():
            raise InputError(f"{p}: is a directory, expected an image file")
        if p.stat().st_size == 0:
            raise InputError(f"{p}: empty file (0 bytes)")
    old = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = max_pixels
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(source)
            if im.width * im.height > max_pixels:
                raise InputError(
                    f"{name}: {im.width}x{im.height} px exceeds the limit of {max_pixels} pixels")
            im.load()  # decode now, so truncated files fail here
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(f"{name}: image too large ({e})") from None
    except UnidentifiedImageError:
        raise InputError(f"{name}: not an image file Pillow can read") from None
    except OSError as e:
        raise InputError(f"{name}: cannot decode image ({e})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old
    return im


def load_pil(source: PathLike | BinaryIO, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read an image file (or binary stream) as an 8-bit RGB Pillow image.

    EXIF orientation is applied; grayscale, palette, CMYK and 16-bit images are converted to
    RGB; transparency is composited onto white.

    Raises:
        InputError: missing, directory, empty, truncated, non-image or over ``max_pixels``.
    """
    im = _open(source, max_pixels)
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a corrupt EXIF block must not stop us
        pass
    return _to_rgb(im)


def load_image(source: PathLike | BinaryIO, *, max_pixels: int = MAX_PIXELS) -> Tensor:
    """Read an image file (or binary stream) as a (1, 3, H, W) float32 sRGB tensor in [0, 1]
    (:func:`load_pil`, then :func:`pil_to_tensor`).

    Raises:
        InputError: missing, directory, empty, truncated, non-image or over ``max_pixels``.
    """
    return pil_to_tensor(load_pil(source, max_pixels=max_pixels))


def fit_long_side(hw: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(H, W) scaled so the longer side equals ``long_side``, aspect ratio kept.

    Example:
        >>> fit_long_side((768, 1024), 512)
        (384, 512)
    """
    h, w = hw
    s = long_side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def resize(image: Tensor, hw: tuple[int, int], *, smooth: bool = False) -> Tensor:
    """Resize (B, C, H, W) images to ``hw`` with bicubic filtering, clamped to [0, 1].

    Shrinking is antialiased. ``smooth`` enlarges with Pillow's bicubic kernel (a = -0.5)
    instead of PyTorch's sharper one (a = -0.75); on the CPU it is also about twice as fast.
    """
    if tuple(image.shape[-2:]) == tuple(hw):
        return image
    down = hw[0] < image.shape[-2] or hw[1] < image.shape[-1]
    out = F.interpolate(image, size=hw, mode="bicubic", align_corners=False, antialias=down or smooth)
    return out.clamp(0.0, 1.0)


def resize_pil(im: Image.Image, hw: tuple[int, int]) -> Image.Image:
    """A Pillow image of any mode as 8-bit RGB resized to ``hw`` = (H, W) with Pillow's
    bicubic filter: the filter of :func:`resize` with ``smooth=True`` (antialiased when
    shrinking), on 8-bit pixels."""
    im = _to_rgb(im)
    if im.size == (hw[1], hw[0]):
        return im
    return im.resize((hw[1], hw[0]), Image.Resampling.BICUBIC)


def resize_long_side(image: Tensor, long_side: int) -> Tensor:
    """Resize (B, C, H, W) images so the longer side is ``long_side`` px, keeping the aspect
    ratio (:func:`resize`)."""
    return resize(image, fit_long_side(tuple(image.shape[-2:]), long_side))  # type: ignore[arg-type]


def resize_pil_long_side(im: Image.Image, long_side: int, *, enlarge: bool = True) -> Image.Image:
    """A Pillow image as 8-bit RGB with its longer side ``long_side`` px (:func:`resize_pil`);
    with ``enlarge=False`` a smaller image is returned as it is."""
    if not enlarge and max(im.size) <= long_side:
        return _to_rgb(im)
    return resize_pil(im, fit_long_side((im.height, im.width), long_side))


def list_images(folder: Path, *, recursive: bool = False) -> list[Path]:
    """The image files (:data:`IMAGE_EXTS`) in ``folder`` (and below it, ``recursive``),
    sorted; an InputError when there are none or the folder is missing."""
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found")
    found = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise InputError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTS))}) in folder")
    return files


def save_image(image: Tensor | Image.Image, dest: PathLike | BinaryIO, *,
               fmt: str | None = None, quality: int = 95) -> None:
    """Write an image atomically: to a temporary file beside ``dest``, then renamed over it.

    Args:
        image: (B, 3, H, W) tensor in [0, 1] (the first image is written) or a Pillow image.
        dest: a path (format from its extension) or a binary stream (PNG unless ``fmt``).
    Raises:
        OutputError: unknown extension, missing or unwritable folder.
    """
    im = image if isinstance(image, Image.Image) else tensor_to_pil(image)
    if not isinstance(dest, (str, os.PathLike)):
        buf = _io.BytesIO()
        im.save(buf, format=fmt or "PNG")
        dest.write(buf.getvalue())
        dest.flush()
        return
    path = Path(dest)
    fmt = fmt or WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"{path}: unknown output extension {path.suffix!r}; "
                          f"use one of {', '.join(sorted(WRITE_FORMATS))}")
    if path.is_dir():
        raise OutputError(f"{path}: is a directory, expected an output file name")
    buf = _io.BytesIO()
    im.save(buf, format=fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))
    write_bytes_atomic(buf.getvalue(), path)


def _umask() -> int:
    """The process's file-creation mask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(data: bytes, dest: PathLike) -> None:
    """Write bytes to ``dest`` atomically: a uniquely named temporary file beside it,
    flushed to disk, then renamed over it (removed if anything fails). Concurrent writers
    never share a temporary file, and readers see the old file or the new one, never half.

    Raises:
        OutputError: missing or unwritable folder.
    """
    path = Path(dest)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{path}: output folder {parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise OutputError(f"{path}: cannot write to {parent} ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())   # the bytes are on disk before the name points at them
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OutputError(f"{path}: cannot write ({e})") from None
        raise


# -- output paths -----------------------------------------------------------------------------
def same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _probe_writable(out: Path) -> None:
    """Fail before any work if ``out``'s folder cannot take a new file (root ignores modes)."""
    try:
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", suffix=".probe"):
            pass
    except OSError as e:
        raise OutputError(f"{out}: cannot write to {out.parent} ({e.strerror or e})") from None


def guard_output(out: str | Path, inputs: Sequence[str], *, what: str = "output",
                 formats: Sequence[str] | None = tuple(WRITE_FORMATS)) -> None:
    """Refuse an output path that is an input file, has an unknown extension (``formats``;
    ``None``: any) or lies in a missing or unwritable folder."""
    path = Path(out)
    for src in inputs:
        if src != "-" and path.exists() and same_file(src, path):
            raise OutputError(f"{out}: {what} is the same file as input {src}; refusing to overwrite "
                              "an input")
    if path.is_dir():
        raise OutputError(f"{out}: {what} is a directory, expected a file name")
    if formats is not None and path.suffix.lower() not in formats:
        raise OutputError(f"{out}: unknown {what} extension; use one of {', '.join(sorted(formats))}")
    if not path.parent.is_dir():
        raise OutputError(f"{out}: {what} folder {path.parent} does not exist")
    _probe_writable(path)


def partial_path(out: str, n: int = 1) -> str:
    """Where an interrupted job's result goes: ``out.partial.png`` beside ``out.png``
    (``out.partial-N.png`` for ``n`` > 1, when that one is taken).

    Example:
        >>> partial_path("results/out.png"), partial_path("out.png", 2)
        ('results/out.partial.png', 'out.partial-2.png')
    """
    p = Path(out)
    return str(p.with_name(f"{p.stem}.partial{'' if n == 1 else f'-{n}'}{p.suffix}"))


def free_partial_path(out: str) -> str:
    """The first :func:`partial_path` of ``out`` that no file has (a partial result never
    replaces a file, finished or not)."""
    n = 1
    while Path(partial_path(out, n)).exists():
        n += 1
    return partial_path(out, n)



def read_pil(src: str, *, long_side: int | None = None) -> Image.Image:
    """An input as 8-bit RGB (``-``: stdin), shrunk (never enlarged) to ``long_side``."""
    im = load_pil(sys.stdin.buffer if src == "-" else src)
    return im if long_side is None else resize_pil_long_side(im, long_side, enlarge=False)


