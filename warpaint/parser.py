"""The command line's options: every command's parser, with the flags of each config
generated from its dataclass by :func:`add_config_flags` (the only place a config becomes
flags). :mod:`warpaint.cli` runs the commands.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from . import __version__


# -- parser ---------------------------------------------------------------------------------
def _path(text: str) -> Path:
    """A path option's value; an empty one is refused (it would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


def add_config_flags(p: argparse.ArgumentParser, cls, *, groups: dict[str, tuple[str, ...]] | None = None,
                     skip: tuple[str, ...] = (), unset: bool = False,
                     shown_default: Callable[[str], str | None] | None = None) -> None:
    """One ``--field-name`` flag per field of the dataclass ``cls``: help, choices, type and
    metavar from the field's metadata, in the argument groups ``groups`` (or the field's
    ``group``). With ``unset`` the flags default to None (the command fills in its own
    defaults, e.g. per distortion, which ``shown_default(name)`` describes for the help).
    This is the only place configs become flags."""
    group_of = {n: g for g, names in (groups or {}).items() for n in names}
    made: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(cls):
        if f.name in skip:
            continue
        name = group_of.get(f.name) or f.metadata.get("group", "")
        if name not in made:
            made[name] = p.add_argument_group(f"{name} options" if name else "settings")
        shown = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        shown = "none" if shown is None or shown == "" else shown   # 0 and 0.0 are shown as such
        shown = (shown_default(f.name) if shown_default else None) or shown
        text = f.metadata["help"]     # a help that states its own default keeps it
        kw: dict[str, Any] = {"default": None if unset else f.default, "dest": f.name,
                              "help": text if "(default:" in text else f"{text} (default: {shown})"}
        for key in ("choices", "metavar"):
            if key in f.metadata:
                kw[key] = f.metadata[key]
        if isinstance(f.default, bool):  # bool("False") is True: use --x / --no-x instead
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = f.metadata.get("type", type(f.default))
        made[name].add_argument("--" + f.name.replace("_", "-"), **kw)


def _add_styles(p: argparse.ArgumentParser) -> None:
    p.add_argument("styles", nargs="*", metavar="style",
                   help="style image(s); several are blended (none with a single-style --model)")


def _add_fast_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("feed-forward options (one forward pass instead of optimization)")
    g.add_argument("--fast", action="store_true",
                   help="use the arbitrary-style model that ships with warpaint")
    g.add_argument("--model", type=_path, default=None, metavar="PT",
                   help="use a model trained with `warpaint train` (implies --fast)")
    g.add_argument("--strength", type=float, default=1.0, help="0 = the content, 1 = full style (default: 1)")
    g.add_argument("--work-size", type=int, default=None, metavar="PX",
                   help="run the network at this long side and resize the result to --size "
                        "(default: the model's own; 0 = at full size)")
    g.add_argument("--detail", type=float, default=None, metavar="X",
                   help="how much of the photo's fine detail to add back to the result, 0-2 "
                        "(default: the model's own; the shipped model's is 1; 0 = none)")
    g.add_argument("--fineness", type=float, default=None, metavar="X",
                   help="how far the strength of the result's fine detail moves to the painting's, 0-2 "
                        "(default: the model's own; the shipped model's is 1 = matched; 0 = as the network "
                        "paints it)")


def _add_output_flags(p: argparse.ArgumentParser, *, per_step: bool = True) -> None:
    """The output flags; ``per_step`` False leaves out snapshots, loss curves and warp pictures."""
    g = p.add_argument_group("output options")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an output file that exists (a finished result is otherwise kept: exit 2); "
                        "batch: replace outputs made from other files or settings")
    g.add_argument("--original-size", action="store_true",
                   help="write the result at the content image's own resolution (upsampled)")
    g.add_argument("--bit-depth", choices=("auto", "8", "16"), default="auto",
                   help="bits per sample of the output: 16 writes 16-bit PNG or TIFF from the engine's float "
                        "result; auto keeps 16 for a 16-bit content file when the output format holds them "
                        "(default: auto)")
    if per_step:
        g.add_argument("--snapshot-every", type=int, default=0, metavar="N",
                       help="save the current image every N steps (default: 0 = never)")
        g.add_argument("--snapshot-dir", type=_path, default=None, metavar="DIR",
                       help="folder for snapshots (default: OUTPUT_STEM_snapshots beside the output; "
                            "warpaint_snapshots here with -o -)")
        g.add_argument("--loss-curve", type=_path, default=None, metavar="PNG",
                       help="save a plot of the losses per step to this PNG")
    g.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="write a JSON summary (sizes, steps, seconds, device, dtype, losses) "
                        "to FILE, or to stdout without FILE")
    if per_step:
        g.add_argument("--save-warp", type=_path, default=None, metavar="DIR",
                       help="with --warp: write pictures of the warp (matches, grid, displacement, "
                            "without/with) to DIR")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no line per result written (warnings and errors still show)")


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
    _add_styles(p)
    p.add_argument("-o", "--output", required=True,
                   help="output file (.png, .jpg, ...), folder for a batch, or - (PNG to stdout)")
    _add_fast_flags(p)
    add_config_flags(p, StylizeConfig, groups=OPTION_GROUPS)
    _add_output_flags(p)
    p = sub.add_parser("demo", help="run the main job on built-in images (no download)",
                       description="Stylize matplotlib's sample photo with warpaint's own generated "
                                   "swirling-night painting.")
    p.add_argument("-o", "--output", default="warpaint_demo.png",
                   help="output file (default: warpaint_demo.png here)")
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


def _add_ray_flags(p: argparse.ArgumentParser, ray_help: str) -> None:
    g = p.add_argument_group("scale-out options")
    g.add_argument("--ray", action="store_true", help=ray_help)
    g.add_argument("--address", default=None, metavar="ADDR",
                   help="with --ray: the cluster to join, e.g. auto or HOST:6379 (default: start a local "
                        "Ray; implies --ray)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="with --ray: number of workers, one model load each (default: one per CPU, or per "
                        "GPU on a cluster with GPUs)")


def _batch_parser(sub) -> None:
    from .stylize import OPTION_GROUPS, StylizeConfig

    p = sub.add_parser("batch", help="stylize a folder of images, resumably, in this process or on Ray",
                       description="Stylize every image of IN_DIR with the STYLE image(s) into OUT_DIR. A "
                                   "rerun skips the outputs already made from the same files and settings "
                                   "(OUT_DIR/.warpaint-batch.json). With --ray the images are Ray tasks on "
                                   "this machine or a cluster (see docs/scale.md).")
    p.add_argument("input", type=_path, metavar="IN_DIR", help="folder of content images")
    _add_styles(p)
    p.add_argument("-o", "--output", type=_path, required=True, metavar="OUT_DIR",
                   help="output folder (created if needed; not inside IN_DIR)")
    _add_ray_flags(p, 'run the images as Ray tasks (pip install -e ".[ray]")')
    _add_fast_flags(p)
    add_config_flags(p, StylizeConfig, groups=OPTION_GROUPS)
    _add_output_flags(p, per_step=False)


def _video_parser(sub) -> None:
    from .stylize import OPTION_GROUPS, StylizeConfig
    from .video import VideoConfig

    p = sub.add_parser("video", help="stylize a video with temporal consistency (audio kept)",
                       description="Stylize every frame of INPUT (.mp4, .mov, .mkv, ...) with the STYLE "
                                   "image(s) into OUTPUT (.mp4, .mov or .mkv, H.264, the audio copied). Each "
                                   "frame is linked to the previous one along the optical flow (see "
                                   "docs/video.md). Ctrl-C keeps the frames done as OUTPUT.partial.mp4.")
    p.add_argument("input", type=_path, metavar="INPUT", help="video file")
    _add_styles(p)
    p.add_argument("-o", "--output", type=_path, required=True, metavar="OUTPUT", help="video file to write")
    add_config_flags(p, VideoConfig, groups={"video": tuple(f.name for f in fields(VideoConfig))})
    _add_ray_flags(p, 'with --method fast: stylize the frames as Ray tasks (pip install -e ".[ray]"); the '
                      "flow and the blend stay in this process")
    _add_fast_flags(p)
    add_config_flags(p, StylizeConfig, groups=OPTION_GROUPS,
                     skip=("warp", "warp_strength", "warp_force", "warp_grid", "align_style", "mask",
                           "mask_feather", "style_regions", "init"))
    g = p.add_argument_group("output options")
    g.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="write a JSON summary (frames, size, fps, seconds, device, dtype) to FILE, or to "
                        "stdout without FILE")
    g.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT when it exists (a finished video is otherwise kept: exit 2)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


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
    g.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT when it exists (a finished model is otherwise kept: exit 2)")


def _calibrate_parser(sub) -> None:
    from .feedforward.calibrate import CalibrationConfig

    p = sub.add_parser("calibrate",
                       help="make an arbitrary-style model read paintings small as it reads them large",
                       description="Fit a linear map from VGG statistics of random views of the images read "
                                   "at --read-at px to the same views read at --like px, fold it into the "
                                   "model's style encoder and write the result (see docs/fast.md): the model "
                                   "then encodes a painting at --read-at px, at that cost.")
    p.add_argument("model", type=_path, help="model file to calibrate (.pt, arbitrary-style)")
    p.add_argument("--content-dir", type=_path, required=True, help="folder of photos")
    p.add_argument("--style-dir", type=_path, required=True, help="folder of paintings")
    p.add_argument("-o", "--output", type=_path, required=True, help="model file to write (.pt, a new name)")
    add_config_flags(p, CalibrationConfig)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT when it exists (a finished model is otherwise kept: exit 2)")


def _serve_parser(sub) -> None:
    from .web.jobqueue import Settings

    p = sub.add_parser("serve", help="a web page that stylizes uploads and shows the picture forming",
                       description="Serve the web page (see docs/web.md): upload a photo and paintings, "
                                   "watch "
                                   "the run live, download the result. One run at a time; the others queue.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine "
                                                        "only; a wider one prints a warning)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    add_config_flags(p, Settings, skip=("max_pixels", "frame_interval", "allowed_hosts"))


def _stn_parsers(sub) -> None:
    from .apps.common import DetectionConfig, SegmentationConfig  # not the apps: no torchvision here
    from .apps.digits import DigitsConfig, default_text

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
    add_config_flags(p, DigitsConfig, skip=("distortion", "model"), unset=True, shown_default=default_text)
    for app, what, config in (("detect", "Faster R-CNN detector", DetectionConfig),
                              ("seg", "U-Net segmenter", SegmentationConfig)):
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
                add_config_flags(p, config, skip=("stn",), unset=True)


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
    _batch_parser(sub)
    _video_parser(sub)
    _train_parser(sub)
    _calibrate_parser(sub)
    _serve_parser(sub)
    _stn_parsers(sub)
    return parser
