"""The learned selfish deviator: its two forms agree, ES on its own fitness improves it, its training seeds stay off
the bench's, its weights files are validated, and it enters the bench's manipulability table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from agents import GradientAgent
from agents.learned.deviator import (
    DEVIATOR_WEIGHTS,
    BatchedDeviator,
    DeviatorConfig,
    LearnedDeviator,
    init_theta,
    learned_deviator,
    load_deviator,
    log_scales,
    log_scales_numpy,
    save_deviator,
)
from agents.learned.deviator_es import Arena, ESConfig, fitness, play_gains, train, train_seeds
from mtg_env import parallel_env
from mtg_env.bench import config_from_dict, load_config, run_bench
from mtg_env.tuning import Workload

ROOT = Path(__file__).resolve().parents[1]
BENCH_FILE = ROOT / "examples" / "bench_deviator.toml"


def _theta(config: DeviatorConfig, seed: int) -> torch.Tensor:
    """Weights with every entry non-zero (θ₀'s output layer is zero: s = 0 would test nothing)."""
    gen = torch.Generator().manual_seed(seed)
    return 0.7 * torch.randn(config.num_params, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("head", [False, True])
def test_the_numpy_and_torch_networks_agree(head: bool) -> None:
    config = DeviatorConfig(hidden=5, head=head)
    thetas = torch.stack([_theta(config, s) for s in range(4)])
    feats = torch.randn(4, 8, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    batched = log_scales(thetas, feats, config)
    for b in range(4):
        np.testing.assert_allclose(log_scales_numpy(thetas[b].numpy(), feats[b].numpy(), config), batched[b].numpy(),
                                   rtol=1e-13, atol=1e-15)  # fmt: skip
    assert batched[:, 0].abs().max() <= config.max_log_scale and batched[:, 0].abs().min() > 0
    assert (batched[:, 1] != 0).all() if head else (batched[:, 1] == 0).all()
    assert (log_scales(init_theta(config, 0), feats, config) == 0).all()  # θ₀ plays the reference exactly


@pytest.mark.parametrize(("rule", "head"), [("sum", False), ("upgrad", True)])
def test_the_policy_and_the_batched_form_agree_on_the_same_inputs(rule: str, head: bool) -> None:
    """Task 1 is the numpy deviator in the env, the others numpy gradient players; each step the batched form, fed
    the env's engine state and the features the players observe, gives the update the deviator's action plays."""
    config, lr, seed, task = DeviatorConfig(head=head), 0.1, 7, 1
    theta = _theta(config, 3)
    env = Workload("quadratic", rule, horizon=6).make_env()
    game = env.game
    obs, infos = env.reset(seed=seed)
    agents = env.possible_agents
    players: dict[str, Any] = {a: GradientAgent(lr=lr) for a in agents}
    deviator = players[agents[task]] = LearnedDeviator(lr, theta.numpy(), config)
    for a in agents:
        players[a].reset(obs[a], infos[a], env.action_space(a))
    form = BatchedDeviator(game, torch.tensor([lr]), theta, torch.tensor([task]), config)
    mine = (game.head_index == task).numpy()
    scales = []
    for t in range(game.horizon):
        state = env.engine_state
        feats = torch.as_tensor(np.stack([obs[a][-8:] for a in agents]))[None]
        head_up, proposals = form.act(state.head_grads, state.jacobian, feats)
        actions = {a: players[a].act(obs[a], infos[a]) for a in agents}
        update = deviator._reader.update_of(actions[agents[task]], obs[agents[task]])
        h, slot = deviator._reader.head_size, deviator._reader.head_slot
        np.testing.assert_allclose(update[:h], head_up[0, mine].numpy(), rtol=1e-5, atol=1e-8,
                                   err_msg=f"head update, step {t}")  # fmt: skip
        np.testing.assert_allclose(update[slot:], proposals[0, task].numpy(), rtol=1e-5, atol=1e-8,
                                   err_msg=f"trunk proposal, step {t}")  # fmt: skip
        s = deviator.log_scales(obs[agents[task]])
        np.testing.assert_allclose(s, form.log_scales(feats)[0].numpy(), rtol=1e-12, atol=1e-12)
        scales.append(s)
        obs, _, _, _, infos = env.step(actions)
    assert np.ptp(np.array(scales)[:, 0]) > 1e-3  # the factor follows the features: not a constant k
    assert deviator.clipped_steps == 0


def test_the_policy_needs_update_mode_and_valid_weights() -> None:
    config = DeviatorConfig()
    with pytest.raises(ValueError, match=r"theta must have shape \(90,\)"):
        LearnedDeviator(0.1, np.zeros(3), config)
    with pytest.raises(ValueError, match="NaN or infinite"):
        LearnedDeviator(0.1, np.full(90, np.nan), config)
    env = parallel_env(suite="quadratic", max_cycles=3, action_mode="step_size")
    obs, infos = env.reset(seed=0)
    agent = env.possible_agents[0]
    with pytest.raises(ValueError, match="needs action_mode='update'"):
        LearnedDeviator(0.1, np.zeros(90)).reset(obs[agent], infos[agent], env.action_space(agent))
    with pytest.raises(RuntimeError, match="before act"):
        LearnedDeviator(0.1, np.zeros(90)).act(np.zeros(3), {})
    assert "LearnedDeviator(lr=0.1" in repr(LearnedDeviator(0.1, np.zeros(90)))
    with pytest.raises(ValueError, match="hidden"):
        DeviatorConfig(hidden=0)


# ------------------------------------------------------------------------------------------ training
def _arenas() -> list[Arena]:
    """Regression with an MLP trunk under sum and mean, 15 steps: a larger trunk proposal gains there."""
    workloads = [
        Workload("regression", r, horizon=15, suite_options={"trunk": "mlp", "hidden": 8}) for r in ("sum", "mean")
    ]
    return [Arena(w.name, w.make_env().game, 0.1) for w in workloads]


def test_es_on_its_own_fitness_improves_it() -> None:
    """A few ES steps on a tiny draw raise the deviator's own gain on held-out training-range seeds (it can fail:
    a sign error in the update, or a fitness that is not its own, leaves it at or below the reference's 0)."""
    config = DeviatorConfig(hidden=2)
    es = ESConfig(iterations=5, pairs=4, seeds_per_iteration=2, sigma=0.3, lr=0.2, first_train_seed=700_000)
    fields = _arenas()
    theta, meta = train(fields, es, config, reserved=range(10))
    held_out = [800_000, 800_001, 800_002]
    before, after = fitness(fields, torch.stack([init_theta(config, es.seed), theta]), held_out, config, es.clip)
    assert before == 0.0  # θ₀ is the reference: no gain
    assert after > 0.02, f"own gain after ES {after:.4f}"
    assert len(meta["centre_fitness"]) == es.iterations and meta["lrs"] == {a.name: 0.1 for a in fields}
    again, _ = train(fields, es, config, reserved=range(10))
    assert torch.equal(theta, again)  # every draw from explicit seeds


def test_gains_are_the_benchs_own_measure() -> None:
    """A constant factor k = 4 (the selfish deviator's) gains under sum on the quadratic game, as in the table."""
    config = DeviatorConfig(hidden=1)
    theta = torch.zeros(config.num_params, dtype=torch.float64)
    theta[-2] = math.atanh(math.log(4.0) / config.max_log_scale)  # s_trunk = log 4 everywhere
    arena = Workload("quadratic", "mean", horizon=20)
    gains = play_gains(Arena(arena.name, arena.make_env().game, 0.1), theta[None], [1, 2], config, 3.0)
    assert gains.shape == (1, 2, 3) and (gains > 0).all()


def test_training_seeds_are_disjoint_from_the_benchs() -> None:
    bench = load_config(BENCH_FILE)
    reserved = [*bench.protocol.tuning_seeds, *bench.protocol.eval_seeds]
    es = ESConfig()
    seen = {s for it in range(es.iterations) for s in train_seeds(es, reserved, it)}
    assert len(seen) == es.iterations * es.seeds_per_iteration and not seen & set(reserved)
    with pytest.raises(
        ValueError, match=r"first_train_seed: the training seeds \[0, 80\) include .* \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]"
    ):
        train_seeds(ESConfig(first_train_seed=0), reserved, 0)
    with pytest.raises(ValueError, match="first_train_seed"):
        train(_arenas(), ESConfig(first_train_seed=100_000 - 3), reserved=bench.protocol.tuning_seeds)
    # The shipped weights were trained that way, for this file.
    _, _, meta = load_deviator()
    shipped = ESConfig(**meta["es"])
    used = {s for it in range(shipped.iterations) for s in train_seeds(shipped, reserved, it)}
    assert not used & set(reserved) and meta["bench_digest"] == bench.digest()


# ------------------------------------------------------------------------------------------ weights files
def test_weights_files_round_trip_and_are_validated(tmp_path: Path) -> None:
    config = DeviatorConfig(hidden=3, head=True)
    theta = _theta(config, 1)
    path = save_deviator(tmp_path / "d.pt", theta, config, {"note": "x"})
    got, got_config, meta = load_deviator(path)
    assert torch.equal(got, theta) and got_config == config and meta == {"note": "x"}
    assert torch.load(path, weights_only=True)["format"] == "mtg_env.learned_deviator/1"
    with pytest.raises(ValueError, match="refusing to write"):
        save_deviator(tmp_path / "bad.pt", torch.full((config.num_params,), math.inf), config)
    payload = torch.load(path, weights_only=True)
    for change, message in [({"format": "other/1"}, "not a learned deviator file"),
                            ({"theta": theta[:-1]}, "theta must be a float tensor"),
                            ({"theta": torch.full_like(theta, math.nan)}, "NaN or infinite"),
                            ({"config": {"hidden": -1}}, "not a DeviatorConfig")]:  # fmt: skip
        torch.save({**payload, **change}, tmp_path / "x.pt")
        with pytest.raises(ValueError, match=message):
            load_deviator(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError):
        load_deviator(tmp_path / "missing.pt")


def test_the_shipped_weights_load_into_the_bench_factory() -> None:
    assert DEVIATOR_WEIGHTS.is_file()
    player = learned_deviator(0.1)
    theta, config, _ = load_deviator()
    assert np.array_equal(player.theta, theta.numpy()) and player.config == config


# ------------------------------------------------------------------------------------------ the bench
def test_reference_lr_names_a_deviator() -> None:
    data = {
        "name": "d", "rules": ["sum"], "horizons": [5],
        "policies": [{"name": "gradient", "baseline": "gradient"},
                     {"name": "dev", "factory": "agents.learned.deviator:learned_deviator"}],
        "suites": [{"name": "quadratic"}],
        "tuning": {"low": 0.1, "high": 1.0, "tuning_seeds": [1000], "eval_seeds": [0]},
        "mixed": {"reference": "gradient", "deviators": ["selfish"], "reference_lr": ["dev"]},
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"\[mixed\] reference_lr\[0\]: 'dev' is not a deviator"):
        config_from_dict(data)
    data["mixed"]["deviators"] = ["selfish", "dev"]
    config = config_from_dict(data)
    assert config.mixed is not None and config.mixed.reference_lr == ("dev",)
    assert tuple(config.to_dict()["mixed"]["reference_lr"]) == ("dev",)
    del data["mixed"]["reference_lr"]
    assert "reference_lr" not in config_from_dict(data).to_dict()["mixed"]  # older files keep their digests


@pytest.mark.slow
def test_the_learned_deviator_enters_the_manipulability_table(tmp_path: Path) -> None:
    """A tiny bench with the learned deviator in [mixed]: its games are played at the reference's tuned step size,
    and its rows (own gain, others' change, CIs) are in the summary beside the selfish deviator's: weights that
    play the constant factor 4 reproduce the selfish ×4 rows."""
    config = DeviatorConfig(hidden=2)
    theta = torch.zeros(config.num_params, dtype=torch.float64)
    theta[-2] = math.atanh(math.log(4.0) / config.max_log_scale)  # s_trunk = log 4 (to round-off) everywhere
    weights = save_deviator(tmp_path / "w.pt", theta, config)
    data = {
        "name": "d", "rules": ["sum", "mean"], "horizons": [10], "bootstrap_reps": 100,
        "policies": [{"name": "gradient", "baseline": "gradient"},
                     {"name": "learned_deviator", "factory": "agents.learned.deviator:learned_deviator",
                      "kwargs": {"weights": str(weights)}}],
        "suites": [{"name": "quadratic"}],
        "tuning": {"low": 0.03, "high": 0.1, "points_per_decade": 3, "tuning_seeds": [1000], "eval_seeds": [0, 1]},
        "mixed": {"reference": "gradient", "deviators": ["selfish", "learned_deviator"],
                  "reference_lr": ["learned_deviator"]},
    }  # fmt: skip
    summary = run_bench(config_from_dict(data), tmp_path / "out", "local", report=False)
    rows = {(r["rule"], r["deviator"]): r for r in summary["manipulability"]}
    assert set(rows) == {(r, d) for r in ("sum", "mean") for d in ("selfish", "learned_deviator")}
    for rule in ("sum", "mean"):
        row = rows[(rule, "learned_deviator")]
        assert row["cases"] + row["diverged"] == 2 * 3
        assert row["own_gain"] is not None and len(row["own_gain"]) == 3 and len(row["others_change"]) == 3
        selfish = rows[(rule, "selfish")]
        assert (row["cases"], row["diverged"]) == (selfish["cases"], selfish["diverged"])
        np.testing.assert_allclose(row["own_gain"], selfish["own_gain"], rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(row["others_change"], selfish["others_change"], rtol=1e-3, atol=1e-3)
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    tuned = {
        r["workload"]: r["result"]["best_lr"] for r in records if r["kind"] == "tune" and r["policy"] == "gradient"
    }
    for r in records:
        if r["kind"] == "mixed" and r["policy"] == "learned_deviator":
            assert set(r["result"]["games"][0]["lrs"]) == {tuned[r["workload"]]}  # the reference's step size
