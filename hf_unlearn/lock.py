"""One run per folder: an exclusive lock (the ``filelock`` package) held while a run writes its output folder.

``FolderLock(folder)`` takes ``folder/.hf_unlearn.lock`` without waiting and records its holder (process id,
host, start time) in ``folder/.hf_unlearn.lock.json``. A second run on a locked folder gets `FolderLockedError`
naming the holder (the CLI prints it and exits 2). The lock is an OS lock (``flock``): it dies with the process
that holds it, so the folder of a killed run is taken over by the next run, which says so and resumes. Under
``accelerate launch`` / ``torchrun`` only process 0 takes it; the others learn the verdict from a broadcast.

This module imports no torch at import time, so a tiny process can hold a lock (tests use that).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import HfUnlearnError

logger = logging.getLogger(__name__)

LOCK_NAME = ".hf_unlearn.lock"
OWNER_NAME = ".hf_unlearn.lock.json"


class FolderLockedError(HfUnlearnError):
    """Another live process holds the folder's lock; the message names it."""


def _holder_text(owner: dict | None) -> str:
    if not owner:
        return "a process that has not yet recorded itself"
    return f"process {owner.get('pid')} on host {owner.get('host')}, started {owner.get('started')}"


class FolderLock:
    """An exclusive, non-blocking lock on ``folder`` (created if missing); ``what`` names the work in messages.

    ``name`` picks another lock file in the folder (the memorization estimator locks each model it trains)."""

    def __init__(self, folder: str | Path, what: str = "hf-unlearn run", name: str = LOCK_NAME) -> None:
        self.folder = Path(folder)
        self.what = what
        self.name = name
        self._lock: FileLock | None = None

    @property
    def owner_path(self) -> Path:
        return self.folder / (OWNER_NAME if self.name == LOCK_NAME else f"{self.name}.json")

    def owner(self) -> dict | None:
        try:
            owner = json.loads(self.owner_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return owner if isinstance(owner, dict) else None

    def acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.folder / self.name), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise FolderLockedError(
                f"{self.folder}: in use by another {self.what} ({_holder_text(self.owner())}); wait for it to finish, "
                f"stop it, or use another folder. A stopped run's lock is released with its process."
            ) from None
        self._lock = lock
        previous = self.owner()
        if previous and previous.get("pid") != os.getpid():  # the holder died without releasing (killed)
            logger.warning(
                "%s: taking over the lock of a %s that stopped (%s); resuming its work.",
                self.folder,
                self.what,
                _holder_text(previous),
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp = self.owner_path.with_name(f"{self.owner_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
        os.replace(tmp, self.owner_path)
        return self

    def release(self) -> None:
        if self._lock is None:
            return
        with contextlib.suppress(OSError):
            self.owner_path.unlink()
        self._lock.release()
        self._lock = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def run_lock(folder: str | Path, *, use_cpu: bool = False, what: str = "hf-unlearn run") -> Iterator[None]:
    """Hold ``folder``'s lock for the block; in a multi-process launch process 0 holds it for all of them."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        with FolderLock(folder, what):
            yield
        return
    import torch.distributed as dist
    from accelerate import PartialState

    state = PartialState(cpu=use_cpu)
    lock, verdict = FolderLock(folder, what), [None]
    if state.is_main_process:
        try:
            lock.acquire()
        except FolderLockedError as error:
            verdict[0] = str(error)
    if dist.is_initialized():
        dist.broadcast_object_list(verdict, src=0)
    if verdict[0] is not None:
        raise FolderLockedError(verdict[0])
    try:
        yield
    finally:
        lock.release()
