"""Temporal consistency of ``warpaint video`` against per-frame stylization (by hand).

On ../shared/images/video/bunny.mp4 (640x360, 24 fps, 240 frames) with a shared painting,
each variant is run through ``warpaint.video.run_video`` (the same code as the command) and
its output is measured:

* warping error (Lai et al. 2018): per frame pair, the mean over the pixels the occlusion
  mask keeps of the squared RGB difference between the stylized frame and the previous
  stylized frame warped into it; the flow is Farneback's on the *input* frames at the output
  size (not the DIS flow the temporal blend uses), mask from forward-backward consistency
  (:func:`warpaint.flow.occlusion_mask`); averaged over all pairs;
* style distance: ``warpaint score``'s (relu1_1..relu5_1 Gram distance at 512 px) of every
  ``--score-every``-th frame against the painting, averaged;
* frames per second of the whole run (decode, flow, stylization, encode), CPU threads stated.

Usage:
    python benchmarks/bench_video.py [--method fast|optimize] [--frames N] [--size PX]
        [--threads T] [--style NAME] [--variants none,temporal] [--strip]
Results: benchmarks/results/video_<method>.{json,md}; with --strip docs/images/video_strip.jpg.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "images"
VIDEO = SHARED / "video" / "bunny.mp4"


def measure(source: str, output: str, style, *, max_frames: int, score_every: int, vgg) -> dict:
    """Warping error and style distance of a stylized video against its source."""
    from warpaint.flow import occlusion_mask, optical_flow, warping_error
    from warpaint.io import resize
    from warpaint.score import score
    from warpaint.videoio import read_frames

    outs = list(read_frames(output))
    ins = [resize(f, tuple(outs[0].shape[-2:])) for f in read_frames(source, max_frames=len(outs))]
    errors, styles = [], []
    for t in range(len(outs)):
        if t % score_every == 0:
            styles.append(score(ins[t], style, outs[t], size=512, vgg=vgg).style)
        if t == 0:
            continue
        backward = optical_flow(ins[t], ins[t - 1], method="farneback")
        forward = optical_flow(ins[t - 1], ins[t], method="farneback")
        errors.append(warping_error(outs[t - 1], outs[t], backward, occlusion_mask(forward, backward)))
    return {"frames": len(outs), "warping_error": sum(errors) / len(errors),
            "style_distance": sum(styles) / len(styles), "scored_frames": len(styles)}


def strip(source: str, outputs: dict[str, str], dest: Path, frames: tuple[int, ...]) -> None:
    """Rows: input, then each variant; columns: ``frames`` (consecutive: flicker shows)."""
    from warpaint.io import resize, save_image
    from warpaint.videoio import read_frames

    rows = []
    for path in (source, *outputs.values()):
        got = [f for i, f in enumerate(read_frames(path, max_frames=max(frames) + 1)) if i in frames]
        rows.append(torch.cat([resize(f, (144, 256)) for f in got], dim=-1))
    save_image(torch.cat(rows, dim=-2), dest, quality=85)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", choices=("fast", "optimize"), default="fast")
    p.add_argument("--frames", type=int, default=0, help="0 = all")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--style", default="starry_night")
    p.add_argument("--variants", default="none,temporal")
    p.add_argument("--blend", type=float, default=None)
    p.add_argument("--temporal-weight", type=float, default=None)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--score-every", type=int, default=4)
    p.add_argument("--strip", action="store_true")
    args = p.parse_args()
    if not VIDEO.exists():
        print(f"skipped: {VIDEO} not found", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    from warpaint.io import load_image, read_pil
    from warpaint.jobs import make_method
    from warpaint.stylize import StylizeConfig
    from warpaint.vgg import VGGFeatures
    from warpaint.video import VideoConfig, run_video

    style_file = SHARED / "style" / f"{args.style}.jpg"
    cfg = StylizeConfig(size=args.size, steps=args.steps)
    method = make_method(cfg, [read_pil(str(style_file))], fast=args.method == "fast")
    style, vgg = load_image(style_file), VGGFeatures(pooling="max")
    out_dir = Path(tempfile.mkdtemp(prefix="bench_video_"))
    results, outputs = {}, {}
    for variant in args.variants.split(","):
        extra = {k: v for k, v in (("blend", args.blend), ("temporal_weight", args.temporal_weight))
                 if v is not None}
        vcfg = VideoConfig(method=args.method, temporal=variant == "temporal", max_frames=args.frames,
                           **extra)
        dest = str(out_dir / f"{variant}.mp4")
        t0 = time.perf_counter()
        outcome = run_video(str(VIDEO), dest, method, vcfg)
        seconds = time.perf_counter() - t0
        outputs[variant] = dest
        results[variant] = {**measure(str(VIDEO), dest, style, max_frames=args.frames,
                                      score_every=args.score_every, vgg=vgg),
                            "seconds": round(seconds, 2),
                            "fps": round(outcome.summary["frames"] / seconds, 3),
                            "size": outcome.summary["size"], "config": vcfg.__dict__}
        print(variant, {k: v for k, v in results[variant].items() if k != "config"}, flush=True)
    if "none" in results and "temporal" in results:
        a, b = results["none"], results["temporal"]
        results["change"] = {"warping_error": b["warping_error"] / a["warping_error"] - 1,
                             "style_distance": b["style_distance"] / a["style_distance"] - 1}
        print("change", results["change"])
    meta = {"video": VIDEO.name, "style": style_file.name, "method": args.method, "size": args.size,
            "steps": args.steps, "threads": args.threads, "device": "cpu", "dtype": str(method.dtype),
            "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / f"video_{args.method}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    if args.strip:
        strip(str(VIDEO), outputs, ROOT / "docs" / "images" / f"video_strip_{args.method}.jpg",
              (100, 101, 102, 103))
    return 0


if __name__ == "__main__":
    sys.exit(main())
