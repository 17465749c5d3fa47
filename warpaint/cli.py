"""Command line: ``warpaint stylize | batch | demo | score | train | calibrate | serve | stn ...``.
A thin layer over the job layer (:mod:`warpaint.jobs`, :mod:`warpaint.extras`), the apps and the web page:
it parses (the options are in :mod:`warpaint.parser`) and prints.

Exit codes: 0 success, 2 bad input (one-line message on stderr), 130 on Ctrl-C and 143 on
SIGTERM (the current result is written first, under a ``.partial`` name).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from .errors import InputError, WarpaintError
from .parser import build_parser


# -- helpers --------------------------------------------------------------------------------
class _Progress:
    """Per-step callback of the CLI: a progress bar per job, and the snapshots."""

    def __init__(self, args: argparse.Namespace, extras, many: bool) -> None:
        self.quiet, self.extras, self.many, self.bar = args.quiet, extras, many, None

    def __call__(self, job, it) -> None:
        from .extras import snapshot

        if self.bar is None and not self.quiet:
            from tqdm import tqdm

            label = {"-": "stdin", "demo-content": "demo"}.get(job.content, Path(job.content).name)
            # in per mille of the work (steps weighted by their pixels): the ETA holds across scales
            self.bar = tqdm(total=1000, desc=label, unit="‰", file=sys.stderr, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| [{elapsed}<{remaining}] {postfix}")
        if self.bar is not None:
            tiles = f" {it.tiles} tiles" if it.tiles else ""
            self.bar.set_postfix_str(f"scale {it.scale + 1}/{it.scales} {it.size[1]}x{it.size[0]}{tiles} "
                                     f"step {it.step}/{it.steps} " + " ".join(
                                         f"{k}={v:.3g}" for k, v in it.losses.items()), refresh=False)
            self.bar.update(round(1000 * it.work) - self.bar.n)
        snapshot(self.extras, job, it, self.many)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None


def _config(args: argparse.Namespace):
    """The StylizeConfig of the options (validated: its errors name fields, main() shows flags)."""
    from .stylize import StylizeConfig

    return StylizeConfig(**{f.name: getattr(args, f.name) for f in fields(StylizeConfig)
                            if hasattr(args, f.name)})   # (a command may leave some out: their defaults)


def _extras(args: argparse.Namespace, inputs: Sequence[str], outputs: Sequence[str]):
    from .extras import Extras, guard_extras

    extras = Extras(args.snapshot_every, args.snapshot_dir, args.loss_curve, args.save_warp, args.json)
    guard_extras(extras, args.output, inputs, outputs)
    return extras


def _check_method_options(args: argparse.Namespace, cfg, fast: bool) -> None:
    """:func:`~warpaint.jobs.check_method_options` for the options (``video``: ``--method``)."""
    from .jobs import check_method_options

    check_method_options(cfg, fast=fast, strength=getattr(args, "strength", 1.0),
                         work_size=getattr(args, "work_size", None), detail=getattr(args, "detail", None),
                         fineness=getattr(args, "fineness", None),
                         front="video" if getattr(args, "method", None) is not None else "cli")


def _method(args: argparse.Namespace, cfg, extras, style_srcs: Sequence[str], loaded: dict | None = None):
    """The job layer's method for the options: the engine, or --fast / --model."""
    from .jobs import make_method, read_pil

    fast = getattr(args, "fast", False) or getattr(args, "model", None) is not None
    _check_method_options(args, cfg, fast)
    if extras.save_warp is not None and cfg.warp == "none":
        raise InputError("--save-warp needs --warp affine or --warp tps")
    if fast and extras.engine_only:
        raise InputError(f"--{extras.engine_only[0].replace('_', '-')} works with the optimization engine, "
                         "not with --fast / --model")
    styles = [(loaded or {}).get(s) or read_pil(s) for s in style_srcs]
    return make_method(cfg, styles, fast=fast, model=getattr(args, "model", None),
                       strength=getattr(args, "strength", 1.0), work_size=getattr(args, "work_size", None),
                       detail=getattr(args, "detail", None), fineness=getattr(args, "fineness", None))


def _run(args: argparse.Namespace, jobs, method, extras, loaded: dict | None = None) -> int:
    """Run the jobs; print one line per result or error; exit 2 when any job failed."""
    from .errors import Interrupted
    from .extras import write_extras, write_summary
    from .jobs import color_note, run_jobs

    progress, outcomes = _Progress(args, extras, len(jobs) > 1), []
    try:
        for outcome in run_jobs(jobs, method, original_size=args.original_size, on_step=progress,
                                loaded=loaded, bit_depth=args.bit_depth):
            progress.close()
            outcomes.append(outcome)
            if outcome.status == "error":
                print(f"warpaint: error: {outcome.error}", file=sys.stderr)
                continue
            outcome.summary["styles"] = list(getattr(args, "styles", ["demo-style"]))
            write_extras(extras, outcome, method, len(jobs) > 1)
            s = outcome.summary
            if not args.quiet and outcome.job.output != "-":
                note = color_note(s)
                print(f"wrote {outcome.job.output} ({s['output_size'][0]}x{s['output_size'][1]} px, "
                      f"{s['steps']} steps, {method.device.type}, {method.dtype}, {s['seconds']:.2f} s"
                      f"{'; ' + note if note else ''})", file=sys.stderr)
    except KeyboardInterrupt as e:   # Ctrl-C / SIGTERM: in a step, or between them
        progress.close()
        outcome = getattr(e, "outcome", None)
        if outcome is not None:
            outcomes.append(outcome)
        where = "nothing more written"
        if outcome is not None and outcome.partial:
            where = f"wrote the current image to {outcome.partial}"
        elif outcome is not None and outcome.status == "ok":
            where = f"wrote {outcome.job.output}, then stopped"
        print(f"warpaint: interrupted; {where}", file=sys.stderr)
        write_summary(extras.json, outcomes, len(jobs) > 1)
        return e.exit_code if isinstance(e, Interrupted) else 130
    if len(jobs) > 1 or outcomes[0].status == "ok":
        write_summary(extras.json, outcomes, len(jobs) > 1)
    failed = sum(o.status == "error" for o in outcomes)
    if failed and len(jobs) > 1:
        print(f"warpaint: error: {failed} of {len(jobs)} images failed (see above)", file=sys.stderr)
    return 2 if failed else 0


# -- commands -------------------------------------------------------------------------------
def cmd_stylize(args: argparse.Namespace) -> int:
    from .jobs import check_jobs_bit_depth, guard_jobs, plan

    fast = args.fast or args.model is not None
    if not fast and not args.styles:
        raise InputError("give at least one style image (or --fast / --model for a trained model)")
    cfg = _config(args)   # validate options before any work
    inputs = [args.content, *args.styles, *([cfg.init_file] if cfg.init_file else []),
              *([cfg.mask] if cfg.mask else [])]
    jobs = plan(args.content, args.output)
    guard_jobs(jobs, inputs, overwrite=args.overwrite)
    check_jobs_bit_depth(jobs, args.bit_depth, fast=fast)
    extras = _extras(args, [*inputs, *(j.content for j in jobs)], [j.output for j in jobs])
    return _run(args, jobs, _method(args, cfg, extras, args.styles), extras)


def _use_ray(args: argparse.Namespace) -> bool:
    """Whether the scale-out options ask for Ray (``--ray``, or an ``--address``); checked."""
    use_ray = args.ray or args.address is not None
    if args.address is not None and not args.address.strip():
        raise InputError("--address must name a Ray cluster: auto, or HOST:PORT")
    if args.workers is not None and not use_ray:
        raise InputError("--workers works with --ray (without it the work runs in this process)")
    return use_ray


def cmd_batch(args: argparse.Namespace) -> int:
    """``warpaint batch``: a folder of images, resumable, here or on Ray (:mod:`warpaint.batch`)."""
    from .batch import BatchSpec, check_folders, run_batch
    from .extras import Extras, guard_extras, write_items
    from .jobs import check_jobs_bit_depth, guard_jobs, plan

    fast = args.fast or args.model is not None
    if not fast and not args.styles:
        raise InputError("give at least one style image (or --fast / --model for a trained model)")
    use_ray = _use_ray(args)
    cfg = _config(args)   # validate options before any work
    _check_method_options(args, cfg, fast)
    inputs = [*args.styles, *([cfg.init_file] if cfg.init_file else []), *([cfg.mask] if cfg.mask else [])]
    check_folders(args.input, args.output)
    jobs = plan(str(args.input), str(args.output))
    guard_jobs(jobs, inputs)
    check_jobs_bit_depth(jobs, args.bit_depth, fast=fast)
    guard_extras(Extras(json=args.json), str(args.output), [*inputs, *(j.content for j in jobs)],
                 [j.output for j in jobs])
    spec = BatchSpec.from_files(cfg, args.styles, fast=args.fast, model=args.model, strength=args.strength,
                                work_size=args.work_size, detail=args.detail, fineness=args.fineness,
                                original_size=args.original_size, bit_depth=args.bit_depth,
                                overwrite=args.overwrite)

    def report(index, done) -> None:
        if done.summary["status"] == "error":
            from tqdm import tqdm

            tqdm.write(f"warpaint: error: {done.summary['error']}", file=sys.stderr)

    result = run_batch(jobs, spec, args.output, use_ray=use_ray, address=args.address, workers=args.workers,
                       quiet=args.quiet, on_result=report)
    write_items(args.json, result.items)
    done, skipped, failed = result.count("ok"), result.count("skipped"), result.count("error")
    if result.interrupted is not None:
        print(f"warpaint: interrupted; {done} written, {skipped} skipped, {len(jobs) - len(result.items)} "
              "not reached (run the same command to resume)", file=sys.stderr)
        e = result.interrupted
        return e.exit_code if hasattr(e, "exit_code") else 130
    if not args.quiet:
        print(f"batch: {done} written, {skipped} skipped, {failed} failed, to {args.output}", file=sys.stderr)
    if failed and len(jobs) > 1:   # (one image: its own error line says it all, as in stylize)
        print(f"warpaint: error: {failed} of {len(jobs)} images failed (see above)", file=sys.stderr)
    return 2 if failed else 0


def cmd_video(args: argparse.Namespace) -> int:
    """``warpaint video``: a video, frame by frame, with temporal consistency (:mod:`warpaint.video`)."""
    from .errors import Interrupted
    from .extras import write_items
    from .video import VideoConfig, check_video_flags, run_video
    from .videoio import check_video_output, probe

    vcfg = VideoConfig(**{f.name: getattr(args, f.name) for f in fields(VideoConfig)})
    use_ray = _use_ray(args)
    check_video_flags(vcfg, model_given=args.fast or args.model is not None, styles=len(args.styles),
                      ray=use_ray)
    cfg = _config(args)
    check_video_output(args.output, args.input, overwrite=args.overwrite)
    info = probe(args.input)
    from .extras import Extras, guard_extras

    guard_extras(Extras(json=args.json), str(args.output), [str(args.input), *args.styles],
                 [str(args.output)])
    args.fast = vcfg.method == "fast"
    method = _method(args, cfg, Extras(), args.styles)
    bar = _frame_bar(args.quiet)
    frames = None
    if use_ray:
        from .batch import BatchSpec, stylize_frames_on_ray

        spec = BatchSpec.from_files(cfg, args.styles, fast=True, model=args.model, strength=args.strength,
                                    work_size=args.work_size, detail=args.detail, fineness=args.fineness)

        def frames(source):
            return stylize_frames_on_ray(source, spec, address=args.address, workers=args.workers)
    try:
        outcome = run_video(str(args.input), str(args.output), method, vcfg, on_frame=bar, stylized=frames)
    except Interrupted as e:
        partial = getattr(e, "outcome", None)
        where = f"wrote the {partial.summary['frames']} frames done to {partial.output}" if partial and \
            partial.output else "no frame was done, nothing written"
        print(f"warpaint: interrupted; {where}", file=sys.stderr)
        if partial is not None:
            write_items(args.json, [partial.summary], many=False)
        return e.exit_code
    finally:
        bar.close()
    s = outcome.summary
    write_items(args.json, [s], many=False)
    if not args.quiet:
        print(f"wrote {outcome.output} ({s['size'][0]}x{s['size'][1]} px, {s['frames']} frames at "
              f"{s['output_fps']:.3g} fps from {info.width}x{info.height}; {vcfg.method}, temporal "
              f"{'on' if vcfg.temporal else 'off'}; {s['device']}, {s['dtype']}, {s['seconds']:.1f} s = "
              f"{s['frames_per_second']:.2f} frames/s)", file=sys.stderr)
    return 0


class _frame_bar:
    """The video's progress bar: frames done of those planned, with the ETA."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.bar = quiet, None

    def __call__(self, report) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=report.total, desc="video", unit="frame", file=sys.stderr,
                            dynamic_ncols=True)
        if report.step is not None:
            it = report.step
            self.bar.set_postfix_str(f"frame step {it.step}/{it.steps}", refresh=False)
        self.bar.update(report.frame - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None


def cmd_train(args: argparse.Namespace) -> int:
    """``warpaint train``: a feed-forward model from folders of images."""
    from .errors import Interrupted
    from .feedforward.train import TrainConfig, train_to_file
    from .io import check_not_there

    kind = "single" if args.style is not None else "arbitrary"
    cfg = TrainConfig(kind=kind, **{f.name: getattr(args, f.name) for f in fields(TrainConfig)
                                    if f.name != "kind"})
    if not args.overwrite:
        check_not_there([args.output])
    try:
        summary = train_to_file(cfg, args.content_dir, args.style or args.style_dir, args.output,
                                work_size=args.work_size, sample_every=args.sample_every, device=args.device,
                                max_memory=args.max_memory, progress=not args.quiet)
    except KeyboardInterrupt as e:
        if getattr(e, "partial", None):
            print(f"warpaint: interrupted; wrote the model so far to {e.partial} and the training state to "
                  f"{args.output}.ckpt (run the same command to resume)", file=sys.stderr)
        return e.exit_code if isinstance(e, Interrupted) else 130
    print(f"wrote {args.output} ({kind} model, {cfg.steps} steps, {summary['seconds']:.0f} s)",
          file=sys.stderr)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``warpaint calibrate``: a model that reads paintings small as it reads them large."""
    from .feedforward.calibrate import CalibrationConfig, calibrate_to_file

    cfg = CalibrationConfig(**{f.name: getattr(args, f.name) for f in fields(CalibrationConfig)})
    s = calibrate_to_file(args.model, args.content_dir, args.style_dir, args.output, cfg,
                          progress=not args.quiet, overwrite=args.overwrite)
    before, after, n = s["held_out_code_error_before"], s["held_out_code_error_after"], s["held_out_images"]
    print(f"wrote {args.output} (reads paintings at {cfg.read_at} px; code error against reading at "
          f"{cfg.like} px on {n} held-out image{'s' * (n != 1)}: {before:.3f} -> {after:.3f})",
          file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo_content, demo_style, save_demo_inputs
    from .io import tensor_to_pil
    from .jobs import Job, check_jobs_bit_depth, guard_jobs

    cfg = _config(args)
    jobs = [Job("demo-content", args.output)]
    guard_jobs(jobs, [], overwrite=args.overwrite)
    check_jobs_bit_depth(jobs, args.bit_depth)
    extras = _extras(args, [], [args.output])
    content, style = tensor_to_pil(demo_content()), tensor_to_pil(demo_style())
    loaded = {"demo-content": content, "demo-style": style}
    method = _method(args, cfg, extras, ["demo-style"], loaded)     # (its checks first)
    if args.save_inputs is not None:
        keep = [k for k in (args.output, args.json, args.loss_curve) if k is not None]
        save_demo_inputs(args.save_inputs, content, style, keep=keep)
    return _run(args, jobs, method, extras, loaded)


def cmd_score(args: argparse.Namespace) -> int:
    from .score import score_files

    result = score_files(args.content, args.style, args.output, size=args.size, device=args.device)
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
    from .apps import common, detection, runs, segmentation

    name, verb = args.stn_command.split("-")
    app = detection if name == "detect" else segmentation
    variants = ("plain", "stn") if args.model == "both" else (args.model,)
    given = {f.name: getattr(args, f.name) for f in fields(app.Config)
             if f.name != "stn" and getattr(args, f.name, None) is not None}
    common.check_out_folder(args.out)
    if verb == "train":   # every option checked before any work
        configs = [app.Config(stn=v == "stn", **given) for v in variants]   # each checks itself
        runs.train_variants(app, name, configs, common.load_mnist(args.data), args.out,
                            progress=not args.quiet, report=_report)
    else:
        runs.evaluate_variants(app, name, variants, common.load_mnist, args.data, args.out, report=_report)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``warpaint serve``: the web page (:mod:`warpaint.web`) until Ctrl-C."""
    from .device import pick_device
    from .errors import check_number
    from .web import serve
    from .web.jobqueue import Settings

    check_number("port", args.port, lo=0, hi=65535, integer=True)
    settings = Settings(**{f.name: getattr(args, f.name) for f in fields(Settings) if hasattr(args, f.name)})
    pick_device(settings.device)   # a device that cannot run is refused now, not at every run
    serve(args.host, args.port, settings)
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
    """A library error names fields (``style_weight must be ...``, ``... than read_at``); the
    CLI names their flags: the first word, and any other snake_case word that is a flag's
    field (never inside a path)."""
    import re

    options = _options(parser)

    def flag_of(word: str) -> str:
        flag = "--" + word.replace("_", "-")
        return flag if flag in options else word

    field, sep, rest = message.partition(" ")
    head = flag_of(field) if field.isidentifier() else field
    return head + sep + re.sub(r"(?<![\w/.\\-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w/.\\-])",
                               lambda m: flag_of(m[0]), rest)


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
               "calibrate": cmd_calibrate,
               "serve": cmd_serve, "stn": cmd_stn, "batch": cmd_batch,
               "video": cmd_video}[args.command]
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return command(args)
    except WarpaintError as e:
        print(f"warpaint: error: {_as_flag(str(e), parser)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        saved = getattr(e, "saved", None)   # a training run's checkpoint (the STN apps)
        print("warpaint: interrupted" + (f"; {saved} (run the same command to resume)" if saved else ""),
              file=sys.stderr)
        return e.exit_code if isinstance(e, Interrupted) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
