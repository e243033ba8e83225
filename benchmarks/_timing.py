"""Timing shared by the benchmarks: warm up, then interleaved rounds, the median round per runner.

Rounds are timed in process CPU time (``time.process_time``), not wall time: on a shared machine another
process's load stretches wall time but not the CPU time our one torch thread spends.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping


def median_seconds_per_step(
    runners: Mapping[str, Callable[[], None]], steps: int, rounds: int, warmup: int
) -> dict[str, float]:
    """Seconds per call of each runner: ``warmup`` calls each, then ``rounds`` interleaved rounds of ``steps``
    calls (interleaving spreads drifts in machine load over all runners); the median round."""
    for step in runners.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, step in runners.items():
            start = time.process_time()
            for _ in range(steps):
                step()
            times[name].append((time.process_time() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}
