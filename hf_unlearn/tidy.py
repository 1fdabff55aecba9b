"""Empty folders a command created are removed when it ends, failed or finished: a run whose Hub data set or model
fails to load leaves no empty ``runs/<name>/``, and a finished study no empty ``checkpoints/``.

Only folders that did not exist before the command and hold nothing (but the folder lock a command left there) are
removed, deepest first; a folder another process has since locked is left alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .lock import LOCK_NAME

# What a folder may still hold and count as empty: the lock file a released FolderLock leaves behind.
LEFTOVERS = (LOCK_NAME,)


def _folders(root: Path) -> set[Path]:
    if not root.is_dir():
        return set()
    return {root, *(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())}


def _remove_if_empty(folder: Path) -> None:
    if any(child.name not in LEFTOVERS for child in folder.iterdir()):
        return
    lock = folder / LOCK_NAME
    if lock.exists():
        from filelock import FileLock, Timeout

        held = FileLock(str(lock), timeout=0)
        try:
            held.acquire()  # not while another command holds it (it started in this folder meanwhile)
        except Timeout:
            return
        try:
            lock.unlink()
        finally:
            held.release()
    with contextlib.suppress(OSError):  # something appeared meanwhile: keep the folder
        folder.rmdir()


def prune_created(root: Path, existing: set[Path]) -> None:
    """Remove the empty folders under (and including) ``root`` that are not in ``existing``, deepest first."""
    for folder in sorted(_folders(root) - existing, key=lambda p: len(p.parts), reverse=True):
        _remove_if_empty(folder)


@contextlib.contextmanager
def removing_empty_folders(root: str | Path) -> Iterator[None]:
    """Around a command that writes ``root``: on the way out, remove the empty folders it created there, ``root``
    and any parent it created with it included (process 0 of a launch does it)."""
    top = Path(root)
    while not top.parent.exists() and top.parent != top:  # runs/ of runs/<name> is created with it
        top = top.parent
    existing = _folders(top)
    try:
        yield
    finally:
        if os.environ.get("RANK", "0") == "0":
            prune_created(top, existing)
