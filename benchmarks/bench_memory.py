"""Peak memory of real runs against warpaint's estimate (warpaint/memory.py).

Each case runs in a fresh process (one thread, CPU, float32) that reports its own peak
resident memory (``ru_maxrss``); the estimate is what :func:`warpaint.jobs` checks before
the work starts. The estimate must be at or above every measured peak, and not far above.

    python benchmarks/bench_memory.py          # about 3 minutes on 2 CPU cores

Writes ``benchmarks/results/memory.{json,md}``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys
import torch
torch.set_num_threads(1)
from PIL import Image
from warpaint.jobs import EngineMethod, FastMethod
from warpaint.memory import fast_peak_bytes
from warpaint.stylize import StylizeConfig
from warpaint.io import fit_long_side
kind, size, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3]
from warpaint.demo import demo_content
from warpaint.io import tensor_to_pil
# a real photo (so that a warp finds its matches): the demo's, and itself turned as the style
content = tensor_to_pil(demo_content()).resize((size, size * 3 // 4))
style = content.rotate(12, resample=Image.Resampling.BICUBIC).resize((512, 384))
hw = fit_long_side((content.height, content.width), size)
if kind == "engine":
    cfg = StylizeConfig(size=size, min_size=size, steps=2, device="cpu", dtype="float32", warp=extra)
    method = EngineMethod(cfg, [style])
    estimate = max(p.need for p in method.stylizer.plans(hw, [(384, 512)]))
elif kind == "tiled":   # extra: the budget in GB, too small for the scale whole
    cfg = StylizeConfig(size=size, min_size=size, steps=2, device="cpu", dtype="float32",
                        max_memory=float(extra))
    method = EngineMethod(cfg, [style])
    plan = method.stylizer.plans(hw, [(384, 512)])[-1]
    assert plan.tiled, "the budget does not force tiles"
    estimate = plan.need
if kind in ("engine", "tiled"):
    _, extra_info = method.run(content, lambda it: None)
    detail = extra_info["_detail"]
    if kind == "tiled":
        extra = f"{extra} GB: tiles of {plan.core} px, L-BFGS history {plan.history}"
    if cfg.warp != "none":
        assert detail.geometry is not None and detail.geometry.applied, "the warp was not applied"
else:
    from warpaint.feedforward import load
    work = None if extra == "full" else int(extra)
    method = FastMethod(load(), [style], size=size, weights=None, strength=1.0, preserve_color="none",
                        work_size=work, max_memory=0, label="shipped")
    estimate = fast_peak_bytes(hw, work)
    method.run(content, lambda it: None)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"kind": kind, "size": size, "extra": extra, "hw": list(hw), "peak": peak,
                  "estimate": estimate}))
"""

CASES = [("engine", 256, "none"), ("engine", 512, "none"), ("engine", 768, "none"), ("engine", 1024, "none"),
         ("engine", 256, "affine"), ("engine", 384, "tps"), ("fast", 1024, "480"), ("fast", 2048, "480"),
         ("fast", 1024, "full"), ("fast", 2048, "full"), ("tiled", 1536, "4"), ("tiled", 2048, "4")]


def main() -> None:
    rows = []
    for kind, size, extra in CASES:
        out = subprocess.run([sys.executable, "-c", CHILD, kind, str(size), extra], capture_output=True,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
        if out.returncode:
            sys.exit(f"{kind} {size} {extra} failed:\n{out.stderr}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["ratio"] = round(row["estimate"] / row["peak"], 2)
        rows.append(row)
        print(row, flush=True)
    results = Path(__file__).parent / "results"
    meta = {"machine": platform.processor() or platform.machine(), "threads": 1, "device": "cpu",
            "dtype": "float32", "steps": 2, "note": "peak = ru_maxrss of a fresh process"}
    (results / "memory.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["| run | result size | measured peak | estimate | estimate / peak |", "|---|---|---|---|---|"]
    for r in rows:
        what = {"engine": f"engine, warp {r['extra']}", "tiled": f"engine, --max-memory {r['extra']}",
                "fast": f"--fast, work size {r['extra']}"}[r["kind"]]
        lines.append(f"| {what} | {r['hw'][1]}x{r['hw'][0]} | {r['peak'] / 1e9:.2f} GB | "
                     f"{r['estimate'] / 1e9:.2f} GB | {r['ratio']} |")
    (results / "memory.md").write_text(
        "Peak memory, CPU float32, one thread, 2 engine steps at one scale (`python "
        "benchmarks/bench_memory.py`)\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
