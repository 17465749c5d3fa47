"""Screenshots of ``warpaint serve``'s page for docs/web.md: before, during and after a run.

Runs a server in the background, drives the page in headless Chromium (Debian's
``/usr/bin/chromium`` through Playwright) and writes ``docs/images/web_{before,during,after}.png``
(1000 px wide, 256-colour PNGs)::

    OMP_NUM_THREADS=1 python docs/web_screenshots.py \\
        ../shared/images/content/brad_pitt.jpg ../shared/images/style/picasso_selfport1907.jpg
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from warpaint.web import Settings, running

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def shoot(page, path: Path, *, full: bool = False) -> None:
    """A screenshot, reduced to 256 colours (a full page: 760 px wide, 64 colours), so each
    stays under about 200 kB."""
    page.screenshot(path=str(path), full_page=full)
    with Image.open(path) as im:
        im = im.convert("RGB")
        if full:
            im = im.resize((760, round(im.height * 760 / im.width)), Image.Resampling.LANCZOS)
            small = im.quantize(colors=64, method=Image.Quantize.FASTOCTREE)
        else:
            small = im.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} kB)")


def wait_until(page, script: str, timeout: float = 600) -> None:
    """Poll a page expression from Python (the page's CSP forbids Playwright's own eval)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(script):
        if time.monotonic() > deadline:
            raise TimeoutError(script)
        time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("content")
    ap.add_argument("style")
    ap.add_argument("--size", default="256")
    ap.add_argument("--steps", default="20")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("images"))
    args = ap.parse_args()
    with running(Settings(device="cpu")) as (base, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 860})
        page.goto(base)
        page.set_input_files("#content-file", args.content)
        page.set_input_files("#style-file", args.style)
        page.fill("#size", args.size)
        page.fill("#steps", args.steps)
        page.select_option("#warp", "affine")
        page.wait_for_selector("#footer, #limits:not(:empty)")
        shoot(page, args.out / "web_before.png")
        page.click("#start")
        wait_until(page, "document.getElementById('bar').value > 0.45 && "
                         "Number(document.getElementById('live').dataset.frames) >= 2")
        shoot(page, args.out / "web_during.png")
        wait_until(page, "document.getElementById('status').dataset.state === 'done'")
        page.wait_for_selector("#warp-list img")
        page.wait_for_load_state("networkidle")
        shoot(page, args.out / "web_after.png", full=True)
        browser.close()


if __name__ == "__main__":
    main()
