"""Print sizes in tiles: peak memory, time, judged quality and seams (docs/tiling.md).

Parts (each writes its own entry in ``benchmarks/results/tiling.json`` and the table in
``benchmarks/results/tiling.md``; pictures go to ``docs/images/``):

* ``seams``: the engine at ``--size 1024`` with tiles forced (``--tile 256``), once with a
  new tile layout every step (the default) and once with one fixed layout, and the
  feed-forward network at full size in 256 px tiles (``fast-seams``). The seam ratio
  (:func:`seam_ratio`) compares the pixel differences across the cut lines of the last
  step's layout with those across the lines 4-16 px beside them (1.0: no seam); the untiled
  run is measured at the fixed layout's lines, as the image's own baseline.
* ``4k``: ``warpaint stylize`` of a 3840x2160 photo (the sample photo upscaled) at
  ``--size 3840 --max-memory 6 --detail-steps N`` (default steps up to 1024 px, ``N`` at the
  1920 and 3840 px scales): peak RSS (``/usr/bin/time``), time, and the judge's distances at
  512 px against the default run at ``--size 512``, upscaled.
* ``fast8k``: ``warpaint stylize --fast --size 8192 --max-memory 4``, with the network at
  its work size and at full size (``--work-size 0``, tiled).
* ``fast-seams``: the feed-forward network at ``--size`` px whole and in ``--tile`` px tiles:
  the largest difference and the seam ratios.

    python benchmarks/bench_tiling.py seams            # about 10 minutes on 2 CPU cores
    python benchmarks/bench_tiling.py 4k --steps 4     # about 30 minutes
    python benchmarks/bench_tiling.py fast8k           # a few minutes

Needs ``../shared/images`` beside the checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "images"
RESULTS = ROOT / "benchmarks" / "results"
PICTURES = ROOT / "docs" / "images"
CONTENT, STYLE = SHARED / "content" / "tubingen.jpg", SHARED / "style" / "starry_night.jpg"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


#: Distances (px) of the reference lines on either side of a cut line.
NEAR = (4, 8, 12, 16)


def seam_ratio(image: torch.Tensor, rows: list[int], cols: list[int]) -> float:
    """How much more the image changes across the cut lines than beside them: the mean
    |difference| of neighbouring pixels across each cut line (rows, cols: interior cut
    positions) over its mean across the parallel lines 4-16 px to either side (1.0: a cut
    line is like its neighbourhood; a seam shows as > 1). ``image``: (1, 3, H, W)."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean((0, 1, 2))   # dx[c - 1]: across column c
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean((0, 1, 3))
    at, near = [], []
    for d, cut in ((dx, cols), (dy, rows)):
        for c in cut:
            at.append(d[c - 1])
            near += [d[c - 1 + o] for k in NEAR for o in (-k, k) if 0 <= c - 1 + o < len(d)]
    return float(torch.stack(at).mean() / torch.stack(near).mean())


def save(entry: dict, key: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "tiling.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = entry
    path.write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / "tiling.md").write_text(markdown(data))
    print(json.dumps(entry, indent=2))


def markdown(data: dict) -> str:
    out = ["# Tiling benchmark (benchmarks/bench_tiling.py)", ""]
    for key, e in data.items():
        out += [f"## {key}", "", f"{e.get('machine', '')}", ""]
        for row in e.get("rows", []):
            out.append("- " + ", ".join(f"{k}: {v}" for k, v in row.items()))
        out.append("")
    return "\n".join(out)


def machine(threads: int) -> str:
    return (f"{cpu_name()}, {threads} threads, torch {torch.__version__}, CPU, float32 "
            f"({time.strftime('%Y-%m-%d')})")


# -- seams --------------------------------------------------------------------------------------
def part_seams(args) -> None:
    from warpaint.io import load_image, save_image
    from warpaint.stylize import StylizeConfig, Stylizer
    from warpaint.tiling import cuts

    class Recording(Stylizer):
        """The engine, remembering the tile layout of every tiled step."""

        def tiled_losses(self, image, content, style_t, plan, offset):
            self.layouts.append((tuple(image.shape[-2:]), plan.core, offset))
            return super().tiled_losses(image, content, style_t, plan, offset)

    torch.set_num_threads(args.threads)
    content, style = load_image(CONTENT), load_image(STYLE)
    size, tile, steps = args.size, args.tile, args.steps
    base = dict(size=size, steps=steps, device="cpu", dtype="float32")
    images, rows, lines = {}, [], {}
    for name, tiled, shift in (("whole", 0, True), ("tiles, new layout every step", tile, True),
                               ("tiles, one fixed layout", tile, False)):
        s = Recording(StylizeConfig(**base, tile=tiled))
        s.shift_tiles, s.layouts = shift, []
        t0 = time.perf_counter()
        images[name] = s.run(content, [style])
        rows.append({"run": f"engine, {name}", "seconds": round(time.perf_counter() - t0, 1)})
        if s.layouts:   # the cut lines of the last step's layout
            hw, core, (oy, ox) = s.layouts[-1]
            lines[name] = (cuts(hw[0], core, oy)[1:-1], cuts(hw[1], core, ox)[1:-1])
        save_image(images[name], Path(args.keep) / f"seams_{name.split(',')[-1].strip().replace(' ', '_')}.png")
    hw = tuple(images["whole"].shape[-2:])
    for row, (name, img) in zip(rows, images.items(), strict=True):
        at = lines.get(name, lines["tiles, one fixed layout"])   # the untiled run: the fixed layout's lines
        row["cut lines of its last step"] = f"rows {at[0]}, columns {at[1]}"
        row["seam ratio"] = round(seam_ratio(img, *at), 3)
    # a picture: 192 px crops around a cut crossing of the fixed layout: fixed | moving | whole
    r, c = lines["tiles, one fixed layout"][0][0], lines["tiles, one fixed layout"][1][0]
    crops = [img[..., r - 96:r + 96, c - 96:c + 96] for img in
             (images["tiles, one fixed layout"], images["tiles, new layout every step"], images["whole"])]
    PICTURES.mkdir(parents=True, exist_ok=True)   # (a JPEG: the figure stays small)
    save_image(torch.cat(crops, -1), PICTURES / "tiling_border.jpg")
    save({"machine": machine(args.threads), "size": list(hw[::-1]), "tile": tile, "steps": steps,
          "coarse steps": 2 * steps, "rows": rows}, "seams")


def part_fast_seams(args) -> None:
    """The feed-forward network at full size, whole and in tiles (exact statistics)."""
    from warpaint.feedforward import load
    from warpaint.io import load_image, resize_long_side
    from warpaint.tiling import cuts

    torch.set_num_threads(args.threads)
    model = load()
    x = resize_long_side(load_image(CONTENT), args.size)
    code = model.style_code([resize_long_side(load_image(STYLE), model.style_size)])
    hw = tuple(x.shape[-2:])
    cut_rows, cut_cols = cuts(hw[0], args.tile)[1:-1], cuts(hw[1], args.tile)[1:-1]
    t0 = time.perf_counter()
    with torch.no_grad():
        whole = model.render(x, code)
    t1 = time.perf_counter()
    tiled = model.render_tiled(x, code, args.tile)
    t2 = time.perf_counter()
    rows = [{"run": "fast, whole", "seconds": round(t1 - t0, 2),
             "seam ratio": round(seam_ratio(whole, cut_rows, cut_cols), 3)},
            {"run": f"fast, tiles of {args.tile} px", "seconds": round(t2 - t1, 2),
             "seam ratio": round(seam_ratio(tiled, cut_rows, cut_cols), 3),
             "max abs diff to whole": float(f"{float((tiled - whole).abs().max()):.2g}")}]
    save({"machine": machine(args.threads), "size": list(hw[::-1]), "tile": args.tile, "rows": rows},
         "fast seams")


# -- 4K and 8K through the CLI ------------------------------------------------------------------------
def big_photo(folder: Path, hw: tuple[int, int]) -> Path:
    """The sample photo cropped to the aspect of ``hw`` and upscaled (Lanczos) to it."""
    im = Image.open(CONTENT).convert("RGB")
    h, w = hw
    ch = round(im.width * h / w)
    top = (im.height - ch) // 2
    path = folder / f"photo_{w}x{h}.png"
    im.crop((0, top, im.width, top + ch)).resize((w, h), Image.Resampling.LANCZOS).save(path)
    return path


def timed_cli(cli_args: list[str], threads: int) -> dict:
    """Run ``warpaint`` in a child; its wall time and peak RSS (GNU time)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "warpaint", *cli_args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cli_args)}\n{proc.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return {"seconds": round(seconds, 1), "peak RSS GB": round(rss * 1024 / 1e9, 2)}


def judge(content: Path, output: Path) -> dict:
    from warpaint.score import score_files

    s = score_files(str(content), str(STYLE), str(output), size=512, device="cpu")
    return {"content distance": round(s.content, 4), "style distance": round(s.style, 4)}


def part_4k(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photo = big_photo(folder, (2160, 3840))
        common = ["--device", "cpu", "--dtype", "float32", "-q"]
        out4k, js = folder / "out_3840.png", folder / "out_3840.json"
        big = timed_cli(["stylize", str(photo), str(STYLE), "-o", str(out4k), "--size", "3840",
                         "--max-memory", str(args.max_memory), "--json", str(js),
                         "--detail-steps", str(args.steps), *common], args.threads)
        summary = json.loads(js.read_text())
        out512 = folder / "out_512.png"
        small = timed_cli(["stylize", str(photo), str(STYLE), "-o", str(out512), "--size", "512", *common],
                          args.threads)
        up = folder / "out_512_up.png"
        Image.open(out512).resize((3840, 2160), Image.Resampling.BICUBIC).save(up)
        j_big, j_small = judge(photo, out4k), judge(photo, up)
        crop = Image.open(out4k).crop((1600, 800, 2240, 1160))
        crop.save(PICTURES / "tiling_4k_crop.jpg", quality=88)
    big_name = f"3840x2160, --max-memory {args.max_memory:g}, --detail-steps {args.steps}"
    rows = [{"run": big_name, **big, **j_big, "tiled scales": summary.get("tiled_scales")},
            {"run": "512x288, default steps, upscaled to 3840x2160", **small, **j_small}]
    worse = {k: round(j_big[k] / j_small[k] - 1, 3) for k in j_big}
    save({"machine": machine(args.threads), "steps": "defaults (10 final, 20 coarse) up to 1024 px; "
          f"{args.steps} at the 1920 and 3840 px scales", "style": STYLE.name,
          "content": f"{CONTENT.name} cropped 16:9, upscaled to 3840x2160",
          "relative change of the judge's distances, 4K vs upscaled 512": worse, "rows": rows}, "4k")


def part_fast8k(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photo = big_photo(folder, (2160, 3840))
        rows = []
        from warpaint.feedforward import load

        work = load().work_size
        runs = ((f"work size {work} (the model's)", []), ("full size, tiled", ["--work-size", "0"]))
        for name, extra in runs:
            out, js = folder / "fast.png", folder / "fast.json"
            res = timed_cli(["stylize", str(photo), str(STYLE), "--fast", "--size", "8192", "--max-memory", "4",
                             "-o", str(out), "--json", str(js), "-q", "--device", "cpu", *extra], args.threads)
            summary = json.loads(js.read_text())
            with Image.open(out) as im:
                size = im.size
            rows.append({"run": name, "output": f"{size[0]}x{size[1]}", **res, "tile": summary.get("tile")})
            out.unlink()
    save({"machine": machine(args.threads), "rows": rows}, "fast8k")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=("seams", "fast-seams", "4k", "fast8k"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=int, default=1024, help="seams: size of the runs")
    p.add_argument("--tile", type=int, default=256, help="seams: tile core")
    p.add_argument("--steps", type=int, default=10, help="steps at the final scale (coarse: twice)")
    p.add_argument("--max-memory", type=float, default=6.0, help="4k: the budget in GB")
    p.add_argument("--keep", default=tempfile.gettempdir(), help="seams: folder for the full results")
    args = p.parse_args()
    if not CONTENT.is_file() or not STYLE.is_file():
        raise SystemExit(f"skipped: the sample images are not in {SHARED} (../shared beside the checkout)")
    {"seams": part_seams, "fast-seams": part_fast_seams, "4k": part_4k, "fast8k": part_fast8k}[args.part](args)


if __name__ == "__main__":
    main()
