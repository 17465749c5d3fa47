"""Command line: ``warpaint stylize | demo | score``. A thin layer over the Python API.

Exit codes: 0 success, 2 bad input (one-line message on stderr), 130 interrupted (the
current image is written first).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from . import __version__
from .errors import InputError, OutputError, WarpaintError


# -- parser ---------------------------------------------------------------------------------
def _add_config_flags(p: argparse.ArgumentParser) -> None:
    from .stylize import StylizeConfig

    g = p.add_argument_group("stylization options")
    for f in fields(StylizeConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        shown = "none" if shown is None or shown == "" else shown  # 0 and 0.0 are shown as such
        kw: dict[str, Any] = {"default": default, "dest": f.name,
                              "help": f"{f.metadata['help']} (default: {shown})"}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if isinstance(f.default, bool):  # bool("False") is True: use --x / --no-x instead
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = f.metadata.get("type", type(f.default))
        g.add_argument(flag, **kw)


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output options")
    g.add_argument("--original-size", action="store_true",
                   help="write the result at the content image's own resolution (upsampled)")
    g.add_argument("--snapshot-every", type=int, default=0, metavar="N",
                   help="save the current image every N steps (default: 0 = never)")
    g.add_argument("--snapshot-dir", type=_path, default=None, metavar="DIR",
                   help="folder for snapshots (default: OUTPUT_STEM_snapshots beside the output)")
    g.add_argument("--loss-curve", type=_path, default=None, metavar="PNG",
                   help="save a plot of the losses per step to this PNG")
    g.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="write a JSON summary (sizes, steps, seconds, device, dtype, losses) "
                        "to FILE, or to stdout without FILE")
    g.add_argument("--save-warp", type=_path, default=None, metavar="DIR",
                   help="with --warp: write pictures of the warp (matches, grid, displacement, "
                        "without/with) to DIR")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _path(text: str) -> Path:
    """A path option's value; an empty one is refused (it would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (and exit code 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="warpaint", description="Neural style transfer (Gatys et al.) on VGG19.")
    parser.add_argument("--version", action="version", version=f"warpaint {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    p = sub.add_parser("stylize", help="stylize an image (or a folder of images)",
                       description="Stylize CONTENT with one or more STYLE images. CONTENT may "
                                   "be a file, a folder of images (batch: -o is then a folder) "
                                   "or - for standard input.")
    p.add_argument("content", help="content image, folder of images, or - (stdin)")
    p.add_argument("styles", nargs="*", metavar="style",
                   help="style image(s); several are blended (none with a single-style --model)")
    p.add_argument("-o", "--output", required=True,
                   help="output file (.png, .jpg, ...), folder for a batch, or - (PNG to stdout)")
    g = p.add_argument_group("feed-forward options (one forward pass instead of optimization)")
    g.add_argument("--fast", action="store_true",
                   help="use the arbitrary-style model that ships with warpaint")
    g.add_argument("--model", type=_path, default=None, metavar="PT",
                   help="use a model trained with `warpaint train` (implies --fast)")
    g.add_argument("--strength", type=float, default=1.0,
                   help="0 = the content, 1 = full style (default: 1)")
    g.add_argument("--work-size", type=int, default=None, metavar="PX",
                   help="run the network at this long side and resize the result to --size "
                        "(default: the model's own; 0 = at full size)")
    _add_config_flags(p)
    _add_output_flags(p)

    p = sub.add_parser("demo", help="run the main job on built-in images (no download)",
                       description="Stylize matplotlib's sample photo with warpaint's own "
                                   "generated swirling-night painting.")
    p.add_argument("-o", "--output", default="warpaint_demo.png", help="output file")
    p.add_argument("--save-inputs", type=_path, default=None, metavar="DIR",
                   help="also write the two built-in input images to DIR")
    _add_config_flags(p)
    _add_output_flags(p)

    p = sub.add_parser("score", help="content and style distances of a result",
                       description="Content distance (relu4_2) and style distance (mean Gram "
                                   "distance over relu1_1..relu5_1) at a fixed size. Lower is better.")
    p.add_argument("content")
    p.add_argument("style")
    p.add_argument("output")
    p.add_argument("--size", type=int, default=512, help="evaluation long side, px (default: 512)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: auto)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("train", help="train a feed-forward stylizer (arbitrary or single style)",
                       description="Train a feed-forward model with the engine's losses: an "
                                   "arbitrary-style model from a folder of paintings (--style-dir) "
                                   "or a single-style model from one painting (--style). Re-running "
                                   "the same command resumes from OUTPUT.pt.ckpt (e.g. my.pt.ckpt).")
    p.add_argument("--content-dir", type=_path, required=True, help="folder of content photos")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--style-dir", type=_path, help="folder of style images (arbitrary-style model)")
    src.add_argument("--style", type=_path, help="one style image (single-style model)")
    p.add_argument("-o", "--output", type=_path, required=True, help="model file to write (.pt)")
    from .feedforward.train import TrainConfig

    defaults = TrainConfig()
    for name, text in (("steps", "training steps"), ("batch_size", "crops per step"),
                       ("size", "content crop side, px"), ("style_size", "style crop side, px"),
                       ("content_scale", "short side the photos are loaded at, px; 0 = 1.25 x --size"),
                       ("style_scale", "short side the paintings are loaded at, px; 0 = 1.5 x --style-size"),
                       ("code_size", "long side at which a whole style image is encoded, px"),
                       ("lr", "peak learning rate"), ("style_weight", "style loss weight"),
                       ("content_weight", "content loss weight"), ("tv_weight", "total variation weight"),
                       ("seed", "seed of crops and initialization")):
        default = getattr(defaults, name)
        p.add_argument("--" + name.replace("_", "-"), type=type(default), default=default,
                       help=f"{text} (default: {default})")
    p.add_argument("--color-transfer", action="store_true",
                   help="arbitrary-style models: move the output to the style's colour mean and spread "
                        "(in training and when stylizing)")
    p.add_argument("--work-size", type=int, default=None, metavar="PX",
                   help="default long side the model runs at when stylizing, stored in the model file "
                        "(default: full size)")
    p.add_argument("--init", type=_path, default=None, metavar="MODEL.pt",
                   help="start from this model's weights (fine-tuning; same kind and shape)")
    p.add_argument("--sample-every", type=int, default=200, metavar="N",
                   help="save a sample grid every N steps to OUTPUT_samples/ (default: 200; 0 = never)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda (default: auto)")
    p.add_argument("--max-memory", type=float, default=0.0, metavar="GB",
                   help="memory budget for a training step's estimated peak (default: 0 = what the "
                        "device has free)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("serve", help="a web page that stylizes uploads and shows the picture forming",
                       description="Serve the web page (see docs/web.md): upload a photo and paintings, "
                                   "watch the run live, download the result. One run at a time; "
                                   "the others queue.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this "
                                                        "machine only; a wider one prints a warning)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: auto)")
    p.add_argument("--upload-mb", type=float, default=25.0, help="largest upload per file, MB (default: 25)")
    p.add_argument("--max-size", type=int, default=1024, help="largest result side, px (default: 1024)")
    p.add_argument("--max-queue", type=int, default=8, help="runs waiting at most (default: 8)")
    p.add_argument("--per-client", type=int, default=4,
                   help="runs waiting or running per client address (default: 4)")
    p.add_argument("--keep-minutes", type=float, default=60.0,
                   help="how long a finished result is kept (default: 60)")

    stn = sub.add_parser("stn", help="spatial transformer network applications")
    stn_sub = stn.add_subparsers(dest="stn_command", required=True, metavar="APP", parser_class=_Parser)
    p = stn_sub.add_parser("digits", help="distorted MNIST: plain CNN vs ST-CNN",
                           description="Train and evaluate a CNN and an ST-CNN on distorted MNIST "
                                       "digits (R, RTS, P, E as in Jaderberg et al. 2015).")
    p.add_argument("--data", type=_path, default=Path("../shared/datasets/mnist"),
                   help="folder with the MNIST IDX files (default: ../shared/datasets/mnist)")
    p.add_argument("--distortion", default="RTS", help="R, RTS, P, E or all (default: RTS)")
    p.add_argument("--model", default="both", choices=("cnn", "stcnn", "both"),
                   help="which model(s) to train (default: both)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs (default: per distortion, R 40, RTS 30, P and E 25)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the distortions (default: 0)")
    p.add_argument("--stn-kind", default=None, choices=("affine", "similarity", "projective", "tps"),
                   help="the ST-CNN's transform (default: per distortion, see docs/stn.md)")
    p.add_argument("--stn-output", type=int, default=None, metavar="PX",
                   help="side of the transformer's output (default: per distortion; 0 = input size)")
    p.add_argument("--equivariance", type=float, default=None,
                   help="weight of the rotation-equivariance term (default: per distortion)")
    p.add_argument("--rotation-prior", type=float, default=None,
                   help="weight of the squared rotation angle (default: per distortion)")
    p.add_argument("--turned-view", action=argparse.BooleanOptionalAction, default=None,
                   help="train the classifier on the equivariance term's turned batch too "
                        "(default: per distortion)")
    p.add_argument("--turn-degrees", type=float, default=None, metavar="DEG",
                   help="range of the equivariance term's extra turns, +-DEG (default: per distortion)")
    p.add_argument("--stn-iterations", type=int, default=None,
                   help="localization passes, composed (default: per distortion)")
    p.add_argument("--stn-lr-scale", type=float, default=None, metavar="X",
                   help="learning-rate factor of the localization net (default: per distortion)")
    p.add_argument("--stn-localization", default=None, choices=("deep", "small"),
                   help="the ST-CNN's localization network (default: per distortion, see docs/stn.md)")
    p.add_argument("--out", type=_path, default=Path("stn_digits"),
                   help="folder for checkpoints, results.json and pictures (default: stn_digits)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    for app, what in (("detect", "Faster R-CNN detector"), ("seg", "U-Net segmenter")):
        _add_canvas_app(stn_sub, app, what)
    return parser


def _add_canvas_app(sub, app: str, what: str) -> None:
    """``stn APP-train`` and ``stn APP-eval`` for the cluttered-canvas applications."""
    for verb in ("train", "eval"):
        p = sub.add_parser(f"{app}-{verb}", help=f"{verb} the {what} with and without an STN",
                           description=f"{'Train' if verb == 'train' else 'Evaluate'} the {what} on "
                                       "synthetic 128 px canvases of cluttered MNIST digits under a "
                                       "random affine distortion, with and without a spatial "
                                       "transformer in front (see docs/stn.md).")
        p.add_argument("--data", type=_path, default=Path("../shared/datasets/mnist"),
                       help="folder with the MNIST IDX files (default: ../shared/datasets/mnist)")
        p.add_argument("--model", default="both", choices=("plain", "stn", "both"),
                       help="without STN, with STN, or both (default: both)")
        p.add_argument("--out", type=_path, default=Path(f"stn_{app}"),
                       help=f"folder of checkpoints, results and pictures (default: stn_{app})")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        if verb == "eval":
            continue
        p.add_argument("--steps", type=int, default=None, help="training steps (default: per app)")
        p.add_argument("--batch-size", type=int, default=None, help="canvases per step (default: 8)")
        p.add_argument("--stn-kind", default=None, choices=("rigid", "similarity", "affine", "projective"),
                       help="the transformer's transform (default: rigid, turn and shift)")
        p.add_argument("--equivariance", type=float, default=None,
                       help="weight of the self-supervised rotation-equivariance term (default: 1)")
        if app == "seg":
            p.add_argument("--stn-encoder", action=argparse.BooleanOptionalAction, default=None,
                           help="also a transformer on the deepest encoder features (default: no)")
        p.add_argument("--test-canvases", type=int, default=None,
                       help="canvases in each test set, used by the eval command (default: 300)")
        p.add_argument("--seed", type=int, default=None, help="seed (default: 0)")


# -- helpers --------------------------------------------------------------------------------
class _Progress:
    """Per-step callback of the CLI: progress bar and snapshots (one bar per job)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.bar = args, None

    def __call__(self, job, it) -> None:
        from .io import save_image

        if self.bar is None and not self.args.quiet:
            from tqdm import tqdm

            label = {"-": "stdin", "demo-content": "demo"}.get(job.content, Path(job.content).name)
            self.bar = tqdm(total=it.total, desc=label, unit="step", file=sys.stderr, dynamic_ncols=True)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{it.size[1]}x{it.size[0]} " + " ".join(
                f"{k}={v:.3g}" for k, v in it.losses.items()), refresh=False)
            self.bar.update(1)
        if self.args.snapshot_every > 0 and it.done % self.args.snapshot_every == 0:
            save_image(it.image, _snapshot_dir(self.args, job.output) / f"step_{it.done:05d}.png")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None


def _snapshot_dir(args: argparse.Namespace, output: str) -> Path:
    base = Path(output if output != "-" else "warpaint")
    folder = args.snapshot_dir or base.with_name(base.stem + "_snapshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_json(dest: str | None, summaries: list[dict]) -> None:
    """``--json``: the run summaries (one object for one run) to stdout (``-``) or a file."""
    if dest is None:
        return
    text = json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=2, allow_nan=False)
    if dest == "-":
        print(text)
    else:
        from .io import write_bytes_atomic

        write_bytes_atomic((text + "\n").encode(), Path(dest))


def _config(args: argparse.Namespace):
    """The StylizeConfig of the options (validated: its errors name fields, main() shows flags)."""
    from .stylize import StylizeConfig

    return StylizeConfig(**{f.name: getattr(args, f.name) for f in fields(StylizeConfig)})


def _guard_side_outputs(args: argparse.Namespace, inputs: Sequence[str]) -> None:
    """--json FILE, --loss-curve, --snapshot-dir and --save-warp never replace an input, and
    --json without FILE does not share stdout with -o -."""
    from .jobs import guard_output, same_file

    if args.output == "-" and args.json == "-":
        raise InputError("--json without FILE prints to stdout, which -o - already uses")
    if args.json not in (None, "-"):
        guard_output(args.json, inputs, what="--json file", formats=None)
    if getattr(args, "loss_curve", None) is not None:
        guard_output(args.loss_curve, inputs, what="--loss-curve file", formats=(".png",))
    for flag in ("snapshot_dir", "save_warp"):
        folder = getattr(args, flag, None)
        if folder is not None and folder.exists() and (not folder.is_dir() or any(
                s != "-" and same_file(s, folder) for s in inputs)):
            raise OutputError(f"{folder}: --{flag.replace('_', '-')} must be a folder, not a file")


def _method(args: argparse.Namespace, cfg, style_srcs: Sequence[str], loaded: dict | None = None):
    """The job layer's method for the options: the engine, or --fast / --model."""
    from .jobs import make_method, read_pil

    fast = getattr(args, "fast", False) or getattr(args, "model", None) is not None
    if args.save_warp is not None and cfg.warp == "none":
        raise InputError("--save-warp needs --warp affine or --warp tps")
    for flag, used in (("--snapshot-every", args.snapshot_every > 0), ("--loss-curve", args.loss_curve),
                       ("--save-warp", args.save_warp)):
        if used and fast:
            raise InputError(f"{flag} works with the optimization engine, not with --fast / --model")
    styles = [(loaded or {}).get(s) or read_pil(s) for s in style_srcs]
    return make_method(cfg, styles, fast=fast, model=getattr(args, "model", None),
                       strength=getattr(args, "strength", 1.0), work_size=getattr(args, "work_size", None))


def _extra_outputs(args: argparse.Namespace, outcome, method, many: bool) -> None:
    """Loss curve, warp pictures and the warp report of a finished engine job."""
    summary = outcome.summary
    detail = summary.get("_detail")
    w, h = summary["output_size"]
    title = f"{w}x{h} px, {summary['steps']} steps, {method.device.type}, {method.dtype}"
    stem = Path(outcome.job.output).stem
    if detail is not None and detail.geometry is not None:
        summary["warp"] = detail.geometry.describe((h, w))
        if args.save_warp is not None:
            from .stn.visualize import save_warp_pictures

            folder = args.save_warp / stem if many else args.save_warp
            save_warp_pictures(folder, summary["_content"], method.styles[detail.main_style], detail.unwarped,
                               detail.image, detail.geometry, caption=title)
    if detail is not None and detail.aligned:
        summary["align_style"] = [g.describe((h, w)) for g in detail.aligned]
    if getattr(args, "loss_curve", None) is not None and method.name == "optimize":
        from .plots import save_loss_curve

        curve = args.loss_curve.with_name(f"{args.loss_curve.stem}_{stem}.png") if many else args.loss_curve
        save_loss_curve(outcome.history, curve, scale_starts=outcome.scale_starts, title=title)


def _run(args: argparse.Namespace, jobs, method, style_srcs: Sequence[str], loaded: dict | None = None) -> int:
    """Run the jobs; print one line per result or error; exit 2 when any job failed."""
    from .errors import Interrupted
    from .jobs import run_jobs, summary_of

    progress, outcomes = _Progress(args), []
    try:
        for outcome in run_jobs(jobs, method, original_size=args.original_size, on_step=progress,
                                loaded=loaded):
            progress.close()
            outcomes.append(outcome)
            if outcome.status == "error":
                print(f"warpaint: error: {outcome.error}", file=sys.stderr)
                continue
            outcome.summary["styles"] = list(style_srcs)
            _extra_outputs(args, outcome, method, len(jobs) > 1)
            s = outcome.summary
            if not args.quiet and outcome.job.output != "-":
                print(f"wrote {outcome.job.output} ({s['output_size'][0]}x{s['output_size'][1]} px, "
                      f"{s['steps']} steps, {method.device.type}, {method.dtype}, {s['seconds']:.2f} s)",
                      file=sys.stderr)
    except Interrupted as e:
        progress.close()
        o = e.outcome  # type: ignore[attr-defined]
        outcomes.append(o)
        where = f"wrote the current image (step {len(o.history)}) to {o.partial}" if o.partial else \
            "nothing written"
        print(f"warpaint: interrupted; {where}", file=sys.stderr)
        _write_json(args.json, [summary_of(x) for x in outcomes])
        return e.exit_code
    if len(jobs) > 1 or outcomes[0].status == "ok":
        _write_json(args.json, [summary_of(x) for x in outcomes])
    failed = sum(o.status == "error" for o in outcomes)
    if failed and len(jobs) > 1:
        print(f"warpaint: error: {failed} of {len(jobs)} images failed (see above)", file=sys.stderr)
    return 2 if failed else 0


# -- commands -------------------------------------------------------------------------------
def cmd_stylize(args: argparse.Namespace) -> int:
    from .jobs import guard_jobs, plan

    fast = args.fast or args.model is not None
    if not fast and not args.styles:
        raise InputError("give at least one style image (or --fast / --model for a trained model)")
    cfg = _config(args)   # validate options before any work
    inputs = [args.content, *args.styles]
    jobs = plan(args.content, args.output)
    guard_jobs(jobs, inputs)
    _guard_side_outputs(args, [*inputs, *(j.content for j in jobs)])
    return _run(args, jobs, _method(args, cfg, args.styles), args.styles)


def cmd_train(args: argparse.Namespace) -> int:
    """``warpaint train``: a feed-forward model from folders of images."""
    from .device import pick_device
    from .errors import Interrupted, check_number
    from .feedforward.train import TrainConfig, from_checkpoint, list_images, load_pool, train
    from .memory import check_budget, training_peak_bytes
    from .jobs import guard_output, partial_path
    from .plots import save_loss_curve

    kind = "single" if args.style is not None else "arbitrary"
    cfg = TrainConfig(kind=kind, steps=args.steps, batch_size=args.batch_size, size=args.size,
                      style_size=args.style_size, lr=args.lr, style_weight=args.style_weight,
                      content_weight=args.content_weight, tv_weight=args.tv_weight, seed=args.seed,
                      content_scale=args.content_scale, style_scale=args.style_scale,
                      code_size=args.code_size, init=str(args.init or ""), color_transfer=args.color_transfer)
    if args.output.suffix != ".pt":
        raise InputError(f"{args.output}: the model file must end in .pt")
    if args.style is not None and not args.style.is_file():
        raise InputError(f"{args.style}: style image not found")
    if args.style is not None and args.color_transfer:
        raise InputError("--color-transfer is for arbitrary-style models (--style-dir)")
    if args.work_size is not None:
        check_number("--work-size", args.work_size, lo=32, hi=16384, integer=True)
    if args.sample_every < 0:
        raise InputError(f"--sample-every must be >= 0, got {args.sample_every}")
    if args.init is not None and not args.init.is_file():
        raise InputError(f"{args.init}: model file not found")
    style_paths = [args.style] if args.style is not None else list_images(args.style_dir)
    content_paths = list_images(args.content_dir)
    guard_output(args.output, [str(p) for p in (*style_paths, *content_paths, args.init) if p],
                 what="model file", formats=(".pt",))
    device = pick_device(args.device)
    check_number("--max-memory", args.max_memory, lo=0)
    check_budget(training_peak_bytes(cfg.batch_size, cfg.size, cfg.style_size), args.max_memory, device,
                 f"training on {cfg.batch_size} crops of {cfg.size} px")
    content_short, style_short = cfg.scales()
    contents = load_pool(content_paths, content_short)
    # single style: the whole painting, short side at --style-size; arbitrary: crops of each
    styles = load_pool(style_paths, style_short)
    samples = args.output.with_name(args.output.stem + "_samples") if args.sample_every > 0 else None
    ckpt = args.output.with_name(args.output.name + ".ckpt")
    try:
        model, summary = train(cfg, contents, styles, checkpoint=ckpt, samples=samples,
                               sample_every=max(args.sample_every, 1), device=device, progress=not args.quiet)
    except KeyboardInterrupt as e:
        if ckpt.exists():
            partial = from_checkpoint(ckpt)
            partial.work_size = args.work_size
            dest = Path(partial_path(str(args.output)))
            partial.save(dest)
            print(f"warpaint: interrupted; wrote the model so far to {dest} and the training state to "
                  f"{ckpt} (run the same command to resume)", file=sys.stderr)
        return e.exit_code if isinstance(e, Interrupted) else 130
    model.training["content_images"] = len(contents)
    model.training["style_images"] = len(styles)
    model.work_size = args.work_size
    model.save(args.output)
    save_loss_curve(summary["history"], args.output.with_name(args.output.stem + "_loss.png"),
                    title=f"{kind}: {cfg.steps} steps x {cfg.batch_size} crops of {cfg.size} px, "
                          f"{device.type} float32", xlabel="training step")
    print(f"wrote {args.output} ({kind} model, {cfg.steps} steps, {summary['seconds']:.0f} s)", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo_content, demo_style
    from .io import save_image, tensor_to_pil
    from .jobs import Job, guard_jobs

    cfg = _config(args)
    jobs = [Job("demo-content", args.output)]
    guard_jobs(jobs, [])
    _guard_side_outputs(args, [])
    content, style = tensor_to_pil(demo_content()), tensor_to_pil(demo_style())
    if args.save_inputs is not None:
        args.save_inputs.mkdir(parents=True, exist_ok=True)
        save_image(content, args.save_inputs / "demo_content.png")
        save_image(style, args.save_inputs / "demo_style.png")
    loaded = {"demo-content": content, "demo-style": style}
    return _run(args, jobs, _method(args, cfg, ["demo-style"], loaded), ["demo-style"], loaded)


def cmd_score(args: argparse.Namespace) -> int:
    from .device import pick_device
    from .errors import check_number
    from .io import fit_long_side, pil_to_tensor
    from .jobs import read_pil
    from .memory import check_budget, engine_peak_bytes
    from .score import score
    from .stylize import StylizeConfig
    from .vgg import VGGFeatures

    check_number("--size", args.size, lo=16, hi=4096, integer=True)
    device = pick_device(args.device)
    c, s, o = (read_pil(p) for p in (args.content, args.style, args.output))
    hw = fit_long_side((c.height, c.width), args.size)
    # three forward passes without gradients: well under one engine step at the same size
    check_budget(engine_peak_bytes(StylizeConfig(size=args.size), hw, hw, []) // 2, 0, device,
                 f"scoring at {args.size} px")
    vgg = VGGFeatures().to(device)
    result = score(*(pil_to_tensor(im) for im in (c, s, o)), size=args.size, vgg=vgg)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(f"content distance {result.content:.4f}  style distance {result.style:.4f}  "
              f"(at {args.size} px; lower is better)")
    return 0


def cmd_stn_digits(args: argparse.Namespace) -> int:
    from .apps import digits
    from .apps.results import read_results, write_results

    names = digits.DISTORTIONS if args.distortion == "all" else (args.distortion,)
    if any(n not in digits.DISTORTIONS for n in names):
        raise InputError(f"--distortion must be one of {', '.join(digits.DISTORTIONS)} or all")
    models = ("cnn", "stcnn") if args.model == "both" else (args.model,)
    keys = ("epochs", "batch_size", "seed", "stn_kind", "stn_output", "equivariance", "rotation_prior",
            "turned_view", "turn_degrees", "stn_iterations", "stn_localization", "stn_lr_scale")
    configs = [digits.config_for(name, kind, **{k: getattr(args, k) for k in keys})
               for name in names for kind in models]      # every option checked before any work
    if args.out.exists() and not args.out.is_dir():
        raise OutputError(f"{args.out}: exists and is not a folder")
    results_path = args.out / "results.json"
    results = read_results(results_path)
    data = digits.load_mnist(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    for cfg in configs:
        name, kind = cfg.distortion, cfg.model
        model, res, test = digits.train(cfg, data, checkpoint=args.out / f"{name}_{kind}.pt",
                                        progress=not args.quiet)
        if kind == "stcnn":
            digits.save_alignment_grid(model, test.images, args.out / f"{name}_stn_grid.png")
            if name in ("R", "RTS"):
                res.update(digits.rotation_check(model, test, plot=args.out / f"{name}_rotation.png"))
        results[f"{name}/{kind}"] = res
        print(json.dumps(res), file=sys.stderr)
        write_results(results, results_path)
    return 0


def _checked_app_config(app, **kw):
    cfg = app.Config(**kw)
    app.check_config(cfg)
    return cfg


def _canvas_app(name: str):
    import importlib

    return importlib.import_module(f".apps.{'detection' if name == 'detect' else 'segmentation'}",
                                   __package__)


def cmd_stn_app(args: argparse.Namespace) -> int:
    """``stn detect-train | detect-eval | seg-train | seg-eval``."""
    from .apps import canvas
    from .apps.digits import load_mnist
    from .apps.results import read_results, write_results
    from .plots import save_loss_curve
    from .training import count_parameters

    name, verb = args.stn_command.split("-")
    app = _canvas_app(name)
    variants = ("plain", "stn") if args.model == "both" else (args.model,)
    configs = {}
    if verb == "train":   # check every option before any work
        keys = ("steps", "batch_size", "stn_kind", "equivariance", "stn_encoder", "test_canvases", "seed")
        given = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
        for variant in variants:
            configs[variant] = _checked_app_config(app, stn=variant == "stn", **given)
    if args.out.exists() and not args.out.is_dir():
        raise OutputError(f"{args.out}: exists and is not a folder")
    results_path = args.out / f"{name}_results.json"
    results = read_results(results_path)
    for variant in variants if verb == "eval" else ():
        if not (args.out / f"{name}_{variant}.pt").exists():
            raise InputError(f"{args.out / f'{name}_{variant}.pt'}: no checkpoint (run `warpaint stn "
                             f"{name}-train` first)")
    data = load_mnist(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    for variant in variants:
        ckpt = args.out / f"{name}_{variant}.pt"
        if verb == "train":
            cfg = configs[variant]
            _, summary = app.train(cfg, data, checkpoint=ckpt, progress=not args.quiet)
            save_loss_curve(summary.pop("history"), args.out / f"{name}_{variant}_loss.png",
                            title=f"{name} {variant}: {cfg.steps} steps x {cfg.batch_size} canvases "
                                  f"{cfg.size} px, CPU float32, {summary['threads']} threads",
                            xlabel="training step")
        else:
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
                       "test_canvases": cfg.test_canvases}
            for set_name, c in sets.items():
                summary[set_name] = app.evaluate(model, c)
            app.save_predictions(model, sets["distorted"], args.out / f"{name}_{variant}_predictions.png")
        results.setdefault(variant, {}).update({verb: summary})
        print(json.dumps({"app": name, "variant": variant, verb: summary}), file=sys.stderr)
        write_results(results, results_path)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``warpaint serve``: the web page (warpaint.web) until Ctrl-C."""
    from .device import pick_device
    from .errors import check_number

    pick_device(args.device)   # a device that cannot run is refused now, not at every run
    check_number("port", args.port, lo=0, hi=65535, integer=True)
    for name, lo, hi in (("upload_mb", 0.001, 1e4), ("max_size", 32, 16384), ("max_queue", 1, 1e4),
                         ("per_client", 1, 1e4), ("keep_minutes", 0, 1e6)):
        check_number(name, getattr(args, name), lo=lo, hi=hi)
    try:
        from .web import Settings, serve
    except ImportError as e:
        raise InputError(f"the web page needs FastAPI and uvicorn ({e}): pip install -e .") from None
    serve(args.host, args.port, Settings(upload_mb=args.upload_mb, max_size=args.max_size,
                                         max_queue=args.max_queue, per_client=args.per_client,
                                         keep_minutes=args.keep_minutes, device=args.device))
    return 0


def cmd_stn(args: argparse.Namespace) -> int:
    return cmd_stn_digits(args) if args.stn_command == "digits" else cmd_stn_app(args)


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of the parser and its subcommands."""
    names = set()
    for action in parser._actions:  # noqa: SLF001
        names.update(action.option_strings)
        for sub in (action.choices or {}).values() if isinstance(action, argparse._SubParsersAction) else ():
            names |= _options(sub)
    return names


def _as_flag(message: str, parser: argparse.ArgumentParser) -> str:
    """A library error names a field (``style_weight must be ...``); the CLI names its flag."""
    field, _, rest = message.partition(" ")
    flag = "--" + field.replace("_", "-")
    return f"{flag} {rest}" if field.isidentifier() and flag in _options(parser) else message


def _terminate(signum, frame) -> None:
    """SIGTERM outside a run's own handler: treated like Ctrl-C (temporary files removed)."""
    from .errors import Interrupted

    raise Interrupted(signum)


def main(argv: Sequence[str] | None = None) -> int:
    import signal
    import threading

    from .errors import Interrupted

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warpaint: %(message)s")
    command = {"stylize": cmd_stylize, "demo": cmd_demo, "score": cmd_score, "train": cmd_train,
               "stn": cmd_stn, "serve": cmd_serve}[args.command]
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return command(args)
    except WarpaintError as e:
        print(f"warpaint: error: {_as_flag(str(e), parser)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("warpaint: interrupted", file=sys.stderr)
        return e.exit_code if isinstance(e, Interrupted) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
