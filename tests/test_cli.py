"""Tests of the command line: ``warpaint stylize | demo | score``.

Most tests call :func:`warpaint.cli.main` in-process; a few run ``python -m warpaint`` to
check what a real process does (pipes, Ctrl-C). Runs are tiny: 32 px, 2 steps.
"""

from __future__ import annotations

import io as _io
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from warpaint.cli import main
from warpaint.io import save_image, tensor_to_pil
from warpaint.stylize import StylizeConfig

TINY = ["--size", "32", "--min-size", "32", "--steps", "2", "--coarse-steps", "0", "-q",
        "--device", "cpu", "--dtype", "float32"]


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err
    assert err.startswith("warpaint: error: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    for n in needles:
        assert n in err, (n, err)


def assert_png(path: Path, size: tuple[int, int], mode: str = "RGB") -> None:
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.mode == mode
        assert im.size == size


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def _small_rgb() -> torch.Tensor:
    return torch.rand(1, 3, 20, 30)


@pytest.fixture
def files(tmp_path, image_files) -> dict[str, Path]:
    """content.png (64x48), style.png and an output path in tmp_path."""
    return {**image_files, "out": tmp_path / "out.png"}


# -- failures: exit 2 and one line --------------------------------------------------------------
class TestInputErrors:
    def test_missing_content(self, capsys, files, tmp_path):
        missing = tmp_path / "nope.jpg"
        rc, _, err = cli(capsys, "stylize", missing, files["style"], "-o", files["out"], *TINY)
        assert_one_line_error(rc, err, str(missing), "no such file")
        assert not files["out"].exists()

    def test_directory_as_style(self, capsys, files, tmp_path):
        (tmp_path / "styles").mkdir()
        rc, _, err = cli(capsys, "stylize", files["content"], tmp_path / "styles", "-o", files["out"], *TINY)
        assert_one_line_error(rc, err, "styles", "directory")

    def test_not_an_image(self, capsys, files, tmp_path):
        (tmp_path / "style.jpg").write_text("hello, I am text\n")
        rc, _, err = cli(capsys, "stylize", files["content"], tmp_path / "style.jpg", "-o", files["out"],
                         *TINY)
        assert_one_line_error(rc, err, "style.jpg", "not an image")

    def test_truncated(self, capsys, files, tmp_path):
        a = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(a, "RGB").save(tmp_path / "full.jpg")
        data = (tmp_path / "full.jpg").read_bytes()
        (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
        rc, _, err = cli(capsys, "stylize", tmp_path / "cut.jpg", files["style"], "-o", files["out"], *TINY)
        assert_one_line_error(rc, err, "cut.jpg")

    def test_zero_bytes(self, capsys, files, tmp_path):
        (tmp_path / "empty.png").write_bytes(b"")
        rc, _, err = cli(capsys, "stylize", files["content"], tmp_path / "empty.png", "-o", files["out"],
                         *TINY)
        assert_one_line_error(rc, err, "empty.png", "empty")

    def test_over_pixel_limit(self, capsys, files, tmp_path):
        """12000 x 9000 = 108 MP (over the 100 MP default), yet a tiny bi-level PNG on disk."""
        Image.new("1", (12000, 9000)).save(tmp_path / "huge.png")
        rc, _, err = cli(capsys, "stylize", tmp_path / "huge.png", files["style"], "-o", files["out"], *TINY)
        assert_one_line_error(rc, err, "huge.png", "too large")

    def test_empty_folder(self, capsys, files, tmp_path):
        (tmp_path / "photos").mkdir()
        (tmp_path / "photos" / "notes.txt").write_text("no images here")
        rc, _, err = cli(capsys, "stylize", tmp_path / "photos", files["style"], "-o", tmp_path / "outs",
                         *TINY)
        assert_one_line_error(rc, err, "no images")

    def test_two_stdin_inputs(self, capsys, files):
        rc, _, err = cli(capsys, "stylize", "-", "-", "-o", files["out"], *TINY)
        assert_one_line_error(rc, err, "stdin")


class TestOutputErrors:
    def test_missing_output_folder(self, capsys, files, tmp_path):
        out = tmp_path / "no" / "such" / "dir" / "out.png"
        rc, _, err = cli(capsys, "stylize", files["content"], files["style"], "-o", out, *TINY)
        assert_one_line_error(rc, err, "does not exist")
        assert not (tmp_path / "no").exists()

    def test_unwritable_folder_proc(self, capsys, files):
        rc, _, err = cli(capsys, "stylize", files["content"], files["style"], "-o", "/proc/warpaint.png",
                         *TINY)
        assert_one_line_error(rc, err, "/proc")
        assert not Path("/proc/warpaint.png").exists()

    @pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                        reason="root ignores permission bits, so a read-only folder is still writable")
    def test_unwritable_folder_permissions(self, capsys, files, tmp_path):
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            rc, _, err = cli(capsys, "stylize", files["content"], files["style"], "-o", ro / "o.png", *TINY)
        finally:
            ro.chmod(0o700)
        assert_one_line_error(rc, err, "not writable")

    @pytest.mark.parametrize("which", ["content", "style"])
    def test_output_is_an_input(self, capsys, files, which):
        before = files[which].read_bytes()
        rc, _, err = cli(capsys, "stylize", files["content"], files["style"], "-o", files[which], *TINY)
        assert_one_line_error(rc, err, "same file")
        assert files[which].read_bytes() == before

    def test_output_is_an_input_through_a_link(self, capsys, files, tmp_path):
        link = tmp_path / "link.png"
        link.symlink_to(files["content"])
        before = files["content"].read_bytes()
        rc, _, err = cli(capsys, "stylize", files["content"], files["style"], "-o", link, *TINY)
        assert_one_line_error(rc, err, "same file")
        assert files["content"].read_bytes() == before and link.is_symlink()

    def test_batch_into_its_own_folder(self, capsys, files, tmp_path):
        """A batch written into the content folder must not overwrite a content image."""
        photos = tmp_path / "photos"
        photos.mkdir()
        save_image(_small_rgb(), photos / "a.png")
        before = (photos / "a.png").read_bytes()
        rc, _, err = cli(capsys, "stylize", photos, files["style"], "-o", photos, *TINY)
        assert_one_line_error(rc, err, "may not be the input folder")
        assert (photos / "a.png").read_bytes() == before

    @pytest.mark.parametrize("name", ["out.xyz", "out"])
    def test_unknown_extension(self, capsys, files, tmp_path, name):
        rc, _, err = cli(capsys, "stylize", files["content"], files["style"], "-o", tmp_path / name, *TINY)
        assert_one_line_error(rc, err, "unknown output extension")
        assert not (tmp_path / name).exists()

    def test_folder_batch_to_a_file(self, capsys, files, tmp_path):
        photos = tmp_path / "photos"
        photos.mkdir()
        save_image(_small_rgb(), photos / "a.png")
        files["out"].write_bytes(b"existing")
        rc, _, err = cli(capsys, "stylize", photos, files["style"], "-o", files["out"], *TINY)
        assert_one_line_error(rc, err, "must be a folder")
        assert files["out"].read_bytes() == b"existing"

    def test_json_and_stdout(self, capsys, files):
        rc, _, err = cli(capsys, "stylize", files["content"], files["style"], "-o", "-", "--json", *TINY)
        assert_one_line_error(rc, err, "--json")


class TestOptionErrors:
    @pytest.mark.parametrize("extra, needle", [
        (["--style-weight", "-1"], "style-weight"),
        (["--content-weight", "-0.5"], "content-weight"),
        (["--tv-weight", "-2"], "tv-weight"),
        (["--style-layers", "relu1_1,relu9_9"], "relu9_9"),
        (["--content-layers", "pool7"], "pool7"),
        (["--content-layers", ""], "content layer"),
        (["--style-layers", ""], "style layer"),
        (["--style-layer-weights", "1,2"], "style layer weights"),
        (["--style-blend", "1,2"], "blend"),
        (["--size", "8"], "size"),
        (["--steps", "-3"], "steps"),
        (["--device", "nonsense"], "nonsense"),
        (["--init", "no_such_start.png"], "no_such_start.png"),
        # options that would be ignored: said, not ignored
        (["--strength", "0.5"], "--strength works with --fast"),
        (["--work-size", "64"], "--work-size works with --fast"),
        (["--detail", "0.5"], "--detail works with --fast"),
        (["--snapshot-dir", "snaps"], "--snapshot-dir needs --snapshot-every"),
        # output paths that cannot be
        (["-o", ""], "output path is empty"),
        (["-o", "{content}/o.png"], "is a file, not a folder"),
    ])
    def test_bad_value(self, capsys, files, extra, needle):
        extra = [e.format(content=files["content"]) for e in extra]
        rc, _, err = cli(capsys, "stylize", files["content"], files["style"], "-o", files["out"], *TINY,
                         *extra)
        assert_one_line_error(rc, err, needle)
        assert not files["out"].exists()

    @pytest.mark.parametrize("command", ["stylize", "batch"])
    @pytest.mark.parametrize("extra, flag", [(["--steps", "5"], "--steps"),
                                             (["--dtype", "bfloat16"], "--dtype"),
                                             (["--style-weight", "3"], "--style-weight")])
    def test_engine_option_with_fast(self, capsys, files, tmp_path, command, extra, flag):
        """An optimization setting given with --fast would be ignored: an error that names it."""
        content, out = files["content"], files["out"]
        if command == "batch":
            content, out = tmp_path / "photos", tmp_path / "outs"
            content.mkdir()
            (content / "c.png").write_bytes(files["content"].read_bytes())
        rc, _, err = cli(capsys, command, content, files["style"], "-o", out, "--fast", "--size", "32",
                         "-q", *extra)
        assert_one_line_error(rc, err, f"{flag} works with the optimization engine")
        assert not files["out"].exists() and not (tmp_path / "outs" / "c.png").exists()

    @pytest.mark.parametrize("extra", [["--steps", "many"], ["--optimizer", "sgd"], ["--style-blend", "1,x"]])
    def test_unparsable_value(self, capsys, files, extra):
        """argparse rejects these itself: exit 2 with its usage line, never a traceback."""
        with pytest.raises(SystemExit) as info:
            main(["stylize", str(files["content"]), str(files["style"]), "-o", str(files["out"]), *TINY,
                  *extra])
        err = capsys.readouterr().err
        assert info.value.code == 2
        assert "Traceback" not in err and "error:" in err.splitlines()[-1]
        if "--style-blend" in extra:     # says what a list should be, not the parsing function's name
            assert "expected comma-separated numbers, got '1,x'" in err and "comma_floats" not in err

    def test_missing_output_flag(self, capsys, files):
        with pytest.raises(SystemExit) as info:
            main(["stylize", str(files["content"]), str(files["style"])])
        assert info.value.code == 2
        assert "-o" in capsys.readouterr().err


# -- successes --------------------------------------------------------------------------------
def _write_mode(path: Path, mode: str) -> tuple[int, int]:
    """Write a 40x30 image in ``mode``; return the (W, H) the output should have at size 32."""
    rgb = np.asarray(tensor_to_pil(_gradient(30, 40)))
    im = Image.fromarray(rgb, "RGB")
    if mode == "L":
        im.convert("L").save(path)
    elif mode == "RGBA":
        im = im.convert("RGBA")
        im.putpixel((0, 0), (0, 0, 0, 0))
        im.save(path)
    elif mode == "P":
        im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(path)
    elif mode == "CMYK":
        im.convert("CMYK").save(path)
    elif mode == "I;16":
        a = (np.asarray(im.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        Image.fromarray(a).save(path)
        with Image.open(path) as check:
            assert check.mode.startswith("I")
    elif mode == "EXIF":
        exif = Image.Exif()
        exif[0x0112] = 6
        im.save(path, exif=exif)
        return 24, 32  # displayed rotated: 30 wide, 40 high
    return 32, 24


def _gradient(h: int, w: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([x, y, 1 - x * y])[None]


class TestStylizeSuccess:
    @pytest.mark.parametrize("mode, ext", [("L", "png"), ("RGBA", "png"), ("P", "png"), ("CMYK", "jpg"),
                                           ("I;16", "png"), ("EXIF", "jpg")])
    def test_input_modes(self, capsys, files, tmp_path, mode, ext):
        src = tmp_path / f"in_{mode.replace(';', '')}.{ext}"
        size = _write_mode(src, mode)
        # As content, with the same file as a style image too.
        rc, out, err = cli(capsys, "stylize", src, src, files["style"], "-o", files["out"], *TINY)
        assert rc == 0, err
        assert err == "" and out == ""
        assert_png(files["out"], size, "RGBA" if mode == "RGBA" else "RGB")   # transparency is kept
        assert no_temp_files(tmp_path)

    def test_grayscale_style_from_shared_images(self, capsys, files, shared_image):
        """The sample escher_sphere.jpg is a real grayscale (mode L) JPEG."""
        style = shared_image("style/escher_sphere.jpg")
        with Image.open(style) as im:
            assert im.mode == "L"
        rc, _, err = cli(capsys, "stylize", files["content"], style, "-o", files["out"], *TINY)
        assert rc == 0, err
        assert_png(files["out"], (32, 24))

    def test_content_already_at_size(self, capsys, files, tmp_path):
        """--size equal to the content's long side: no resize happens (regression test)."""
        tensor_to_pil(_gradient(24, 32)).save(tmp_path / "small.png")
        rc, _, err = cli(capsys, "stylize", tmp_path / "small.png", files["style"], "-o", files["out"], *TINY)
        assert rc == 0, err
        assert_png(files["out"], (32, 24))

    def test_jpeg_output(self, capsys, files, tmp_path):
        rc, _, err = cli(capsys, "stylize", files["content"], files["style"], "-o", tmp_path / "o.jpg", *TINY)
        assert rc == 0, err
        with Image.open(tmp_path / "o.jpg") as im:
            assert im.format == "JPEG" and im.size == (32, 24)

    def test_original_size(self, capsys, files):
        rc, _, err = cli(capsys, "stylize", files["content"], files["style"], "-o", files["out"], *TINY,
                         "--original-size")
        assert rc == 0, err
        assert_png(files["out"], (64, 48))

    def test_not_quiet(self, capsys, files):
        args = [a for a in TINY if a != "-q"]
        rc, out, err = cli(capsys, "stylize", files["content"], files["style"], "-o", files["out"], *args)
        assert rc == 0
        assert "wrote" in err and str(files["out"]) in err and "Traceback" not in err
        assert out == ""

    def test_keeps_an_existing_output_unless_overwrite(self, capsys, files):
        files["out"].write_bytes(b"old")
        rc, _, err = cli(capsys, "stylize", files["content"], files["style"], "-o", files["out"], *TINY)
        assert_one_line_error(rc, err, "exists", "--overwrite")
        assert files["out"].read_bytes() == b"old"
        rc, _, _ = cli(capsys, "stylize", files["content"], files["style"], "-o", files["out"], *TINY,
                       "--overwrite")
        assert rc == 0
        assert_png(files["out"], (32, 24))

    def test_several_styles(self, capsys, files, tmp_path):
        tensor_to_pil(_gradient(16, 16)).save(tmp_path / "style2.png")
        rc, _, err = cli(capsys, "stylize", files["content"], files["style"], tmp_path / "style2.png",
                         "-o", files["out"], *TINY, "--style-blend", "2,1")
        assert rc == 0, err
        assert_png(files["out"], (32, 24))

    def test_folder_batch(self, capsys, files, tmp_path):
        photos = tmp_path / "photos"
        photos.mkdir()
        tensor_to_pil(_gradient(30, 40)).save(photos / "a.png")
        tensor_to_pil(_gradient(40, 20)).save(photos / "b.jpg")
        (photos / "readme.txt").write_text("not an image")
        (photos / "sub").mkdir()
        outs = tmp_path / "outs"  # created on demand
        rc, _, err = cli(capsys, "stylize", photos, files["style"], "-o", outs, *TINY)
        assert rc == 0, err
        assert sorted(p.name for p in outs.iterdir()) == ["a.png", "b.png"]
        assert_png(outs / "a.png", (32, 24))
        assert_png(outs / "b.png", (16, 32))

    def test_json_file(self, capsys, files, tmp_path):
        rc, out, err = cli(capsys, "stylize", files["content"], files["style"], "-o", files["out"], *TINY,
                           "--json", tmp_path / "run.json")
        assert rc == 0, err
        assert out == ""
        d = json.loads((tmp_path / "run.json").read_text())
        assert {"seconds", "device", "dtype", "steps", "output_size", "final_losses"} <= set(d)
        assert d["steps"] == 2
        assert d["output_size"] == [32, 24]
        assert d["content_size"] == [64, 48]
        assert d["device"] == "cpu" and d["dtype"] == "float32"
        assert d["seconds"] >= 0
        assert set(d["final_losses"]) >= {"content", "style", "total"}
        assert d["config"]["size"] == 32

    def test_json_stdout(self, capsys, files):
        rc, out, err = cli(capsys, "stylize", files["content"], files["style"], "-o", files["out"], *TINY,
                           "--json")
        assert rc == 0, err
        assert json.loads(out)["output"] == str(files["out"])

    def test_loss_curve(self, capsys, files, tmp_path):
        rc, _, err = cli(capsys, "stylize", files["content"], files["style"], "-o", files["out"], *TINY,
                         "--min-size", "16", "--size", "48", "--coarse-steps", "2",
                         "--loss-curve", tmp_path / "curve.png")
        assert rc == 0, err
        with Image.open(tmp_path / "curve.png") as im:
            assert im.format == "PNG" and im.width > 100 and im.height > 100

    def test_snapshots(self, capsys, files, tmp_path):
        rc, _, err = cli(capsys, "stylize", files["content"], files["style"], "-o", files["out"], *TINY,
                         "--snapshot-every", "1")
        assert rc == 0, err
        snaps = tmp_path / "out_snapshots"
        assert sorted(p.name for p in snaps.iterdir()) == ["step_00001.png", "step_00002.png"]
        assert_png(snaps / "step_00002.png", (32, 24))

    def test_snapshot_dir(self, capsys, files, tmp_path):
        rc, _, err = cli(capsys, "stylize", files["content"], files["style"], "-o", files["out"], *TINY,
                         "--steps", "4", "--snapshot-every", "2", "--snapshot-dir", tmp_path / "snaps")
        assert rc == 0, err
        assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == ["step_00002.png", "step_00004.png"]


class TestHelp:
    def test_stylize_help_lists_every_option(self, capsys, monkeypatch):
        monkeypatch.setenv("COLUMNS", "200")
        with pytest.raises(SystemExit) as info:
            main(["stylize", "--help"])
        assert info.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        for f in fields(StylizeConfig):
            assert f"--{f.name.replace('_', '-')}" in text, f.name
        assert text.count("(default:") >= len(fields(StylizeConfig))

    @pytest.mark.parametrize("command, groups", [
        ("stylize", ("losses", "style input", "geometry", "optimizer", "runtime")),
        ("train", ("data", "losses", "network"))])
    def test_help_shows_actual_defaults(self, capsys, monkeypatch, command, groups):
        """Each option's help shows its real default once, zeros included (not 'none')."""
        from warpaint.feedforward.train import TrainConfig

        cls = StylizeConfig if command == "stylize" else TrainConfig
        monkeypatch.setenv("COLUMNS", "200")
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        options = text[text.index("schedule options:"):text.index("output options:")]
        for group in groups:   # shown in groups
            assert f"{group} options:" in options
        # boolean options are listed as "--x, --no-x"
        config = [f for f in fields(cls) if f.name != "kind"]
        flags = [f"--{f.name.replace('_', '-')}" + (", " if isinstance(f.default, bool) else " ")
                 for f in config]
        starts = [options.index(flag) for flag in flags]
        ends = [min([e for e in starts if e > s] + [len(options)]) for s in starts]
        for f, start, end in zip(config, starts, ends, strict=True):
            d = f.default
            shown = ",".join(map(str, d)) if isinstance(d, tuple) else str(d)
            defaults = re.findall(r"\(default: ([^)]*)\)", options[start:end])
            assert defaults, f.name
            own = re.findall(r"\(default: ([^)]*)\)", f.metadata["help"])   # a help that states its own
            assert defaults[-1] == (own[-1] if own else shown or "none"), f.name  # else the parser's
            assert len(defaults) == 1, f.name                                   # never shown twice

    def test_version(self, capsys):
        with pytest.raises(SystemExit) as info:
            main(["--version"])
        assert info.value.code == 0
        assert "warpaint" in capsys.readouterr().out

    def test_no_command(self, capsys):
        with pytest.raises(SystemExit) as info:
            main([])
        assert info.value.code == 2


class TestDemo:
    def test_demo(self, capsys, tmp_path):
        out = tmp_path / "demo.png"
        rc, _, err = cli(capsys, "demo", "-o", out, "--size", "32", "--min-size", "32", "--steps", "1",
                         "--coarse-steps", "0", "-q", "--device", "cpu", "--save-inputs", tmp_path / "inputs")
        assert rc == 0, err
        with Image.open(out) as im:
            assert im.mode == "RGB" and max(im.size) == 32
        assert sorted(p.name for p in (tmp_path / "inputs").iterdir()) == ["demo_content.png",
                                                                          "demo_style.png"]

    def test_demo_bad_output(self, capsys, tmp_path):
        rc, _, err = cli(capsys, "demo", "-o", tmp_path / "demo.xyz", "--size", "32", "-q")
        assert_one_line_error(rc, err, "extension")


# -- real processes -----------------------------------------------------------------------------
class TestSubprocess:
    def test_error_is_one_line(self, python, subprocess_env, files, tmp_path):
        p = subprocess.run([python, "-m", "warpaint", "stylize", str(tmp_path / "missing.png"),
                            str(files["style"]), "-o", str(files["out"]), *TINY],
                           capture_output=True, text=True, env=subprocess_env, timeout=120)
        assert p.returncode == 2
        assert_one_line_error(p.returncode, p.stderr, "missing.png")
        assert p.stdout == ""

    def test_stdin_to_stdout(self, python, subprocess_env, files):
        data = files["content"].read_bytes()
        p = subprocess.run([python, "-m", "warpaint", "stylize", "-", str(files["style"]), "-o", "-", *TINY],
                           input=data, capture_output=True, env=subprocess_env, timeout=120)
        assert p.returncode == 0, p.stderr.decode()
        assert p.stdout.startswith(b"\x89PNG")
        with Image.open(_io.BytesIO(p.stdout)) as im:
            im.load()
            assert im.format == "PNG" and im.size == (32, 24) and im.mode == "RGB"

    @pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                             ids=["INT", "TERM"])
    def test_ctrl_c_writes_current_image(self, python, subprocess_env, files, tmp_path, signum, code):
        """Ctrl-C (SIGINT) and SIGTERM: the current image goes to a .partial name, exit 128 + signal."""
        snaps = tmp_path / "snaps"
        out = tmp_path / "interrupted.png"
        cmd = [python, "-m", "warpaint", "stylize", str(files["content"]), str(files["style"]),
               "-o", str(out), "--size", "64", "--min-size", "64", "--steps", "100000",
               "--coarse-steps", "0", "--snapshot-every", "1", "--snapshot-dir", str(snaps), "-q",
               "--device", "cpu", "--dtype", "float32"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=subprocess_env)
        try:
            deadline = time.monotonic() + 120
            while not (snaps.is_dir() and any(p.suffix == ".png" for p in snaps.iterdir())):
                if proc.poll() is not None:
                    pytest.fail(f"warpaint exited early ({proc.returncode}): {proc.stderr.read().decode()}")
                if time.monotonic() > deadline:
                    pytest.fail("no snapshot within 120 s")
                time.sleep(0.1)
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = err.decode()
        assert proc.returncode == code, err
        assert "Traceback" not in err
        assert "interrupted" in err
        assert not out.exists()            # the final name is for finished results only
        assert_png(tmp_path / "interrupted.partial.png", (64, 48))
        assert no_temp_files(tmp_path) and no_temp_files(snaps)


def test_errors_name_flags_not_fields():
    """A library message names fields; the command line says the flags (never in a path)."""
    from warpaint.cli import _as_flag
    from warpaint.parser import build_parser

    parser = build_parser()
    assert _as_flag("like (128 px) must be larger than read_at", parser) == \
        "--like (128 px) must be larger than --read-at"
    assert _as_flag("needs 3 GB, more than the max_memory budget", parser) == \
        "needs 3 GB, more than the --max-memory budget"
    path = "/tmp/max_memory/style_weight.png: exists"
    assert _as_flag(path, parser) == path
    assert _as_flag("not_a_flag is refused", parser) == "not_a_flag is refused"
