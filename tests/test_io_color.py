"""Alpha, 16 bits and ICC profiles: a content file's transparency and precision survive a
run, an embedded colour profile is converted to sRGB, and the output says what was done.

Every image and the ICC profile are generated here. CLI runs are tiny (32 px, one step).
"""

from __future__ import annotations

import io as _io
import json
import logging
import struct

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from test_cli import assert_one_line_error as one_line_error
from test_cli import cli
from test_reliability import ctrl_c_in_engine

from warpaint.errors import InputError, OutputError
from warpaint.io import check_bit_depth, load_pil, read_content, resize, save_image, to_srgb

TINY = ["--size", "32", "--min-size", "32", "--steps", "1", "--coarse-steps", "0", "--device", "cpu",
        "--dtype", "float32"]
STEPS = TINY.index("--steps") + 1


def tiny(steps: int) -> list[str]:
    return [*TINY[:STEPS], str(steps), *TINY[STEPS + 1:]]


# -- generated inputs ---------------------------------------------------------------------------
def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def wide_rgb_profile(desc: str = "Wide Test RGB", gamma: float = 2.2) -> bytes:
    """An ICC v2 matrix/TRC display profile with Adobe RGB (1998)'s primaries (D50-adapted)
    and a pure gamma curve: a non-sRGB RGB profile that littlecms reads."""
    white = (0.9642, 1.0, 0.8249)
    primaries = ((0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087), (0.14919, 0.06322, 0.74457))

    def xyz(v):
        return b"XYZ " + b"\0" * 4 + b"".join(_s15(c) for c in v)

    curve = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    text = desc.encode() + b"\0"
    description = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 78
    tags = [(b"desc", description), (b"wtpt", xyz(white)), (b"rXYZ", xyz(primaries[0])),
            (b"gXYZ", xyz(primaries[1])), (b"bXYZ", xyz(primaries[2])),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    start = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", start + len(body), len(data))
        body += data
    header = (struct.pack(">I", start + len(body)) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ "
              + b"\0" * 12 + b"acsp" + b"\0" * 28 + b"".join(_s15(c) for c in white) + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def rgba_content(h: int = 48, w: int = 64) -> np.ndarray:
    """(h, w, 4) uint8: a colour gradient, opaque on the left, fading to transparent on the
    right, fully transparent (black) in the last quarter."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // w, y * 255 // h, 200 - x * 100 // w], -1)
    a = np.clip(255 - (x - w // 4) * 255 // (w // 2), 0, 255)
    out = np.dstack([rgb, a]).astype(np.uint8)
    out[a == 0, :3] = 0
    return out


def gradient16(h: int = 40, w: int = 64, channels: int = 3) -> np.ndarray:
    """(h, w, channels) uint16: a ramp through every pixel, so each channel has h * w
    distinct levels (the alpha, channel 4, is never fully opaque)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    t = (y * w + x) / (h * w - 1)
    planes = [t, 1 - t, t * t, 1 - 0.5 * t][:channels]
    return np.round(np.stack(planes, -1) * 65535).astype(np.uint16)


def write_png16(path, a: np.ndarray) -> None:
    import png

    h, w, c = a.shape
    png.Writer(w, h, greyscale=c < 3, alpha=c in (2, 4), bitdepth=16).write_array(
        open(path, "wb"), a.reshape(-1))


def write_tif16(path, a: np.ndarray, orientation: int = 1) -> None:
    import tifffile

    tifffile.imwrite(path, a, photometric="rgb", extrasamples=("unassalpha",) if a.shape[-1] == 4 else None,
                     extratags=[(274, "H", 1, orientation, False)])


def levels(x: torch.Tensor) -> int:
    return len(torch.unique(torch.round(x[:, 0] * 65535)))


@pytest.fixture
def files(tmp_path, image_files) -> dict:
    """rgba.png (64x48, transparent on the right), style.png (64x64)."""
    Image.fromarray(rgba_content(), "RGBA").save(tmp_path / "rgba.png")
    return {**image_files, "rgba": tmp_path / "rgba.png"}


# -- alpha -------------------------------------------------------------------------------------
class TestAlphaIn:
    def test_rgba_alpha_kept_and_colour_as_stored(self, files):
        src = rgba_content()
        c = read_content(str(files["rgba"]))
        assert c.bit_depth == 8 and c.icc is None
        assert c.alpha.shape == (1, 1, 48, 64) and c.alpha.dtype == torch.float32
        assert np.array_equal(np.round(c.alpha[0, 0].numpy() * 255).astype(np.uint8), src[..., 3])
        assert np.array_equal(np.asarray(c.image), src[..., :3])   # not composited onto white

    @pytest.mark.parametrize("kind", ["LA", "P+tRNS", "webp"])
    def test_other_kinds_of_transparency(self, tmp_path, kind):
        path = tmp_path / ("t.webp" if kind == "webp" else "t.png")
        if kind == "LA":
            im = Image.new("LA", (8, 4), (90, 255))
            im.paste((90, 0), (4, 0, 8, 4))
            im.save(path)
        elif kind == "P+tRNS":
            im = Image.new("P", (8, 4), 1)
            im.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
            im.paste(0, (4, 0, 8, 4))
            im.save(path, transparency=0)
        else:
            im = Image.new("RGBA", (8, 4), (200, 30, 30, 255))
            im.paste((0, 0, 0, 0), (4, 0, 8, 4))
            im.save(path, lossless=True)
        c = read_content(str(path))
        assert c.alpha is not None
        assert c.alpha[0, 0, :, :4].min() == 1 and c.alpha[0, 0, :, 4:].max() == 0

    def test_opaque_alpha_is_no_alpha(self, tmp_path):
        Image.new("RGBA", (8, 4), (1, 2, 3, 255)).save(tmp_path / "o.png")
        assert read_content(str(tmp_path / "o.png")).alpha is None

    def test_load_pil_still_composites_onto_white(self, files):
        """Styles and every other reader keep today's behaviour."""
        a = np.asarray(load_pil(files["rgba"]))
        assert (a[:, -1] == 255).all()


class TestAlphaOut:
    @pytest.mark.parametrize("ext", ["png", "webp", "tif"])
    def test_written_as_rgba(self, tmp_path, ext):
        rgb, alpha = torch.rand(1, 3, 12, 16), torch.rand(1, 1, 12, 16)
        save_image(rgb, tmp_path / f"o.{ext}", alpha=alpha)
        with Image.open(tmp_path / f"o.{ext}") as im:
            assert im.mode == "RGBA"
            got = np.asarray(im.getchannel("A"), dtype=np.float64)
        want = np.round(alpha[0, 0].numpy() * 255)
        assert np.abs(got - want).max() <= (0 if ext != "webp" else 3)

    @pytest.mark.parametrize("ext", ["jpg", "bmp"])
    def test_composited_onto_white_with_a_warning(self, tmp_path, caplog, ext):
        rgb, alpha = torch.zeros(1, 3, 8, 8), torch.zeros(1, 1, 8, 8)
        alpha[..., :4] = 1.0                         # left half opaque black, right half transparent
        with caplog.at_level(logging.WARNING):
            save_image(rgb, tmp_path / f"o.{ext}", alpha=alpha)
        assert "composited onto white" in caplog.text
        with Image.open(tmp_path / f"o.{ext}") as im:
            assert im.mode == "RGB"
            a = np.asarray(im, dtype=np.int32)
        assert a[:, :2].max() < 30 and a[:, 6:].min() > 225


# -- 16 bits -----------------------------------------------------------------------------------
class TestSixteenBits:
    @pytest.mark.parametrize("ext", ["png", "tif"])
    @pytest.mark.parametrize("channels", [3, 4])
    def test_round_trip_keeps_the_levels(self, tmp_path, ext, channels):
        src = gradient16(channels=channels)
        (write_png16 if ext == "png" else write_tif16)(tmp_path / f"in.{ext}", src)
        c = read_content(str(tmp_path / f"in.{ext}"))
        assert c.bit_depth == 16 and isinstance(c.image, torch.Tensor) and c.image.shape == (1, 3, 40, 64)
        assert levels(c.image) > 256
        assert (c.alpha is not None) == (channels == 4)
        save_image(c.image, tmp_path / f"out.{ext}", alpha=c.alpha, bit_depth=16)
        back = read_content(str(tmp_path / f"out.{ext}"))
        assert back.bit_depth == 16 and levels(back.image) > 256
        both = torch.cat([back.image] + ([back.alpha] if channels == 4 else []), 1)
        got = np.round(both[0].permute(1, 2, 0).numpy() * 65535)
        assert np.abs(got - src).max() <= 1

    def test_sixteen_bit_gray(self, tmp_path):
        write_png16(tmp_path / "g.png", gradient16(channels=1))
        c = read_content(str(tmp_path / "g.png"))
        assert c.bit_depth == 16 and levels(c.image) > 256
        assert torch.equal(c.image[:, 0], c.image[:, 2])

    @pytest.mark.parametrize("orientation", range(2, 9))
    def test_exif_orientation_as_pillow_applies_it(self, tmp_path, orientation):
        src = gradient16(10, 16)
        write_tif16(tmp_path / "o16.tif", src, orientation)
        eight = Image.fromarray((src >> 8).astype(np.uint8), "RGB")
        exif = Image.Exif()
        exif[0x0112] = orientation
        eight.save(tmp_path / "o8.tif", exif=exif)
        c = read_content(str(tmp_path / "o16.tif"))
        want = np.asarray(load_pil(tmp_path / "o8.tif"))
        got = (np.round(c.image[0].permute(1, 2, 0).numpy() * 65535).astype(np.uint16) >> 8).astype(np.uint8)
        assert got.shape == want.shape and np.array_equal(got, want)

    @pytest.mark.parametrize("ext", ["jpg", "webp", "bmp"])
    def test_refused_where_the_format_cannot_hold_it(self, tmp_path, ext):
        with pytest.raises(InputError, match="cannot hold 16 bits"):
            check_bit_depth("16", tmp_path / f"o.{ext}")
        with pytest.raises(OutputError):
            save_image(torch.rand(1, 3, 4, 4), tmp_path / f"o.{ext}", bit_depth=16)
        check_bit_depth("16", tmp_path / "o.tiff")
        check_bit_depth("8", tmp_path / f"o.{ext}")


# -- ICC profiles ------------------------------------------------------------------------------
class TestICC:
    def test_converted_to_srgb(self, tmp_path, caplog):
        a = np.random.default_rng(0).integers(30, 220, (6, 8, 3), dtype=np.uint8)
        raw = Image.fromarray(a, "RGB")
        raw.save(tmp_path / "wide.png", icc_profile=wide_rgb_profile())
        profile = ImageCms.ImageCmsProfile(_io.BytesIO(wide_rgb_profile()))
        want = np.asarray(ImageCms.profileToProfile(raw, profile, ImageCms.createProfile("sRGB"),
                                                    flags=ImageCms.Flags.BLACKPOINTCOMPENSATION))
        with caplog.at_level(logging.INFO, logger="warpaint.io"):
            c = read_content(str(tmp_path / "wide.png"))
        assert c.icc == "converted Wide Test RGB -> sRGB"
        assert "Wide Test RGB" in caplog.text
        got = np.asarray(c.image)
        assert np.array_equal(got, want)
        assert np.abs(got.astype(int) - a).max() >= 5           # the pixels moved
        assert np.array_equal(np.asarray(load_pil(tmp_path / "wide.png")), want)   # styles too

    def test_alpha_survives_conversion(self, tmp_path):
        Image.fromarray(rgba_content(), "RGBA").save(tmp_path / "w.png", icc_profile=wide_rgb_profile())
        c = read_content(str(tmp_path / "w.png"))
        assert c.icc.startswith("converted")
        assert np.array_equal(np.round(c.alpha[0, 0].numpy() * 255).astype(np.uint8), rgba_content()[..., 3])

    def test_without_a_profile_unchanged(self, tmp_path):
        a = np.random.default_rng(1).integers(0, 255, (6, 8, 3), dtype=np.uint8)
        Image.fromarray(a, "RGB").save(tmp_path / "plain.png")
        c = read_content(str(tmp_path / "plain.png"))
        assert c.icc is None and np.array_equal(np.asarray(c.image), a)

    def test_srgb_profile_kept(self, tmp_path):
        a = np.random.default_rng(2).integers(0, 255, (6, 8, 3), dtype=np.uint8)
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        Image.fromarray(a, "RGB").save(tmp_path / "s.png", icc_profile=srgb)
        c = read_content(str(tmp_path / "s.png"))
        assert c.icc.endswith("(sRGB, kept)") and np.array_equal(np.asarray(c.image), a)

    @pytest.mark.parametrize("mode, data", [("RGB", b"not a profile at all"), ("L", None)])
    def test_unusable_profile_ignored_with_a_warning(self, caplog, mode, data):
        im = Image.new(mode, (4, 4), 100)
        im.info["icc_profile"] = data or wide_rgb_profile()     # an RGB profile on gray pixels
        with caplog.at_level(logging.WARNING):
            out, note = to_srgb(im)
        assert out is im and note.startswith("ignored") and "ignoring" in caplog.text

    def test_sixteen_bit_with_a_profile_converted_at_eight(self, tmp_path):
        import png

        src = gradient16()
        buf = _io.BytesIO()
        png.Writer(64, 40, greyscale=False, bitdepth=16).write_array(buf, src.reshape(-1))
        # insert an iCCP chunk after IHDR (pypng does not write one)
        import zlib

        data = b"Wide\0\0" + zlib.compress(wide_rgb_profile())
        chunk = struct.pack(">I", len(data)) + b"iCCP" + data + struct.pack(">I", zlib.crc32(b"iCCP" + data))
        raw = buf.getvalue()
        (tmp_path / "w16.png").write_bytes(raw[:33] + chunk + raw[33:])
        c = read_content(str(tmp_path / "w16.png"))
        assert c.bit_depth == 8 and "at 8 bits" in c.icc and c.icc.startswith("converted Wide Test RGB")


# -- through the command line --------------------------------------------------------------------
class TestCLI:
    def test_engine_keeps_alpha(self, capsys, files, tmp_path):
        out, summary = tmp_path / "o.png", tmp_path / "s.json"
        rc, _, err = cli(capsys, "stylize", files["rgba"], files["style"], "-o", out, "--json", summary,
                         *tiny(3))
        assert rc == 0, err
        assert "alpha kept" in err
        with Image.open(out) as im:
            assert im.mode == "RGBA" and im.size == (32, 24)
            got = np.asarray(im, dtype=np.float64)
        c = read_content(str(files["rgba"]))
        want = np.round(resize(c.alpha, (24, 32))[0, 0].numpy() * 255)
        assert np.abs(got[..., 3] - want).max() <= 1
        shrunk = np.asarray(Image.fromarray(rgba_content()[..., :3]).resize((32, 24)), dtype=np.float64)
        assert np.abs(got[..., :3] - shrunk).mean() > 3        # stylized, not the content
        color = json.loads(summary.read_text())["color"]
        assert color == {"alpha": "kept", "bit_depth": 8, "input_bit_depth": 8, "icc": None}

    def test_engine_to_jpeg_composites_and_warns(self, capsys, caplog, files, tmp_path):
        out, summary = tmp_path / "o.jpg", tmp_path / "s.json"
        with caplog.at_level(logging.WARNING):
            rc, _, err = cli(capsys, "stylize", files["rgba"], files["style"], "-o", out, "--json", summary,
                             "-q", *TINY)
        assert rc == 0, err
        assert "JPEG has no alpha channel; the transparency was composited onto white" in caplog.text
        with Image.open(out) as im:
            assert im.mode == "RGB"
            a = np.asarray(im, dtype=np.int32)
        assert a[:, -4:].min() > 220                          # the transparent quarter is white
        assert json.loads(summary.read_text())["color"]["alpha"] == "composited onto white"

    def test_sixteen_bit_content_keeps_sixteen_bits(self, capsys, tmp_path, image_files):
        write_png16(tmp_path / "c16.png", gradient16(48, 64, 4))
        out, out8 = tmp_path / "o.png", tmp_path / "o8.png"
        rc, _, err = cli(capsys, "stylize", tmp_path / "c16.png", image_files["style"], "-o", out, "-q",
                         *TINY)
        assert rc == 0, err
        back = read_content(str(out))
        assert back.bit_depth == 16 and back.alpha is not None and levels(back.image) > 256
        rc, _, err = cli(capsys, "stylize", tmp_path / "c16.png", image_files["style"], "-o", out8, "-q",
                         "--bit-depth", "8", *TINY)
        assert rc == 0, err
        assert read_content(str(out8)).bit_depth == 8

    @pytest.mark.parametrize("extra", [[], ["--fast"]])
    def test_bit_depth_16_refused_before_work(self, capsys, files, tmp_path, extra):
        out = tmp_path / ("o.jpg" if not extra else "o.png")
        rc, _, err = cli(capsys, "stylize", files["content"], files["style"], "-o", out, "--bit-depth", "16",
                         *extra, "-q", "--size", "32", "--device", "cpu")
        one_line_error(rc, err, "--bit-depth" if extra else "JPEG cannot hold 16 bits")
        assert not out.exists()

    def test_icc_said_and_recorded(self, capsys, image_files, tmp_path):
        Image.open(image_files["content"]).save(tmp_path / "wide.png", icc_profile=wide_rgb_profile())
        out, summary = tmp_path / "o.png", tmp_path / "s.json"
        rc, _, err = cli(capsys, "stylize", tmp_path / "wide.png", image_files["style"], "-o", out,
                         "--json", summary, *TINY)
        assert rc == 0, err
        assert "ICC Wide Test RGB -> sRGB" in err
        assert json.loads(summary.read_text())["color"]["icc"] == "converted Wide Test RGB -> sRGB"

    @pytest.mark.parametrize("ext", ["png", "webp"])
    def test_fast_keeps_alpha(self, capsys, files, tmp_path, ext):
        out = tmp_path / f"o.{ext}"
        rc, _, err = cli(capsys, "stylize", files["rgba"], files["style"], "-o", out, "--fast", "-q",
                         "--size", "32", "--device", "cpu")
        assert rc == 0, err
        with Image.open(out) as im:
            assert im.mode == "RGBA" and im.size == (32, 24)
            alpha = np.asarray(im.getchannel("A"), dtype=np.float64)
        assert alpha[:, :4].min() >= 250 and alpha[:, -4:].max() <= 5

    def test_partial_keeps_alpha(self, capsys, files, tmp_path, monkeypatch):
        ctrl_c_in_engine(monkeypatch, at_step=2)
        out = tmp_path / "o.png"
        rc, _, err = cli(capsys, "stylize", files["rgba"], files["style"], "-o", out, "-q",
                         *tiny(2))
        assert rc == 130, err
        with Image.open(tmp_path / "o.partial.png") as im:
            assert im.mode == "RGBA" and im.size == (32, 24)
