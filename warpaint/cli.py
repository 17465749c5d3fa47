"""Command line: ``warpaint stylize | demo | score``. A thin layer over the Python API.

Exit codes: 0 success, 2 bad input (one-line message on stderr), 130 interrupted (the
current image is written first).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .errors import InputError, OutputError, WarpaintError
from .io import WRITE_FORMATS

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


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
    g.add_argument("--snapshot-dir", type=Path, default=None, metavar="DIR",
                   help="folder for snapshots (default: OUTPUT_STEM_snapshots beside the output)")
    g.add_argument("--loss-curve", type=Path, default=None, metavar="PNG",
                   help="save a plot of the losses per step to this PNG")
    g.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="write a JSON summary (sizes, steps, seconds, device, dtype, losses) "
                        "to FILE, or to stdout without FILE")
    g.add_argument("--save-warp", type=Path, default=None, metavar="DIR",
                   help="with --warp: write pictures of the warp (matches, grid, displacement, "
                        "without/with) to DIR")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


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
    g.add_argument("--model", type=Path, default=None, metavar="PT",
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
    p.add_argument("--save-inputs", type=Path, default=None, metavar="DIR",
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
                                   "the same command resumes from OUTPUT.ckpt.")
    p.add_argument("--content-dir", type=Path, required=True, help="folder of content photos")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--style-dir", type=Path, help="folder of style images (arbitrary-style model)")
    src.add_argument("--style", type=Path, help="one style image (single-style model)")
    p.add_argument("-o", "--output", type=Path, required=True, help="model file to write (.pt)")
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
    p.add_argument("--init", type=Path, default=None, metavar="MODEL.pt",
                   help="start from this model's weights (fine-tuning; same kind and shape)")
    p.add_argument("--sample-every", type=int, default=200, metavar="N",
                   help="save a sample grid every N steps to OUTPUT_samples/ (default: 200; 0 = never)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda (default: auto)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    stn = sub.add_parser("stn", help="spatial transformer network applications")
    stn_sub = stn.add_subparsers(dest="stn_command", required=True, metavar="APP", parser_class=_Parser)
    p = stn_sub.add_parser("digits", help="distorted MNIST: plain CNN vs ST-CNN",
                           description="Train and evaluate a CNN and an ST-CNN on distorted MNIST "
                                       "digits (R, RTS, P, E as in Jaderberg et al. 2015).")
    p.add_argument("--data", type=Path, default=Path("../shared/datasets/mnist"),
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
    p.add_argument("--out", type=Path, default=Path("stn_digits"),
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
        p.add_argument("--data", type=Path, default=Path("../shared/datasets/mnist"),
                       help="folder with the MNIST IDX files (default: ../shared/datasets/mnist)")
        p.add_argument("--model", default="both", choices=("plain", "stn", "both"),
                       help="without STN, with STN, or both (default: both)")
        p.add_argument("--out", type=Path, default=Path(f"stn_{app}"),
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
def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _probe_writable(out: Path) -> None:
    """Fail before any work if ``out``'s folder cannot take a new file (root ignores modes)."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", suffix=".probe"):
            pass
    except OSError as e:
        raise OutputError(f"{out}: cannot write to {out.parent} ({e.strerror or e})") from None


def _list_images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise InputError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTS))}) in folder")
    return files


def _jobs(content: str, output: str, inputs: Sequence[str]) -> list[tuple[str, str]]:
    """(content, output) pairs; validates paths before any work starts."""
    if content != "-" and Path(content).is_dir():
        out_dir = Path(output)
        if output == "-" or (out_dir.exists() and not out_dir.is_dir()):
            raise OutputError(f"{output}: for a folder of content images, -o must be a folder")
        out_dir.mkdir(parents=True, exist_ok=True)
        pairs = [(str(c), str(out_dir / f"{c.stem}.png")) for c in _list_images(Path(content))]
    else:
        pairs = [(content, output)]
    # Every input, including each content file of a batch (the output folder may be the input one).
    all_inputs = [*inputs, *(c for c, _ in pairs if c not in inputs)]
    for _, out in pairs:
        if out == "-":
            continue
        for src in all_inputs:
            if src != "-" and Path(out).exists() and _same_file(src, out):
                raise OutputError(f"{out}: output is the same file as input {src}; "
                                  "refusing to overwrite an input")
        if Path(out).suffix.lower() not in WRITE_FORMATS:
            raise OutputError(f"{out}: unknown output extension; use one of "
                              f"{', '.join(sorted(WRITE_FORMATS))}")
        parent = Path(out).parent
        if not parent.is_dir():
            raise OutputError(f"{out}: output folder {parent} does not exist")
        _probe_writable(Path(out))
    return pairs


def _read(src: str):
    from .io import load_image

    return load_image(sys.stdin.buffer if src == "-" else src)


def _read_pil(src: str):
    from .io import load_pil

    return load_pil(sys.stdin.buffer if src == "-" else src)


def _write(image, dest: str) -> None:
    from .io import save_image

    save_image(image, sys.stdout.buffer if dest == "-" else dest)


class _Run:
    """Callback of one CLI run: progress bar, snapshots, loss history, last image."""

    def __init__(self, args: argparse.Namespace, output: str, label: str) -> None:
        self.args, self.history, self.scale_starts = args, [], []
        self.stop = None            # a training.StopRequest: Ctrl-C is acted on after a step
        self.last = None
        self.bar = None
        self.label = label
        self.snap_dir = None
        if args.snapshot_every > 0:
            base = Path(output if output != "-" else "warpaint")
            self.snap_dir = args.snapshot_dir or base.with_name(base.stem + "_snapshots")
            self.snap_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, it) -> None:
        from .io import save_image

        if self.bar is None and not self.args.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=it.total, desc=self.label, unit="step", file=sys.stderr,
                            dynamic_ncols=True)
        if it.step == 1:
            self.scale_starts.append(it.done - 1)
        self.history.append(it.losses)
        self.last = it
        if self.bar is not None:
            self.bar.set_postfix_str(f"{it.size[1]}x{it.size[0]} " + " ".join(
                f"{k}={v:.3g}" for k, v in it.losses.items()), refresh=False)
            self.bar.update(1)
        if self.snap_dir is not None and it.done % self.args.snapshot_every == 0:
            save_image(it.image, self.snap_dir / f"step_{it.done:05d}.png")
        if self.stop is not None and self.stop.requested:
            raise KeyboardInterrupt

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _write_json(dest: str | None, summaries: list[dict]) -> None:
    """``--json``: the run summaries (one object for one run) to stdout (``-``) or a file."""
    if dest is None:
        return
    text = json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=2)
    if dest == "-":
        print(text)
    else:
        from .io import write_bytes_atomic

        write_bytes_atomic((text + "\n").encode(), Path(dest))


def _config(args: argparse.Namespace):
    from .stylize import StylizeConfig

    return StylizeConfig(**{f.name: getattr(args, f.name) for f in fields(StylizeConfig)})


def _run_jobs(args: argparse.Namespace, pairs: list[tuple[str, str]], style_srcs: Sequence[str],
              *, loaded: dict[str, Any] | None = None) -> int:
    import torch

    from .io import resize
    from .stylize import Stylizer
    from .training import StopRequest

    cfg = _config(args)
    if args.save_warp is not None and cfg.warp == "none":
        raise InputError("--save-warp needs --warp affine or --warp tps")
    loaded = loaded or {}
    styles = [loaded.get(s) if s in loaded else _read(s) for s in style_srcs]
    stylizer = Stylizer(cfg)
    summaries = []
    for content_src, out in pairs:
        content = loaded.get(content_src) if content_src in loaded else _read(content_src)
        label = {"-": "stdin", "demo-content": "demo"}.get(content_src, Path(content_src).name)
        run = _Run(args, out, label)
        t0 = time.perf_counter()
        try:
            with StopRequest(second_press_raises=True) as run.stop:
                detail = stylizer.run_detailed(content, styles, callback=run)
        except KeyboardInterrupt:
            run.close()
            if run.last is not None:
                hw = cfg.scales(tuple(content.shape[-2:]))[-1]
                img = resize(run.last.image.detach().float().cpu(), hw)
                if args.original_size:
                    img = resize(img, tuple(content.shape[-2:]))
                _write(img, out)
                print(f"warpaint: interrupted; wrote the current image (step {run.last.done} of "
                      f"{run.last.total}) to {out}", file=sys.stderr)
            else:
                print("warpaint: interrupted before the first step; nothing written",
                      file=sys.stderr)
            return 130
        run.close()
        seconds = time.perf_counter() - t0
        result = detail.image
        if args.original_size:
            result = resize(result, tuple(content.shape[-2:]))
        _write(result, out)
        title = (f"{result.shape[-1]}x{result.shape[-2]} px, {len(run.history)} steps, "
                 f"{stylizer.device.type}, {str(stylizer.dtype).removeprefix('torch.')}")
        extra: dict[str, Any] = {}
        if detail.geometry is not None:
            extra["warp"] = detail.geometry.describe(tuple(result.shape[-2:]))  # type: ignore[arg-type]
            if args.save_warp is not None:
                from .stn.visualize import save_warp_pictures

                folder = args.save_warp if len(pairs) == 1 else args.save_warp / Path(out).stem
                save_warp_pictures(folder, content, styles[detail.main_style], detail.unwarped, detail.image,
                                   detail.geometry, caption=title)
        if detail.aligned:
            extra["align_style"] = [g.describe(tuple(result.shape[-2:])) for g in detail.aligned]
        if args.loss_curve is not None:
            from .plots import save_loss_curve

            curve = args.loss_curve if len(pairs) == 1 else \
                args.loss_curve.with_name(f"{args.loss_curve.stem}_{Path(out).stem}.png")
            save_loss_curve(run.history, curve, scale_starts=run.scale_starts, title=title)
        summaries.append({
            "content": content_src, "styles": list(style_srcs), "output": out,
            "content_size": [int(content.shape[-1]), int(content.shape[-2])],
            "output_size": [int(result.shape[-1]), int(result.shape[-2])],
            "scales": [[w, h] for h, w in cfg.scales(tuple(content.shape[-2:]))],
            "steps": len(run.history), "seconds": round(seconds, 3),
            "device": str(stylizer.device), "dtype": str(stylizer.dtype).removeprefix("torch."),
            "final_losses": run.history[-1] if run.history else {},
            "config": asdict(cfg), "torch_threads": torch.get_num_threads(), **extra,
        })
        if not args.quiet and out != "-":
            print(f"wrote {out} ({title}, {seconds:.1f} s)", file=sys.stderr)
    _write_json(args.json, summaries)
    return 0


# -- commands -------------------------------------------------------------------------------
def cmd_stylize(args: argparse.Namespace) -> int:
    if args.fast or args.model is not None:
        return cmd_stylize_fast(args)
    if not args.styles:
        raise InputError("give at least one style image (or --fast / --model for a trained model)")
    inputs = [args.content, *args.styles]
    if inputs.count("-") > 1:
        raise InputError("only one input can be read from stdin (-)")
    if args.output == "-" and args.json == "-":
        raise InputError("--json without FILE prints to stdout, which -o - already uses")
    pairs = _jobs(args.content, args.output, inputs)
    _config(args)  # validate options before reading any image
    return _run_jobs(args, pairs, args.styles)


def cmd_stylize_fast(args: argparse.Namespace) -> int:
    """``stylize --fast`` / ``--model``: one forward pass of a feed-forward model."""
    import torch

    from .device import pick_device
    from .feedforward import load
    from .io import resize_pil

    cfg = _config(args)
    for flag, used in (("--warp", cfg.warp != "none"), ("--align-style", cfg.align_style != "none"),
                       ("--snapshot-every", args.snapshot_every > 0), ("--loss-curve", args.loss_curve),
                       ("--save-warp", args.save_warp)):
        if used:
            raise InputError(f"{flag} works with the optimization engine, not with --fast / --model")
    if not 0 <= args.strength <= 1:
        raise InputError(f"--strength must be between 0 and 1, got {args.strength}")
    inputs = [args.content, *args.styles]
    if inputs.count("-") > 1:
        raise InputError("only one input can be read from stdin (-)")
    pairs = _jobs(args.content, args.output, inputs)
    t0 = time.perf_counter()
    model = load(args.model, device=pick_device(cfg.device))
    load_seconds = time.perf_counter() - t0
    if model.kind == "single" and args.styles:
        raise InputError(f"{args.model}: a single-style model takes no style image")
    if model.kind == "arbitrary" and not args.styles:
        raise InputError("give at least one style image for an arbitrary-style model")
    styles = [_read_pil(s) for s in args.styles]
    weights = list(cfg.style_blend) or None
    if args.work_size is not None and args.work_size < 0:
        raise InputError(f"--work-size must be >= 0, got {args.work_size}")
    work_size = model.work_size if args.work_size is None else (args.work_size or None)
    summaries = []
    for content_src, out in pairs:
        content = _read_pil(content_src)
        t0 = time.perf_counter()
        result = model.stylize_image(content, styles, size=cfg.size, weights=weights, strength=args.strength,
                                     preserve_color=cfg.preserve_color, work_size=work_size)
        seconds = time.perf_counter() - t0
        if args.original_size:
            result = resize_pil(result, (content.height, content.width))
        _write(result, out)
        title = (f"{result.width}x{result.height} px, one forward pass, {model.device.type}, float32")
        summaries.append({"content": content_src, "styles": list(args.styles), "output": out,
                          "model": str(args.model or "shipped"), "kind": model.kind,
                          "output_size": [result.width, result.height],
                          "strength": args.strength, "work_size": work_size, "seconds": round(seconds, 4),
                          "load_seconds": round(load_seconds, 4), "device": str(model.device),
                          "dtype": "float32", "torch_threads": torch.get_num_threads()})
        if not args.quiet and out != "-":
            print(f"wrote {out} ({title}, {seconds:.2f} s)", file=sys.stderr)
    _write_json(args.json, summaries)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """``warpaint train``: a feed-forward model from folders of images."""
    from .device import pick_device
    from .feedforward.train import TrainConfig, list_images, load_pool, train
    from .plots import save_loss_curve

    if args.output.suffix != ".pt":
        raise InputError(f"{args.output}: the model file must end in .pt")
    if args.output.parent and not args.output.parent.is_dir():
        raise OutputError(f"{args.output.parent}: folder not found")
    kind = "single" if args.style is not None else "arbitrary"
    cfg = TrainConfig(kind=kind, steps=args.steps, batch_size=args.batch_size, size=args.size,
                      style_size=args.style_size, lr=args.lr, style_weight=args.style_weight,
                      content_weight=args.content_weight, tv_weight=args.tv_weight, seed=args.seed,
                      content_scale=args.content_scale, style_scale=args.style_scale,
                      code_size=args.code_size, init=str(args.init or ""), color_transfer=args.color_transfer)
    if min(cfg.steps, cfg.batch_size) < 1 or min(cfg.size, cfg.style_size, cfg.code_size) < 32:
        raise InputError("--steps and --batch-size must be >= 1, --size, --style-size and --code-size >= 32")
    content_short, style_short = cfg.scales()
    if content_short < cfg.size or style_short < cfg.style_size:
        raise InputError("--content-scale and --style-scale must be at least --size and --style-size (or 0)")
    if args.style is not None and not args.style.is_file():
        raise InputError(f"{args.style}: style image not found")
    if args.style is not None and args.color_transfer:
        raise InputError("--color-transfer is for arbitrary-style models (--style-dir)")
    if args.work_size is not None and args.work_size < 32:
        raise InputError(f"--work-size must be >= 32, got {args.work_size}")
    if args.init is not None and not args.init.is_file():
        raise InputError(f"{args.init}: model file not found")
    style_paths = [args.style] if args.style is not None else list_images(args.style_dir)
    contents = load_pool(list_images(args.content_dir), content_short)
    # single style: the whole painting, short side at --style-size; arbitrary: crops of each
    styles = load_pool(style_paths, style_short)
    samples = args.output.with_name(args.output.stem + "_samples") if args.sample_every > 0 else None
    ckpt = args.output.with_name(args.output.name + ".ckpt")
    device = pick_device(args.device)
    try:
        model, summary = train(cfg, contents, styles, checkpoint=ckpt, samples=samples,
                               sample_every=max(args.sample_every, 1), device=device, progress=not args.quiet)
    except KeyboardInterrupt:
        from .feedforward.train import from_checkpoint

        if ckpt.exists():
            partial = from_checkpoint(ckpt)
            partial.work_size = args.work_size
            partial.save(args.output)
            print(f"warpaint: interrupted; wrote the model so far to {args.output} and the training "
                  f"state to {ckpt} (run the same command to resume)", file=sys.stderr)
        return 130
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
    from .io import save_image

    pairs = _jobs("demo-content", args.output, [])
    _config(args)
    content, style = demo_content(), demo_style()
    if args.save_inputs is not None:
        args.save_inputs.mkdir(parents=True, exist_ok=True)
        save_image(content, args.save_inputs / "demo_content.png")
        save_image(style, args.save_inputs / "demo_style.png")
    return _run_jobs(args, pairs, ["demo-style"],
                     loaded={"demo-content": content, "demo-style": style})


def cmd_score(args: argparse.Namespace) -> int:
    from .device import pick_device
    from .score import score
    from .vgg import VGGFeatures

    if args.size < 16:
        raise InputError(f"--size must be at least 16, got {args.size}")
    c, s, o = _read(args.content), _read(args.style), _read(args.output)
    vgg = VGGFeatures().to(pick_device(args.device))
    result = score(c, s, o, size=args.size, vgg=vgg)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(f"content distance {result.content:.4f}  style distance {result.style:.4f}  "
              f"(at {args.size} px; lower is better)")
    return 0


def cmd_stn_digits(args: argparse.Namespace) -> int:
    from .apps import digits

    names = digits.DISTORTIONS if args.distortion == "all" else (args.distortion,)
    if any(n not in digits.DISTORTIONS for n in names):
        raise InputError(f"--distortion must be one of {', '.join(digits.DISTORTIONS)} or all")
    if (args.epochs is not None and args.epochs < 1) or args.batch_size < 1:
        raise InputError("--epochs and --batch-size must be >= 1")
    data = digits.load_mnist(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    models = ("cnn", "stcnn") if args.model == "both" else (args.model,)
    for name in names:
        for kind in models:
            cfg = digits.config_for(name, kind, epochs=args.epochs, batch_size=args.batch_size,
                                    seed=args.seed, stn_kind=args.stn_kind,
                                    stn_output=args.stn_output, equivariance=args.equivariance,
                                    rotation_prior=args.rotation_prior, turned_view=args.turned_view,
                                    turn_degrees=args.turn_degrees,
                                    stn_iterations=args.stn_iterations,
                                    stn_localization=args.stn_localization, stn_lr_scale=args.stn_lr_scale)
            model, res, test = digits.train(cfg, data, checkpoint=args.out / f"{name}_{kind}.pt",
                                            progress=not args.quiet)
            if kind == "stcnn":
                digits.save_alignment_grid(model, test.images, args.out / f"{name}_stn_grid.png")
                if name in ("R", "RTS"):
                    res.update(digits.rotation_check(model, test, plot=args.out / f"{name}_rotation.png"))
            results[f"{name}/{kind}"] = res
            print(json.dumps(res), file=sys.stderr)
            from .io import write_bytes_atomic

            write_bytes_atomic((json.dumps(results, indent=2) + "\n").encode(), results_path)
    return 0


def _canvas_app(name: str):
    import importlib

    return importlib.import_module(f".apps.{'detection' if name == 'detect' else 'segmentation'}",
                                   __package__)


def cmd_stn_app(args: argparse.Namespace) -> int:
    """``stn detect-train | detect-eval | seg-train | seg-eval``."""
    from .apps import canvas
    from .apps.digits import load_mnist
    from .io import write_bytes_atomic
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
            configs[variant] = app.Config(stn=variant == "stn", **given)
            app.check_config(configs[variant])
    if args.out.exists() and not args.out.is_dir():
        raise OutputError(f"{args.out}: exists and is not a folder")
    results_path = args.out / f"{name}_results.json"
    try:
        results = json.loads(results_path.read_text()) if results_path.exists() else {}
    except (OSError, ValueError) as e:
        raise InputError(f"{results_path}: cannot read ({type(e).__name__}); "
                         "move it away to start a new one") from None
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
            if not ckpt.exists():
                raise InputError(f"{ckpt}: no checkpoint (run `warpaint stn {name}-train` first)")
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
        write_bytes_atomic((json.dumps(results, indent=2) + "\n").encode(), results_path)
    return 0


def cmd_stn(args: argparse.Namespace) -> int:
    return cmd_stn_digits(args) if args.stn_command == "digits" else cmd_stn_app(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warpaint: %(message)s")
    command = {"stylize": cmd_stylize, "demo": cmd_demo, "score": cmd_score, "train": cmd_train,
               "stn": cmd_stn}[args.command]
    try:
        return command(args)
    except WarpaintError as e:
        print(f"warpaint: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("warpaint: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
