"""Shared fixtures and helpers: the test device (MTG_TEST_DEVICE, default cpu) and small, fast env builders."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

import mtg_env

DEVICE = os.environ.get("MTG_TEST_DEVICE", "cpu")

# The tests' models are small: intra-op threads buy little and, when another process shares the cores,
# OpenMP spin-waiting makes them many times slower. One thread keeps the run fast and steady.
torch.set_num_threads(1)

#: Small configurations of every suite, fast enough to run the PettingZoo checkers for 1000 cycles.
SMALL_SUITES: dict[str, dict[str, Any]] = {
    "quadratic": {"suite": "quadratic"},
    "digits": {"suite": "digits", "hidden": (16, 8), "batch_size": 32},
    "regression": {"suite": "regression", "trunk": "mlp", "hidden": 8},
}
MODES = ("update", "step_size")


@pytest.fixture(scope="session")
def device() -> str:
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("MTG_TEST_DEVICE asks for CUDA but none is available")
    return DEVICE


def make_env(suite: str, mode: str = "update", **kwargs: Any) -> mtg_env.MultiTaskGameEnv:
    """A small env of ``suite`` on the test device."""
    config = {**SMALL_SUITES[suite], "action_mode": mode, "device": DEVICE, **kwargs}
    return mtg_env.parallel_env(**config)
