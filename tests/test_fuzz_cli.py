"""Fuzz every option of every command: valid, boundary, negative, zero, NaN, infinity, huge
and wrong-type values, each on top of a tiny valid run.

The invariant: exit 0 with a valid output (an image that decodes and is not flat, a model
that loads, JSON without NaN), or exit 2 with a one-line message and no output; never a
traceback, never another exit code. The options are read from the parser itself, so a new
option is fuzzed without touching this file. Runs are tiny (32 px, one step).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_reliability import write_idx

from warpaint.cli import build_parser, main

INT_VALUES = ["0", "1", "-1", "2.5", "99999999999999999999999", "abc"]
FLOAT_VALUES = ["0", "1", "-1", "0.5", "nan", "inf", "-inf", "1e30", "abc"]
#: Options whose value is a path: what each case gets instead of a number.
PATH_VALUES = ["", "/nonexistent/folder/x.png", "{content}", "{folder}"]

#: A tiny valid run of each command ({...} filled per test); the output it must produce.
BASE = {
    "stylize": (["stylize", "{content}", "{style}", "-o", "{out}/o.png", "--size", "32", "--min-size", "32",
                 "--steps", "1", "--coarse-steps", "0", "-q", "--device", "cpu", "--dtype", "float32"],
                "o.png"),
    "stylize-fast": (["stylize", "{content}", "{style}", "-o", "{out}/o.png", "--fast", "--size", "32", "-q",
                      "--device", "cpu"], "o.png"),
    "batch": (["batch", "{photos}", "{style}", "-o", "{out}/b", "--fast", "--size", "32", "-q",
               "--device", "cpu"], "b/p.png"),
    "video": (["video", "{video}", "{style}", "-o", "{out}/v.mp4", "--size", "32", "--max-frames", "2", "-q",
               "--device", "cpu"], "v.mp4"),
    "demo": (["demo", "-o", "{out}/o.png", "--size", "32", "--min-size", "32", "--steps", "1",
              "--coarse-steps", "0", "-q", "--device", "cpu", "--dtype", "float32"], "o.png"),
    "score": (["score", "{content}", "{style}", "{content}", "--size", "32", "--device", "cpu"], None),
    "train": (["train", "--content-dir", "{photos}", "--style", "{style}", "-o", "{out}/m.pt", "--steps", "1",
               "--batch-size", "1", "--size", "32", "--style-size", "32", "--code-size", "32",
               "--sample-every", "0", "-q", "--device", "cpu"], "m.pt"),
    "stn digits": (["stn", "digits", "--data", "{mnist}", "--out", "{out}/d", "--distortion", "R",
                    "--model", "cnn", "--epochs", "1", "-q"], "d/results.json"),
    "stn detect-train": (["stn", "detect-train", "--data", "{mnist}", "--out", "{out}/d", "--model", "plain",
                          "--steps", "1", "--batch-size", "1", "-q"], "d/detect_results.json"),
    "stn seg-train": (["stn", "seg-train", "--data", "{mnist}", "--out", "{out}/d", "--model", "plain",
                       "--steps", "1", "--batch-size", "1", "-q"], "d/seg_results.json"),
    # evaluation takes half a minute on a trained model: only values refused before it starts
    "stn detect-eval": (["stn", "detect-eval", "--data", "{mnist}", "--out", "{out}/none", "-q"], None),
    "stn seg-eval": (["stn", "seg-eval", "--data", "{mnist}", "--out", "{out}/none", "-q"], None),
    # the server itself is replaced by a stub that returns at once: its options are what is fuzzed
    "serve": (["serve", "--port", "0", "--device", "cpu"], None),
}


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in command.removesuffix("-fast").split():
        parser = parser._subparsers._group_actions[0].choices[word]  # noqa: SLF001
    return parser


def _values(action: argparse.Action) -> list[str]:
    if action.choices is not None:
        return [*map(str, action.choices), "abc"]
    if action.type in (int,):
        return INT_VALUES
    if action.type is float or isinstance(action.default, float):
        return FLOAT_VALUES
    if action.type is Path or action.dest in ("output", "json", "data", "out"):
        return PATH_VALUES
    if action.type is str or action.type is None:
        return ["abc", "", "0", "nan"]
    return [*INT_VALUES, "nan", "1,1", ",", "abc,1"]   # comma lists and other converters


def cases() -> list[tuple[str, str, str]]:
    out = []
    for command in BASE:
        for action in _subparser(command)._actions:  # noqa: SLF001
            if not action.option_strings or action.nargs == 0 or isinstance(action, argparse._HelpAction):
                continue
            out += [(command, action.option_strings[-1], v) for v in _values(action)]
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "content.png")
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "style.png")
    (root / "photos").mkdir()
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / "photos" / "p.png")
    write_idx(root / "mnist", rng.integers(0, 255, (2050, 28, 28)), rng.integers(0, 10, 2050))
    (root / "folder").mkdir()
    from tests.test_video import moving_frames, write_test_video

    write_test_video(root / "clip.mp4", moving_frames(3, 48, 64))
    return {"video": str(root / "clip.mp4"), "content": str(root / "content.png"),
            "style": str(root / "style.png"),
            "photos": str(root / "photos"), "mnist": str(root / "mnist"), "folder": str(root / "folder")}


def _check_output(path: Path) -> None:
    """An output of a successful run is whole and sane."""
    assert path.is_file(), f"exit 0 but no {path.name}"
    if path.suffix == ".png":
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.float64)
        assert a.max() - a.min() > 0.5, "a flat image was written with exit 0"
    elif path.suffix == ".json":
        json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in {path.name}"))
    elif path.suffix == ".mp4":
        from warpaint.videoio import probe, read_frames

        assert probe(path).frames >= 1 and len(list(read_frames(path))) >= 1
    elif path.suffix == ".pt":
        from warpaint.feedforward import load

        load(path)


@pytest.mark.parametrize("command, flag, value", cases(), ids=lambda x: str(x))
def test_option(command, flag, value, world, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)            # whatever a case writes "here" stays in its own folder
    served = []
    monkeypatch.setattr("warpaint.web.serve", lambda host, port, settings: served.append(settings))
    fill = {**world, "out": str(tmp_path)}
    template, expected = BASE[command]
    argv = [a.format(**fill) for a in template]
    base_argv = list(argv)
    value = value.format(**fill)
    if flag in argv:                       # replace the base's own value
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    inputs = [world[k] for k in ("content", "style", "video") if world[k] in base_argv]   # its inputs
    before = {p: Path(p).read_bytes() for p in inputs}
    try:
        rc = main(argv)
    except SystemExit as e:                # argparse: --help-like exits never happen here
        rc = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert rc in (0, 2), (rc, err)
    for p, data in before.items():
        assert Path(p).read_bytes() == data, f"input {p} was changed"
    if rc == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "error:" in lines[0], err
        if expected is not None and flag not in ("-o", "--output", "--out"):
            assert not (tmp_path / expected).exists(), f"exit 2 but {expected} was written"
    elif expected is not None and flag not in ("-o", "--output", "--out"):
        _check_output(tmp_path / expected)
    elif command == "serve":
        assert len(served) == 1, "exit 0 but the server was not started"
    for written in tmp_path.rglob("*.json"):
        name = written.name
        json.loads(written.read_text(), parse_constant=lambda c, name=name: pytest.fail(f"{c} in {name}"))
