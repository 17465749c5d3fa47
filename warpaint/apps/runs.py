"""Running the canvas applications (detection, segmentation) with and without a spatial
transformer, and recording their results (``NAME_results.json``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from torch import Tensor

from ..errors import InputError
from . import canvas
from .common import check_split, read_results, write_results

# -- running the canvas applications -----------------------------------------------------------
Report = Callable[[dict], None]


def train_variants(app: ModuleType, name: str, configs: list, data: tuple[Tensor, Tensor], out: Path, *,
                   progress: bool = True, report: Report | None = None) -> dict:
    """Train each configuration of a canvas app (``plain`` / ``stn``) into ``out``: checkpoint,
    loss curve, and its entry in ``NAME_results.json``. Returns the results."""
    from ..plots import save_loss_curve

    results_path = out / f"{name}_results.json"
    results = read_results(results_path)
    for cfg in configs:   # a refused split before anything is made
        check_split(data[0].shape[0], cfg.n_test_digits)
    out.mkdir(parents=True, exist_ok=True)
    for cfg in configs:
        variant = "stn" if cfg.stn else "plain"
        _, summary = app.train(cfg, data, checkpoint=out / f"{name}_{variant}.pt", progress=progress)
        save_loss_curve(summary.pop("history"), out / f"{name}_{variant}_loss.png",
                        title=f"{name} {variant}: {cfg.steps} steps x {cfg.batch_size} canvases "
                              f"{cfg.size} px, CPU float32, {summary['threads']} threads",
                        xlabel="training step")
        _forget_stale_eval(results, variant, summary["config"], out / f"{name}_{variant}_predictions.png")
        _record(results, results_path, name, variant, "train", summary, report)
    return results


def _forget_stale_eval(results: dict, variant: str, config: dict, picture: Path) -> None:
    """A variant retrained with another configuration: its evaluation (entry and picture)
    described the model set aside, so it goes; ``NAME-eval`` makes the new one."""
    old = results.get(variant, {}).get("eval")
    if old is not None and old.get("config") != json.loads(json.dumps(config)):
        del results[variant]["eval"]
        picture.unlink(missing_ok=True)


def evaluate_variants(app: ModuleType, name: str, variants: tuple[str, ...], load_data: Callable,
                      data_folder: Path, out: Path, *, report: Report | None = None) -> dict:
    """Evaluate each trained variant on the held-out canvas sets (that every checkpoint exists
    is checked before any work); pictures of the predictions, entries in ``NAME_results.json``."""
    from ..training import count_parameters

    results_path = out / f"{name}_results.json"
    results = read_results(results_path)
    for variant in variants:
        if not (out / f"{name}_{variant}.pt").exists():
            raise InputError(f"{out / f'{name}_{variant}.pt'}: no checkpoint (run `warpaint stn "
                             f"{name}-train` first)")
    data = load_data(data_folder)
    for variant in variants:
        ckpt = out / f"{name}_{variant}.pt"
        model, ck = app.load(ckpt)
        cfg = app.Config(**ck["config"])
        if ck["step"] < cfg.steps:
            raise InputError(f"{ckpt}: training stopped at step {ck['step']} of {cfg.steps}; "
                             f"run `warpaint stn {name}-train` again to finish it")
        _, test_digits = canvas.split_digits(data, cfg.n_test_digits, cfg.seed)
        sets = canvas.held_out_sets(test_digits, cfg.test_canvases, cfg.seed,
                                    canvas.CanvasConfig(size=cfg.size))
        summary = {"train_seconds": round(ck["seconds"], 1), "steps": cfg.steps,
                   "parameters": count_parameters(model), "config": ck["config"],
                   "test_canvases": cfg.test_canvases,
                   **{set_name: app.evaluate(model, c) for set_name, c in sets.items()}}
        app.save_predictions(model, sets["distorted"], out / f"{name}_{variant}_predictions.png")
        _record(results, results_path, name, variant, "eval", summary, report)
    return results


def _record(results: dict, path: Path, name: str, variant: str, verb: str, summary: dict,
            report: Report | None) -> None:
    results.setdefault(variant, {}).update({verb: summary})
    if report is not None:
        report({"app": name, "variant": variant, verb: summary})
    write_results(results, path)
