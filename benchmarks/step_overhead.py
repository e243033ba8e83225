"""Steps per second of ``env.step`` against a hand-written PyTorch multi-task step doing the same math.

The workload (issue 2): digits with the default model (MLP trunk 64→128→64, four linear heads), batch
256, per-task trunk Jacobian, `mean` consensus, SGD heads, one thread. The reference is what a user
would write without the env: ``nn.Module`` trunk and heads, a fresh batch from ``randperm``, the four
losses, the per-task trunk gradients, the mean of the trunk gradients and SGD on every parameter. It is
timed two ways, with the per-task trunk gradients from one batched backward (``is_grads_batched``, the
fastest plain form) and from a loop of per-task backward passes (the common form in MTL code).

The env is timed in both action modes with the actions that make it the same math:
``step_size`` [log α, log β] (the env forms −α·g), and ``update`` with the actions computed from the
observation (u = −α·g, as a learned optimiser would send). Each configuration runs interleaved rounds;
the figure is the median round. Run: ``python benchmarks/step_overhead.py [--steps 300 --rounds 7]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _timing import median_seconds_per_step  # benchmarks/ is on sys.path when run as a script
from torch import nn

import mtg_env

LR = 0.1


class Reference:
    """A plain-PyTorch multi-task training step with per-task trunk gradients and mean consensus."""

    def __init__(self, batched: bool, seed: int = 0):
        suite = mtg_env.DigitsSuite()  # the same data split and targets as the env
        x, labels, ink = suite.train_batch()
        self.x, self.labels, self.ink = x, labels, ink
        torch.manual_seed(seed)  # the reference script's own init; only timing is compared
        self.trunk = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.heads = nn.ModuleList([nn.Linear(64, k) for k in (10, 2, 2, 1)])
        self.trunk_params = list(self.trunk.parameters())
        self.head_params = list(self.heads.parameters())
        self.generator = torch.Generator().manual_seed(seed)
        self.batched = batched
        self.eye = torch.eye(4)

    def step(self) -> None:
        idx = torch.randperm(len(self.labels), generator=self.generator)[:256]
        x, labels, ink = self.x[idx], self.labels[idx], self.ink[idx]
        h = self.trunk(x)
        outs = [head(h) for head in self.heads]
        losses = torch.stack(
            [
                F.cross_entropy(outs[0], labels[:, 0]),
                F.cross_entropy(outs[1], labels[:, 1]),
                F.cross_entropy(outs[2], labels[:, 2]),
                F.mse_loss(outs[3].squeeze(1), ink),
            ]
        )
        params = self.trunk_params + self.head_params
        if self.batched:
            grads = torch.autograd.grad(losses, params, grad_outputs=self.eye, is_grads_batched=True)
            trunk_jac = torch.cat([g.flatten(1) for g in grads[: len(self.trunk_params)]], dim=1)  # [M, n]
            head_grads = [g.sum(0) for g in grads[len(self.trunk_params) :]]
        else:
            rows, head_grads = [], None
            for m in range(4):
                g = torch.autograd.grad(losses[m], params, retain_graph=m < 3)
                rows.append(torch.cat([t.flatten() for t in g[: len(self.trunk_params)]]))
                hg = g[len(self.trunk_params) :]
                head_grads = list(hg) if head_grads is None else [a + b for a, b in zip(head_grads, hg, strict=True)]
            trunk_jac = torch.stack(rows)
        move = trunk_jac.mean(0)  # mean consensus of the per-task trunk gradients (Eq. 21)
        with torch.no_grad():
            offset = 0
            for p in self.trunk_params:
                p.sub_(LR * move[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
            for p, g in zip(self.head_params, head_grads, strict=True):
                p.sub_(LR * g)


def env_stepper(mode: str) -> Callable[[], None]:
    env = mtg_env.parallel_env(
        suite="digits", consensus="mean", action_mode=mode, max_cycles=10**9, max_update=None, update_units="raw"
    )  # raw: the action is the update −LR·g itself (v6 made relative units the default)
    obs, _ = env.reset(seed=0)
    state = {"obs": obs}
    step_action = env.step_size_action(LR, LR) if mode == "step_size" else None  # α = β = LR, in the env's units
    sizes = {a: env.head_slot(a) + env.trunk_size for a in env.possible_agents}  # heads padded: zeros there

    def step() -> None:
        if mode == "step_size":
            actions = {a: step_action for a in env.agents}
        else:
            actions = {a: -LR * o[: sizes[a]] for a, o in state["obs"].items()}
        state["obs"] = env.step(actions)[0]

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (the median is reported)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    runners = {
        "reference (batched backward)": Reference(batched=True).step,
        "reference (per-task loop)": Reference(batched=False).step,
        "env step_size mode": env_stepper("step_size"),
        "env update mode": env_stepper("update"),
    }
    seconds = median_seconds_per_step(runners, args.steps, args.rounds, warmup=30)  # warm-up: allocators, autograd
    median = {name: 1.0 / t for name, t in seconds.items()}
    best_ref = median["reference (batched backward)"]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds x {args.steps} steps (median)")
    print(f"{'configuration':<32}{'steps/s':>10}{'ms/step':>10}{'vs batched ref':>16}")
    for name, rate in median.items():
        print(f"{name:<32}{rate:>10.1f}{1e3 / rate:>10.3f}{rate / best_ref:>16.3f}")


if __name__ == "__main__":
    main()
