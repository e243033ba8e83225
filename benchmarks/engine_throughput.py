"""Game-steps per second of the engine at B games per call, against hand-written batched PyTorch and lone envs.

For each small suite (defaults: ``quadratic``, ``regression``, ``toy2d``) and B in {1, 64, 1024, 8192}, one
``step_size``-mode step of B games with `mean` consensus and the same step size for every task:

- engine: :func:`mtg_env.engine.step` (batch draw, losses, per-task trunk Jacobian, consensus, features,
  rewards, divergence flags);
- reference: the same math written by hand for B games at once, as a user would without the package: the
  best plain form per suite (closed-form ``bmm`` gradients for ``quadratic``; one backward through one
  trunk replica per task for ``regression`` and ``toy2d``, the fastest exact per-task Jacobian), batches
  from ``torch.rand`` with a ``torch.Generator``; no features, rewards or checks;
- lone envs: the PettingZoo env stepped in a loop (its rate per game-step does not depend on B).

Digits (default model, batch 256) at B = 1 and 64: engine against a hand-written batched step
(``bmm`` MLP, one batched backward for the per-task Jacobian).

Then the per-task trunk Jacobian alone: the engine's (closed form on ``quadratic``, replicas on
``regression``) against a plain per-task backward loop (M backward passes through one shared forward), at
M in {2, 4, 8, 16, 32} and trunk sizes up to 1024, B = 64.

One torch thread, interleaved rounds timed in process CPU time, the median round; ratios measured in one
run. ``python benchmarks/engine_throughput.py [--rounds 5] [--quick] [--device cuda]``: on CUDA every tensor
(suite data, parameters, references' generators) lives on the GPU, rounds are timed in wall time after a
``torch.cuda.synchronize()``, B goes up to 65536, and the Jacobian table (a CPU question) is skipped.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from _timing import median_seconds_per_step  # benchmarks/ is on sys.path when run as a script

import mtg_env
from mtg_env import engine
from mtg_env.consensus import consensus_rule
from mtg_env.engine import Game
from mtg_env.suites import DigitsSuite, QuadraticSuite, RegressionSuite, make_suite

LOG_STEP = float(np.log(0.05))
SMALL = ("quadratic", "regression", "toy2d")


def engine_stepper(suite_name: str, batch: int, device: str = "cpu", **suite_kwargs: object) -> Callable[[], None]:
    suite = make_suite(suite_name, device=device, **suite_kwargs)
    game = Game(suite, consensus_rule("mean"), action_mode="step_size", horizon=10**9)
    state, _ = engine.reset(game, list(range(batch)))
    actions = torch.full((batch, suite.num_tasks, 2), LOG_STEP, dtype=suite.dtype, device=device)
    box = {"state": state}

    def step() -> None:
        box["state"], _ = engine.step(game, box["state"], actions)

    return step


def lone_env_stepper(suite_name: str, device: str = "cpu") -> Callable[[], None]:
    env = mtg_env.parallel_env(
        suite=suite_name,
        action_mode="step_size",
        consensus="mean",
        max_cycles=10**9,
        step_size_units="log",
        device=device,
    )
    env.reset(seed=0)
    action = np.full(2, LOG_STEP, dtype=np.float32)

    def step() -> None:
        env.step({a: action for a in env.agents})

    return step


class QuadraticReference:
    """B quadratic games by hand: z = [Θ_m; Ψ], g = A_m z − b_m in one task-major bmm, mean of the trunk parts."""

    def __init__(self, batch: int, device: str = "cpu"):
        suite = QuadraticSuite(device=device)
        self.a = torch.stack(suite._A)  # [M, d, d]
        self.b = torch.stack(suite._b)  # [M, d]
        self.m, self.h, self.n = suite.num_tasks, suite.head_sizes[0], suite.trunk_size
        g = torch.Generator(device=device).manual_seed(0)
        self.heads = torch.randn(batch, self.m, self.h, generator=g, device=device)
        self.trunk = torch.randn(batch, self.n, generator=g, device=device)
        self.lr = float(np.exp(LOG_STEP))

    def step(self) -> None:
        bsz = self.trunk.shape[0]
        z = torch.cat([self.heads, self.trunk.unsqueeze(1).expand(bsz, self.m, self.n)], dim=2)
        az = torch.bmm(z.transpose(0, 1), self.a).transpose(0, 1)
        grad = az - self.b
        _losses = ((0.5 * az - self.b) * z).sum(2)
        self.heads = self.heads - self.lr * grad[..., : self.h]
        self.trunk = self.trunk - self.lr * grad[..., self.h :].mean(1)


class RegressionReference:
    """B regression games by hand: a batch per task from ``torch.rand``, one trunk replica per task, one backward."""

    def __init__(self, batch: int, device: str = "cpu"):
        suite = RegressionSuite(device=device)
        self.x, self.y, _ = suite.train_batch()
        self.counts = torch.tensor(suite.describe()["task_sizes"], dtype=torch.float64, device=device)
        self.m, self.k, self.d = suite.num_tasks, suite.trunk_width, self.x.shape[-1]
        self.bs = suite.batch_size or 32
        g = torch.Generator(device=device).manual_seed(0)
        self.generator = g
        self.trunk = torch.rand(batch, suite.trunk_size, generator=g, device=device) - 0.5
        self.heads = torch.rand(batch, self.m * (self.k + 1), generator=g, device=device) - 0.5
        self.lr = float(np.exp(LOG_STEP))
        self.rows = torch.arange(self.m, device=device)[:, None]

    def step(self) -> None:
        bsz = self.trunk.shape[0]
        u = torch.rand(bsz, self.m, self.bs, generator=self.generator, dtype=torch.float64, device=self.trunk.device)
        idx = (u * self.counts[:, None]).long()
        x, y = self.x[self.rows, idx], self.y[self.rows, idx]
        with torch.enable_grad():
            heads = self.heads.requires_grad_(True)
            replicas = self.trunk.unsqueeze(1).expand(bsz, self.m, -1).contiguous().requires_grad_(True)
            w = replicas[..., : self.k * self.d].view(bsz, self.m, self.k, self.d)
            c = replicas[..., self.k * self.d :]
            f = x @ w.transpose(-1, -2) + c.unsqueeze(-2)
            v = heads.view(bsz, self.m, self.k + 1)
            pred = (f @ v[..., :-1].unsqueeze(-1)).squeeze(-1) + v[..., -1:]
            losses = (pred - y).square().mean(-1)
            g_heads, g_trunk = torch.autograd.grad(losses.sum(), (heads, replicas))
        self.heads = (self.heads - self.lr * g_heads).detach()
        self.trunk = (self.trunk - self.lr * g_trunk.mean(1)).detach()


class Toy2dReference:
    """B toy games by hand: both objectives at a replica of the point per task, one backward."""

    def __init__(self, batch: int, device: str = "cpu"):
        from mtg_env.suites.toy2d import toy_losses

        self.losses = toy_losses
        g = torch.Generator(device=device).manual_seed(0)
        self.x = torch.rand(batch, 2, generator=g, device=device) * 20 - 10
        self.lr = float(np.exp(LOG_STEP))

    def step(self) -> None:
        bsz = self.x.shape[0]
        with torch.enable_grad():
            replicas = self.x.unsqueeze(1).expand(bsz, 2, 2).contiguous().requires_grad_(True)
            f = torch.diagonal(self.losses(replicas), dim1=1, dim2=2)
            (grad,) = torch.autograd.grad(f.sum(), replicas)
        self.x = (self.x - self.lr * grad.mean(1)).detach()


REFERENCES = {"quadratic": QuadraticReference, "regression": RegressionReference, "toy2d": Toy2dReference}


class DigitsReference:
    """B digits games by hand: ``bmm`` MLP on a per-game batch, one batched backward for the per-task rows."""

    def __init__(self, batch: int, device: str = "cpu"):
        suite = DigitsSuite(device=device)
        self.x, self.labels, self.ink = suite.train_batch()
        self.shapes = suite._trunk_shapes
        self.width = suite.width
        g = torch.Generator(device=device).manual_seed(0)
        self.generator = g
        self.trunk = (torch.rand(batch, suite.trunk_size, generator=g, device=device) - 0.5) * 0.2
        self.heads = (torch.rand(batch, suite.head_offsets[-1], generator=g, device=device) - 0.5) * 0.2
        self.eye = torch.eye(4, device=device).unsqueeze(1).expand(4, batch, 4)
        self.lr = float(np.exp(LOG_STEP))

    def step(self) -> None:
        bsz = self.trunk.shape[0]
        idx = torch.rand(bsz, len(self.labels), generator=self.generator, device=self.trunk.device).argsort(1)[:, :256]
        x, labels, ink = self.x[idx], self.labels[idx], self.ink[idx]
        with torch.enable_grad():
            trunk = self.trunk.requires_grad_(True)
            heads = self.heads.requires_grad_(True)
            h = x
            offset = 0
            for i in range(0, len(self.shapes), 2):
                (out_f, in_f), n_w = self.shapes[i], self.shapes[i][0] * self.shapes[i][1]
                w = trunk[:, offset : offset + n_w].view(bsz, out_f, in_f)
                b = trunk[:, offset + n_w : offset + n_w + out_f]
                offset += n_w + out_f
                h = torch.relu(torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2)))
            hw = heads.view(bsz, -1, self.width + 1)
            out = torch.baddbmm(hw[:, :, -1].unsqueeze(1), h, hw[:, :, :-1].transpose(1, 2))
            digit, parity, ge5, reg = out.split([10, 2, 2, 1], dim=2)
            n = x.shape[1]

            def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                per_image = F.cross_entropy(logits.reshape(bsz * n, -1), target.reshape(-1), reduction="none")
                return per_image.view(bsz, n).mean(1)

            losses = torch.stack(
                [
                    cross_entropy(digit, labels[..., 0]),
                    cross_entropy(parity, labels[..., 1]),
                    cross_entropy(ge5, labels[..., 2]),
                    (reg.squeeze(2) - ink).square().mean(1),
                ],
                dim=1,
            )
            g_heads, g_trunk = torch.autograd.grad(losses, (heads, trunk), grad_outputs=self.eye, is_grads_batched=True)
        self.heads = (self.heads - self.lr * g_heads.sum(0)).detach()
        self.trunk = (self.trunk - self.lr * g_trunk.mean(0)).detach()


def jacobian_table(rounds: int) -> None:
    """The engine's per-task trunk Jacobian against a per-task backward loop (B = 64)."""
    from mtg_env.engine.core import losses_and_grads

    print("\nper-task trunk Jacobian, B = 64: engine / per-task backward loop (CPU time per call; < 1 is faster)")
    print("JACOBIAN suite trunk_n " + " ".join(f"M={m}" for m in (2, 4, 8, 16, 32)))
    configs = [
        ("quadratic", 64, lambda m, n: QuadraticSuite(num_tasks=m, head_dim=2, trunk_dim=n)),
        ("quadratic", 1024, lambda m, n: QuadraticSuite(num_tasks=m, head_dim=2, trunk_dim=n)),
        ("regression", 64, lambda m, n: RegressionSuite(num_tasks=m, input_dim=31, trunk_width=n // 32)),
        ("regression", 1024, lambda m, n: RegressionSuite(num_tasks=m, input_dim=31, trunk_width=n // 32)),
    ]
    for name, n, build in configs:
        ratios = []
        for m in (2, 4, 8, 16, 32):
            suite = build(m, n)
            rng = engine.GameRNG.from_seeds(list(range(64)))
            heads, trunk = suite.init_params(rng)
            batch = suite.sample_batch(rng)

            def ours(suite=suite, heads=heads, trunk=trunk, batch=batch) -> None:
                losses_and_grads(suite, heads, trunk, batch)

            def loop(suite=suite, heads=heads, trunk=trunk, batch=batch) -> None:
                with torch.enable_grad():
                    h = heads.detach().requires_grad_(True)
                    t = trunk.detach().requires_grad_(True)
                    losses = suite.batched_losses(h, t, batch)
                    rows = [
                        torch.autograd.grad(losses[:, i].sum(), t, retain_graph=i < losses.shape[1] - 1)[0]
                        for i in range(losses.shape[1])
                    ]
                    torch.stack(rows, 1)

            seconds = median_seconds_per_step({"ours": ours, "loop": loop}, steps=20, rounds=rounds, warmup=3)
            ratios.append(seconds["ours"] / seconds["loop"])
        print(f"JACOBIAN {name} {n} " + " ".join(f"{r:.3f}" for r in ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (the median is reported)")
    parser.add_argument("--quick", action="store_true", help="B up to 1024 and fewer steps")
    parser.add_argument(
        "--device", default="cpu", help="cpu, or cuda: then wall time after a synchronize, and B up to 65536"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = args.device
    cuda = torch.device(device).type == "cuda"
    sizes = (1, 64, 1024) if args.quick else (1, 64, 1024, 8192)
    if cuda:
        sizes = (*sizes, 65536)
    clock = "wall time (CUDA synchronized)" if cuda else "CPU time"
    where = torch.cuda.get_device_name(device) if cuda else "CPU"
    print(f"torch {torch.__version__}, {where}, 1 thread, {args.rounds} interleaved rounds (median), {clock}")
    print("THROUGHPUT suite B engine_game_steps_per_s vs_reference vs_lone_envs")
    for name in SMALL:
        lone_step = lone_env_stepper(name, device)
        lone = median_seconds_per_step({"lone": lone_step}, steps=200, rounds=args.rounds, warmup=20, device=device)
        lone_rate = 1.0 / lone["lone"]
        for batch in sizes:
            steps = max(3, min(200, 20000 // batch)) if not cuda else 50
            seconds = median_seconds_per_step(
                {"engine": engine_stepper(name, batch, device), "reference": REFERENCES[name](batch, device).step},
                steps=steps,
                rounds=args.rounds,
                warmup=3,
                device=device,
            )
            rate = batch / seconds["engine"]
            ref_rate = batch / seconds["reference"]
            print(f"THROUGHPUT {name} {batch} {rate:.0f} {rate / ref_rate:.3f} {rate / lone_rate:.2f}")
        print(f"LONE {name} {lone_rate:.0f}")
    for batch in (1, 64, 512) if cuda else (1, 64):
        seconds = median_seconds_per_step(
            {"engine": engine_stepper("digits", batch, device), "reference": DigitsReference(batch, device).step},
            steps=max(3, 100 // batch) if not cuda else 20,
            rounds=args.rounds,
            warmup=2,
            device=device,
        )
        rate = batch / seconds["engine"]
        print(f"THROUGHPUT digits {batch} {rate:.0f} {rate * seconds['reference'] / batch:.3f}")
    if not cuda:
        jacobian_table(args.rounds)


if __name__ == "__main__":
    main()
