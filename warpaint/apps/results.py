"""The results file of the STN applications (``results.json`` in their ``--out`` folder)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..io import write_bytes_atomic


def read_results(path: Path) -> dict:
    """The results recorded so far (``{}`` when there is no file), or a one-line InputError
    for a file that is not a JSON object."""
    if not path.exists():
        return {}
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read ({type(e).__name__}); move it away to start a new one") from None
    if not isinstance(results, dict):
        raise InputError(f"{path}: not a results file (expected a JSON object); move it away to start a new one")
    return results


def write_results(results: dict, path: Path) -> None:
    """Write the results atomically, as indented JSON."""
    write_bytes_atomic((json.dumps(results, indent=2, allow_nan=False) + "\n").encode(), path)
