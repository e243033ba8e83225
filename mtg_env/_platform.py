"""The machine a result was computed on, as far as round-off depends on it; and the C allocator's settings a long
batched run wants."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's vendor and model name (``/proc/cpuinfo`` on Linux, else what :mod:`platform` says): MKL's kernels
    depend on them beyond the instruction set (the same AVX-512 capability plays an Intel Xeon's GEMMs and an AMD
    EPYC's apart by an ulp), so a bit-exact result is bit-exact only on the model that computed it."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    # The model name alone can be generic (a VM's "AMD EPYC" for every generation): family, model and stepping too.
    numbers = ", ".join(f"{key} {fields[key]}" for key in ("cpu family", "model", "stepping") if key in fields)
    name = f"{fields.get('vendor_id', 'unknown vendor')} {fields.get('model name', platform.processor())}"
    return f"{name} ({numbers})" if numbers else name


#: glibc's ``mallopt`` parameters: the size above which a block is mmap'd, and the free space that trims the heap.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def steady_allocator(threshold: int = 2**30) -> bool:
    """Keep freed blocks up to ``threshold`` bytes in the process (glibc only; returns whether it applied).

    glibc hands blocks above a dynamic threshold back to the kernel when freed, and a step that allocates them again
    page-faults them in: its CPU time then counts the kernel's page zeroing, and the threshold moves with what the
    *other* runners of the process allocated. Measured on B = 64 digits games: batched Adam took 169 ms a step
    beside the learned rules after their move to blocks and 68 ms beside the rules before it, with no change to
    Adam; with the thresholds fixed, 68 ms in both. Call before timing, and before a long batched run: a digits
    tuning step (2 400 games) took 2.35 s of CPU with glibc's defaults and 1.35 s with this
    (``mtg-env bench`` calls it for a sealed run)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * threshold))
