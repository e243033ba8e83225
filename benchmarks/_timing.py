"""Timing shared by the benchmarks: warm up, then interleaved rounds, the median round per runner.

Rounds are timed in process CPU time (``time.process_time``), not wall time: on a shared machine another
process's load stretches wall time but not the CPU time our one torch thread spends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import statistics
import time
from collections.abc import Callable, Mapping

#: glibc's ``mallopt`` parameters: the size above which a block is mmap'd, and the free space that trims the heap.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def steady_allocator(threshold: int = 2**30) -> bool:
    """Keep freed blocks up to ``threshold`` bytes in the process (glibc only; returns whether it applied).

    glibc hands blocks above a dynamic threshold back to the kernel when freed, and a step that allocates them again
    page-faults them in: its CPU time then counts the kernel's page zeroing, and the threshold moves with what the
    *other* runners of the process allocated. Measured on B = 64 digits games: batched Adam took 169 ms a step
    beside the learned rules after their move to blocks and 68 ms beside the rules before it, with no change to
    Adam; with the thresholds fixed, 68 ms in both. Call before timing."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * threshold))


def median_seconds_per_step(
    runners: Mapping[str, Callable[[], None]], steps: int, rounds: int, warmup: int, device: str = "cpu"
) -> dict[str, float]:
    """Seconds per call of each runner: ``warmup`` calls each, then ``rounds`` interleaved rounds of ``steps``
    calls (interleaving spreads drifts in machine load over all runners); the median round. On a CUDA
    ``device`` a round is timed in wall time and ends with ``torch.cuda.synchronize()`` (kernels run
    asynchronously, and the host's CPU time says nothing of the GPU's)."""
    cuda = device.startswith("cuda")
    if cuda:
        import torch

        def sync() -> None:
            torch.cuda.synchronize(device)

        clock = time.perf_counter
    else:

        def sync() -> None:
            return None

        clock = time.process_time
    for step in runners.values():
        for _ in range(warmup):
            step()
    sync()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, step in runners.items():
            start = clock()
            for _ in range(steps):
                step()
            sync()
            times[name].append((clock() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}
