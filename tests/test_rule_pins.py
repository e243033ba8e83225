"""Every stateful rule plays the pinned trajectories of ``tests/data/rule_pins.pt`` (see ``tests/rule_pins.py``):
bit for bit on the platform that wrote them (torch build, CPU capability, MKL code path); elsewhere to √eps of the
game's dtype: another CPU or MKL branch rounds each operation apart by an ulp, which a few training steps grow by a
few hundred ulps at most (measured under MKL_CBWR=AVX2 against pins written on the AVX-512 path); a change of
behaviour moves a trajectory by far more."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import DEVICE
from tests.pins import assert_matches_pin
from tests.rule_pins import CASES, PIN_FILE, trajectory

PINS = torch.load(PIN_FILE, weights_only=True)


@pytest.mark.skipif(DEVICE != "cpu", reason="the pins are CPU trajectories")
@pytest.mark.parametrize("name", list(CASES))
def test_stateful_rule_plays_its_pinned_trajectory(name: str) -> None:
    dtype = torch.float64 if CASES[name][0].get("dtype") == "float64" else torch.float32
    assert_matches_pin(name, trajectory(name), PINS["pins"][name], PINS["platform"], dtype)
