"""Every baseline player, in every form, plays the pinned trajectories of ``tests/data/agent_pins.pt`` (see
``tests/agent_pins.py``): bit for bit on the platform that wrote them (torch build, CPU capability, MKL code path);
elsewhere to √eps of the game's dtype, as the rule pins (``tests/test_rule_pins.py``): another CPU or MKL branch
rounds the suites' products apart by an ulp, which ten steps grow by far less than a change of rule would."""

from __future__ import annotations

import pytest
import torch

from tests.agent_pins import CASES, PIN_FILE, case_dtype, trajectory
from tests.conftest import DEVICE
from tests.pins import assert_matches_pin

PINS = torch.load(PIN_FILE, weights_only=True)


def test_every_case_is_pinned() -> None:
    assert sorted(PINS["pins"]) == sorted(CASES)


@pytest.mark.skipif(DEVICE != "cpu", reason="the pins are CPU trajectories")
@pytest.mark.parametrize("name", list(CASES))
def test_baseline_plays_its_pinned_trajectory(name: str) -> None:
    assert_matches_pin(name, trajectory(name), PINS["pins"][name], PINS["platform"], case_dtype(name))
