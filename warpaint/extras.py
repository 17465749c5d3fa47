"""The side outputs of stylization jobs: snapshots, loss curves, pictures of a warp and the
JSON summary. Every front end that wants them (the CLI, the web page) uses these; each file
is written atomically and is never one of the inputs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from .errors import InputError, OutputError, check_number
from .io import save_image, write_bytes_atomic
from .jobs import STDIO, Job, Outcome, guard_output, same_file, summary_of
from .stylize import Iterate


@dataclass(frozen=True)
class Extras:
    """Which side outputs a run writes (``None`` / 0: none)."""

    snapshot_every: int = 0           # the current image every N steps
    snapshot_dir: Path | None = None  # default: OUTPUT_STEM_snapshots beside the output
    loss_curve: Path | None = None    # PNG of the losses per step
    save_warp: Path | None = None     # folder for pictures of the warp
    json: str | None = None           # summary file, or "-" for stdout

    @property
    def engine_only(self) -> list[str]:
        """The fields set that only the optimization engine can honour."""
        return [n for n, v in (("snapshot_every", self.snapshot_every > 0), ("loss_curve", self.loss_curve),
                               ("save_warp", self.save_warp)) if v]


def guard_extras(extras: Extras, output: str, inputs: Sequence[str], outputs: Sequence[str] = ()) -> None:
    """No side output replaces an input, an image output or another side output; a JSON
    summary on stdout does not share it with an image written there."""
    check_number("snapshot_every", extras.snapshot_every, lo=0, integer=True)
    if extras.snapshot_dir is not None and not extras.snapshot_every:
        raise InputError("--snapshot-dir needs --snapshot-every N")
    files = [str(f) for f in (extras.json, extras.loss_curve) if f not in (None, STDIO)]
    taken = [o for o in outputs if o not in (None, STDIO)]
    for f in files:
        if any(same_file(f, o) for o in taken) or files.count(f) > 1:
            raise OutputError(f"{f}: a side output may not be the image output or another side output")
    if output == STDIO and extras.json == STDIO:
        raise InputError("json without a file prints to stdout, which the image written to stdout "
                         "already uses")
    if extras.json not in (None, STDIO):
        guard_output(extras.json, inputs, what="json file", formats=None)  # type: ignore[arg-type]
    if extras.loss_curve is not None:
        guard_output(extras.loss_curve, inputs, what="loss curve file", formats=(".png",))
    for name, folder in (("snapshot_dir", extras.snapshot_dir), ("save_warp", extras.save_warp)):
        if folder is not None and folder.exists() and (not folder.is_dir() or any(
                s != STDIO and same_file(s, folder) for s in inputs)):
            raise OutputError(f"{folder}: {name} must be a folder, not a file")
    kept, many = _Kept([*inputs, *taken, *files]), len(taken) > 1
    if extras.snapshot_every > 0:
        what = "snapshot_dir" if extras.snapshot_dir else "the snapshot folder (--snapshot-dir)"
        for folder in dict.fromkeys(snapshot_folder(extras, o) for o in taken or [STDIO]):
            kept.refuse_in(folder, ("step_*.png",), what, per_image=many and extras.snapshot_dir is not None)
    if extras.save_warp is not None:
        from .stn.visualize import PICTURES

        kept.refuse_in(extras.save_warp, [f"{p}.png" for p in PICTURES], "save_warp", per_image=many)
    if extras.loss_curve is not None and many:
        curve = Path(extras.loss_curve)
        for o in taken:
            kept.refuse(curve.with_name(f"{curve.stem}_{Path(o).stem}.png"), "loss_curve")


class _Kept:
    """The files no side output may write over (inputs, image outputs, other side outputs),
    by their real folder: each check looks at one folder, so a batch of N images costs O(N)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.by_folder: dict[Path, list[tuple[str, str]]] = {}
        for p in dict.fromkeys(str(p) for p in paths if p != STDIO):
            real = Path(os.path.realpath(p))
            self.by_folder.setdefault(real.parent, []).append((real.name, p))

    def refuse_in(self, folder: Path, names: Sequence[str], what: str, *, per_image: bool = False) -> None:
        """An OutputError when a side output writing files named like ``names`` (patterns) into
        ``folder`` (``per_image``: into a folder per image inside it) would replace a kept file."""
        root = Path(os.path.realpath(folder))
        folders = [root, *(f for f in self.by_folder if per_image and f.parent == root)]
        for f in folders:
            for name, path in self.by_folder.get(f, ()):
                if any(fnmatch(name, n) for n in names):
                    raise OutputError(f"{folder}: {what} would write over {path}; choose another folder")

    def refuse(self, file: Path, what: str) -> None:
        """An OutputError when the side output ``file`` is a kept file."""
        real = Path(os.path.realpath(file))
        for name, path in self.by_folder.get(real.parent, ()):
            if name == real.name:
                raise OutputError(f"{file}: {what} would write over {path}; choose another name")


def snapshot_folder(extras: Extras, output: str) -> Path:
    """Where the snapshots of the job writing ``output`` go (before a batch's per-image folder)."""
    base = Path(output if output != STDIO else "warpaint")
    return extras.snapshot_dir or base.with_name(base.stem + "_snapshots")


def snapshot(extras: Extras, job: Job, it: Iterate, many: bool = False) -> None:
    """Write the current image every ``snapshot_every`` steps (a per-step hook); in a batch
    of ``many`` jobs, each job's snapshots go to a folder named after its output."""
    if extras.snapshot_every <= 0 or it.done % extras.snapshot_every:
        return
    output = job.output if isinstance(job.output, str) else STDIO
    folder = snapshot_folder(extras, output)
    if many and extras.snapshot_dir is not None:
        folder = folder / Path(output if output != STDIO else "warpaint").stem
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{folder}: cannot make the snapshot folder ({e.strerror or e})") from None
    save_image(it.image, folder / f"step_{it.done:05d}.png")


def write_extras(extras: Extras, outcome: Outcome, method, many: bool = False) -> list[Path]:
    """After a finished job: the warp's report in its summary, the warp pictures and the loss
    curve (one per job, named after its output, in a batch of ``many``). Returns the warp
    pictures written (none for a job that did not finish)."""
    if outcome.status != "ok":
        return []
    summary = outcome.summary
    detail = summary.get("_detail")
    w, h = summary["output_size"]
    title = f"{w}x{h} px, {summary['steps']} steps, {method.device.type}, {method.dtype}"
    stem = Path(outcome.job.output or "result").stem
    pictures: list[Path] = []
    if detail is not None and detail.geometry is not None:
        summary["warp"] = detail.geometry.describe((h, w))
        if extras.save_warp is not None:
            from .stn.visualize import save_warp_pictures

            folder = extras.save_warp / stem if many else extras.save_warp
            pictures = save_warp_pictures(folder, summary["_content"], method.styles[detail.main_style],
                                          detail.unwarped, detail.image, detail.geometry, caption=title)
    if detail is not None and detail.aligned:
        summary["align_style"] = [g.describe((h, w)) for g in detail.aligned]
    if extras.loss_curve is not None and outcome.history:
        from .plots import save_loss_curve

        curve = extras.loss_curve
        if many:
            curve = curve.with_name(f"{curve.stem}_{stem}.png")
        save_loss_curve(outcome.history, curve, scale_starts=outcome.scale_starts, title=title)
    return pictures


def summary_text(outcomes: Sequence[Outcome], many: bool = False) -> str:
    """The JSON summary of the outcomes: one object for a single job, else (``many``: a
    batch, even one stopped after its first image) a list; no NaN."""
    return items_text([summary_of(o) for o in outcomes], many)


def items_text(items: Sequence[dict], many: bool = True) -> str:
    """The JSON summary of per-item summaries (:func:`~warpaint.jobs.summary_of`'s dicts)."""
    return json.dumps(list(items) if many or len(items) != 1 else items[0], indent=2, allow_nan=False)


def write_summary(dest: str | None, outcomes: Sequence[Outcome], many: bool = False) -> None:
    """The JSON summary to ``dest`` (atomically), or to stdout for ``-``."""
    write_items(dest, [summary_of(o) for o in outcomes], many)


def write_items(dest: str | None, items: Sequence[dict], many: bool = True) -> None:
    """The JSON summary of per-item summaries to ``dest`` (atomically), or to stdout for ``-``."""
    if dest is None:
        return
    text = items_text(items, many)
    if dest == STDIO:
        print(text)
    else:
        write_bytes_atomic((text + "\n").encode(), Path(dest))
