"""Output directories that a rerun replaces only once the new output is complete.

``replacing(dirs)`` moves each existing directory aside (into a fresh sibling directory) before the work
writes a new one in its place; when the work succeeds the old ones are deleted, and when it fails or is
interrupted the partial new ones are deleted and the old ones put back. So a crash or Ctrl-C never leaves
a half-written run where a complete one stood, nor loses the previous one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from world_model.errors import check_output_dir


@contextmanager
def replacing(dirs: Sequence[Path]) -> Iterator[None]:
    """Run the block with every directory of ``dirs`` absent; keep what it wrote only if it completes."""
    for target in dirs:  # all before anything moves
        check_output_dir(target, overwrite=True, flag="--out")
    asides: list[tuple[Path, Path]] = []
    for target in dirs:
        if target.exists():
            aside = Path(tempfile.mkdtemp(prefix=f"{target.name}.replaced-", dir=target.parent)) / target.name
            os.replace(target, aside)
            asides.append((target, aside))
    try:
        yield
    except BaseException:
        for target in dirs:
            shutil.rmtree(target, ignore_errors=True)
        for target, aside in asides:
            os.replace(aside, target)
            aside.parent.rmdir()
        raise
    for _, aside in asides:
        shutil.rmtree(aside.parent)
