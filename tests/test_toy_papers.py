"""The papers' toy replayed on the engine (examples/mtl_toy_papers.py): the same path as the papers' own loop."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parent.parent


toy = load_script("examples/mtl_toy_papers.py", "mtl_toy_papers")


@pytest.mark.parametrize(
    ("paper", "rule"),
    [("cagrad", "mean"), ("cagrad", "mgda"), ("cagrad", "pcgrad"), ("cagrad", "cagrad"), ("nash_mtl", "nash_mtl")],
)
def test_engine_replay_follows_the_papers_own_loop(paper: str, rule: str) -> None:
    # The papers' loop: torch.optim.Adam on x with x.grad = −C(−∇f), the named rule (torchjd's solver) each
    # step. The engine batch (closed forms, Adam in the consensus callable) must trace the same path.
    full = toy.PAPERS[paper]
    start = len(full.starts) - 1
    setting = replace(full, rules=tuple(r for r in full.rules if r[0] == rule), starts=(full.starts[start],))
    steps = 40
    _, paths = toy.replay([setting], [steps], stride=steps)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)  # ECOS's remark
        reference = toy.reference_loop(setting, rule, 0, steps)
    np.testing.assert_allclose(paths[steps][0, -1], reference, rtol=0, atol=1e-4)
    assert np.abs(paths[steps][0, -1] - np.asarray(full.starts[start])).max() > 0.02  # it moved


def test_shared_toys_are_one_batch_and_each_paper_reads_its_own_iteration_count() -> None:
    nash, famo = toy.PAPERS["nash_mtl"], toy.PAPERS["famo"]
    games, paths = toy.replay([nash, famo], [20, 30], stride=10)
    names = {(name, tuple(sorted(opts.items()))) for name, opts, _ in games}
    assert len(games) == len(names) * 5  # LS, PCGrad, CAGrad, MGDA, Nash-MTL are not run twice
    assert names == {(n, tuple(sorted(o.items()))) for p in (nash, famo) for n, _, o in p.rules}
    assert paths[20].shape == (len(games), 3, 2) and paths[30].shape == (len(games), 4, 2)
    np.testing.assert_array_equal(paths[30][:, :3], paths[20])  # one trajectory, read at two counts


def test_adam_after_the_rule_is_torch_adam() -> None:
    rule = toy.AdamAfterRules([("mean", {})] * 3, lr=1e-3)
    x = torch.tensor([[1.0, -2.0], [0.5, 0.5], [-3.0, 4.0]])
    ref = x.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([ref], lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(25):
        grads = torch.randn(3, 2, 2, generator=gen)
        x = x + rule(-grads)
        optimizer.zero_grad()
        ref.grad = grads.mean(1)
        optimizer.step()
    torch.testing.assert_close(x, ref.detach(), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_example_prints_every_game_and_draws_the_panels(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mtl_toy_papers.py"), "--iterations", "40", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"OMP_NUM_THREADS": "1", "PATH": "", "PYTHONPATH": str(ROOT)},
    )
    rows = [line for line in done.stdout.splitlines() if re.search(r"\d\s+(yes|no)(\s|$)", line)]
    assert len(rows) == 3 * 4 + 5 * 5 + 5 * 7  # every (paper, rule, start)
    assert done.stdout.count("reached the Pareto set:") == 3
    for key in toy.PAPERS:
        assert (tmp_path / f"toy_{key}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
