"""Writing files and directories so that a crash leaves either the old one or the whole new one, never a part.

Files (``atomic_write``): the new content goes to ``NAME.tmp`` beside the target and replaces it by
``os.replace`` (atomic on POSIX and Windows within one file system); a failed write removes the temporary
file. ``durable`` also syncs the file and its directory to disk, for what must survive a power cut
(checkpoints), at the price of a disk flush per file (too dear for the ingest's many small markers).

Directories (``replacing``): a directory cannot be swapped for another in one portable rename, so the old
one is first moved aside to ``.NAME.replaced`` beside it, and deleted only once the new one is complete.
A failure or Ctrl-C puts it back at once; a hard crash (power cut, kill -9) leaves it aside, and
``recover_replaced`` (which ``replacing`` also calls first) puts it back on the next run. So at every
moment either the previous output or the whole new one can be found.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from world_model.errors import RetailSimError, check_output_dir

log = logging.getLogger(__name__)


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


def write_text_atomic(path: Path, text: str, durable: bool = False) -> None:
    """``text`` as UTF-8, all or nothing."""
    atomic_write(path, lambda handle: handle.write(text.encode()), durable)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf; numpy's too) as None, through dicts, lists and
    tuples: strict JSON has no NaN, and ``jq`` or a browser's ``JSON.parse`` refuse the bare ``NaN`` that
    ``json.dumps`` writes by default. For reports, where null reads as "no figure"."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_json_atomic(path: Path, payload: Any, indent: int = 2, durable: bool = False) -> None:
    """``payload`` as indented JSON with a final newline, all or nothing."""
    write_text_atomic(path, json.dumps(payload, indent=indent) + "\n", durable)


def aside_path(target: Path) -> Path:
    """Where ``replacing`` keeps the previous ``target`` until the new one is complete."""
    return target.with_name(f".{target.name}.replaced")


def _discarded(target: Path) -> Path:
    return target.with_name(f".{target.name}.discarded")


def check_replaceable(target: Path, flag: str | None = None) -> None:
    """Refuse (RetailSimError) a directory to be replaced whole that is a symbolic link, or the working
    directory or one holding it (``.``, ``..``). A link would be moved aside in place of the directory it
    names, the new output written beside the link rather than where it points, and the link then left
    undeletable; moving the working directory aside would move the process's own with it, so what the run
    wrote to relative paths would land in the directory about to be deleted."""
    named = f"{flag}: {target}" if flag else f"{target}:"
    if target.is_symlink():
        raise RetailSimError(f"{named} is a symbolic link; an output directory is replaced whole, so name the "
                             "directory itself")  # fmt: skip
    resolved, here = target.resolve(), Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        raise RetailSimError(f"{named} is the working directory or holds it; an output directory is replaced "
                             "whole, so name one inside it")  # fmt: skip


def recover_replaced(target: Path, flag: str | None = None) -> bool:
    """Undo what a hard crash inside ``replacing`` left: the previous ``target`` back in place, and the
    crashed run's partial one deleted. Returns whether there was anything to put back. A ``target`` that
    cannot be replaced (``check_replaceable``) is refused first, so a run that would be is refused before
    it starts."""
    check_replaceable(target, flag)
    shutil.rmtree(_discarded(target), ignore_errors=True)  # a crash while deleting a replaced directory
    aside = aside_path(target)
    if not aside.is_dir():
        return False
    if target.exists():
        shutil.rmtree(target)
    os.replace(aside, target)
    log.warning("%s: put back the previous output, which an interrupted run had moved aside", target)
    return True


@contextmanager
def replacing(dirs: Sequence[Path], flag: str | None = None) -> Iterator[None]:
    """Run the block with every directory of ``dirs`` absent; keep what it wrote only if it completes.

    Each existing directory is moved aside first (``flag`` names the option in the message if one is a
    file, a link or holds the working directory). On success the old ones are deleted; on any exception
    (one while moving them aside included) the partial new ones are deleted and the old ones put back.
    One writer per directory: two runs replacing the same one at once would undo each other's work."""
    for target in dirs:  # all checked before anything moves
        check_output_dir(target, overwrite=True, flag=flag)
        check_replaceable(target, flag)
    for target in dirs:
        recover_replaced(target, flag)
    absent = [target for target in dirs if not target.exists()]
    moved: list[Path] = []
    try:
        for target in dirs:
            if target.exists():
                os.replace(target, aside_path(target))
                moved.append(target)
        yield
    except BaseException:
        for target in absent + moved:  # what the block may have written; one not yet moved holds the old
            shutil.rmtree(target, ignore_errors=True)
        for target in moved:
            os.replace(aside_path(target), target)
        raise
    for target in moved:  # renamed first, so an interrupted deletion is never taken for a kept output
        os.replace(aside_path(target), _discarded(target))
        shutil.rmtree(_discarded(target))
