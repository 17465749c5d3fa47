"""Image files <-> tensors. The only module that touches image files.

Inside warpaint an image is always a float32 tensor of shape (1, 3, H, W), RGB, sRGB-encoded,
in [0, 1]. This module converts from every mode Pillow reads (grayscale, palette, RGBA, CMYK,
16-bit, EXIF-rotated), converts an embedded ICC profile to sRGB (Pillow's ImageCms), and writes
outputs atomically. A content file's alpha channel and 16-bit samples are kept apart from that
contract (:func:`read_content`, :class:`Loaded`) and written back by :func:`save_image`.
"""

from __future__ import annotations

import io as _io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError
from torch import Tensor

from .errors import InputError, NumericalError, OutputError, check_image

PathLike = str | os.PathLike[str]
BitDepth = Literal["auto", "8", "16"]
log = logging.getLogger(__name__)

#: The shortest image side anything in warpaint works on (sizes below it are refused).
MIN_SIDE = 16

#: Default limit on decoded pixels (a guard against decompression bombs): 100 megapixels.
MAX_PIXELS = 100_000_000

#: Extensions of the image files a folder is searched for (content batches, training sets).
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})

#: Extensions we can write, mapped to Pillow format names.
WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                 ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}

#: The formats we write with an alpha channel (the others get it composited onto white).
ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})

#: The formats we write with 16 bits per sample (PNG through pypng, TIFF through tifffile).
DEEP_FORMATS = frozenset({"PNG", "TIFF"})


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


def pil_to_pixels(im: Image.Image) -> Tensor:
    """A Pillow image of any mode as (1, 3, H, W) uint8 RGB (its pixels copied once; stored
    channels-last, as Pillow holds them)."""
    return torch.from_numpy(np.array(_to_rgb(im), dtype=np.uint8)).permute(2, 0, 1)[None]


def pixels_to_pil(pixels: Tensor) -> Image.Image:
    """The first image of (B, 3, H, W) uint8 RGB as a Pillow image."""
    return Image.fromarray(pixels[0].permute(1, 2, 0).contiguous().cpu().numpy(), "RGB")


def pixels_to_tensor(pixels: Tensor) -> Tensor:
    """(B, 3, H, W) uint8 -> float32 in [0, 1], in the usual (contiguous) layout (one copy)."""
    return pixels.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)


def tensor_to_pixels(image: Tensor) -> Tensor:
    """The first image of a (B, 3, H, W) tensor in [0, 1] (any device) as (1, 3, H, W) uint8
    on the CPU, rounded."""
    check_image(image)
    return image[:1].detach().float().mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).cpu()


def resize_pixels(pixels: Tensor, hw: tuple[int, int]) -> Tensor:
    """(B, 3, H, W) uint8 resized to ``hw`` = (H, W) with Pillow's bicubic filter
    (antialiased when shrinking): PyTorch's 8-bit kernel for it, on all its threads, the
    pixels of Pillow's ``Image.resize`` but for rounding (at most 2 levels, on under 0.5 %
    of pixels); on this project's 2-core CPU 1.5-1.9x faster (a 1024 x 768 px photo to 640
    px: 13.3 -> 7.1 ms). CPU tensors (PyTorch has this 8-bit kernel on the CPU only); pixels of
    the size asked for are returned as they are."""
    if tuple(pixels.shape[-2:]) == tuple(hw):
        return pixels
    return F.interpolate(pixels, size=hw, mode="bicubic", align_corners=False, antialias=True)


def pil_to_tensor(im: Image.Image) -> Tensor:
    """A Pillow image of any mode as a (1, 3, H, W) float32 tensor in [0, 1]."""
    return pixels_to_tensor(pil_to_pixels(im))


def tensor_to_pil(image: Tensor) -> Image.Image:
    """The first image of a (B, 3, H, W) tensor in [0, 1] as an 8-bit RGB Pillow image."""
    return pixels_to_pil(tensor_to_pixels(image))


def _sample_bits(im: Image.Image) -> int:
    """Bits per sample in the file behind a not yet loaded Pillow image: 16 or 8 (Pillow
    decodes 16-bit RGB and RGBA to 8 bits; its tile's raw mode still says ``;16``)."""
    if im.mode.startswith("I;16"):
        return 16
    args = im.tile[0][3] if im.tile else ""
    raw = args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else "")
    return 16 if ";16" in raw else 8


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation of a not yet loaded image (1: upright). Read before decoding:
    Pillow's TIFF reader turns an image upright as it decodes and then drops the tag."""
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a corrupt EXIF block must not stop us
        return 1


def _open(source: PathLike | BinaryIO, max_pixels: int) -> tuple[Image.Image, int, int]:
    """The decoded image, the bits per sample of its file (:func:`_sample_bits`) and its
    EXIF orientation as stored (:func:`_orientation`)."""
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
            bits = _sample_bits(im)
            orientation = _orientation(im) if bits == 16 else 1
            im.load()  # decode now, so truncated files fail here
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{name}: image too large (over the limit of {max_pixels} pixels)") from None
    except UnidentifiedImageError:
        raise InputError(f"{name}: not an image file Pillow can read") from None
    except OSError as e:
        raise InputError(f"{name}: cannot decode image ({e})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old
    return im, bits, orientation


def load_pil(source: PathLike | BinaryIO, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read an image file (or binary stream) as an 8-bit RGB Pillow image.

    EXIF orientation is applied; an embedded ICC profile is converted to sRGB; grayscale,
    palette, CMYK and 16-bit images are converted to RGB; transparency is composited onto
    white. (:func:`read_content` keeps the alpha channel and 16-bit samples instead.)

    Raises:
        InputError: missing, directory, empty, truncated, non-image or over ``max_pixels``.
    """
    im, _, _ = _open(source, max_pixels)
    im, _ = to_srgb(_exif_transpose(im), name=_name_of(source))
    return _to_rgb(im)


def _exif_transpose(im: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a corrupt EXIF block must not stop us
        return im


def _name_of(source: PathLike | BinaryIO) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "stdin")


# -- colour: ICC profiles, alpha, 16 bits ----------------------------------------------------
#: The colour space of each Pillow mode ImageCms can convert from, as ICC names it.
_SPACE_OF_MODE = {"RGB": "RGB", "RGBA": "RGB", "RGBX": "RGB", "P": "RGB", "PA": "RGB", "L": "GRAY",
                  "LA": "GRAY", "I;16": "GRAY", "I;16B": "GRAY", "I;16L": "GRAY", "I;16N": "GRAY",
                  "CMYK": "CMYK"}
#: The Pillow mode ImageCms converts from, per ICC colour space.
_MODE_OF_SPACE = {"RGB": "RGB", "GRAY": "L", "CMYK": "CMYK"}


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def _icc_plan(im: Image.Image, name: str) -> tuple[ImageCms.ImageCmsProfile | None, str | None]:
    """The profile to convert ``im`` from (None: nothing to convert) and the note for it
    (:func:`to_srgb`); warns about a profile it ignores."""
    data = im.info.get("icc_profile")
    if not data:
        return None, None
    try:
        profile = ImageCms.ImageCmsProfile(_io.BytesIO(data))
        desc = (profile.profile.profile_description or "unnamed profile").strip()
        space = profile.profile.xcolor_space.strip()
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        log.warning("%s: ignoring its embedded ICC profile (cannot read it: %s); taking it as sRGB", name, e)
        return None, "ignored: unreadable profile"
    if desc.lower().startswith("srgb"):
        return None, f"{desc} (sRGB, kept)"
    if _SPACE_OF_MODE.get(im.mode) != space:
        log.warning("%s: ignoring its embedded ICC profile %r (a %s profile for %s pixels); taking it as "
                    "sRGB", name, desc, space, im.mode)
        return None, f"ignored: {desc} ({space} profile, {im.mode} pixels)"
    return profile, desc


def to_srgb(im: Image.Image, *, name: str = "image") -> tuple[Image.Image, str | None]:
    """``im`` with its embedded ICC profile (``im.info["icc_profile"]``) converted to sRGB
    (Pillow's ImageCms, the profile's own rendering intent, black-point compensation), and
    what was done: ``"converted <description> -> sRGB"``, ``"<description> (sRGB, kept)"``,
    or ``"ignored: ..."``; ``None`` when there is no profile (the image is returned as is).

    A converted image is 8-bit ``RGB`` (``RGBA`` when ``im`` has transparency, which is
    kept). A profile that cannot be read, or whose colour space does not match the pixels, is
    ignored with a warning: the pixels are then taken as sRGB, as without a profile.
    """
    profile, note = _icc_plan(im, name)
    if profile is None:
        return im, note
    space = profile.profile.xcolor_space.strip()
    alpha = im.convert("RGBA").getchannel("A") if _has_alpha(im) else None
    base = _to_rgb(im).convert("L") if im.mode.startswith("I;16") else im.convert(_MODE_OF_SPACE[space])
    try:
        out = ImageCms.profileToProfile(base, profile, ImageCms.createProfile("sRGB"),
                                        renderingIntent=ImageCms.getDefaultIntent(profile), outputMode="RGB",
                                        flags=ImageCms.Flags.BLACKPOINTCOMPENSATION)
    except ImageCms.PyCMSError as e:
        log.warning("%s: ignoring its embedded ICC profile %r (%s); taking it as sRGB", name, note, e)
        return im, f"ignored: {note} ({e})"
    assert out is not None  # profileToProfile returns None only with inPlace=True
    if alpha is not None:
        out.putalpha(alpha)
    log.info("%s: converted its ICC profile %r to sRGB", name, note)
    return out, f"converted {note} -> sRGB"


@dataclass(frozen=True)
class Loaded:
    """A content file as :func:`read_content` reads it: the colour image under the image
    contract, and what the file had beyond it.

    Attributes:
        image: 8-bit RGB Pillow image; a (1, 3, H, W) float32 tensor in [0, 1] when the file
            has 16 bits per sample (its full precision).
        alpha: (1, 1, H, W) float32 tensor in [0, 1], the file's transparency (alpha channel,
            palette or colour-key tRNS); None when the file has none or it is fully opaque.
        bit_depth: bits per sample of the file's pixels as read: 8 or 16.
        icc: what happened to an embedded ICC profile (:func:`to_srgb`), None without one.
    """

    image: Image.Image | Tensor
    alpha: Tensor | None = None
    bit_depth: int = 8
    icc: str | None = None


#: EXIF orientation -> the Pillow transpose that undoes it (as in ImageOps.exif_transpose).
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, C) samples turned upright by their EXIF ``orientation``: Pillow transposes an
    image of pixel indices, which then gathers the samples."""
    method = _ORIENTATION.get(orientation)
    if method is None:
        return a
    h, w, c = a.shape
    idx = np.asarray(Image.fromarray(np.arange(h * w, dtype=np.int32).reshape(h, w)).transpose(method))
    return a.reshape(h * w, c)[idx.ravel()].reshape(*idx.shape, c)


def _read_deep(data: BinaryIO, fmt: str | None, name: str) -> np.ndarray | None:
    """The 16-bit samples of a PNG (pypng) or TIFF (tifffile, first page) as (H, W, C) uint16,
    C = 1 (gray), 2 (gray, alpha), 3 (RGB) or 4 (RGBA); None for a layout we do not read
    this way (Pillow's 8-bit reading is used instead)."""
    data.seek(0)
    if fmt == "PNG":
        import png

        try:
            w, h, rows, info = png.Reader(file=data).asDirect()  # tRNS becomes an alpha channel
            a = np.array([np.asarray(r, dtype=np.uint16) for r in rows], dtype=np.uint16)
        except (png.Error, ValueError, EOFError) as e:
            raise InputError(f"{name}: cannot decode 16-bit PNG ({e})") from None
        if info["bitdepth"] <= 8:
            return None
        if info["bitdepth"] < 16:   # an sBIT chunk: pypng gives the significant bits; back to 16
            a = np.round(a * (65535.0 / (2 ** info["bitdepth"] - 1))).astype(np.uint16)
        return a.reshape(h, w, info["planes"])
    if fmt == "TIFF":
        import tifffile

        try:
            with tifffile.TiffFile(data) as tif:
                page = tif.pages.first
                if str(page.photometric.name) not in ("RGB", "MINISBLACK"):
                    return None
                if 1 in tuple(page.extrasamples or ()):   # premultiplied alpha: Pillow's reading
                    return None
                a, axes = page.asarray(), page.axes
        except Exception as e:  # noqa: BLE001 - tifffile raises many kinds; all mean a bad file
            raise InputError(f"{name}: cannot decode 16-bit TIFF ({e})") from None
        if a.dtype != np.uint16 or set(axes) - set("YXS") or a.ndim != len(axes):
            return None
        a = a.transpose([axes.index(k) for k in "YXS" if k in axes])
        return a[..., None] if a.ndim == 2 else a
    return None


def _from_deep(a: np.ndarray) -> tuple[Tensor, Tensor | None]:
    """(H, W, C) uint16 samples as a (1, 3, H, W) colour tensor and a (1, 1, H, W) alpha
    tensor (None without alpha), float32 in [0, 1]."""
    x = torch.from_numpy(a.astype(np.float32) / 65535.0).permute(2, 0, 1).unsqueeze(0).contiguous()
    c = x.shape[1]
    rgb = x[:, :3] if c >= 3 else x[:, :1].expand(-1, 3, -1, -1).contiguous()
    alpha = x[:, c - 1:] if c in (2, 4) else None
    return rgb, alpha


def _alpha_tensor(alpha: Image.Image) -> Tensor | None:
    """An 8-bit ``L`` alpha band as a (1, 1, H, W) float32 tensor; None when fully opaque."""
    a = np.asarray(alpha, dtype=np.uint8)
    if a.min() == 255:
        return None
    return torch.from_numpy(a.astype(np.float32) / 255.0)[None, None].contiguous()


def read_content(src: str, *, max_pixels: int = MAX_PIXELS) -> Loaded:
    """A content file (``-``: stdin) with its transparency and full precision kept.

    EXIF orientation is applied and an ICC profile converted to sRGB (:func:`to_srgb`) as in
    :func:`load_pil`, but: the colour of transparent pixels is kept as stored (not composited
    onto white), and the alpha channel is returned beside it; a PNG or TIFF with 16 bits per
    sample is read at full precision into a float tensor (except when an ICC profile has to
    be converted: Pillow's ImageCms works on 8-bit RGB, so that image has 8 bits).

    Raises:
        InputError: missing, directory, empty, truncated, non-image or over ``max_pixels``.
    """
    source: PathLike | BinaryIO = src
    name = src
    if src == "-":
        source, name = _io.BytesIO(sys.stdin.buffer.read()), "stdin"
        source.name = "stdin"  # type: ignore[attr-defined]
    im, bits, orientation = _open(source, max_pixels)
    if bits == 16 and im.format in DEEP_FORMATS:
        profile, note = _icc_plan(im, name)
        if profile is None:   # no profile to convert: the 16 bits are kept
            if isinstance(source, _io.BytesIO):
                a = _read_deep(source, im.format, name)
            else:
                with open(source, "rb") as f:
                    a = _read_deep(f, im.format, name)
            if a is not None:
                rgb, alpha = _from_deep(_orient(a, orientation))
                if alpha is not None and bool((alpha >= 1).all()):
                    alpha = None
                return Loaded(rgb, alpha, 16, note)
    im, note = to_srgb(_exif_transpose(im), name=name)
    if note is not None and note.startswith("converted") and bits == 16:
        note += " (at 8 bits per sample: ImageCms has no 16-bit RGB)"
        log.warning("%s: 16-bit image with an ICC profile: converted to sRGB at 8 bits per sample", name)
    if not _has_alpha(im):
        return Loaded(_to_rgb(im), None, 8, note)
    rgba = _to_rgb(im) if im.mode.startswith("I;16") else im.convert("RGBA")
    alpha = _alpha_tensor(rgba.getchannel("A")) if rgba.mode == "RGBA" else None
    return Loaded(rgba.convert("RGB"), alpha, 8, note)


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
    bicubic filter (:func:`resize_pixels`): the filter of :func:`resize` with
    ``smooth=True`` (antialiased when shrinking), on 8-bit pixels."""
    im = _to_rgb(im)
    if im.size == (hw[1], hw[0]):
        return im
    return pixels_to_pil(resize_pixels(pil_to_pixels(im), hw))


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


def output_format(dest: PathLike | BinaryIO, fmt: str | None = None) -> str | None:
    """The Pillow format name ``save_image`` writes ``dest`` in: ``fmt``, else from the
    path's extension (None: unknown); a stream or ``-`` (stdout) gets PNG."""
    if fmt is not None:
        return fmt
    if not isinstance(dest, (str, os.PathLike)) or os.fspath(dest) == "-":
        return "PNG"
    return WRITE_FORMATS.get(Path(dest).suffix.lower())


def check_bit_depth(bit_depth: BitDepth | int, dest: PathLike | BinaryIO) -> None:
    """An InputError when ``dest``'s format cannot hold ``bit_depth`` (16: PNG and TIFF)."""
    fmt = output_format(dest)
    if str(bit_depth) == "16" and fmt is not None and fmt not in DEEP_FORMATS:
        raise InputError(f"{os.fspath(dest) if isinstance(dest, (str, os.PathLike)) else 'output'}: "
                         f"{fmt} cannot hold 16 bits per sample; write .png or .tif, or use --bit-depth 8")


def _samples(image: Tensor | Image.Image, alpha: Tensor | None, bits: int) -> np.ndarray:
    """(H, W, 3 or 4) uint8 or uint16 samples of an RGB image and its (1, 1, H, W) alpha."""
    x = pil_to_tensor(image) if isinstance(image, Image.Image) else image[:1].detach().float().cpu()
    if alpha is not None:
        x = torch.cat([x, alpha[:1].detach().float().cpu()], dim=1)
    top = 65535.0 if bits == 16 else 255.0
    a = x[0].mul(top).add_(0.5).clamp_(0, top).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(a.astype(np.uint16 if bits == 16 else np.uint8))


def _encode_deep(a: np.ndarray, fmt: str) -> bytes:
    """(H, W, 3 or 4) uint16 samples as a 16-bit PNG (pypng) or zlib TIFF (tifffile)."""
    buf = _io.BytesIO()
    h, w, c = a.shape
    if fmt == "PNG":
        import png

        png.Writer(w, h, greyscale=False, alpha=c == 4, bitdepth=16).write(buf, a.reshape(h, w * c))
    else:
        import tifffile

        tifffile.imwrite(buf, a, photometric="rgb", compression="zlib",
                         extrasamples=("unassalpha",) if c == 4 else None)
    return buf.getvalue()


def save_image(image: Tensor | Image.Image, dest: PathLike | BinaryIO, *,
               fmt: str | None = None, quality: int = 95, alpha: Tensor | None = None,
               bit_depth: int = 8) -> None:
    """Write an image atomically: to a temporary file beside ``dest``, then renamed over it.

    Args:
        image: (B, 3, H, W) tensor in [0, 1] (the first image is written) or a Pillow image.
        dest: a path (format from its extension) or a binary stream (PNG unless ``fmt``).
        alpha: (B, 1, H, W) alpha in [0, 1] of ``image``'s size: written as an alpha channel
            in PNG, WebP and TIFF, composited onto white (with a warning) in JPEG and BMP.
        bit_depth: 8, or 16 for PNG and TIFF.
    Raises:
        OutputError: unknown extension, missing or unwritable folder, 16 bits in a format
            that cannot hold them.
        NumericalError: ``image`` or ``alpha`` holds NaN or infinite values (nothing written).
    """
    for t in (image, alpha):
        if isinstance(t, Tensor) and not bool(torch.isfinite(t).all()):
            raise NumericalError("the image holds NaN or infinite values; nothing was written")
    path = Path(dest) if isinstance(dest, (str, os.PathLike)) else None
    fmt = fmt or ("PNG" if path is None else WRITE_FORMATS.get(path.suffix.lower()))
    if path is not None and fmt is None:
        raise OutputError(f"{path}: unknown output extension {path.suffix!r}; "
                          f"use one of {', '.join(sorted(WRITE_FORMATS))}")
    if path is not None and path.is_dir():
        raise OutputError(f"{path}: is a directory, expected an output file name")
    if bit_depth not in (8, 16) or (bit_depth == 16 and fmt not in DEEP_FORMATS):
        raise OutputError(f"{path or 'output'}: cannot write {bit_depth} bits per sample as {fmt}")
    if alpha is not None and fmt not in ALPHA_FORMATS:
        log.warning("%s: %s has no alpha channel; the transparency was composited onto white",
                    path or "output", fmt)
        rgb = pil_to_tensor(image) if isinstance(image, Image.Image) else image[:1].detach().float().cpu()
        a = alpha[:1].detach().float().cpu()
        image, alpha = rgb * a + (1 - a), None
    if bit_depth == 16:
        data = _encode_deep(_samples(image, alpha, 16), fmt)  # type: ignore[arg-type]
    else:
        if alpha is not None:
            im = Image.fromarray(_samples(image, alpha, 8), "RGBA")
        else:
            im = image if isinstance(image, Image.Image) else tensor_to_pil(image)
        buf = _io.BytesIO()
        im.save(buf, format=fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))
        data = buf.getvalue()
    if path is None:
        dest.write(data)  # type: ignore[union-attr]
        dest.flush()  # type: ignore[union-attr]
        return
    write_bytes_atomic(data, path)


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
    if not str(out).strip():
        raise OutputError(f"the {what} path is empty")
    path = Path(out)
    for src in inputs:
        if src != "-" and path.exists() and same_file(src, path):
            raise OutputError(f"{out}: {what} is the same file as input {src}; refusing to overwrite "
                              "an input")
    if path.is_dir():
        raise OutputError(f"{out}: {what} is a directory, expected a file name")
    if formats is not None and path.suffix.lower() not in formats:
        raise OutputError(f"{out}: unknown {what} extension; use one of {', '.join(sorted(formats))}")
    if path.parent.exists() and not path.parent.is_dir():
        raise OutputError(f"{out}: {path.parent} is a file, not a folder")
    if not path.parent.is_dir():
        raise OutputError(f"{out}: {what} folder {path.parent} does not exist")
    _probe_writable(path)


def check_not_there(outputs: Sequence[str | Path]) -> None:
    """An OutputError, before any work, when any of ``outputs`` exists: a finished result is
    kept unless the user asks for it to be replaced (``--overwrite``)."""
    there = [str(o) for o in outputs if Path(o).exists()]
    if there:
        more = f" (and {len(there) - 1} more outputs)" if len(there) > 1 else ""
        raise OutputError(f"{there[0]}: exists{more}; add --overwrite to replace it, or choose another "
                          "output")


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


