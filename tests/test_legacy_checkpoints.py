"""A checkpoint written before the house was layered (commit 756ea33; ``tests/legacy_checkpoints.py`` says how)
loads into today's env and continues exactly as the old code continued it: bit for bit on the platform that wrote
the file (torch build, CPU capability, MKL code path), elsewhere to √eps of the game's dtype (as the rule pins).
Nothing in the file is unpickled (``weights_only=True``): checkpoints are data, so moving modules cannot break
them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import DEVICE
from tests.legacy_checkpoints import CASES, continuation, new_env
from tests.pins import platform_tag

DATA = torch.load(Path(__file__).parent / "data" / "checkpoints_756ea33.pt", weights_only=True)


@pytest.mark.skipif(DEVICE != "cpu", reason="the checkpoints hold CPU games")
@pytest.mark.parametrize("name", list(CASES))
def test_a_checkpoint_from_before_the_move_continues_as_before(name: str) -> None:
    case = DATA["cases"][name]
    env = new_env(name)
    env.load_state_dict(case["checkpoint"])
    got = continuation(env)
    exact = DATA["platform"] == platform_tag()
    dtype = torch.float64 if CASES[name][0].get("dtype") == "float64" else torch.float32
    tolerance = torch.finfo(dtype).eps ** 0.5
    assert len(got) == len(case["after"])
    for k, (value, expected) in enumerate(zip(got, case["after"], strict=True)):
        if exact:
            assert torch.equal(value, expected), f"{name}: item {k} of the continuation differs"
        else:
            torch.testing.assert_close(value, expected, rtol=tolerance, atol=tolerance, msg=f"{name}: item {k}")


def test_the_continuation_is_not_the_fresh_game() -> None:
    """The check has teeth: the stored continuation differs from a fresh episode's first steps."""
    name = "regression_famo_f64"
    fresh = continuation(new_env(name))
    assert not all(torch.equal(a, b) for a, b in zip(fresh, DATA["cases"][name]["after"], strict=True))
