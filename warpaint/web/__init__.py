"""``warpaint serve``: a web page that stylizes uploads and shows the picture as it forms.

The app (:func:`create_app`, FastAPI) runs every request through the job layer
(:mod:`warpaint.jobs`) on one worker thread per server, so runs queue for the device one at a
time. See docs/web.md.
"""

from __future__ import annotations

import ipaddress
import logging
import sys

from .jobqueue import JobQueue, Settings
from .server import create_app

__all__ = ["JobQueue", "Settings", "create_app", "is_loopback", "serve"]

log = logging.getLogger("warpaint.web")


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


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None) -> None:
    """Run the page at http://host:port until Ctrl-C (then the running job stops after its
    step and every file the server kept is removed)."""
    import uvicorn

    if not is_loopback(host):
        print(f"warpaint: warning: serving on {host}: anyone who can reach this machine can use the "
              "page and its device (there is no login); use --host 127.0.0.1 to keep it local",
              file=sys.stderr)
    print(f"warpaint: open http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port} "
          "(Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning",
                timeout_graceful_shutdown=3)
