"""Deep-feature correspondences: mutual nearest neighbours with sub-cell refinement."""

from __future__ import annotations

import torch

from warpaint.stn.correspond import Matches, cell_centres, deep_matches, mutual_nearest


def test_cell_centres():
    c = cell_centres(2, 4)
    torch.testing.assert_close(c[0], torch.tensor([-0.75, -0.5]))
    torch.testing.assert_close(c[-1], torch.tensor([0.75, 0.5]))


def test_shifted_features_match_their_cells():
    g = torch.Generator().manual_seed(0)
    fa = torch.randn(32, 8, 12, generator=g)
    fb = fa[:, :, 2:]                                    # the same features, 2 columns cropped
    m = mutual_nearest(fa, fb, ratio=1.0)
    assert len(m) == 8 * 10
    ja = ((m.a[:, 0] + 1) * 12 - 1) / 2                  # column in A
    jb = ((m.b[:, 0] + 1) * 10 - 1) / 2                  # (sub-)column in B
    # the right cell; the parabola through random neighbours may move it a little
    assert (jb - (ja - 2)).abs().max() < 0.3
    ia = ((m.a[:, 1] + 1) * 8 - 1) / 2
    ib = ((m.b[:, 1] + 1) * 8 - 1) / 2
    assert (ib - ia).abs().max() < 0.3
    torch.testing.assert_close(m.score, torch.ones(len(m)))


def test_ratio_test_drops_ambiguous_cells():
    fa = torch.randn(16, 4, 4, generator=torch.Generator().manual_seed(1))
    fb = torch.cat([fa, fa], 2)                          # every feature appears twice in B
    assert len(mutual_nearest(fa, fb, ratio=0.97)) == 0
    # a smooth map: the runner-up is the best cell's neighbour, which does not count
    coarse = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(2))
    smooth = torch.nn.functional.interpolate(coarse, size=(12, 12), mode="bilinear", align_corners=False)[0]
    assert len(mutual_nearest(smooth, smooth, ratio=0.97)) > 50


def test_matches_subset_and_cat():
    m = Matches(torch.zeros(3, 2), torch.ones(3, 2), torch.tensor([0.1, 0.5, 0.9]))
    both = Matches.cat([m, m.subset(m.score > 0.4)])
    assert len(both) == 5 and both.score[-1] == 0.9


def test_deep_matches_identical_images(vgg_random, images):
    img = images.content(64, 96)
    m = deep_matches(vgg_random, img, img, size=64)
    assert len(m) > 0
    assert (m.a - m.b).abs().max() < 0.2                  # everything matches in place
