"""Throughput of ``warpaint batch``: the same folder of photos in this process, on a local Ray
with one worker and with two (by hand; Ray installed: ``pip install -e ".[ray]"``).

Every mode runs :func:`warpaint.batch.run_batch` (what the command runs) into a fresh output
folder: N photos from ../shared/datasets/photos with starry_night.jpg, ``--fast`` at 512 px
(``--engine`` adds the optimization engine at 128 px, 10 steps, on fewer photos). Each worker
and the in-process run use one torch thread, so 2 workers use the machine's 2 cores. Per mode:
the wall time from the call to the end (Ray start, workers' imports and model load
included), the startup (to the first result), the steady throughput (results after each
worker's first, over the time they took), the median stylization time per image (the
summaries' ``seconds``: the method alone) and the overhead per image (reading, hashing,
writing and, on Ray, the task round trip). A rerun of the in-process batch (all ``skipped``)
gives the cost of a resume check.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_batch.py             # 32 photos, the final numbers
    OMP_NUM_THREADS=1 python benchmarks/bench_batch.py --quick     # 4 photos at 256 px: a smoke run
Results: benchmarks/results/batch.{json,md} and the table in docs/scale.md (between its
``<!-- bench -->`` markers; not with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "datasets" / "photos"
STYLE = ROOT.parent / "shared" / "images" / "style" / "starry_night.jpg"
MODES = (("in-process", False, None), ("ray", True, 1), ("ray", True, 2))


def measure(jobs, spec, out_dir: Path, *, use_ray: bool, workers: int | None) -> dict:
    """One batch: wall, startup, steady throughput, median method seconds, overhead."""
    from warpaint.batch import run_batch

    stamps: list[float] = []
    t0 = time.perf_counter()
    result = run_batch(jobs, spec, out_dir, use_ray=use_ray, workers=workers, quiet=True,
                       on_result=lambda i, done: stamps.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    statuses = {s: result.count(s) for s in ("ok", "skipped", "error")}
    k = workers or 1                                   # each worker's first result is startup
    steady = (len(stamps) - k) / (stamps[-1] - stamps[k - 1]) if len(stamps) > k else float("nan")
    seconds = [i["seconds"] for i in result.items if i["status"] == "ok"]
    compute = statistics.median(seconds) if seconds else 0.0
    return {"workers": k, "images": len(jobs), **statistics_of(wall, stamps[0] - t0, steady, compute, k),
            "statuses": statuses}


def statistics_of(wall: float, startup: float, steady: float, compute: float, workers: int) -> dict:
    per_image = workers / steady if steady == steady and steady > 0 else float("nan")
    return {"wall_s": round(wall, 2), "startup_s": round(startup, 2), "steady_img_per_s": round(steady, 3),
            "s_per_img_per_worker": round(per_image, 4), "method_s_per_img": round(compute, 4),
            "overhead_s_per_img": round(per_image - compute, 4)}


def run_method(name: str, photos: list[Path], spec, root: Path) -> list[dict]:
    from warpaint.jobs import plan

    src = root / f"{name}-photos"
    src.mkdir()
    for p in photos:
        shutil.copy(p, src / p.name)
    rows = []
    for mode, use_ray, workers in MODES:
        out = root / f"{name}-{mode}-{workers or 0}"
        jobs = plan(str(src), str(out))
        row = measure(jobs, spec, out, use_ray=use_ray, workers=workers)
        rows.append({"method": name, "mode": mode, **row})
        print(json.dumps(rows[-1]), file=sys.stderr)
        if mode == "in-process":   # again: every output is skipped (the resume check's cost)
            rows.append({"method": name, "mode": "in-process, rerun (skipped)",
                         **measure(jobs, spec, out, use_ray=False, workers=None)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def table(rows: list[dict], env: dict) -> str:
    head = ("| method | mode | workers | images | wall s | startup s | steady img/s | s/img/worker "
            "| method s/img | overhead s/img |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['mode']} | {r['workers']} | {r['images']} | {r['wall_s']} | "
                     f"{r['startup_s']} | {r['steady_img_per_s']} | {r['s_per_img_per_worker']} | "
                     f"{r['method_s_per_img']} | {r['overhead_s_per_img']} |")
    lines.append("")
    lines.append(f"Measured {env['date']} on {env['machine']} ({env['cpus']} CPUs), torch {env['torch']}, "
                 f"Ray {env['ray']}; one torch thread per worker (and in-process); fast: "
                 f"--size {env.get('fast_size', '?')} (long side, px), engine: 128 px, 10 steps; CPU, float32.")
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = ROOT / "docs" / "scale.md"
    body = doc.read_text()
    start, end = "<!-- bench -->", "<!-- /bench -->"
    a, b = body.index(start) + len(start), body.index(end)
    doc.write_text(body[:a] + "\n" + text + "\n" + body[b:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=32, help="photos per batch (default: 32)")
    ap.add_argument("--size", type=int, default=512, help="--fast long side, px (default: 512)")
    ap.add_argument("--engine", action="store_true", help="also the engine at 128 px, 10 steps (8 photos)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 photos at 256 px, nothing written")
    args = ap.parse_args()
    if not PHOTOS.is_dir() or not STYLE.is_file():
        print(f"skipped: {PHOTOS} or {STYLE} not found (the shared folder beside the checkout)",
              file=sys.stderr)
        return 0
    import ray

    from warpaint.batch import BatchSpec
    from warpaint.stylize import StylizeConfig

    torch.set_num_threads(1)
    count, size = (4, 256) if args.quick else (args.images, args.size)
    every = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    photos = every[::max(1, len(every) // count)][:count]   # spread over the sets (sizes 321 to 1024 px)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        fast = BatchSpec.from_files(StylizeConfig(size=size, device="cpu"), [str(STYLE)], fast=True)
        rows += run_method("fast", photos, fast, Path(tmp))
        if args.engine:
            cfg = StylizeConfig(size=128, min_size=128, steps=10, coarse_steps=0, device="cpu")
            rows += run_method("engine", photos[:8], BatchSpec.from_files(cfg, [str(STYLE)]), Path(tmp))
    env = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
           "cpus": len(os.sched_getaffinity(0)), "torch": torch.__version__, "ray": ray.__version__,
           "fast_size": size, "quick": args.quick}
    text = table(rows, env)
    print(text)
    summarize(rows)
    if not args.quick:
        out = ROOT / "benchmarks" / "results"
        (out / "batch.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
        (out / "batch.md").write_text(text + "\n")
        write_doc(text)
    return 0


def summarize(rows: list[dict]) -> None:
    """The figures docs/scale.md's plan uses: s/img per worker and Ray's overhead per task."""
    by = {(r["method"], r["mode"], r["workers"]): r for r in rows}
    for method in sorted({r["method"] for r in rows}):
        here, one, two = (by.get((method, m, w)) for m, w in (("in-process", 1), ("ray", 1), ("ray", 2)))
        if not (here and one and two):
            continue
        print(f"{method}: {here['s_per_img_per_worker']:.3f} s/img in-process, "
              f"{one['s_per_img_per_worker']:.3f} s/img per Ray worker (overhead of a Ray task "
              f"{1000 * (one['s_per_img_per_worker'] - here['s_per_img_per_worker']):.0f} ms), "
              f"2 workers {two['steady_img_per_s']:.2f} img/s = "
              f"{two['steady_img_per_s'] / one['steady_img_per_s']:.2f}x one worker")


if __name__ == "__main__":
    sys.exit(main())
