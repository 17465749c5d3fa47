"""Pictures of a geometric-style warp, to check it is a meaningful alignment and not a crop.

:func:`save_warp_pictures` writes into a folder:

* ``matches.png``: content and style side by side, matched points joined by lines
  (colour = match confidence).
* ``grid.png``: the warp's grid drawn over the result: where each output grid line samples
  the unwarped image.
* ``displacement.png``: the displacement magnitude in output pixels, with the minimum
  Jacobian determinant in the title (> 0: no fold-over).
* ``compare.png``: the result without and with the warp, side by side.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from ..io import resize
from ..plots import pyplot, save_figure
from .geometry import base_grid
from .geostyle import Geometry
from .warps import jacobian_determinant


def _hwc(image: Tensor):
    return image[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def _px(points: Tensor, hw: tuple[int, int]) -> Tensor:
    """Normalized (align_corners=False) points -> pixel coordinates of an (H, W) image."""
    return (points.detach().cpu() + 1) * torch.tensor([hw[1], hw[0]]) / 2 - 0.5


#: The pictures :func:`save_warp_pictures` writes, as ``NAME.png``.
PICTURES = ("matches", "grid", "displacement", "compare")


def save_warp_pictures(folder: str | os.PathLike[str], content: Tensor, style: Tensor,
                       unwarped: Tensor, warped: Tensor, geometry: Geometry, *,
                       caption: str = "") -> list[Path]:
    """Write the four pictures (see the module docstring); return their paths.

    Args:
        content, style: (1, 3, H, W) inputs in [0, 1] (any sizes).
        unwarped, warped: (1, 3, h, w) the result before and after the warp.
        caption: shown under each figure (put sizes, steps, device, dtype here).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hw = tuple(warped.shape[-2:])
    with torch.no_grad():
        grid = geometry.warp.grid(hw).cpu()[0]                          # (H, W, 2)
        mapped = geometry.warp.map_grid(hw).cpu()[0]                    # unclamped, for the fold
    figures = {"matches": _matches_figure(content, style, geometry),
               "grid": _grid_figure(unwarped, warped, grid),
               "displacement": _displacement_figure(mapped),
               "compare": _compare_figure(unwarped, warped)}
    assert tuple(figures) == PICTURES
    paths = []
    for name, fig in figures.items():
        fig.suptitle(caption, fontsize=8, y=0.02)
        fig.tight_layout()
        paths.append(folder / f"{name}.png")
        save_figure(fig, paths[-1])
    return paths


def _matches_figure(content: Tensor, style: Tensor, geometry: Geometry):
    """Content | style (scaled to the content's height), matched points joined by lines."""
    plt = pyplot()
    ch, cw = content.shape[-2:]
    sw = max(1, round(style.shape[-1] * ch / style.shape[-2]))
    pair = torch.cat([content.cpu().float(), resize(style.cpu().float(), (ch, sw))], -1)
    pa = _px(geometry.source, (ch, cw))
    pb = _px(geometry.target_full, (ch, sw)) + torch.tensor([cw, 0.0])
    w = geometry.weights.detach().cpu()
    shade = (w - w.min()) / (w.max() - w.min()).clamp_min(1e-12)
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(10, 10 * ch / (cw + sw) + 0.6), dpi=100)
    ax.imshow(_hwc(pair))
    for i in range(pa.shape[0]):
        col = cmap(float(shade[i]))
        ax.plot([pa[i, 0], pb[i, 0]], [pa[i, 1], pb[i, 1]], "-", lw=0.7, color=col)
        ax.plot([pa[i, 0], pb[i, 0]], [pa[i, 1], pb[i, 1]], "o", ms=2.5, color=col)
    conf = geometry.confidence
    said = "" if conf is None else f", confidence {conf.value:.2f}"
    state = "" if geometry.applied else f"\nwarp not applied: {geometry.reason}"
    if conf is not None and conf.by_faces:
        state += (f"\nshared layout: {conf.faces};\nthe faces' landmarks and box corners are "
                  "matches (similarity 1, yellow)")
    ax.set_title(f"{pa.shape[0]} consensus matches{said}, content (left) to style (right); "
                 f"colour = similarity{state}", fontsize=9)
    ax.axis("off")
    return fig


def _grid_figure(unwarped: Tensor, warped: Tensor, grid: Tensor):
    """A regular grid over the warped result, and where it samples the unwarped one."""
    plt = pyplot()
    hw = tuple(grid.shape[:2])
    ident = base_grid(hw, align_corners=False)
    fig, ax = plt.subplots(1, 2, figsize=(10, 5.2), dpi=100)
    ax[0].imshow(_hwc(unwarped))
    ax[1].imshow(_hwc(warped))
    step = max(1, min(hw) // 16)
    gpx = _px(grid.reshape(-1, 2), hw).reshape(*hw, 2)
    ipx = _px(ident.reshape(-1, 2), hw).reshape(*hw, 2)
    for r in range(0, hw[0], step):
        ax[0].plot(gpx[r, :, 0], gpx[r, :, 1], color="yellow", lw=0.6)
        ax[1].plot(ipx[r, :, 0], ipx[r, :, 1], color="yellow", lw=0.6)
    for c in range(0, hw[1], step):
        ax[0].plot(gpx[:, c, 0], gpx[:, c, 1], color="yellow", lw=0.6)
        ax[1].plot(ipx[:, c, 0], ipx[:, c, 1], color="yellow", lw=0.6)
    ax[0].set_title("unwarped result: where the output grid samples it")
    ax[1].set_title("warped result: the same grid, straight")
    for x in ax:
        x.set_xlim(-0.5, hw[1] - 0.5)
        x.set_ylim(hw[0] - 0.5, -0.5)
        x.axis("off")
    return fig


def _displacement_figure(grid: Tensor):
    """Displacement magnitude of a (H, W, 2) grid in output pixels, with the minimum
    Jacobian determinant in the title."""
    plt = pyplot()
    hw = tuple(grid.shape[:2])
    mag = ((grid - base_grid(hw, align_corners=False)) * torch.tensor([hw[1] / 2, hw[0] / 2])).norm(dim=-1)
    det = jacobian_determinant(grid[None])
    fig, ax = plt.subplots(figsize=(6, 5.2), dpi=100)
    im = ax.imshow(mag.numpy(), cmap="magma")
    fig.colorbar(im, ax=ax, label="displacement (output px)")
    ax.set_title(f"mean {float(mag.mean()):.1f} px, max {float(mag.max()):.1f} px, "
                 f"min Jacobian det {float(det.min()):.3f}", fontsize=9)
    ax.axis("off")
    return fig


def _compare_figure(unwarped: Tensor, warped: Tensor):
    """The result without and with the warp, side by side."""
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(10, 5.2), dpi=100)
    ax[0].imshow(_hwc(unwarped))
    ax[0].set_title("without the warp")
    ax[1].imshow(_hwc(warped))
    ax[1].set_title("with the warp")
    for x in ax:
        x.axis("off")
    return fig
