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
def _path(text: str) -> Path:
    """A path option's value; an empty one is refused (it would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


def add_config_flags(p: argparse.ArgumentParser, cls, *, groups: dict[str, tuple[str, ...]] | None = None,
                     skip: tuple[str, ...] = (), unset: bool = False) -> None:
    """One ``--field-name`` flag per field of the dataclass ``cls``: help, choices, type and
    metavar from the field's metadata, in the argument groups ``groups`` (or the field's
    ``group``). With ``unset`` the flags default to None (the command fills in its own
    defaults, e.g. per distortion). This is the only place configs become flags."""
    group_of = {n: g for g, names in (groups or {}).items() for n in names}
    made: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(cls):
        if f.name in skip:
            continue
        name = group_of.get(f.name) or f.metadata.get("group", "")
        if name not in made:
            made[name] = p.add_argument_group(f"{name} options" if name else "options")
        shown = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        shown = "none" if shown is None or shown == "" else shown   # 0 and 0.0 are shown as such
        kw: dict[str, Any] = {"default": None if unset else f.default, "dest": f.name,
                              "help": f"{f.metadata['help']} (default: {shown})"}
        for key in ("choices", "metavar"):
            if key in f.metadata:
                kw[key] = f.metadata[key]
        if isinstance(f.default, bool):  # bool("False") is True: use --x / --no-x instead
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = f.metadata.get("type", type(f.default))
        made[name].add_argument("--" + f.name.replace("_", "-"), **kw)


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


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (and exit code 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _stylize_parsers(sub) -> None:
    from .stylize import OPTION_GROUPS, StylizeConfig

    p = sub.add_parser("stylize", help="stylize an image (or a folder of images)",
                       description="Stylize CONTENT with one or more STYLE images. CONTENT may be a file, a "
                                   "folder of images (batch: -o is then a folder) or - for standard input.")
    p.add_argument("content", help="content image, folder of images, or - (stdin)")
    p.add_argument("styles", nargs="*", metavar="style",
                   help="style image(s); several are blended (none with a single-style --model)")
    p.add_argument("-o", "--output", required=True,
                   help="output file (.png, .jpg, ...), folder for a batch, or - (PNG to stdout)")
    g = p.add_argument_group("feed-forward options (one forward pass instead of optimization)")
    g.add_argument("--fast", action="store_true", help="use the arbitrary-style model that ships with warpaint")
    g.add_argument("--model", type=_path, default=None, metavar="PT",
                   help="use a model trained with `warpaint train` (implies --fast)")
    g.add_argument("--strength", type=float, default=1.0, help="0 = the content, 1 = full style (default: 1)")
    g.add_argument("--work-size", type=int, default=None, metavar="PX",
                   help="run the network at this long side and resize the result to --size "
                        "(default: the model's own; 0 = at full size)")
    add_config_flags(p, StylizeConfig, groups=OPTION_GROUPS)
    _add_output_flags(p)
    p = sub.add_parser("demo", help="run the main job on built-in images (no download)",
                       description="Stylize matplotlib's sample photo with warpaint's own generated "
                                   "swirling-night painting.")
    p.add_argument("-o", "--output", default="warpaint_demo.png", help="output file")
    p.add_argument("--save-inputs", type=_path, default=None, metavar="DIR",
                   help="also write the two built-in input images to DIR")
    add_config_flags(p, StylizeConfig, groups=OPTION_GROUPS)
    _add_output_flags(p)
    p = sub.add_parser("score", help="content and style distances of a result",
                       description="Content distance (relu4_2) and style distance (mean Gram distance over "
                                   "relu1_1..relu5_1) at a fixed size. Lower is better.")
    for name in ("content", "style", "output"):
        p.add_argument(name)
    p.add_argument("--size", type=int, default=512, help="evaluation long side, px (default: 512)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: auto)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _train_parser(sub) -> None:
    from .feedforward.train import TrainConfig

    p = sub.add_parser("train", help="train a feed-forward stylizer (arbitrary or single style)",
                       description="Train a feed-forward model with the engine's losses: an arbitrary-style "
                                   "model from a folder of paintings (--style-dir) or a single-style model "
                                   "from one painting (--style). Re-running the same command resumes from "
                                   "OUTPUT.pt.ckpt (e.g. my.pt.ckpt).")
    p.add_argument("--content-dir", type=_path, required=True, help="folder of content photos")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--style-dir", type=_path, help="folder of style images (arbitrary-style model)")
    src.add_argument("--style", type=_path, help="one style image (single-style model)")
    p.add_argument("-o", "--output", type=_path, required=True, help="model file to write (.pt)")
    add_config_flags(p, TrainConfig, skip=("kind",))
    g = p.add_argument_group("output options")
    g.add_argument("--work-size", type=int, default=None, metavar="PX",
                   help="default long side the model runs at when stylizing, stored in the model file "
                        "(default: full size)")
    g.add_argument("--sample-every", type=int, default=200, metavar="N",
                   help="save a sample grid every N steps to OUTPUT_samples/ (default: 200; 0 = never)")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda (default: auto)")
    g.add_argument("--max-memory", type=float, default=0.0, metavar="GB",
                   help="memory budget for a training step's estimated peak (default: 0 = what the device "
                        "has free)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _stn_parsers(sub) -> None:
    from .apps import detection, segmentation
    from .apps.digits import DigitsConfig

    stn = sub.add_parser("stn", help="spatial transformer network applications")
    stn_sub = stn.add_subparsers(dest="stn_command", required=True, metavar="APP", parser_class=_Parser)
    p = stn_sub.add_parser("digits", help="distorted MNIST: plain CNN vs ST-CNN",
                           description="Train and evaluate a CNN and an ST-CNN on distorted MNIST digits (R, "
                                       "RTS, P, E as in Jaderberg et al. 2015). Unset options take the "
                                       "values of each distortion (docs/stn.md).")
    p.add_argument("--distortion", default="RTS", help="R, RTS, P, E or all (default: RTS)")
    p.add_argument("--model", default="both", choices=("cnn", "stcnn", "both"),
                   help="which model(s) to train (default: both)")
    _add_app_io(p, "digits")
    add_config_flags(p, DigitsConfig, skip=("distortion", "model"), unset=True)
    for app, what, module in (("detect", "Faster R-CNN detector", detection),
                              ("seg", "U-Net segmenter", segmentation)):
        for verb in ("train", "eval"):
            p = stn_sub.add_parser(f"{app}-{verb}", help=f"{verb} the {what} with and without an STN",
                                   description=f"{'Train' if verb == 'train' else 'Evaluate'} the {what} on "
                                               "synthetic 128 px canvases of cluttered MNIST digits under a "
                                               "random affine distortion, with and without a spatial "
                                               "transformer in front (see docs/stn.md).")
            p.add_argument("--model", default="both", choices=("plain", "stn", "both"),
                           help="without STN, with STN, or both (default: both)")
            _add_app_io(p, app)
            if verb == "train":
                add_config_flags(p, module.Config, skip=("stn",), unset=True)


def _add_app_io(p: argparse.ArgumentParser, app: str) -> None:
    p.add_argument("--data", type=_path, default=Path("../shared/datasets/mnist"),
                   help="folder with the MNIST IDX files (default: ../shared/datasets/mnist)")
    p.add_argument("--out", type=_path, default=Path(f"stn_{app}"),
                   help=f"folder of checkpoints, results and pictures (default: stn_{app})")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="warpaint", description="Neural style transfer (Gatys et al.) on VGG19.")
    parser.add_argument("--version", action="version", version=f"warpaint {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _stylize_parsers(sub)
    _train_parser(sub)
    _stn_parsers(sub)
    return parser


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
    from .errors import Interrupted
    from .feedforward.train import TrainConfig, train_to_file

    kind = "single" if args.style is not None else "arbitrary"
    cfg = TrainConfig(kind=kind, **{f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != "kind"})
    try:
        summary = train_to_file(cfg, args.content_dir, args.style or args.style_dir, args.output,
                                work_size=args.work_size, sample_every=args.sample_every, device=args.device,
                                max_memory=args.max_memory, progress=not args.quiet)
    except KeyboardInterrupt as e:
        if getattr(e, "partial", None):
            print(f"warpaint: interrupted; wrote the model so far to {e.partial} and the training state to "
                  f"{args.output}.ckpt (run the same command to resume)", file=sys.stderr)
        return e.exit_code if isinstance(e, Interrupted) else 130
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


def _report(line: dict) -> None:
    print(json.dumps(line), file=sys.stderr)


def cmd_stn_digits(args: argparse.Namespace) -> int:
    from .apps import digits
    from .apps.common import check_out_folder, load_mnist

    names = digits.DISTORTIONS if args.distortion == "all" else (args.distortion,)
    if any(n not in digits.DISTORTIONS for n in names):
        raise InputError(f"--distortion must be one of {', '.join(digits.DISTORTIONS)} or all")
    models = ("cnn", "stcnn") if args.model == "both" else (args.model,)
    keys = [f.name for f in fields(digits.DigitsConfig) if f.name not in ("distortion", "model")]
    configs = [digits.config_for(name, kind, **{k: getattr(args, k) for k in keys})
               for name in names for kind in models]      # every option checked before any work
    check_out_folder(args.out)
    digits.run_experiments(configs, load_mnist(args.data), args.out, progress=not args.quiet, report=_report)
    return 0


def cmd_stn_app(args: argparse.Namespace) -> int:
    """``stn detect-train | detect-eval | seg-train | seg-eval``."""
    import importlib

    from .apps import common

    name, verb = args.stn_command.split("-")
    app = importlib.import_module(f".apps.{'detection' if name == 'detect' else 'segmentation'}", __package__)
    variants = ("plain", "stn") if args.model == "both" else (args.model,)
    given = {f.name: getattr(args, f.name) for f in fields(app.Config)
             if f.name != "stn" and getattr(args, f.name, None) is not None}
    common.check_out_folder(args.out)
    if verb == "train":   # every option checked before any work
        configs = [common.checked_config(app, stn=v == "stn", **given) for v in variants]
        common.train_variants(app, name, configs, common.load_mnist(args.data), args.out,
                              progress=not args.quiet, report=_report)
    else:
        common.evaluate_variants(app, name, variants, common.load_mnist, args.data, args.out, report=_report)
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
               "stn": cmd_stn}[args.command]
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
