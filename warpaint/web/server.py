"""The web app (FastAPI): the page, uploads, the job queue's endpoints and the live stream.

Endpoints (all JSON errors are ``{"error": "one line"}``):

* ``GET /``: the page (``static/index.html``, ``app.js``, ``style.css``; nothing from a CDN).
* ``GET /api/info``: limits and the options the page offers.
* ``GET /api/demo/content.png``, ``/api/demo/style.png``: the built-in demo images.
* ``POST /api/jobs``: multipart form with ``content`` (one image), ``style`` (one or more
  images, for either method) and options; answers ``{"id", "position"}``.
* ``GET /api/jobs/{id}``: state, place in the queue, progress. ``GET /api/jobs/{id}/events``:
  the same as server-sent events, with the current image as a PNG data URL when it changed.
* ``POST /api/jobs/{id}/stop``; ``POST /api/jobs/{id}/close`` (page closed: forget the run).
* ``GET /api/jobs/{id}/frame.png``, ``result.png``, ``result.json``, ``warp/{name}``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from contextlib import asynccontextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..errors import InputError, WarpaintError, check_number
from ..io import fit_long_side, load_pil, resize_pil
from ..jobs import check_method_options
from ..stylize import StylizeConfig
from .jobqueue import TERMINAL, JobQueue, QueueFull, Settings, WebJob, png_bytes

STATIC = Path(__file__).with_name("static")

#: StylizeConfig fields a page may set (no file paths: ``init`` is not among them).
OPTIONS = ("size", "steps", "coarse_steps", "min_size", "style_weight", "content_weight", "tv_weight",
           "preserve_color", "warp", "warp_strength", "optimizer", "seed")
#: First bytes of the accepted image types.
MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF",
         b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}
ACCEPTED = "PNG, JPEG, WebP, GIF, BMP, TIFF"
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                                      "object-src 'none'; frame-ancestors 'none'"}


class TooLarge(InputError):
    """An upload over the size limit (HTTP 413)."""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _status_of(e: WarpaintError) -> int:
    return 413 if isinstance(e, TooLarge) else 429 if isinstance(e, QueueFull) else 400


# -- uploads and options ----------------------------------------------------------------------
def _safe_name(name: str | None) -> str:
    """An uploaded file's name for messages and the JSON: its last part, printable, short."""
    base = re.split(r"[\\/]", name or "")[-1]
    return re.sub(r"[^\w .,()+-]", "_", base)[:80] or "upload"


def _decode(data: bytes, name: str, settings: Settings) -> Image.Image:
    """Bytes of an upload as RGB, shrunk to ``max_size``; InputErrors for anything else."""
    if not data:
        raise InputError(f"{name}: empty file")
    is_webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if not is_webp and not any(data.startswith(m) for m in MAGIC):
        raise InputError(f"{name}: not an image (accepted: {ACCEPTED})")
    stream = io.BytesIO(data)
    stream.name = name
    im = load_pil(stream, max_pixels=settings.max_pixels)
    if max(im.size) > settings.max_size:
        im = resize_pil(im, fit_long_side((im.height, im.width), settings.max_size))
    return im


async def _image(upload: Any, what: str, settings: Settings) -> tuple[Image.Image, str]:
    if not isinstance(upload, UploadFile):
        raise InputError(f"{what}: expected an image file")
    name = _safe_name(upload.filename)
    data = await upload.read(settings.upload_bytes + 1)
    if len(data) > settings.upload_bytes:
        raise TooLarge(f"{name}: the file is over the upload limit of {settings.upload_mb:g} MB")
    return await run_in_threadpool(_decode, data, name, settings), name


def _config(form: Any, settings: Settings) -> StylizeConfig:
    """The run's StylizeConfig from the form's option fields (validated by StylizeConfig)."""
    types = {f.name: type(f.default) for f in fields(StylizeConfig)}
    values: dict[str, Any] = {"device": settings.device}
    for key in OPTIONS:
        text = form.get(key)
        if text is None or text == "":
            continue
        try:
            values[key] = types[key](text) if types[key] is not str else text
        except ValueError:
            raise InputError(f"{key} must be a {types[key].__name__}, got {text!r}") from None
    cfg = StylizeConfig(**values)
    if cfg.size > settings.max_size:
        raise InputError(f"size must be at most {settings.max_size} px on this server, got {cfg.size}")
    coarse = cfg.coarse_steps if cfg.coarse_steps >= 0 else 2 * cfg.steps    # (-1: twice steps)
    if len(cfg.scales((cfg.size, cfg.size))) == 1:                              # (no coarse scale)
        coarse = 0
    if max(cfg.steps, coarse, cfg.detail_steps) > settings.max_steps:
        raise InputError(f"steps per scale must be at most {settings.max_steps} on this server (the coarse "
                         f"scales take coarse_steps, by default twice steps); got {cfg.steps} and {coarse}")
    return cfg


async def _job(request: Request, settings: Settings) -> WebJob:
    """A job from the multipart form of ``POST /api/jobs``."""
    async with request.form(max_files=settings.max_styles + 2, max_fields=40) as form:   # (then said below)
        unknown = set(form) - {*OPTIONS, "content", "style", "method", "strength"}
        if unknown:
            raise InputError(f"unknown option(s): {', '.join(sorted(unknown))}")
        method = form.get("method") or "optimize"
        if method not in ("optimize", "fast"):
            raise InputError(f"method must be optimize or fast, got {method!r}")
        cfg = _config(form, settings)
        if form.get("content") is None:
            raise InputError("content: choose a photo (or the demo photo)")
        content, content_name = await _image(form.get("content"), "content", settings)
        styles = [await _image(s, "style", settings) for s in form.getlist("style")]
        if len(styles) > settings.max_styles:
            raise InputError(f"at most {settings.max_styles} style images")
        if len(form.getlist("content")) > 1:
            raise InputError("content: one photo per job")
        if not styles:   # (the shipped fast model takes a style image too)
            raise InputError("style: choose at least one painting (or the demo painting)")
        if method == "fast" and (cfg.warp != "none" or cfg.align_style != "none"):
            raise InputError("warp and align_style work with method optimize, not fast")
        try:
            strength = float(form.get("strength") or 1.0)
        except ValueError:
            raise InputError("strength must be a number from 0 to 1") from None
        check_number("strength", strength, lo=0, hi=1)
        check_method_options(cfg, fast=method == "fast", strength=strength, front="web")
    client = request.client.host if request.client else "?"
    return WebJob(client, cfg, content, [s for s, _ in styles], fast=method == "fast", strength=strength,
                  names={"content": content_name, "styles": [n for _, n in styles]})


# -- the live stream ---------------------------------------------------------------------------
async def _events(queue: JobQueue, job: WebJob):
    """Server-sent events: one ``update`` per change (with the image when it changed, and
    always in the last one, so that it carries the final image even when the job's state
    changed after its last image was sent), a comment every 15 s to keep the connection
    open, until the job ends."""
    seen_version, seen_frame, quiet = -1, 0, 0.0
    while True:
        info, frame, frame_no = queue.snapshot(job)
        if info["version"] != seen_version:
            seen_version, quiet = info["version"], 0.0
            if frame is not None and (frame_no != seen_frame or info["state"] in TERMINAL):
                info["frame"] = "data:image/png;base64," + base64.b64encode(frame).decode()
                info["frame_no"], seen_frame = frame_no, frame_no
            yield f"event: update\ndata: {json.dumps(info)}\n\n"
            if info["state"] in TERMINAL:
                return
        elif quiet > 15:
            yield ": keep-alive\n\n"
            quiet = 0.0
        if queue.closing:
            return
        await asyncio.sleep(0.1)
        quiet += 0.1


# -- the app ---------------------------------------------------------------------------------
class RequestGuard:
    """ASGI middleware for POSTs: no cross-site requests (another site's page cannot start or
    stop runs here), and a stated length of at most all uploads at their limit."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    def refusal(self, scope: dict) -> JSONResponse | None:
        headers = dict(scope["headers"])
        origin, host = headers.get(b"origin"), headers.get(b"host", b"")
        if origin is not None and origin.split(b"://", 1)[-1] != host:
            return _error(403, "cross-site request refused: use the page served here")
        length = headers.get(b"content-length", b"")
        if not length.isdigit():
            return None if scope["path"].endswith(("/stop", "/close")) else \
                _error(411, "the request must state its length (Content-Length)")
        if int(length) > self.limit:
            return _error(413, f"the request is over the limit of {self.limit / 2**20:.0f} MB")
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        answer = self.refusal(scope) if scope["type"] == "http" and scope["method"] == "POST" else None
        if answer is not None:
            await answer(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI app with its own :class:`JobQueue` (started and stopped with the app)."""
    settings = settings or Settings()
    queue = JobQueue(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        queue.start()
        try:
            yield
        finally:
            await run_in_threadpool(queue.close)

    app = FastAPI(title="warpaint", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.queue, app.state.settings = queue, settings
    app.add_middleware(RequestGuard, limit=(settings.max_styles + 1) * settings.upload_bytes + 2**20)
    if settings.allowed_hosts:   # loopback: no DNS rebinding of another name onto this server
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(HEADERS)
        return response

    @app.exception_handler(WarpaintError)
    async def warpaint_error(request: Request, e: WarpaintError) -> JSONResponse:
        return _error(_status_of(e), str(e))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        return _error(400, "; ".join(str(x.get("msg")) for x in e.errors()) or "bad request")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _page_routes(app, settings)
    _job_routes(app, queue, settings)
    return app


def _page_routes(app: FastAPI, settings: Settings) -> None:
    demo: dict[str, bytes] = {}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/info")
    async def info() -> dict:
        defaults = StylizeConfig()
        return {"upload_mb": settings.upload_mb, "max_pixels": settings.max_pixels,
                "max_styles": settings.max_styles, "max_size": settings.max_size,
                "max_steps": settings.max_steps, "keep_minutes": settings.keep_minutes,
                "accepted": ACCEPTED, "defaults": {k: getattr(defaults, k) for k in OPTIONS}}

    @app.get("/api/demo/{which}.png")
    def demo_image(which: str) -> Response:   # plain def: runs in a worker thread
        from ..demo import demo_content, demo_style

        if which not in ("content", "style"):
            return _error(404, "the demo images are content.png and style.png")
        if which not in demo:
            demo[which] = png_bytes((demo_content if which == "content" else demo_style)())
        return Response(demo[which], media_type="image/png", headers={"Cache-Control": "max-age=3600"})


def _finder(queue: JobQueue, settings: Settings):
    """``find(job_id)``: the job, or a 404 that says how long runs are kept."""
    def find(job_id: str) -> WebJob:
        job = queue.get(job_id)
        if job is None:
            raise HTTPException(404, f"no such run (finished runs are kept {settings.keep_minutes:g} "
                                     "minutes, or until their page is closed)")
        return job

    return find


def _job_routes(app: FastAPI, queue: JobQueue, settings: Settings) -> None:
    find = _finder(queue, settings)

    @app.post("/api/jobs")
    async def submit(request: Request) -> dict:
        job = await _job(request, settings)
        queue.submit(job)
        return {"id": job.id, "position": queue.snapshot(job)[0]["position"]}

    @app.get("/api/jobs/{job_id}")
    async def status(job_id: str) -> dict:
        return queue.snapshot(find(job_id))[0]

    @app.get("/api/jobs/{job_id}/events")
    async def events(job_id: str) -> StreamingResponse:
        return StreamingResponse(_events(queue, find(job_id)), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.post("/api/jobs/{job_id}/stop")
    async def stop(job_id: str) -> dict:
        job = find(job_id)
        queue.stop(job)
        return queue.snapshot(job)[0]

    @app.post("/api/jobs/{job_id}/close")
    async def close(job_id: str) -> dict:
        queue.discard(find(job_id))
        return {"closed": job_id}

    _result_routes(app, queue, find)


def _result_routes(app: FastAPI, queue: JobQueue, find) -> None:
    def file_of(job_id: str, name: str, media: str, download: str | None = None) -> FileResponse:
        job = find(job_id)
        path = job.folder / name if job.folder is not None else None
        if path is None or not path.is_file():
            raise HTTPException(404, "this run has no result" if job.state in TERMINAL else "no result yet")
        disposition = {"Content-Disposition": f'attachment; filename="{download}"'} if download else {}
        return FileResponse(path, media_type=media, headers=disposition)

    @app.get("/api/jobs/{job_id}/frame.png")
    async def frame(job_id: str) -> Response:
        png = queue.snapshot(find(job_id))[1]
        if png is None:
            raise HTTPException(404, "no image yet")
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/api/jobs/{job_id}/result.png")
    async def result_png(job_id: str) -> FileResponse:
        return file_of(job_id, "result.png", "image/png", f"warpaint_{job_id[:8]}.png")

    @app.get("/api/jobs/{job_id}/result.json")
    async def result_json(job_id: str) -> FileResponse:
        return file_of(job_id, "result.json", "application/json", f"warpaint_{job_id[:8]}.json")

    @app.get("/api/jobs/{job_id}/warp/{name}")
    async def warp_picture(job_id: str, name: str) -> FileResponse:
        if name not in find(job_id).warp:   # only the names the run wrote: never a client path
            raise HTTPException(404, "no such warp picture")
        return file_of(job_id, f"warp/{name}", "image/png")
