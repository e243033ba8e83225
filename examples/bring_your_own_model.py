"""Bring your own model: a two-task PyTorch model played as a game, then the paper's agents, Adam after the rule, a
learned agent and a tiny benchmark on it, each printed beside a reference.

    python examples/bring_your_own_model.py

The model is the part you write (``make_suite``, about 30 lines): a shared encoder, a head and a loss per task,
and data. Everything after it is the package's.
"""

from __future__ import annotations

import tempfile

import torch
from sklearn.datasets import load_digits
from torch import nn

import mtg_env
from agents import GradientAgent, make_agents, run_episode
from agents.learned import learned_agent, pretrained_path
from mtg_env.bench import config_from_dict, run_bench
from mtg_env.suites import ModuleSuite


# --------------------------------------------------------------------------------------- your model (30 lines)
def make_model() -> tuple[nn.Module, dict[str, nn.Module], dict, tuple, tuple]:
    """Two tasks on the 8×8 digits: which digit (10-way) and how much ink (regression)."""
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    label = torch.tensor(digits.target)
    ink = x.mean(1, keepdim=True)
    ink = (ink - ink.mean()) / ink.std()
    train, test = slice(0, 1400), slice(1400, None)

    encoder = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 32), nn.Tanh())
    heads = {"digit": nn.Linear(32, 10), "ink": nn.Linear(32, 1)}
    losses = {"digit": nn.CrossEntropyLoss(), "ink": nn.MSELoss()}
    return (
        encoder,
        heads,
        losses,
        (x[train], {"digit": label[train], "ink": ink[train]}),
        (x[test], {"digit": label[test], "ink": ink[test]}),
    )


def make_suite(batch_size: int | None = 64, dtype: str = "float32", device: str = "cpu") -> ModuleSuite:
    """The model as a game (the seed draws its initial parameters, as PyTorch's default init would)."""
    encoder, heads, losses, train, test = make_model()
    return ModuleSuite(encoder, heads, losses, train, eval=test, batch_size=batch_size, dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------- the same by hand
def by_hand(suite: ModuleSuite, seed: int, steps: int, optimizer: str, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain PyTorch: a fresh copy of the model from the game's start, on the game's batches, ``optimizer`` on the
    summed loss. Returns the flat (heads, trunk), laid out as the suite lays them out (``parameters()`` order)."""
    encoder, heads, losses, _, _ = make_model()
    start_heads, start_trunk = suite.params_for_seed(seed)
    nn.utils.vector_to_parameters(start_trunk, encoder.parameters())
    head_params = [p for task in suite.task_names for p in heads[task].parameters()]
    nn.utils.vector_to_parameters(start_heads, head_params)
    opt_cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    opt = opt_cls([*encoder.parameters(), *head_params], lr=lr)
    for t in range(steps):
        x, targets = suite.batch_for_seed(seed, step=t).game(0)  # the batch the game drew at step t
        feats = encoder(x)
        opt.zero_grad()
        sum(losses[task](heads[task](feats), y) for task, y in zip(suite.task_names, targets, strict=True)).backward()
        opt.step()
    return nn.utils.parameters_to_vector(head_params).detach(), nn.utils.parameters_to_vector(
        encoder.parameters()
    ).detach()


def show(label: str, metrics: dict[str, dict[str, float]]) -> None:
    digit, ink = metrics["digit"]["test_accuracy"], metrics["ink"]["test_mse"]
    print(f"  {label:<52} digit accuracy {digit:.4f}   ink MSE {ink:.4f}")


def largest_difference(ours: tuple[torch.Tensor, ...], reference: tuple[torch.Tensor, ...]) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(ours, reference, strict=True))


def main() -> None:
    torch.set_num_threads(1)
    suite = make_suite()
    steps, seed = 300, 0
    print(f"{suite!r}\n")

    print("1. The paper's agents (gradient, lr 0.1, `sum` consensus: Eq. 23-24) vs plain SGD on the summed loss")
    env = mtg_env.parallel_env(suite=suite, consensus="sum", max_cycles=steps, max_update=None)
    paper = run_episode(env, make_agents("gradient", env, lr=0.1), seed=seed)
    show("env, GradientAgent x 2", suite.evaluate(*env.get_parameters()))
    hand = by_hand(suite, seed, steps, "sgd", 0.1)
    show("reference: torch.optim.SGD, same start and batches", suite.evaluate(*hand))
    print(f"  largest parameter difference {largest_difference(env.get_parameters(), hand):.1e}")
    print(f"  head Nash gaps (Definition 1): {env.nash_gap()}  ({suite.describe()['best_response']})\n")

    print("2. Adam after the rule (`trunk_optimizer='adam'`, gradient players at step 1) vs torch.optim.Adam")
    adam_env = mtg_env.parallel_env(
        suite=suite, consensus="sum", max_cycles=steps, max_update=None,
        trunk_optimizer="adam", trunk_optimizer_kwargs={"lr": 3e-3},
        head_optimizer="adam", head_optimizer_kwargs={"lr": 3e-3},
    )  # fmt: skip
    run_episode(adam_env, {a: GradientAgent(lr=1.0) for a in adam_env.possible_agents}, seed=seed, evaluate=False)
    show("env, sum + Adam", suite.evaluate(*adam_env.get_parameters()))
    hand = by_hand(suite, seed, steps, "adam", 3e-3)
    show("reference: torch.optim.Adam, same start and batches", suite.evaluate(*hand))
    print(f"  largest parameter difference {largest_difference(adam_env.get_parameters(), hand):.1e}\n")

    print("3. A learned agent (learned_mlp, meta-trained on the digits suite) vs the paper's agents")
    learned = {
        a: learned_agent("learned_mlp", weights=pretrained_path("learned_mlp", "digits")) for a in env.possible_agents
    }
    run_episode(env, learned, seed=seed)
    show("env, learned_mlp x 2", suite.evaluate(*env.get_parameters()))
    show(
        "reference: GradientAgent x 2 (part 1)",
        {t: paper.final[a] for a, t in zip(env.possible_agents, suite.task_names, strict=True)},
    )
    print()

    print("4. A tiny benchmark of your model by import path (`bring_your_own_model:make_suite`)")
    config = config_from_dict({
        "name": "byom",
        "policies": [{"name": "gradient", "baseline": "gradient"}, {"name": "adam", "baseline": "adam"}],
        "suites": [{"name": "bring_your_own_model:make_suite"}],
        "rules": ["sum", "mgda"],
        "horizons": [50],
        "tuning": {"low": 1e-3, "high": 1.0, "tuning_seeds": [100], "eval_seeds": [0, 1, 2]},
        "bootstrap_reps": 200,
    })  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        summary = run_bench(config, out, "local", progress=False)
    for row in summary["leaderboard"]:
        low, high = row["iqm_ci"]
        print(f"  {row['policy']:<10} IQM normalised score {row['iqm']:.3f} [{low:.3f}, {high:.3f}]")
    print("  reference: 1 = the best yardstick's median final loss on each workload (gradient and adam are both)")


if __name__ == "__main__":
    main()
