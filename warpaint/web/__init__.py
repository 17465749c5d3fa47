"""``warpaint serve``: a web page that stylizes uploads and shows the picture as it forms.

The app (:func:`create_app`, FastAPI) runs every request through the job layer
(:mod:`warpaint.jobs`) on one worker thread per server, so runs queue for the device one at a
time. See docs/web.md.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from ..errors import InputError
from .jobqueue import JobQueue, Settings

__all__ = ["JobQueue", "Settings", "create_app", "is_loopback", "running", "serve"]

log = logging.getLogger("warpaint.web")


def __getattr__(name: str):
    """``create_app`` on first use: FastAPI (half a second to import) is loaded only by
    what serves, not by every command whose parser reads :class:`Settings`."""
    if name == "create_app":
        from .server import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
        (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_free(host: str, port: int) -> None:
    """An InputError now, rather than a server that cannot start, when ``host:port`` is taken."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
    except OSError as e:
        raise InputError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None) -> None:
    """Run the page at http://host:port until Ctrl-C (then the running job stops after its
    step and every file the server kept is removed)."""
    import uvicorn

    from .server import create_app

    _check_free(host, port)
    if not is_loopback(host):
        print(f"warpaint: warning: serving on {host}: anyone who can reach this machine can use the "
              "page and its device (there is no login); use --host 127.0.0.1 to keep it local",
              file=sys.stderr)
    print(f"warpaint: open http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port} "
          "(Ctrl-C stops)", file=sys.stderr)
    settings = settings or Settings()
    if is_loopback(host) and not settings.allowed_hosts:
        settings = replace(settings, allowed_hosts=("127.0.0.1", "localhost", "[::1]", "::1"))
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning",
                timeout_graceful_shutdown=3)


@contextmanager
def running(settings: Settings | None = None, *, timeout: float = 30.0) -> Iterator[tuple[str, object]]:
    """A server on 127.0.0.1 and a free port, in a background thread (tests, screenshots):
    yields its URL and app; shut down, with every file it kept, on leaving the block."""
    import uvicorn

    from .server import create_app

    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the web server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("the web server did not shut down")
