"""Distorted digits: CNN against ST-CNN on R, RTS, P, E (the docs/stn.md Results table).

Trains through the CLI with its defaults (a finished checkpoint is not trained again: the
run resumes at its last step), then evaluates every checkpoint on the run's fixed 2,000
distorted test digits and on five more distorted copies of them (distortion seeds 100-104),
as the fixed set alone moves by about 0.3 points from run to run.

Usage (nothing else should run beside it: training times are reported):

    python benchmarks/bench_stn_digits.py              # about 35 minutes on 2 CPU cores
    python benchmarks/bench_stn_digits.py --no-train   # tabulate a finished run only

Results: benchmarks/results/stn_digits.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "datasets" / "mnist"
OUT = ROOT / "benchmarks" / "out" / "stn_digits"
RESULTS = ROOT / "benchmarks" / "results"
COPY_SEEDS = range(100, 105)


def more_copies(checkpoint: Path, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean error (%) of a digits checkpoint over five more distorted copies of its test digits."""
    from warpaint.apps import digits

    model, c = digits.load(checkpoint)
    _, test = digits.split(images.shape[0], c.n_test, c.seed)
    errs = [digits.evaluate(model, *digits.make_test_set(images[test], labels[test], c.distortion, s)[:2])
            for s in COPY_SEEDS]
    return round(sum(errs) / len(errs), 3)


def table(results: dict, copies: dict, threads: int) -> list[str]:
    cpu = platform.processor() or platform.machine()
    lines = [f"Distorted digits, {cpu}, {threads} threads, CPU, float32, "
             f"torch {torch.__version__}", "",
             "| distortion | epochs | CNN error | ST-CNN error | CNN, 5 more test copies | "
             "ST-CNN, 5 more test copies | CNN time | ST-CNN time |", "|---|---|---|---|---|---|---|---|"]
    for d in ("R", "RTS", "P", "E"):
        cnn, st = results.get(f"{d}/cnn"), results.get(f"{d}/stcnn")
        if cnn is None or st is None:
            continue
        lines.append(f"| {d} | {st['epochs']} | {cnn['error_pct']:.2f} % | {st['error_pct']:.2f} % | "
                     f"{copies[f'{d}/cnn']:.2f} % | {copies[f'{d}/stcnn']:.2f} % | "
                     f"{cnn['train_seconds']:.0f} s | {st['train_seconds']:.0f} s |")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-train", action="store_true", help="only tabulate the run in --out")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    if not MNIST.is_dir():
        print(f"skipped: {MNIST} not found", file=sys.stderr)
        return 0
    from warpaint.apps.digits import load_mnist
    from warpaint.cli import main as cli

    if not args.no_train:
        assert cli(["stn", "digits", "--distortion", "all", "--model", "both", "--data", str(MNIST),
                    "--out", str(args.out)]) == 0
    results = json.loads((args.out / "results.json").read_text())
    images, labels = load_mnist(MNIST)
    copies = {key: more_copies(args.out / f"{key.replace('/', '_')}.pt", images, labels) for key in results}
    for key, c in copies.items():
        results[key]["error_pct_5_more_copies"] = c
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stn_digits.json").write_text(json.dumps(results, indent=2) + "\n")
    threads = next(iter(results.values()))["threads"]
    lines = table(results, copies, threads)
    (RESULTS / "stn_digits.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
