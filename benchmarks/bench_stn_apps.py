"""STN applications on cluttered digit canvases: each model with and without a spatial
transformer, trained and evaluated through the CLI with its defaults (by hand).

Runs, one after the other in this process (nothing else should run beside it: training
times are reported):

    warpaint stn detect-train --model both --out benchmarks/out/apps
    warpaint stn seg-train    --model both --out benchmarks/out/apps
    warpaint stn detect-eval / seg-eval   (the same folders)

A finished checkpoint is not trained again (the run resumes at its last step), so running
this twice only re-evaluates. Results: benchmarks/results/stn_apps.{md,json}; pictures:
docs/images/stn_{detect,seg}_*.jpg.

Usage:
    python benchmarks/bench_stn_apps.py          # about an hour on 2 CPU cores
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "datasets" / "mnist"
OUT = ROOT / "benchmarks" / "out"
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "images"

RUNS = [  # (app, output folder, extra train flags, variants, label)
    ("detect", "apps", [], ("plain", "stn"), ""),
    ("seg", "apps", [], ("plain", "stn"), ""),
]


def to_jpeg(png: Path, jpg: Path, quality: int = 85) -> None:
    Image.open(png).convert("RGB").save(jpg, quality=quality, optimize=True)


def rotation_tracking(app: str, ckpt: Path, data) -> dict:
    """How well the transformer's turn follows the sheet's: on the distorted test canvases,
    the correlation between the angle it applies and the sheet's rotation, and its spread."""
    import importlib

    from warpaint.apps import canvas

    mod = importlib.import_module(f"warpaint.apps.{'detection' if app == 'detect' else 'segmentation'}")
    model, ck = mod.load(ckpt)
    cfg = mod.Config(**ck["config"])
    _, test = canvas.split_digits(data, cfg.n_test_digits, cfg.seed)
    c = canvas.held_out_sets(test, cfg.test_canvases, cfg.seed)["distorted"]
    with torch.no_grad():
        _, p = model.transform(c.images)
    applied = torch.atan2(p[:, 1, 0], p[:, 0, 0]).rad2deg()
    t = c.theta                       # output -> input: undoing the sheet means turning like theta^-1
    sheet = -torch.atan2(t[:, 1, 0] - t[:, 0, 1], t[:, 0, 0] + t[:, 1, 1]).rad2deg()
    r = torch.corrcoef(torch.stack([applied.double(), sheet.double()]))[0, 1]
    constant = bool(applied.std() < 1e-3)         # r is undefined: the transformer ignores its input
    return {"rotation_r": None if constant else round(float(r), 3), "stn_angle_sd": round(float(applied.std()), 2),
            "sheet_angle_sd": round(float(sheet.std()), 2)}


def main() -> int:
    from warpaint.cli import main as cli

    if not MNIST.is_dir():
        print(f"skipped: {MNIST} not found", file=sys.stderr)
        return 0
    rows = []
    for app, folder, flags, variants, label in RUNS:
        out = OUT / folder
        for variant in variants:
            common = ["--data", str(MNIST), "--model", variant, "--out", str(out), "-q"]
            assert cli(["stn", f"{app}-train", *common, *flags]) == 0
            assert cli(["stn", f"{app}-eval", *common]) == 0
            res = json.loads((out / f"{app}_results.json").read_text())[variant]
            name = {"plain": "none", "stn": "rigid STN"}[variant] + (f", {label}" if label else "")
            row = {"app": app, "variant": name, **res["eval"]}
            if variant == "stn":
                from warpaint.apps.digits import load_mnist

                row.update(rotation_tracking(app, out / f"{app}_{variant}.pt", load_mnist(MNIST)))
            rows.append(row)
            tag = f"{app}_{variant}" + (f"_{folder.removeprefix('apps_')}" if folder != "apps" else "")
            to_jpeg(out / f"{app}_{variant}_predictions.png", DOCS / f"stn_{tag}.jpg")
    env = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "device": "cpu", "dtype": "float32"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stn_apps.json").write_text(json.dumps({"env": env, "runs": rows}, indent=2) + "\n")
    metric = {"detect": ("map_50", "mAP@0.5"), "seg": ("miou", "mIoU")}
    lines = [f"STN applications, 128 px canvases, CPU float32, {env['threads']} threads, torch {env['torch']}",
             "", "| model | transformer | metric | undistorted | distorted | steps x batch | parameters | "
             "training time | turn follows sheet (r) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        key, label = metric[r["app"]]
        cfg = r["config"]
        extra = f" (digit IoU {r['undistorted']['digit_iou']:.3f} / {r['distorted']['digit_iou']:.3f})" \
            if r["app"] == "seg" else ""
        lines.append(f"| {'Faster R-CNN' if r['app'] == 'detect' else 'U-Net'} | {r['variant']} | {label}{extra} | "
                     f"{r['undistorted'][key]:.3f} | {r['distorted'][key]:.3f} | "
                     f"{cfg['steps']} x {cfg['batch_size']} | {r['parameters']:,} | {r['train_seconds'] / 60:.1f} min | "
                     f"{'-' if 'rotation_r' not in r else r['rotation_r'] if r['rotation_r'] is not None else 'constant'} |")
    (RESULTS / "stn_apps.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
