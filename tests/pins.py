"""What every table of pinned values shares (``rule_pins``, ``agent_pins``, ``legacy_checkpoints``): where a pin is
exact, how a table is written, and how a replay is compared with it.

A pin is exact on the platform that wrote it: the same torch build on the same CPU model and the same MKL code
path (``MKL_CBWR``: MKL picks its kernels by instruction set, so another branch rounds GEMMs apart). Elsewhere a
replay agrees to √eps of the game's dtype: another CPU or MKL branch rounds each operation apart by an ulp, which a
few steps grow by a few hundred ulps at most, while a change of behaviour moves a trajectory by far more.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from mtg_env._platform import cpu_model


def platform_tag() -> str:
    """The platform a pin is exact on (torch build, machine, CPU model and capability, MKL code path)."""
    capability = torch.backends.cpu.get_cpu_capability()
    mkl = os.environ.get("MKL_CBWR", "")
    return f"torch {torch.__version__}, {platform.machine()}, {cpu_model()}, {capability}, MKL_CBWR={mkl}"


def write_pins(path: Path, names: Iterable[str], trajectory: Callable[[str], dict[str, torch.Tensor]]) -> None:
    """Play every case on one thread and write ``{"platform", "pins"}`` to ``path``."""
    torch.set_num_threads(1)
    pins = {name: trajectory(name) for name in names}
    path.parent.mkdir(exist_ok=True)
    torch.save({"platform": platform_tag(), "pins": pins}, path)
    print(f"wrote {len(pins)} cases to {path} ({platform_tag()})")


def assert_matches_pin(
    name: str, got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], platform_written: str,
    dtype: torch.dtype,
) -> None:  # fmt: skip
    """Every entry of ``got`` is its pin: bit for bit on the writing platform, else to √eps of ``dtype``."""
    assert set(got) == set(expected), f"{name}: entries {sorted(set(got) ^ set(expected))} differ"
    exact = platform_written == platform_tag()
    tolerance = torch.finfo(dtype).eps ** 0.5
    for key, value in expected.items():
        if exact:
            assert torch.equal(got[key], value), f"{name}: {key} differs from the pin"
        else:
            torch.testing.assert_close(got[key], value, rtol=tolerance, atol=tolerance, msg=f"{name}: {key}")
