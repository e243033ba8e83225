"""Shared fixtures and helpers: the test device (MTG_TEST_DEVICE, default cpu) and small, fast env builders."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

import mtg_env
from mtg_env.engine.layout import log_steps_to_unit

DEVICE = os.environ.get("MTG_TEST_DEVICE", "cpu")

# The tests' models are small: intra-op threads buy little and, when another process shares the cores,
# OpenMP spin-waiting makes them many times slower. One thread keeps the run fast and steady.
torch.set_num_threads(1)

#: Small configurations of every suite, fast enough to run the PettingZoo checkers for 1000 cycles.
SMALL_SUITES: dict[str, dict[str, Any]] = {
    # The paper's agents at lr 0.1 meet gradients up to ~30 on the default game: a Box that never clips them.
    "quadratic": {"suite": "quadratic", "max_update": 100.0},
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


def steps_action(env: mtg_env.MultiTaskGameEnv, alpha: float, beta: float) -> np.ndarray:
    """The ``step_size``-mode action of ``env`` (in its units) that plays step sizes α (head) and β (trunk)."""
    log = np.log([alpha, beta])
    if env.step_size_units == "unit":
        log = log_steps_to_unit(log, env.log_step_range)
    return log.astype(env.np_dtype)


ROOT = Path(__file__).resolve().parent.parent


def load_script(relative: str, name: str) -> ModuleType:
    """A script of the repository (``examples/...``, ``docs/...``) imported as module ``name``; registered in
    ``sys.modules`` first, since dataclasses resolve their module by name."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
