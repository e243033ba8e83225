"""Timing shared by the benchmarks: warm up, then interleaved rounds, the median round per runner.

Rounds are timed in process CPU time (``time.process_time``), not wall time: on a shared machine another
process's load stretches wall time but not the CPU time our one torch thread spends.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

from mtg_env._platform import steady_allocator

__all__ = ["median_seconds_per_step", "steady_allocator"]


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
