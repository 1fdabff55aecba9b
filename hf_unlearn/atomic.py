"""Atomic file writes: a temporary file in the target's folder, renamed over the target with `os.replace`.

A crash mid-write therefore leaves either the old file or the new one, never a truncated file. Every writer of the
package (manifests, score files, stage records, reports, plots, checkpoints' extra files) goes through here.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(
    path: str | os.PathLike, *, suffix: str = ".tmp", mode: int | None = None, sync_dir: bool = False
) -> Iterator[str]:
    """Yield a temporary path next to ``path``; when the block succeeds it replaces ``path``, else it is removed.

    The parent folder is created. The file gets ``mode``, by default the one ``open()`` would give it (0666 less
    the umask), not mkstemp's owner-only 0600: reports and models are meant to be read by others. A writer of a
    secret (the manifest's commitment key) passes ``mode=0o600``. ``sync_dir`` also fsyncs the folder afterwards,
    so that the rename itself survives a crash (best effort).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, umask_mode() if mode is None else mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        _fsync_dir(target.parent)


def umask_mode() -> int:
    """The mode ``open()`` gives a new file here: 0666 less the process umask (read from /proc, where available,
    since reading it with ``os.umask`` means setting it for a moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def match_umask(paths: Iterable[str | os.PathLike]) -> None:
    """Give files that a writer created with a temporary file's 0600 (safetensors does) the mode of the files around
    them, so that a saved model folder is readable as a whole, as ``config.json`` beside it is."""
    mode = umask_mode()
    for path in paths:
        os.chmod(path, mode)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); not supported on every platform, so best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, fsync it, then rename it over ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, value: Any) -> None:
    """``value`` as indented JSON (values JSON cannot hold are written with ``str``)."""
    atomic_write_text(path, json.dumps(value, indent=2, default=str))


def atomic_save_npy(path: Path, array: Any) -> None:
    """``np.save`` to ``path`` atomically."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())
