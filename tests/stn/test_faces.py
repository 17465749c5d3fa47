"""Faces as evidence of a shared portrait layout (dlib's detector and 5-point landmarks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from warpaint.io import load_image
from warpaint.stn import faces
from warpaint.stn.faces import Face, face_matches, find_faces, portrait_pair
from warpaint.stn.geostyle import estimate_warp

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
needs_faces = pytest.mark.skipif(faces.unavailable() is not None, reason=str(faces.unavailable()))


def _face(share: float, x: float = 0.0) -> Face:
    box = torch.tensor([x - share, -share, x + share, share])
    pts = torch.tensor([[0.3, -0.2], [0.1, -0.2], [-0.3, -0.2], [-0.1, -0.2], [0.0, 0.1]]) * share
    pts = pts + torch.tensor([x, 0.0])
    return Face(box, pts, 1.0, share)


def _dataset_image(relative: str) -> torch.Tensor:
    path = SHARED / "datasets" / relative
    if not path.is_file():
        pytest.skip(f"{relative} not found in {SHARED / 'datasets'} (the shared folder beside the checkout)")
    return load_image(path)


def test_portrait_pair_rules():
    """Shared framing: both faces large enough and within MAX_SIZE_RATIO of each other."""
    pair, said = portrait_pair([_face(0.4), _face(0.1)], [_face(0.2)])
    assert pair is not None and pair[0].share == 0.4 and "a face in each image" in said
    assert portrait_pair([_face(0.4)], [_face(0.3), _face(0.2), _face(0.1)]) == (
        None, "3 faces in the second image: a group, not a portrait")
    assert portrait_pair([_face(0.6)], [_face(0.6 / faces.MAX_SIZE_RATIO - 0.01)])[0] is None
    assert portrait_pair([_face(0.1)], [_face(0.12)]) == (None, "faces 10% / 12% of the long side: not the "
                                                                "same framing")
    assert portrait_pair([], [_face(0.3)]) == (None, "no face in the first image")
    assert portrait_pair([_face(0.3)], []) == (None, "no face in the second image")
    assert portrait_pair([], []) == (None, "no face in either image")


def test_face_matches_are_landmarks_and_box_corners():
    a, b = _face(0.4), _face(0.2, x=0.3)
    m = face_matches(a, b)
    assert len(m) == 9 and bool((m.score == 1).all())
    assert torch.equal(m.a[:5], a.points) and torch.equal(m.b[:5], b.points)
    assert torch.allclose(m.b[5:], torch.tensor([[0.1, -0.2], [0.5, -0.2], [0.1, 0.2], [0.5, 0.2]]))


def test_unavailable_falls_back_to_the_matches(vgg, monkeypatch, shared_image):
    """Without dlib, --warp decides from the feature matches and says faces were not looked for."""
    monkeypatch.setattr(faces, "_models_dir", lambda: None)
    assert "pip install" in faces.unavailable()
    assert find_faces(torch.rand(1, 3, 64, 64)) == []
    photo = load_image(shared_image("content/brad_pitt.jpg"))
    geo = estimate_warp(vgg, photo, photo.flip(-1), "tps", size=128)
    assert geo.confidence.faces == faces.unavailable() and not geo.confidence.by_faces


def test_a_broken_install_is_said_not_raised(monkeypatch):
    def broken():
        raise RuntimeError("Unable to open mmod_human_face_detector.dat\nmore")

    monkeypatch.setattr(faces, "_models_dir", lambda: Path("."))
    monkeypatch.setattr(faces.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(faces, "_models", broken)
    assert faces.unavailable() == ("face detection could not be loaded (RuntimeError: Unable to open "
                                   "mmod_human_face_detector.dat")
    assert find_faces(torch.rand(1, 3, 64, 64)) == []


@needs_faces
def test_finds_a_portrait_face_and_its_landmarks(shared_image):
    photo = load_image(shared_image("content/brad_pitt.jpg"))
    found = find_faces(photo)
    assert len(found) == 1
    f = found[0]
    x0, y0, x1, y1 = f.box.tolist()
    assert 0.25 < f.share < 0.6 and -0.5 < (x0 + x1) / 2 < 0.5
    eyes, nose = f.points[:4], f.points[4]
    assert bool((eyes[:, 1] < nose[1]).all())                        # eyes above the nose
    assert x0 < float(f.points[:, 0].min()) and float(f.points[:, 0].max()) < x1
    mirrored = find_faces(photo.flip(-1))[0]                         # the same face, mirrored
    xs, xs_mirrored = f.points[:, 0].sort(descending=True).values, mirrored.points[:, 0].sort().values
    assert (xs_mirrored + xs).abs().max() < 0.03
    assert (mirrored.points[:, 1].sort().values - f.points[:, 1].sort().values).abs().max() < 0.03
    for face in (f, mirrored):                 # the box (coarser: it sits on the detector's stride)
        assert abs(float(face.box[[0, 2]].mean() - face.points[:, 0].mean())) < 0.1


@needs_faces
def test_a_face_cut_by_the_border_stays_inside(shared_image):
    """The detector's box of a face cut off at the top reaches past the image: clamped."""
    photo = load_image(shared_image("content/brad_pitt.jpg"))
    cut = find_faces(photo[..., int(0.35 * photo.shape[-2]):, :])
    assert len(cut) == 1 and float(cut[0].box[1]) == -1.0
    assert float(cut[0].points.abs().max()) <= 1.0


@needs_faces
def test_no_face_in_a_landscape_or_noise(shared_image):
    assert find_faces(load_image(shared_image("style/starry_night.jpg"))) == []
    assert find_faces(torch.rand(1, 3, 200, 300, generator=torch.Generator().manual_seed(0))) == []


@needs_faces
def test_faces_decide_a_portrait_pair_the_matches_miss(vgg):
    """kodim15 / Vallotton's woodcut (close-up faces, docs/geometric.md): the feature matches'
    confidence is below the threshold (refused without faces); the faces find the shared
    layout, their landmarks are among the matches, and the warp brings the matches closer."""
    photo = _dataset_image("photos/kodak_kodim15.jpg")
    woodcut = _dataset_image("paintings/magenta_vallotton_camille_mauclair_woodcut.jpg")
    without = estimate_warp(vgg, photo, woodcut, "tps", strength=0.5, use_faces=False)
    assert not without.applied and without.confidence.faces is None
    geo = estimate_warp(vgg, photo, woodcut, "tps", strength=0.5)
    assert geo.applied and geo.confidence.by_faces and geo.strength == 0.5
    assert geo.confidence.value == pytest.approx(without.confidence.value)
    assert geo.confidence.as_dict()["decided_by"] == "faces"
    assert int((geo.weights == geo.weights.max()).sum()) >= 9     # the landmarks (similarity 1)
    hw = tuple(woodcut.shape[-2:])
    before, after = geo.match_distance(hw)
    assert after < 0.75 * before
