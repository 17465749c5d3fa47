"""``warpaint serve``: the API against a live uvicorn on 127.0.0.1 (a free port), and the page
end to end in headless Chromium (Playwright driving Debian's ``chromium``; skipped with the
reason where no browser is installed).

Runs are tiny (48-96 px, a few steps, CPU). Every server a test starts is shut down by it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

httpx = pytest.importorskip("httpx", reason="httpx talks to the live server (pip install -e .[dev])")

from warpaint.cli import main  # noqa: E402
from warpaint.web import Settings, running  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TINY = {"size": "48", "min_size": "48", "steps": "2"}          # one scale, about a second
TWO_SCALES = {"size": "96", "min_size": "48", "steps": "3"}    # 48 then 96 px


# -- helpers ---------------------------------------------------------------------------------
def png(w: int, h: int, *, seed: int = 0, noise: bool = True) -> bytes:
    """A PNG of random noise (incompressible: its size is about 3 w h bytes) or one grey."""
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8) if noise else \
        np.full((h, w, 3), 128, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def files(content: bytes, *styles: bytes, content_name: str = "photo.png") -> list[tuple]:
    return [("content", (content_name, content, "image/png")),
            *[("style", (f"painting{i}.png", s, "image/png")) for i, s in enumerate(styles)]]


def image_of(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@contextmanager
def live_server(**overrides) -> Iterator[tuple[str, object]]:
    """A real uvicorn on 127.0.0.1 and a free port, with small limits; shut down at exit."""
    settings = Settings(**{"device": "cpu", "upload_mb": 1.0, "max_pixels": 4_000_000,
                           "frame_interval": 0.2, **overrides})
    with running(settings) as (base, app):
        yield base, app
        assert app.state.queue.root.exists()


def submit(base: str, upload: list[tuple], **options: str) -> httpx.Response:
    return httpx.post(f"{base}/api/jobs", data=options, files=upload, timeout=30)


def follow(base: str, job_id: str, *, timeout: float = 90, until=None) -> list[dict]:
    """The job's server-sent updates until it ends (or ``until(update)`` is true)."""
    updates = []
    with httpx.stream("GET", f"{base}/api/jobs/{job_id}/events", timeout=timeout) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                updates.append(json.loads(line[6:]))
                if until is not None and until(updates[-1]):
                    break
    return updates


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with live_server() as (base, _):
        yield base


@pytest.fixture(scope="module")
def pair() -> tuple[bytes, bytes]:
    """A small content (64x48) and style (64x64) image as PNG bytes."""
    return png(64, 48, seed=1), png(64, 64, seed=2)


# -- uploads and options -----------------------------------------------------------------------
class TestUploads:
    def test_over_the_size_limit(self, server, pair):
        big = png(700, 700)                       # about 1.4 MB of noise, the limit is 1 MB
        assert len(big) > 2**20
        r = submit(server, files(big, pair[1], content_name="huge.png"), **TINY)
        assert r.status_code == 413
        assert r.json()["error"] == "huge.png: the file is over the upload limit of 1 MB"

    def test_request_over_the_limit_is_refused_before_reading(self, server):
        r = httpx.post(f"{server}/api/jobs", content=b"x" * (7 * 2**20), timeout=30)
        assert r.status_code == 413 and "over the limit" in r.json()["error"]

    def test_text_file(self, server, pair):
        r = submit(server, [("content", ("notes.txt", b"hello, not a picture", "text/plain")),
                            ("style", ("s.png", pair[1], "image/png"))], **TINY)
        assert r.status_code == 400
        assert r.json()["error"].startswith("notes.txt: not an image (accepted: PNG, JPEG")

    def test_image_named_like_text_is_read_by_content(self, server, pair):
        """The type comes from the bytes, not from the name or the browser's content type."""
        r = submit(server, [("content", ("picture.txt", pair[0], "text/plain")),
                            ("style", ("s.png", pair[1], "image/png"))], **TINY)
        assert r.status_code == 200, r.text
        follow(server, r.json()["id"])

    def test_pixel_bomb(self, server, pair):
        flat = png(2500, 2000, noise=False)      # 5 Mpx, a few kB: over this server's 4 Mpx
        assert len(flat) < 2**20
        r = submit(server, files(flat, pair[1], content_name="bomb.png"), **TINY)
        assert r.status_code == 400
        error = r.json()["error"]
        assert error.startswith("bomb.png: image too large") and "limit of 4000000 pixels" in error

    def test_truncated_image(self, server, pair):
        r = submit(server, files(pair[0][:200], pair[1], content_name="cut.png"), **TINY)
        assert r.status_code == 400 and r.json()["error"].startswith("cut.png: ")

    def test_client_paths_are_not_options(self, server, pair):
        r = submit(server, files(*pair), init="/etc/passwd", **TINY)
        assert r.status_code == 400 and r.json()["error"] == "unknown option(s): init"

    def test_file_name_loses_its_folders(self, server, pair):
        r = submit(server, files(b"junk", pair[1], content_name="../../etc/x.txt"), **TINY)
        assert r.status_code == 400 and r.json()["error"].startswith("x.txt: not an image")

    @pytest.mark.parametrize("option, value, message", [
        ("style_weight", "-1", "style_weight"), ("size", "abc", "size must be a int"),
        ("size", "5000", "size must be at most 1024 px"), ("warp", "spiral", "warp must be one of"),
        ("method", "magic", "method must be optimize or fast")])
    def test_bad_option(self, server, pair, option, value, message):
        r = submit(server, files(*pair), **{**TINY, option: value})
        assert r.status_code == 400 and message in r.json()["error"]

    def test_cross_site_post_is_refused(self, server, pair):
        r = httpx.post(f"{server}/api/jobs", data=TINY, files=files(*pair),
                       headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and r.json()["error"].startswith("cross-site request refused")

    def test_other_host_names_are_refused_on_loopback(self):
        with running(Settings(device="cpu", allowed_hosts=("127.0.0.1",))) as (base, _):
            assert httpx.get(f"{base}/api/info").status_code == 200
            assert httpx.get(f"{base}/api/info", headers={"Host": "evil.example"}).status_code == 400

    def test_missing_style(self, server, pair):
        r = submit(server, files(pair[0]), **TINY)
        assert r.status_code == 400 and r.json()["error"].startswith("style: choose at least one")

    def test_unknown_run(self, server):
        r = httpx.get(f"{server}/api/jobs/nope/result.png")
        assert r.status_code == 404 and "no such run" in r.json()["error"]


# -- runs ------------------------------------------------------------------------------------
class TestRuns:
    def test_live_updates_result_and_json(self, server, pair):
        r = submit(server, files(*pair), **TWO_SCALES)
        assert r.status_code == 200
        job = r.json()["id"]
        updates = follow(server, job)
        frames = [u for u in updates if "frame" in u]
        assert updates[-1]["state"] == "done" and updates[-1]["result"]
        assert {u["progress"]["scale"] for u in frames if u["progress"]} == {1, 2}   # a frame per scale
        assert updates[-1]["progress"]["done"] == updates[-1]["progress"]["total"] == 9
        fractions = [u["progress"]["fraction"] for u in updates if u["progress"]]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0
        result = image_of(httpx.get(f"{server}/api/jobs/{job}/result.png").content)
        assert result.format == "PNG" and result.size == (96, 72)
        summary = httpx.get(f"{server}/api/jobs/{job}/result.json").json()
        assert summary["status"] == "ok" and summary["output_size"] == [96, 72]
        assert summary["content"] == "photo.png" and summary["styles"] == ["painting0.png"]
        assert summary["steps"] == 9 and summary["config"]["size"] == 96

    def test_stop_keeps_the_current_image(self, server, pair):
        job = submit(server, files(*pair), size="64", min_size="64", steps="500").json()["id"]
        follow(server, job, until=lambda u: u["progress"].get("done", 0) >= 2)
        assert httpx.post(f"{server}/api/jobs/{job}/stop").status_code == 200
        last = follow(server, job)[-1]
        assert last["state"] == "stopped" and last["result"]
        assert 2 <= last["progress"]["done"] < 500
        assert image_of(httpx.get(f"{server}/api/jobs/{job}/result.png").content).size == (64, 48)
        summary = httpx.get(f"{server}/api/jobs/{job}/result.json").json()
        assert summary["status"] == "stopped" and summary["steps"] >= 2

    def test_two_clients_finish_in_order(self, server, pair):
        """Two browsers at once: the second waits (its place shown), then both finish, first first.

        The second is sent once the first has begun, and the first has enough steps (a second
        or more) that it is still running when the second arrives, on any machine."""
        first = submit(server, files(*pair), **{**TINY, "steps": "100"}).json()["id"]
        follow(server, first, until=lambda u: u["state"] == "running")
        r = submit(server, files(*pair), **{**TINY, "steps": "4"})
        assert r.status_code == 200 and r.json()["position"] == 1
        second = r.json()["id"]
        updates = follow(server, second)
        assert follow(server, first)[-1]["state"] == updates[-1]["state"] == "done"
        times = [httpx.get(f"{server}/api/jobs/{i}").json()["times"] for i in (first, second)]
        assert times[0]["finished"] <= times[1]["started"]

    def test_fast_method(self, server, pair):
        r = submit(server, files(*pair), method="fast", size="64")
        assert r.status_code == 200, r.text
        last = follow(server, r.json()["id"])[-1]
        assert last["state"] == "done" and "frame" in last
        result = httpx.get(f"{server}/api/jobs/{last['id']}/result.png").content
        assert image_of(result).size == (64, 48)
        assert base64.b64decode(last["frame"].split(",", 1)[1]) == result   # the last update shows the result

    def test_warp_pictures(self, server, pair):
        job = submit(server, files(*pair), warp="affine", **TINY).json()["id"]
        last = follow(server, job)[-1]
        assert last["state"] == "done" and "matches.png" in last["warp"]
        for name in last["warp"]:
            assert image_of(httpx.get(f"{server}/api/jobs/{job}/warp/{name}").content).format == "PNG"
        assert httpx.get(f"{server}/api/jobs/{job}/warp/..%2Fresult.png").status_code == 404
        assert "warp" in httpx.get(f"{server}/api/jobs/{job}/result.json").json()

    def test_method_refusals_are_said_at_once(self, server, pair):
        """Options the method refuses (a warp with the fast model) or would ignore (steps for
        the fast model, strength for the engine), a strength out of range, the fast model
        without a style, more steps than the server allows on the coarse scales: 400."""
        for extra, message in (({"method": "fast", "warp": "tps"}, "work with method optimize"),
                               ({"method": "fast", "steps": "50"},
                                "steps works with method optimize, not with method fast"),
                               ({"strength": "0.5"},
                                "strength works with method fast, not with method optimize"),
                               ({"method": "fast", "strength": "7"}, "strength must be <= 1"),
                               ({"steps": "600", "min_size": "32"}, "steps per scale must be at most 1000")):
            r = submit(server, files(*pair), size="64", **extra)
            assert r.status_code == 400 and message in r.json()["error"], r.text
        r = submit(server, files(pair[0]), method="fast", size="64")
        assert r.status_code == 400 and r.json()["error"].startswith("style: choose")


class TestQueue:
    def test_limits_cancel_and_cleanup(self, pair):
        """A client's third run is refused; a queued run is cancelled by Stop; closing the page
        forgets its run; the private folder is gone when the server stops."""
        with live_server(per_client=2) as (base, app):
            long = {"size": "64", "min_size": "64", "steps": "1000"}
            a, b = (submit(base, files(*pair), **long).json()["id"] for _ in range(2))
            third = submit(base, files(*pair), **TINY)
            assert third.status_code == 429 and "the limit is 2" in third.json()["error"]
            assert httpx.get(f"{base}/api/jobs/{b}").json()["position"] == 1
            assert httpx.post(f"{base}/api/jobs/{b}/stop").json()["state"] == "cancelled"
            follow(base, a, until=lambda u: u["progress"].get("done", 0) >= 1)
            httpx.post(f"{base}/api/jobs/{a}/stop")
            assert follow(base, a)[-1]["state"] == "stopped"
            root = app.state.queue.root
            assert any(root.iterdir())
            assert httpx.post(f"{base}/api/jobs/{a}/close").status_code == 200
            assert httpx.get(f"{base}/api/jobs/{a}").status_code == 404
            c = submit(base, files(*pair), **long).json()["id"]      # closed while it runs
            follow(base, c, until=lambda u: u["state"] == "running")
            assert httpx.post(f"{base}/api/jobs/{c}/close").status_code == 200
            deadline = time.monotonic() + 30
            while httpx.get(f"{base}/api/jobs/{c}").status_code != 404:
                assert time.monotonic() < deadline, "a closed run was kept"
                time.sleep(0.1)
            assert len(list(root.iterdir())) == 1    # only the cancelled run's folder is left
        assert not root.exists()

    def test_queue_full(self, pair):
        with live_server(max_queue=1, per_client=5) as (base, _):
            long = {"size": "64", "min_size": "64", "steps": "1000"}
            ids = [submit(base, files(*pair), **long).json()["id"]]
            follow(base, ids[0], until=lambda u: u["state"] == "running")
            ids.append(submit(base, files(*pair), **long).json()["id"])
            r = submit(base, files(*pair), **long)
            assert r.status_code == 429 and r.json()["error"].startswith("the queue is full")
            for i in ids:
                httpx.post(f"{base}/api/jobs/{i}/stop")


def test_serve_command_warns_when_bound_wider(python, subprocess_env, tmp_path):
    """``warpaint serve --host 0.0.0.0`` warns, serves the page, and stops on Ctrl-C."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([python, "-m", "warpaint", "serve", "--host", "0.0.0.0", "--port", str(port)],
                            cwd=root, env=subprocess_env, stderr=subprocess.PIPE, text=True)
    try:
        warning = proc.stderr.readline()
        assert warning.startswith("warpaint: warning: serving on 0.0.0.0: anyone who can reach")
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        assert page.status_code == 200 and "<title>warpaint</title>" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        proc.stderr.close()


def test_serve_on_a_busy_port_is_a_one_line_error(capsys):
    with running(Settings(device="cpu")) as (base, _):
        port = base.rsplit(":", 1)[1]
        assert main(["serve", "--port", port]) == 2
    assert capsys.readouterr().err.startswith(f"warpaint: error: cannot serve on 127.0.0.1:{port}: ")


@pytest.mark.parametrize("flag, value, message", [
    ("--upload-mb", "0", "--upload-mb must be"), ("--max-queue", "0", "--max-queue must be"),
    ("--port", "70000", "--port must be"), ("--device", "tpu", "")])
def test_serve_refuses_bad_options(capsys, flag, value, message):
    assert main(["serve", flag, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"warpaint: error: {message}") and err.count("\n") == 1


# -- the page in a real browser -----------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed "
                                   "(pip install -e .[dev])")
    chromium = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if chromium is None:
        pytest.skip(f"no browser: {CHROMIUM} is missing (.ci/run installs it: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh tab, closed after the test (its event stream too, before the server stops)."""
    tab = browser.new_page()
    yield tab
    tab.close()


class TestPage:
    def test_run_live_and_download(self, page, shared_image, tmp_path):
        content, style = shared_image("content/golden_gate.jpg"), shared_image("style/wave.jpg")
        with live_server() as (base, _):
            page.goto(f"{base}/?min_size=48")
            page.set_input_files("#content-file", str(content))
            page.set_input_files("#style-file", str(style))
            page.fill("#size", "96")
            page.fill("#steps", "3")
            page.click("#start")
            page.wait_for_selector("#status[data-state=running]", timeout=30_000)
            page.wait_for_selector("#status[data-state=done]", timeout=90_000)
            assert int(page.get_attribute("#live", "data-frames")) >= 2
            assert float(page.eval_on_selector("#bar", "b => b.value")) == 1.0
            with page.expect_download() as download:
                page.click("#download-png")
            result = Image.open(download.value.path())
            assert result.format == "PNG" and max(result.size) == 96
            assert page.is_hidden("#message")
            page.close()

    def test_bad_uploads_get_a_message(self, page, pair, tmp_path):
        (tmp_path / "big.png").write_bytes(png(700, 700))
        (tmp_path / "notes.txt").write_text("not a picture")
        (tmp_path / "style.png").write_bytes(pair[1])
        with live_server() as (base, _):
            page.goto(base)
            page.set_input_files("#style-file", str(tmp_path / "style.png"))
            for name, message in (("big.png", "big.png: the file is over the upload limit of 1 MB"),
                                  ("notes.txt", "notes.txt: not an image (accepted: PNG")):
                page.set_input_files("#content-file", str(tmp_path / name))
                page.click("#start")
                page.wait_for_selector("#message:not([hidden])", timeout=20_000)
                assert message in page.inner_text("#message")
                assert page.is_enabled("#start")
            page.close()

    def test_demo_images_and_stop(self, page):
        """The built-in demo images; Stop ends the run and keeps the current image to download."""
        from playwright.sync_api import expect

        with live_server() as (base, _):
            page.goto(f"{base}/?min_size=64")
            page.click("#demo-content")
            page.click("#demo-style")
            page.wait_for_selector("#style-thumbs .thumb img", timeout=30_000)
            assert page.locator("#content-thumbs .thumb").count() == 1
            page.fill("#size", "64")
            page.fill("#steps", "500")
            page.click("#start")
            expect(page.locator("#live")).not_to_have_attribute("data-frames", "0", timeout=60_000)
            page.click("#stop")
            page.wait_for_selector("#status[data-state=stopped]", timeout=30_000)
            assert "the current image is kept" in page.inner_text("#status")
            assert page.is_visible("#download-png") and page.is_visible("#download-json")
            with page.expect_download() as download:
                page.click("#download-json")
            summary = json.loads(Path(download.value.path()).read_text())
            assert summary["status"] == "stopped" and summary["content"] == "demo photo.png"
            page.close()   # the page's event stream ends before the server stops
