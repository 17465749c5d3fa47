"""Tests of warpaint.io: every Pillow mode in, atomic writes out, clear errors."""

from __future__ import annotations

import io as _io
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from warpaint.errors import InputError, NumericalError, OutputError, ShapeError
from warpaint.io import (
    fit_long_side,
    load_image,
    load_pil,
    pil_to_pixels,
    pil_to_tensor,
    pixels_to_pil,
    pixels_to_tensor,
    resize,
    resize_long_side,
    resize_pil,
    resize_pixels,
    save_image,
    tensor_to_pil,
    tensor_to_pixels,
    write_bytes_atomic,
)


def _check_contract(x: torch.Tensor, h: int, w: int) -> None:
    assert x.shape == (1, 3, h, w)
    assert x.dtype == torch.float32
    assert x.min() >= 0.0 and x.max() <= 1.0


def _rgb(x: torch.Tensor, i: int, j: int) -> list[float]:
    return [round(v * 255) for v in x[0, :, i, j].tolist()]


def _tmp_files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith("."))


class TestLoadImageModes:
    def test_rgb(self, tmp_path):
        a = np.zeros((6, 5, 3), np.uint8)
        a[2, 3] = (10, 128, 255)
        Image.fromarray(a, "RGB").save(tmp_path / "a.png")
        x = load_image(tmp_path / "a.png")
        _check_contract(x, 6, 5)
        assert _rgb(x, 2, 3) == [10, 128, 255]
        assert x.sum().item() == pytest.approx((10 + 128 + 255) / 255)

    def test_path_as_str(self, tmp_path):
        Image.new("RGB", (3, 2), (255, 0, 0)).save(tmp_path / "a.png")
        _check_contract(load_image(str(tmp_path / "a.png")), 2, 3)

    def test_grayscale_l(self, tmp_path):
        a = np.array([[0, 51], [204, 255]], np.uint8)
        Image.fromarray(a, "L").save(tmp_path / "g.png")
        x = load_image(tmp_path / "g.png")
        _check_contract(x, 2, 2)
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
        torch.testing.assert_close(x[0, 0], torch.from_numpy(a).float() / 255)

    def test_la(self, tmp_path):
        im = Image.new("LA", (2, 1))
        im.putpixel((0, 0), (100, 255))  # opaque gray
        im.putpixel((1, 0), (0, 0))  # fully transparent black -> white
        im.save(tmp_path / "la.png")
        x = load_image(tmp_path / "la.png")
        _check_contract(x, 1, 2)
        assert _rgb(x, 0, 0) == [100, 100, 100]
        assert _rgb(x, 0, 1) == [255, 255, 255]

    def test_rgba_composited_on_white(self, tmp_path):
        im = Image.new("RGBA", (3, 1))
        im.putpixel((0, 0), (255, 0, 0, 255))  # opaque red
        im.putpixel((1, 0), (0, 0, 0, 0))  # transparent black -> white
        im.putpixel((2, 0), (0, 0, 255, 128))  # half-transparent blue -> light blue
        im.save(tmp_path / "rgba.png")
        x = load_image(tmp_path / "rgba.png")
        _check_contract(x, 1, 3)
        assert _rgb(x, 0, 0) == [255, 0, 0]
        assert _rgb(x, 0, 1) == [255, 255, 255]
        r, g, b = _rgb(x, 0, 2)
        assert b == 255 and 120 <= r <= 135 and r == g

    def test_palette(self, tmp_path):
        im = Image.new("P", (2, 2))
        im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
        im.putpixel((1, 1), 1)
        im.save(tmp_path / "p.png")
        assert Image.open(tmp_path / "p.png").mode == "P"
        x = load_image(tmp_path / "p.png")
        _check_contract(x, 2, 2)
        assert _rgb(x, 0, 0) == [255, 0, 0]
        assert _rgb(x, 1, 1) == [0, 255, 0]

    def test_palette_with_transparency(self, tmp_path):
        im = Image.new("P", (2, 1))
        im.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
        im.putpixel((1, 0), 1)
        im.info["transparency"] = 0  # index 0 (black) is transparent
        im.save(tmp_path / "pt.png", transparency=0)
        reopened = Image.open(tmp_path / "pt.png")
        assert reopened.mode == "P" and "transparency" in reopened.info
        x = load_image(tmp_path / "pt.png")
        _check_contract(x, 1, 2)
        assert _rgb(x, 0, 0) == [255, 255, 255]  # transparent -> white, not black
        assert _rgb(x, 0, 1) == [0, 0, 255]

    def test_gif_palette_with_transparency(self, tmp_path):
        im = Image.new("P", (2, 1))
        im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
        im.putpixel((1, 0), 1)
        im.save(tmp_path / "pt.gif", transparency=0)
        x = load_image(tmp_path / "pt.gif")
        assert _rgb(x, 0, 0) == [255, 255, 255]
        assert _rgb(x, 0, 1) == [255, 0, 0]

    @pytest.mark.parametrize("mode, key, opaque", [("RGB", (0, 0, 0), (10, 20, 30)), ("L", 0, 77)])
    def test_transparency_key(self, tmp_path, mode, key, opaque):
        """An RGB or gray PNG whose tRNS chunk marks one colour as transparent."""
        im = Image.new(mode, (2, 1), key)
        im.putpixel((1, 0), opaque)
        im.save(tmp_path / "k.png", transparency=key)
        with Image.open(tmp_path / "k.png") as reopened:
            assert reopened.mode == mode and "transparency" in reopened.info
        x = load_image(tmp_path / "k.png")
        _check_contract(x, 1, 2)
        assert _rgb(x, 0, 0) == [255, 255, 255]
        assert _rgb(x, 0, 1) == ([opaque] * 3 if mode == "L" else list(opaque))

    def test_cmyk(self, tmp_path):
        im = Image.new("CMYK", (3, 2), (0, 255, 255, 0))  # pure red in CMYK
        im.save(tmp_path / "c.jpg", quality=100)
        assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
        x = load_image(tmp_path / "c.jpg")
        _check_contract(x, 2, 3)
        r, g, b = _rgb(x, 1, 1)
        assert r > 240 and g < 15 and b < 15

    def test_cmyk_tiff(self, tmp_path):
        Image.new("CMYK", (2, 2), (0, 0, 0, 255)).save(tmp_path / "c.tif")  # K=255 -> black
        x = load_image(tmp_path / "c.tif")
        _check_contract(x, 2, 2)
        assert x.max().item() < 0.05

    @pytest.mark.parametrize("ext", ["png", "tif"])
    def test_16_bit_grayscale(self, tmp_path, ext):
        a = np.array([[0, 32768], [65535, 16384]], np.uint16)
        Image.fromarray(a).save(tmp_path / f"g16.{ext}")
        assert Image.open(tmp_path / f"g16.{ext}").mode.startswith("I")
        x = load_image(tmp_path / f"g16.{ext}")
        _check_contract(x, 2, 2)
        assert x[0, 0, 1, 0].item() == 1.0  # 65535 -> 1.0, not clipped at 255
        assert x[0, 0, 0, 1].item() == pytest.approx(0.5, abs=1 / 255)
        assert x[0, 0, 1, 1].item() == pytest.approx(0.25, abs=1 / 255)
        assert x[0, 0, 0, 0].item() == 0.0
        assert torch.equal(x[:, 0], x[:, 2])

    def test_16_bit_dark_image_stays_dark(self, tmp_path):
        """All values <= 255 in a 16-bit file are dark, not full-range 8-bit values."""
        Image.fromarray(np.array([[0, 255]], np.uint16)).save(tmp_path / "dark.png")
        x = load_image(tmp_path / "dark.png")
        assert x.max().item() <= 1 / 255 + 1e-6

    def test_mode_1(self, tmp_path):
        im = Image.new("1", (2, 1))
        im.putpixel((1, 0), 1)
        im.save(tmp_path / "b.png")
        x = load_image(tmp_path / "b.png")
        assert _rgb(x, 0, 0) == [0, 0, 0] and _rgb(x, 0, 1) == [255, 255, 255]

    @pytest.mark.parametrize("orientation", [6, 8])
    def test_exif_rotation(self, tmp_path, orientation):
        # Stored 40 wide x 20 high: left half red, right half blue.
        im = Image.new("RGB", (40, 20), (0, 0, 255))
        im.paste((255, 0, 0), (0, 0, 20, 20))
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(tmp_path / "r.jpg", exif=exif, quality=95)
        x = load_image(tmp_path / "r.jpg")
        _check_contract(x, 40, 20)  # width and height swapped
        top, bottom = x[0, :, 5, 10], x[0, :, 34, 10]
        # 6: rotate 90 degrees clockwise to display, so the left (red) half ends on top;
        # 8: counter-clockwise, so the red half ends at the bottom.
        red, blue = (top, bottom) if orientation == 6 else (bottom, top)
        assert red[0] > 0.8 and red[2] < 0.2
        assert blue[2] > 0.8 and blue[0] < 0.2

    def test_one_pixel(self, tmp_path):
        Image.new("RGB", (1, 1), (0, 255, 0)).save(tmp_path / "one.png")
        x = load_image(tmp_path / "one.png")
        _check_contract(x, 1, 1)
        assert _rgb(x, 0, 0) == [0, 255, 0]

    def test_stream(self, tmp_path):
        buf = _io.BytesIO()
        Image.new("RGB", (4, 3), (1, 2, 3)).save(buf, format="PNG")
        buf.seek(0)
        x = load_image(buf)
        _check_contract(x, 3, 4)
        assert _rgb(x, 2, 3) == [1, 2, 3]

    def test_load_pil_is_load_image_before_the_tensor(self, tmp_path):
        Image.new("LA", (5, 4), (90, 255)).save(tmp_path / "g.png")
        im = load_pil(tmp_path / "g.png")
        assert im.mode == "RGB" and im.size == (5, 4)
        assert torch.equal(pil_to_tensor(im), load_image(tmp_path / "g.png"))

    def test_pil_to_tensor_modes(self):
        for mode in ("RGB", "L", "LA", "RGBA", "P", "CMYK", "I", "F", "1"):
            _check_contract(pil_to_tensor(Image.new(mode, (3, 2))), 2, 3)


class TestLoadImageErrors:
    def _raises(self, path, **kw) -> str:
        with pytest.raises(InputError) as info:
            load_image(path, **kw)
        assert str(path) in str(info.value)
        assert "\n" not in str(info.value)
        return str(info.value)

    def test_missing(self, tmp_path):
        assert "no such file" in self._raises(tmp_path / "nope.png")

    def test_directory(self, tmp_path):
        assert "directory" in self._raises(tmp_path)

    def test_zero_bytes(self, tmp_path):
        (tmp_path / "empty.png").write_bytes(b"")
        assert "empty" in self._raises(tmp_path / "empty.png")

    def test_text_file(self, tmp_path):
        (tmp_path / "notes.png").write_text("this is not an image\n")
        assert "not an image" in self._raises(tmp_path / "notes.png")

    @pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
    def test_truncated(self, tmp_path, fmt):
        a = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        full = tmp_path / f"full.{fmt.lower()}"
        Image.fromarray(a, "RGB").save(full, format=fmt)
        cut = tmp_path / f"cut.{fmt.lower()}"
        data = full.read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        self._raises(cut)

    def test_over_max_pixels(self, tmp_path):
        Image.new("RGB", (20, 20)).save(tmp_path / "big.png")
        said = self._raises(tmp_path / "big.png", max_pixels=100)
        assert "too large" in said and "limit of 100 pixels" in said
        _check_contract(load_image(tmp_path / "big.png", max_pixels=400), 20, 20)

    def test_between_max_and_twice_max_pixels(self, tmp_path):
        """Pillow only warns between the limit and twice it; we must still refuse."""
        Image.new("RGB", (15, 10)).save(tmp_path / "big.png")
        self._raises(tmp_path / "big.png", max_pixels=100)

    def test_default_limit(self, tmp_path):
        """A 12000x9000 (108 MP) bi-level PNG is tiny on disk but over the 100 MP default."""
        Image.new("1", (12000, 9000)).save(tmp_path / "huge.png")
        assert (tmp_path / "huge.png").stat().st_size < 1_000_000
        self._raises(tmp_path / "huge.png")

    def test_limit_does_not_leak(self, tmp_path):
        Image.new("RGB", (20, 20)).save(tmp_path / "big.png")
        before = Image.MAX_IMAGE_PIXELS
        with pytest.raises(InputError):
            load_image(tmp_path / "big.png", max_pixels=100)
        assert Image.MAX_IMAGE_PIXELS == before

    def test_empty_stream(self):
        with pytest.raises(InputError, match="empty"):
            load_image(_io.BytesIO(b""))

    def test_input_error_is_value_error(self, tmp_path):
        with pytest.raises(ValueError):
            load_image(tmp_path / "nope.png")


class TestSaveImage:
    def test_round_trip(self, tmp_path):
        x = torch.rand(1, 3, 5, 7)
        save_image(x, tmp_path / "out.png")
        y = load_image(tmp_path / "out.png")
        assert y.shape == x.shape
        torch.testing.assert_close(y, (x * 255).round() / 255, atol=1e-6, rtol=0)
        assert _tmp_files(tmp_path) == []

    @pytest.mark.parametrize("ext, fmt", [(".jpg", "JPEG"), (".JPEG", "JPEG"), (".webp", "WEBP"),
                                          (".bmp", "BMP"), (".tiff", "TIFF")])
    def test_formats(self, tmp_path, ext, fmt):
        save_image(torch.rand(1, 3, 8, 8), tmp_path / f"out{ext}")
        with Image.open(tmp_path / f"out{ext}") as im:
            assert im.format == fmt and im.size == (8, 8) and im.mode == "RGB"

    def test_pil_input(self, tmp_path):
        save_image(Image.new("RGB", (3, 2), (9, 8, 7)), tmp_path / "p.png")
        assert _rgb(load_image(tmp_path / "p.png"), 1, 2) == [9, 8, 7]

    @pytest.mark.parametrize("bad", [float("nan"), float("inf")])
    def test_non_finite_is_never_written(self, tmp_path, bad):
        x = torch.rand(1, 3, 4, 4)
        x[0, 1, 2, 3] = bad
        with pytest.raises(NumericalError, match="NaN or infinite"):
            save_image(x, tmp_path / "n.png")
        with pytest.raises(NumericalError):
            save_image(torch.rand(1, 3, 4, 4), tmp_path / "a.png", alpha=torch.full((1, 1, 4, 4), bad))
        assert list(tmp_path.iterdir()) == []

    def test_out_of_range_is_clamped(self, tmp_path):
        x = torch.tensor([-1.0, 0.5, 2.0]).view(1, 3, 1, 1)
        save_image(x, tmp_path / "c.png")
        assert _rgb(load_image(tmp_path / "c.png"), 0, 0) == [0, 128, 255]

    def test_does_not_mutate(self, tmp_path):
        x = torch.rand(1, 3, 4, 4) * 2 - 0.5
        before = x.clone()
        save_image(x, tmp_path / "a.png")
        assert torch.equal(x, before)

    def test_stream(self):
        buf = _io.BytesIO()
        save_image(torch.rand(1, 3, 4, 6), buf)
        assert buf.getvalue().startswith(b"\x89PNG")
        buf.seek(0)
        assert load_image(buf).shape == (1, 3, 4, 6)

    def test_overwrite_is_atomic(self, tmp_path):
        dest = tmp_path / "out.png"
        save_image(torch.zeros(1, 3, 4, 4), dest)
        save_image(torch.ones(1, 3, 4, 4), dest)
        assert load_image(dest).min().item() == 1.0
        assert _tmp_files(tmp_path) == []

    def test_failed_encode_leaves_previous_file(self, tmp_path, monkeypatch):
        dest = tmp_path / "out.png"
        save_image(torch.zeros(1, 3, 4, 4), dest)
        before = dest.read_bytes()

        def boom(self, *args, **kwargs):
            raise OSError("disk on fire")

        monkeypatch.setattr(Image.Image, "save", boom)
        with pytest.raises(OSError):
            save_image(torch.ones(1, 3, 4, 4), dest)
        monkeypatch.undo()
        assert dest.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]

    def test_failed_write_leaves_previous_file(self, tmp_path, monkeypatch):
        """A failure after the temporary file exists (e.g. rename) removes it again."""
        dest = tmp_path / "out.png"
        save_image(torch.zeros(1, 3, 4, 4), dest)
        before = dest.read_bytes()

        def fail_replace(src, dst):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", fail_replace)
        with pytest.raises(OutputError, match="cannot write"):
            save_image(torch.ones(1, 3, 4, 4), dest)
        monkeypatch.undo()
        assert dest.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]

    def test_interrupted_write_cleans_up(self, tmp_path, monkeypatch):
        def interrupt(src, dst):
            raise KeyboardInterrupt

        monkeypatch.setattr(os, "replace", interrupt)
        with pytest.raises(KeyboardInterrupt):
            write_bytes_atomic(b"data", tmp_path / "x.bin")
        monkeypatch.undo()
        assert list(tmp_path.iterdir()) == []

    def test_file_mode_follows_umask(self, tmp_path):
        """Outputs get the usual 0666 & ~umask mode, not mkstemp's private 0600."""
        old = os.umask(0o022)
        try:
            save_image(torch.rand(1, 3, 4, 4), tmp_path / "m.png")
        finally:
            os.umask(old)
        assert stat.S_IMODE((tmp_path / "m.png").stat().st_mode) == 0o644

    def test_unknown_extension(self, tmp_path):
        with pytest.raises(OutputError, match="unknown output extension"):
            save_image(torch.rand(1, 3, 4, 4), tmp_path / "out.xyz")
        with pytest.raises(OutputError):
            save_image(torch.rand(1, 3, 4, 4), tmp_path / "noext")
        assert list(tmp_path.iterdir()) == []

    def test_missing_folder(self, tmp_path):
        with pytest.raises(OutputError, match="does not exist") as info:
            save_image(torch.rand(1, 3, 4, 4), tmp_path / "no" / "such" / "out.png")
        assert "out.png" in str(info.value)
        assert not (tmp_path / "no").exists()

    def test_directory_as_output(self, tmp_path):
        (tmp_path / "d.png").mkdir()
        with pytest.raises(OutputError, match="directory"):
            save_image(torch.rand(1, 3, 4, 4), tmp_path / "d.png")

    def test_unwritable_folder(self):
        # As root, permission bits are ignored; /proc refuses new files for everyone.
        with pytest.raises(OutputError):
            save_image(torch.rand(1, 3, 4, 4), "/proc/warpaint_test.png")

    def test_output_error_is_os_error(self, tmp_path):
        with pytest.raises(OSError):
            save_image(torch.rand(1, 3, 4, 4), tmp_path / "missing" / "x.png")

    def test_bad_tensor(self, tmp_path):
        with pytest.raises(ShapeError):
            save_image(torch.rand(3, 4, 4), tmp_path / "x.png")


class TestTensorToPil:
    def test_smoke(self):
        im = tensor_to_pil(torch.rand(2, 3, 5, 7))
        assert im.mode == "RGB" and im.size == (7, 5)

    def test_round_trip(self):
        a = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
        im = Image.fromarray(a, "RGB")
        assert np.array_equal(np.asarray(tensor_to_pil(pil_to_tensor(im))), a)

    def test_pixels(self):
        a = np.random.default_rng(2).integers(0, 256, (5, 6, 3), dtype=np.uint8)
        im = Image.fromarray(a, "RGB")
        px = pil_to_pixels(im)
        assert px.shape == (1, 3, 5, 6) and px.dtype == torch.uint8
        assert np.array_equal(px[0].permute(1, 2, 0).numpy(), a)
        assert np.array_equal(np.asarray(pixels_to_pil(px)), np.asarray(im))
        pil_to_pixels(im)[0, :, 0, 0] = 255 - px[0, :, 0, 0]   # a copy: the image's pixels stay its own
        assert np.array_equal(np.asarray(im), a)
        x = pixels_to_tensor(px)
        assert x.is_contiguous() and x.dtype == torch.float32
        assert torch.equal(x, pil_to_tensor(im))
        assert torch.equal(tensor_to_pixels(x), px)
        # rounding to the nearest level, clamped
        edge = torch.tensor([-0.1, 0.0, 0.4 / 255, 0.6 / 255, 1.0, 1.3]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
        assert tensor_to_pixels(edge)[0, 0, 0].tolist() == [0, 0, 0, 1, 255, 255]
        assert pil_to_pixels(Image.new("L", (4, 3), 9)).shape == (1, 3, 3, 4)     # any mode: RGB


class TestResize:
    @pytest.mark.parametrize("hw, long_side, expected", [
        ((768, 1024), 512, (384, 512)), ((1024, 768), 512, (512, 384)), ((100, 100), 32, (32, 32)),
        ((10, 2000), 64, (1, 64)), ((300, 200), 600, (600, 400)), ((1, 1), 5, (5, 5)),
    ])
    def test_fit_long_side(self, hw, long_side, expected):
        out = fit_long_side(hw, long_side)
        assert out == expected
        assert max(out) == long_side

    def test_fit_long_side_keeps_aspect(self):
        for h, w in [(480, 640), (333, 517), (1000, 37), (37, 1000)]:
            oh, ow = fit_long_side((h, w), 256)
            s = 256 / max(h, w)
            assert max(oh, ow) == 256
            assert abs(oh - h * s) <= 0.5 and abs(ow - w * s) <= 0.5  # only rounding

    def test_resize(self):
        x = torch.rand(1, 3, 20, 30)
        assert resize(x, (20, 30)) is x
        y = resize(x, (10, 15))
        assert y.shape == (1, 3, 10, 15) and y.min() >= 0 and y.max() <= 1
        assert resize(x, (40, 60)).shape == (1, 3, 40, 60)
        assert resize_long_side(x, 60).shape == (1, 3, 40, 60)

    def test_smooth_enlarging_is_pillows_bicubic(self):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(1, 3, 6, 8, generator=g)
        x = (torch.nn.functional.interpolate(x, size=(24, 32), mode="bilinear") * 255).round() / 255
        pil = Image.fromarray((x[0].permute(1, 2, 0) * 255).round().byte().numpy())
        pil = pil.resize((75, 56), Image.BICUBIC)
        ref = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)[None].float() / 255
        smooth, sharp = resize(x, (56, 75), smooth=True), resize(x, (56, 75))
        assert (smooth - ref).abs().max() <= 2 / 255         # Pillow rounds to 8 bits
        assert (sharp - ref).abs().max() > 2 / 255

    def test_resize_pil_matches_resize(self):
        g = torch.Generator().manual_seed(1)
        x = torch.rand(1, 3, 6, 8, generator=g)
        x = torch.nn.functional.interpolate(x, size=(48, 64), mode="bilinear")
        x = (x * 255).round() / 255
        for hw in [(20, 27), (100, 130)]:                    # shrinking (antialiased) and enlarging
            out = resize_pil(tensor_to_pil(x), hw)
            assert out.size == (hw[1], hw[0]) and out.mode == "RGB"
            assert (pil_to_tensor(out) - resize(x, hw, smooth=True)).abs().max() <= 2 / 255
        palette = Image.new("P", (8, 6))
        assert resize_pil(palette, (3, 4)).mode == "RGB"      # any mode comes out as RGB
        rgb = tensor_to_pil(x)
        assert resize_pil(rgb, (48, 64)) is rgb
        px = pil_to_pixels(rgb)
        assert resize_pixels(px, (48, 64)) is px
        assert np.array_equal(resize_pixels(px, (20, 27))[0].permute(1, 2, 0).numpy(),
                              np.asarray(resize_pil(rgb, (20, 27))))

    def test_resize_constant(self):
        x = torch.full((1, 3, 16, 16), 0.25)
        torch.testing.assert_close(resize(x, (5, 7)), torch.full((1, 3, 5, 7), 0.25))
        torch.testing.assert_close(resize(x, (33, 40)), torch.full((1, 3, 33, 40), 0.25))
