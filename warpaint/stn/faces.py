"""Faces as evidence of a shared portrait layout, and as landmark correspondences.

VGG feature matches between a photo and a painted portrait are often too few or too wrong
to show that the two share a layout (a face half the size under a hat; a woodcut whose
black-and-white face is alike upside down). A face detector trained to find faces does
better: dlib's CNN face detector (MMOD) and its 5-point landmark model (eye corners and the
base of the nose), both trained on dlib's own data and shipped by the ``face-recognition-models``
package (nothing is downloaded at run time). Optional: ``pip install "warpaint[faces]"``;
without it :func:`find_faces` reports the faces unavailable and ``--warp`` decides from the
feature matches alone.

Points are normalized ``(x, y)`` in ``[-1, 1]`` with ``align_corners=False``, as in
:mod:`warpaint.stn.correspond`.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from ..io import resize_long_side, tensor_to_pixels
from .correspond import Matches

#: Long side (px) at which faces are looked for; the detector looks at twice that (one
#: upsampling), so faces down to about 20 px here (8 % of the long side) are found.
FACE_SIZE = 256
#: Two faces show a shared portrait layout only when their widths, as shares of each image's
#: long side, are within this factor of each other (a close-up against a full figure is not).
MAX_SIZE_RATIO = 3.0
#: A face narrower than this share of the long side is a figure in a scene, not a portrait.
MIN_FACE_SHARE = 0.15
#: Detector score (MMOD's margin) below which a detection is not counted.
MIN_SCORE = 0.3
#: A second face at least this fraction of the largest one's width makes a group, not a portrait.
GROUP_RATIO = 0.5


@dataclass(frozen=True)
class Face:
    """One detected face: ``box`` (4,) normalized (x0, y0, x1, y1), ``points`` (5, 2) the
    landmarks (outer and inner corner of one eye, of the other, base of the nose), ``score``
    the detector's margin and ``share`` the box width over the image's long side."""

    box: Tensor
    points: Tensor
    score: float
    share: float


def _models_dir() -> Path | None:
    """The folder of ``face_recognition_models``' model files, without importing it (its
    ``__init__`` needs ``pkg_resources``, which new setuptools no longer has)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if folder.is_dir() else None


def unavailable() -> str | None:
    """Why faces cannot be found here (one line), or ``None`` when they can."""
    if importlib.util.find_spec("dlib") is None or _models_dir() is None:
        return 'face detection is not installed (pip install "warpaint[faces]")'
    try:
        _models()
    except Exception as e:                  # a broken dlib build or model file: say so, go on without
        return f"face detection could not be loaded ({type(e).__name__}: {e})".splitlines()[0]
    return None


#: dlib's networks keep state between calls: one detection at a time (web UI jobs run in threads).
_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _models():
    import dlib

    folder = _models_dir()
    return (dlib.cnn_face_detection_model_v1(str(folder / "mmod_human_face_detector.dat")),
            dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")))


@torch.no_grad()
def find_faces(image: Tensor, *, size: int = FACE_SIZE) -> list[Face]:
    """Faces in an RGB image (1, 3, H, W) in [0, 1], largest first (none where
    :func:`unavailable`); boxes and landmarks are clamped to the image."""
    if unavailable():
        return []
    detector, landmarks = _models()
    small = resize_long_side(image[:1].float(), size) if max(image.shape[-2:]) > size else image[:1]
    pixels = tensor_to_pixels(small)[0].permute(1, 2, 0).contiguous().numpy()
    h, w = pixels.shape[:2]
    scale = torch.tensor([2.0 / w, 2.0 / h], dtype=torch.float32)
    faces = []
    with _LOCK:
        for found in detector(pixels, 1):
            if found.confidence < MIN_SCORE:
                continue
            r = found.rect
            pts = torch.tensor([(p.x, p.y) for p in landmarks(pixels, r).parts()], dtype=torch.float32)
            box = torch.tensor([r.left(), r.top(), r.right() + 1, r.bottom() + 1], dtype=torch.float32)
            faces.append(Face((box.reshape(2, 2) * scale - 1).clamp(-1, 1).reshape(4),
                              ((pts + 0.5) * scale - 1).clamp(-1, 1), float(found.confidence),
                              r.width() / max(h, w)))
    return sorted(faces, key=lambda f: -f.share)


def portrait_pair(source: list[Face], target: list[Face]) -> tuple[tuple[Face, Face] | None, str]:
    """The largest face of each image when together they show a shared portrait layout (each
    at least :data:`MIN_FACE_SHARE` of its image's long side, their shares within
    :data:`MAX_SIZE_RATIO`, neither image a group: no second face :data:`GROUP_RATIO` of the
    largest's width or more), or ``None``; and one line saying what was found.

    Example:
        >>> f = lambda share: Face(torch.zeros(4), torch.zeros(5, 2), 1.0, share)
        >>> portrait_pair([f(0.4)], [f(0.3)])[0] is not None
        True
        >>> portrait_pair([f(0.4)], [f(0.1)])
        (None, 'faces 40% / 10% of the long side: not the same framing')
    """
    if not source or not target:
        where = ("either image" if not source and not target
                 else "the second image" if source else "the first image")
        return None, f"no face in {where}"
    for name, found in (("first", source), ("second", target)):
        if len(found) > 1 and found[1].share >= GROUP_RATIO * found[0].share:
            return None, f"{len(found)} faces in the {name} image: a group, not a portrait"
    a, b = source[0], target[0]
    shares = f"{a.share:.0%} / {b.share:.0%} of the long side"
    small, large = sorted((a.share, b.share))
    if small < MIN_FACE_SHARE or large > MAX_SIZE_RATIO * small:
        return None, f"faces {shares}: not the same framing"
    return (a, b), f"a face in each image (detector scores {a.score:.2f} / {b.score:.2f}, widths {shares})"


def face_matches(a: Face, b: Face) -> Matches:
    """Nine correspondences between two faces: the five landmarks and the box's corners
    (similarity 1 each)."""
    def points(f: Face) -> Tensor:
        x0, y0, x1, y1 = f.box.tolist()
        return torch.cat([f.points, torch.tensor([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])])

    pa, pb = points(a), points(b)
    return Matches(pa, pb, torch.ones(pa.shape[0]))
