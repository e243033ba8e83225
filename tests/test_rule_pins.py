"""Every stateful rule plays the pinned trajectories of ``tests/data/rule_pins.pt`` (see ``tests/rule_pins.py``):
bit for bit on the platform that wrote them, to 1e-12 elsewhere (another CPU or torch build may round float sums
apart)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import DEVICE
from tests.rule_pins import CASES, PIN_FILE, platform_tag, trajectory

PINS = torch.load(PIN_FILE, weights_only=True)


@pytest.mark.skipif(DEVICE != "cpu", reason="the pins are CPU trajectories")
@pytest.mark.parametrize("name", list(CASES))
def test_stateful_rule_plays_its_pinned_trajectory(name: str) -> None:
    expected = PINS["pins"][name]
    got = trajectory(name)
    assert set(got) == set(expected)
    exact = PINS["platform"] == platform_tag()
    for key, value in expected.items():
        if exact:
            assert torch.equal(got[key], value), f"{name}: {key} differs from the pin"
        else:
            torch.testing.assert_close(got[key], value, rtol=1e-12, atol=1e-12, msg=f"{name}: {key}")
