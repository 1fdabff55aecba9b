"""A step's transient peak memory (step_cost.py's docstring says how, on CUDA and on the CPU), and the glibc
settings that make the CPU reading meaningful."""

from __future__ import annotations

import contextlib
import ctypes
import platform
import threading
import time

import torch


class MemoryProbe:
    """A step's transient peak memory in bytes (see step_cost.py's docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.enabled = False
        self.peaks: list[int] = []
        self._base = 0
        self._clear_refs = (not self.cuda) and _clear_refs_works()
        self._sampler: threading.Thread | None = None
        self._sampling = False
        self._sampled_peak = 0

    @property
    def method(self) -> str:
        if self.cuda:
            return "torch.cuda.max_memory_allocated - memory_allocated at step start"
        if self._clear_refs:
            return "VmHWM (reset via /proc/self/clear_refs) - RSS at step start"
        return "psutil RSS sampled every 1 ms - RSS at step start"

    def begin(self) -> None:
        if not self.enabled:
            return
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        elif self._clear_refs:
            _malloc_trim()  # give freed heap pages back, so that reusing them shows in the RSS again
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self._base = _proc_status_kib("VmRSS") * 1024
        else:
            import psutil

            proc = psutil.Process()
            self._base = self._sampled_peak = proc.memory_info().rss
            self._sampling = True

            def sample() -> None:
                while self._sampling:
                    self._sampled_peak = max(self._sampled_peak, proc.memory_info().rss)
                    time.sleep(0.001)

            self._sampler = threading.Thread(target=sample, daemon=True)
            self._sampler.start()

    def end(self) -> None:
        if not self.enabled:
            return
        if self.cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        elif self._clear_refs:
            peak = _proc_status_kib("VmHWM") * 1024
        else:
            self._sampling = False
            assert self._sampler is not None
            self._sampler.join()
            peak = self._sampled_peak
        self.peaks.append(max(0, peak - self._base))


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _clear_refs_works() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        _proc_status_kib("VmHWM")
        return True
    except (OSError, KeyError):
        return False


def _malloc_trim() -> None:
    if platform.system() == "Linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def pin_malloc_mmap_threshold(threshold: int = 64 * 1024) -> bool:
    """glibc: serve allocations >= threshold by mmap and give them back on free (M_MMAP_THRESHOLD = -3)."""
    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, threshold)) and bool(libc.mallopt(-1, threshold))  # also M_TRIM_THRESHOLD
    except OSError:
        return False
