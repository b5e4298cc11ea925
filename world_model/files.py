"""Writing a file so that a crash leaves either the old file or the whole new one, never a part.

The new content goes to ``NAME.tmp`` beside the target and replaces it by ``os.replace`` (atomic on POSIX
and Windows within one file system); a failed write removes the temporary file. ``durable`` also syncs
the file and its directory to disk, for what must survive a power cut (checkpoints), at the price of a
disk flush per file (too dear for the ingest's many small markers).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: Path, write: Callable[[IO[bytes]], None], durable: bool = False) -> None:
    """Write ``path`` through ``write(handle)``, all or nothing."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable and hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def write_json_atomic(path: Path, payload: Any, indent: int = 2, durable: bool = False) -> None:
    """``payload`` as indented JSON with a final newline, all or nothing."""
    text = json.dumps(payload, indent=indent) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()), durable)
