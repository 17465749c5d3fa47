"""Regional style (``--mask``) on a real photo and two paintings (by hand).

tubingen.jpg with starry_night.jpg (style 1) and composition_vii.jpg (style 2), through the
job layer (what ``warpaint stylize --mask`` runs), with the engine and with the shipped
feed-forward model, for two generated masks (antialiased, at the photo's 1024x768):

* ``two``: left half grey -> style 1, right half white -> style 2;
* ``three``: the same with a black ellipse in the middle that keeps the photo.

Measured on each result (the 8-bit image as written):

* per style region, its style distance to its own style and to the other one: the mean
  over relu1_1..relu5_1 of the relative error of the region's masked Gram
  (:func:`warpaint.score.region_style_distances`, at the result's size, hard regions);
* for the no-style region, the mean absolute difference from the photo (at the result's
  size, [0, 1] scale) over the whole region and over its interior (soft weight > 0.999);
* the same distances of the unstyled photo, for reference.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_masks.py [SIZE]      # default 512
Results: benchmarks/results/masks.{json,md}; picture: docs/images/masks_tubingen.jpg (row 1:
the photo, the two-region mask, engine, fast; row 2: the two paintings, the mask with a
no-style ellipse, engine, fast).
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "images"
CONTENT = "content/tubingen.jpg"
STYLES = ["style/starry_night.jpg", "style/composition_vii.jpg"]


def make_masks(w: int, h: int):
    """The two masks (Pillow, mode L), drawn at 4x and shrunk (antialiased edges)."""
    from PIL import Image, ImageDraw

    big = Image.new("L", (4 * w, 4 * h), 128)
    big.paste(255, (2 * w, 0, 4 * w, 4 * h))
    two = big.resize((w, h), Image.Resampling.LANCZOS)
    ImageDraw.Draw(big).ellipse((int(1.4 * w), int(0.9 * h), int(2.6 * w), int(3.1 * h)), fill=0)
    three = big.resize((w, h), Image.Resampling.LANCZOS)
    return {"two": two, "three": three}


def measure(out, photo, mask, styles, vgg) -> dict:
    from warpaint.masks import soft_weights
    from warpaint.score import region_style_distances

    hw = tuple(out.shape[-2:])
    hard = soft_weights(mask.regions, hw, 0.0)
    d = region_style_distances(out, styles, hard[:, :len(styles)], size=max(hw), vgg=vgg)
    res = {"distances": d,
           "own_lower": all(d[r][r] < min(d[r][s] for s in range(len(styles)) if s != r)
                            for r in range(len(styles)))}
    if mask.has_none:
        diff = (out - photo).abs().mean(1)[0]
        interior = soft_weights(mask.regions, hw, 0.03)[0, -1] > 0.999
        res["none_mad"] = float(diff[hard[0, -1] > 0.5].mean())
        res["none_mad_interior"] = float(diff[interior].mean())
    return res


def main() -> int:
    from warpaint.io import pil_to_tensor, read_pil, resize, resize_pil, tensor_to_pil
    from warpaint.jobs import Job, make_method, run_job
    from warpaint.masks import parse_mask
    from warpaint.stylize import StylizeConfig
    from warpaint.vgg import VGGFeatures

    if not IMAGES.is_dir():
        print(f"skipped: {IMAGES} not found (the shared sample images beside the checkout)", file=sys.stderr)
        return 0
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    content = read_pil(str(IMAGES / CONTENT))
    styles = [read_pil(str(IMAGES / s)) for s in STYLES]
    style_t = [pil_to_tensor(s) for s in styles]
    vgg = VGGFeatures(pooling="max")
    masks = make_masks(content.width, content.height)
    tmp = Path(tempfile.mkdtemp())
    rows, pictures = [], {}
    env = {}
    for name, mask_im in masks.items():
        path = tmp / f"{name}.png"
        mask_im.save(path)
        mask = parse_mask(mask_im, len(styles), name=path.name)
        for method_name in ("engine", "fast"):
            cfg = StylizeConfig(size=size, mask=str(path), device="cpu")
            method = make_method(cfg, styles, fast=method_name == "fast")
            t0 = time.perf_counter()
            outcome = run_job(Job(content, None), method)
            seconds = time.perf_counter() - t0
            if outcome.status != "ok":
                raise SystemExit(f"{name}/{method_name}: {outcome.error}")
            out = outcome.image if isinstance(outcome.image, torch.Tensor) else pil_to_tensor(outcome.image)
            out = pil_to_tensor(tensor_to_pil(out))        # the 8-bit image as written
            photo = resize(pil_to_tensor(content), tuple(out.shape[-2:]))
            row = {"mask": name, "method": method_name, "size": [out.shape[-1], out.shape[-2]],
                   "seconds": round(seconds, 1), "device": str(method.device), "dtype": method.dtype,
                   "regions": mask.describe([Path(s).name for s in STYLES]),
                   **measure(out, photo, mask, style_t, vgg)}
            if method_name == "engine":
                row["steps"] = outcome.summary["steps"]
                row["scales"] = outcome.summary["scales"]
                row["photo"] = measure(photo, photo, mask, style_t, vgg)["distances"]
            rows.append(row)
            pictures[(name, method_name)] = tensor_to_pil(out)
            env = {"cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
                   "torch": torch.__version__}
            print(json.dumps({k: v for k, v in row.items() if k != "regions"}), file=sys.stderr)
    cfg = StylizeConfig(size=size)
    result = {"content": CONTENT, "styles": STYLES, "size": size, "env": env,
              "engine_options": {"steps": cfg.steps, "coarse_steps": cfg.coarse_steps, "min_size": cfg.min_size,
                                 "style_weight": cfg.style_weight, "mask_feather": cfg.mask_feather},
              "runs": rows}
    out_dir = ROOT / "benchmarks" / "results"
    (out_dir / "masks.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Masks: {CONTENT} with {STYLES[0]} (style 1) and {STYLES[1]} (style 2), {size} px", "",
             f"torch {env['torch']}, {env['torch_threads']} thread(s), {env['cpu']}", "",
             "| mask | method | result | s | device, dtype | region 1: own / other | region 2: own / other "
             "| own lower | no-style MAD (all / interior) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r["distances"]
        mad = f"{r['none_mad']:.4f} / {r['none_mad_interior']:.4f}" if "none_mad" in r else "-"
        lines.append(f"| {r['mask']} | {r['method']} | {r['size'][0]}x{r['size'][1]} | {r['seconds']} | "
                     f"{r['device']}, {r['dtype']} | {d[0][0]:.3f} / {d[0][1]:.3f} | {d[1][1]:.3f} / {d[1][0]:.3f} "
                     f"| {'yes' if r['own_lower'] else 'no'} | {mad} |")
    photo_d = rows[0]["photo"]
    lines += ["", f"The photo itself (two-region mask): region 1 {photo_d[0][0]:.3f} / {photo_d[0][1]:.3f}, "
              f"region 2 {photo_d[1][1]:.3f} / {photo_d[1][0]:.3f} (own / other)."]
    (out_dir / "masks.md").write_text("\n".join(lines) + "\n")
    # picture: content, masks and results, each tile 320 px wide
    from PIL import Image

    tw, gap = 320, 4
    th = round(tw * content.height / content.width)
    grid = Image.new("RGB", (4 * tw + 3 * gap, 2 * th + gap), "white")
    for row_i, name in enumerate(masks):
        tiles = [content if row_i == 0 else styles_strip(styles, tw, th), masks[name].convert("RGB"),
                 pictures[(name, "engine")], pictures[(name, "fast")]]
        for col, tile in enumerate(tiles):
            grid.paste(resize_pil(tile, (th, tw)), (col * (tw + gap), row_i * (th + gap)))
    grid.save(ROOT / "docs" / "images" / "masks_tubingen.jpg", quality=80)
    print("\n".join(lines))
    return 0


def styles_strip(styles, tw: int, th: int):
    """The two style images side by side in one tile."""
    from PIL import Image, ImageOps

    tile = Image.new("RGB", (tw, th), "white")
    for i, s in enumerate(styles):
        tile.paste(ImageOps.fit(s, (tw // 2, th)), (i * tw // 2, 0))
    return tile


if __name__ == "__main__":
    sys.exit(main())
