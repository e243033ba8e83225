"""The machine a result was computed on, as far as round-off depends on it."""

from __future__ import annotations

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
