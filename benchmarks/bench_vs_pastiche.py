"""warpaint vs pastiche, side by side in one run, on the CPU (run by hand, not a test).

For each content/style pair (from ../shared/images beside the checkout) this runs

    warpaint stylize C S -o W.png --json W.json -q                  (its defaults, 512 px)
    pastiche --content C --styles S --output P.png --size 512 --num-steps 300 --seed 0

one after the other, times each whole command (process start, imports and weight loading
included) and its peak resident memory, scores both outputs with ``warpaint score`` at 512 px,
and writes a Markdown table and a JSON file. It also measures warpaint's peak memory and time
at 1024 px, and saves a picture grid (content | pastiche | warpaint) per pair.

Usage:
    python benchmarks/bench_vs_pastiche.py                  # all pairs (about an hour)
    python benchmarks/bench_vs_pastiche.py --pairs 1 --skip-pastiche   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "images"
PAIRS = [
    ("content/tubingen.jpg", "style/starry_night.jpg"),
    ("content/golden_gate.jpg", "style/the_scream.jpg"),
    ("content/hoovertowernight.jpg", "style/wave.jpg"),
    ("content/brad_pitt.jpg", "style/woman-with-hat-matisse.jpg"),
]


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd``; return (wall seconds, peak RSS in MiB of that child, stderr tail)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    err = proc.stderr.read() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"command failed ({code}): {' '.join(cmd)}\n{err[-2000:]}")
    return seconds, usage.ru_maxrss / 1024.0, err[-500:]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def grid(paths: list[Path], labels: list[str], dest: Path, height: int = 200) -> None:
    from PIL import Image, ImageDraw

    ims = []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            ims.append(im.resize((round(im.width * height / im.height), height), Image.LANCZOS))
    out = Image.new("RGB", (sum(i.width for i in ims) + 4 * (len(ims) - 1), height + 18), "white")
    x, draw = 0, ImageDraw.Draw(out)
    for im, label in zip(ims, labels):
        out.paste(im, (x, 18))
        draw.text((x + 4, 3), label, fill="black")
        x += im.width + 4
    out.save(dest, quality=85)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=len(PAIRS), help="how many pairs to run")
    ap.add_argument("--skip-pastiche", action="store_true", help="warpaint only")
    ap.add_argument("--skip-1024", action="store_true", help="skip the 1024 px memory run")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"sample images not found at {SHARED} (../shared beside the checkout)")
    args.out.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)

    import torch

    import warpaint
    from warpaint.score import score
    from warpaint.vgg import VGGFeatures

    vgg = VGGFeatures()
    warpaint_bin = [sys.executable, "-m", "warpaint"]
    rows = []
    for content_rel, style_rel in PAIRS[: args.pairs]:
        c, s = SHARED / content_rel, SHARED / style_rel
        tag = f"{c.stem}__{s.stem}"
        w_png, w_json = args.out / f"{tag}_warpaint.png", args.out / f"{tag}_warpaint.json"
        print(f"[{tag}] warpaint ...", flush=True)
        w_sec, w_mem, _ = timed([*warpaint_bin, "stylize", str(c), str(s), "-o", str(w_png),
                                 "--json", str(w_json), "-q", "--overwrite"])
        summary = json.loads(w_json.read_text())
        ci, si = warpaint.load_image(c), warpaint.load_image(s)
        ws = score(ci, si, warpaint.load_image(w_png), vgg=vgg)
        row = {"content": content_rel, "style": style_rel,
               "size": summary["output_size"], "warpaint": {
                   "seconds": round(w_sec, 1), "engine_seconds": summary["seconds"],
                   "peak_rss_mib": round(w_mem), "steps": summary["steps"],
                   "content_distance": round(ws.content, 4), "style_distance": round(ws.style, 4)}}
        print(f"  warpaint {w_sec:.1f} s  content {ws.content:.3f}  style {ws.style:.4f}", flush=True)
        if not args.skip_pastiche:
            p_png = args.out / f"{tag}_pastiche.png"
            print(f"[{tag}] pastiche ...", flush=True)
            p_sec, p_mem, _ = timed(["pastiche", "--content", str(c), "--styles", str(s),
                                     "--output", str(p_png), "--size", "512", "--num-steps", "300",
                                     "--seed", "0", "--no-verbose"])
            ps = score(ci, si, warpaint.load_image(p_png), vgg=vgg)
            row["pastiche"] = {"seconds": round(p_sec, 1), "peak_rss_mib": round(p_mem), "steps": 300,
                               "content_distance": round(ps.content, 4),
                               "style_distance": round(ps.style, 4)}
            row["time_ratio"] = round(w_sec / p_sec, 4)
            row["warpaint_better_on_both"] = ws.content <= ps.content and ws.style <= ps.style
            print(f"  pastiche {p_sec:.1f} s  content {ps.content:.3f}  style {ps.style:.4f}", flush=True)
            grid([c, p_png, w_png], ["content", f"pastiche 300 steps, {p_sec:.0f} s",
                                     f"warpaint defaults, {w_sec:.0f} s"], args.out / f"{tag}_grid.jpg")
        rows.append(row)

    big = None
    if not args.skip_1024:
        c = SHARED / PAIRS[0][0]
        s = SHARED / PAIRS[0][1]
        out = args.out / "tubingen_1024.png"
        print("[1024 px] warpaint ...", flush=True)
        sec, mem, _ = timed([*warpaint_bin, "stylize", str(c), str(s), "-o", str(out), "--size",
                             "1024", "-q", "--json", str(args.out / "tubingen_1024.json"), "--overwrite"])
        big = {"seconds": round(sec, 1), "peak_rss_mib": round(mem),
               "size": json.loads((args.out / "tubingen_1024.json").read_text())["output_size"]}
        print(f"  {sec:.1f} s, peak RSS {mem:.0f} MiB", flush=True)

    env = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "python": platform.python_version(), "device": "cpu", "dtype": "float32",
           "date": time.strftime("%Y-%m-%d %H:%M")}
    (args.results / "vs_pastiche.json").write_text(json.dumps(
        {"env": env, "pairs": rows, "warpaint_1024": big}, indent=2) + "\n")
    lines = [f"warpaint vs pastiche, one run, {env['date']}: {env['cpu']}, {env['threads']} torch threads, "
             f"torch {env['torch']}, CPU, float32. Scores: `warpaint score` at 512 px (lower is better). "
             "Seconds: whole command (start-up and weight loading included).", "",
             "| content | style | size | warpaint s | pastiche s | ratio | warpaint content / style "
             "| pastiche content / style | better on both |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        w, p = r["warpaint"], r.get("pastiche")
        size = "x".join(map(str, r["size"]))
        ptxt = (f"{p['seconds']} | {r['time_ratio']:.3f} | {w['content_distance']:.3f} / "
                f"{w['style_distance']:.4f} | {p['content_distance']:.3f} / {p['style_distance']:.4f} | "
                f"{'yes' if r['warpaint_better_on_both'] else 'no'}") if p else \
            f"- | - | {w['content_distance']:.3f} / {w['style_distance']:.4f} | - | -"
        lines.append(f"| {Path(r['content']).name} | {Path(r['style']).name} | {size} | "
                     f"{w['seconds']} | {ptxt} |")
    lines.append("")
    mem = ", ".join(f"{Path(r['content']).stem}: warpaint {r['warpaint']['peak_rss_mib']} MiB"
                    + (f", pastiche {r['pastiche']['peak_rss_mib']} MiB" if "pastiche" in r else "")
                    for r in rows)
    lines.append(f"Peak resident memory at 512 px: {mem}.")
    if big:
        lines.append(f"warpaint at 1024 px ({'x'.join(map(str, big['size']))}, tubingen/starry_night, "
                     f"defaults): {big['seconds']} s, peak resident memory {big['peak_rss_mib']} MiB.")
    (args.results / "vs_pastiche.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
