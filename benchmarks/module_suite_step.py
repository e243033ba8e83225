"""A ModuleSuite engine step against the same step written by hand in PyTorch, at B = 1 and B = 64 games.

The model is MultiDigits' (a LeNet-style conv trunk, two linear heads, cross-entropy, batches of 128 of the
4000 training pairs). Both sides do the same math per game and step: draw a batch, one forward, each task's
gradient with respect to every parameter from one batched backward over the tasks (``is_grads_batched``: the
per-task trunk Jacobian), the heads stepped by their own gradients and the trunk by the sum of the tasks'
(`sum` consensus, step size 0.05). The engine (``step_size`` mode) also computes its features, rewards and
divergence flags.

References:

- ``hand``: the user's modules as they are (``nn.Module`` parameters, ``torch.randperm`` batches from a
  ``torch.Generator``); B games are B copies of the model stepped one after another;
- ``vmap`` (B = 64 only): the B copies stacked with ``torch.func.stack_module_state`` and stepped at once with
  ``vmap(functional_call)``, the vectorised form ``torch.func`` offers.

Speed is the engine's game-steps per CPU second ÷ the reference's (above 1: the engine is faster); one torch
thread, interleaved rounds timed in process CPU time, the median round. Memory is the peak resident memory
each side adds while stepping (its model, optimizer-free state and transient buffers), each measured in a fresh
process after the data are built (Linux: ``/proc/self/clear_refs`` resets the peak); the ratio is engine ÷
hand-written (below 1: the engine needs less).

    python benchmarks/module_suite_step.py [--rounds 5] [--steps 20]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from _timing import median_seconds_per_step  # benchmarks/ is on sys.path when run as a script
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from mtg_env import engine
from mtg_env.consensus import consensus_rule
from mtg_env.engine import Game
from mtg_env.suites.multidigits import MultiDigits

LR = 0.05
BATCH = 128


def engine_stepper(suite: MultiDigits, games: int) -> Callable[[], None]:
    game = Game(suite, consensus_rule("sum"), action_mode="step_size", horizon=10**9)
    state, _ = engine.reset(game, list(range(games)))
    log_lr = torch.full((games, suite.num_tasks, 2), float(torch.tensor(LR).log()), dtype=suite.dtype)
    box = {"state": state}

    def step() -> None:
        box["state"], _ = engine.step(game, box["state"], log_lr)

    return step


class Model(nn.Module):
    """The user's model as a user holds it: a trunk and a dict of heads, with the suite's initial values."""

    def __init__(self, suite: MultiDigits, seed: int):
        super().__init__()
        self.trunk = copy.deepcopy(suite._trunk)
        self.heads = nn.ModuleDict({t: copy.deepcopy(h) for t, h in zip(suite.task_names, suite._heads, strict=True)})
        heads, trunk = suite.params_for_seed(seed)
        torch.nn.utils.vector_to_parameters(trunk, self.trunk.parameters())
        torch.nn.utils.vector_to_parameters(heads, self.heads.parameters())
        for p in self.parameters():
            p.requires_grad_(True)


class HandReference:
    """B copies of the model, each stepped by hand: forward, one batched backward over the tasks, SGD."""

    def __init__(self, suite: MultiDigits, games: int):
        self.x, self.ys = suite._train.inputs, suite._train.targets
        self.models = [Model(suite, seed) for seed in range(games)]
        self.loss = nn.CrossEntropyLoss()
        self.generator = torch.Generator().manual_seed(0)
        self.eye = torch.eye(len(self.ys), dtype=suite.dtype)
        self.trunk_params = [list(m.trunk.parameters()) for m in self.models]
        self.head_params = [[list(h.parameters()) for h in m.heads.values()] for m in self.models]

    def step(self) -> None:
        for model, trunk_params, head_params in zip(self.models, self.trunk_params, self.head_params, strict=True):
            idx = torch.randperm(len(self.x), generator=self.generator)[:BATCH]
            x = self.x[idx]
            feats = model.trunk(x)
            losses = torch.stack([self.loss(h(feats), y[idx]) for h, y in zip(model.heads.values(), self.ys,
                                                                               strict=True)])  # fmt: skip
            flat_heads = [p for ps in head_params for p in ps]
            grads = torch.autograd.grad(losses, trunk_params + flat_heads, grad_outputs=self.eye, is_grads_batched=True)
            with torch.no_grad():
                for p, g in zip(trunk_params, grads, strict=False):
                    p -= LR * g.sum(0)
                k = len(trunk_params)
                for m, ps in enumerate(head_params):
                    for p in ps:
                        p -= LR * grads[k][m]
                        k += 1


class VmapReference:
    """The B copies stacked (``stack_module_state``) and stepped at once under ``vmap(functional_call)``."""

    def __init__(self, suite: MultiDigits, games: int):
        self.x, self.ys = suite._train.inputs, suite._train.targets
        models = [Model(suite, seed) for seed in range(games)]
        self.params, self.buffers = stack_module_state(models)  # type: ignore[arg-type]
        self.base = copy.deepcopy(models[0]).to("meta")
        self.tasks = list(models[0].heads)
        self.loss = nn.CrossEntropyLoss()
        self.generator = torch.Generator().manual_seed(0)
        self.eye = torch.eye(len(self.ys), dtype=suite.dtype).unsqueeze(1).expand(len(self.ys), games, len(self.ys))
        self.games = games

        def losses(params: dict[str, torch.Tensor], x: torch.Tensor, *ys: torch.Tensor) -> torch.Tensor:
            feats = functional_call(self.base.trunk, {k[6:]: v for k, v in params.items() if k.startswith("trunk.")},
                                    (x,))  # fmt: skip
            out = []
            for task, y in zip(self.tasks, ys, strict=True):
                prefix = f"heads.{task}."
                head = {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}
                out.append(self.loss(functional_call(self.base.heads[task], head, (feats,)), y))
            return torch.stack(out)

        self.batched = vmap(losses)

    def step(self) -> None:
        idx = torch.stack([torch.randperm(len(self.x), generator=self.generator)[:BATCH] for _ in range(self.games)])
        params = {k: v.detach().requires_grad_(True) for k, v in self.params.items()}
        losses = self.batched(params, self.x[idx], *(y[idx] for y in self.ys))
        grads = torch.autograd.grad(losses, list(params.values()), grad_outputs=self.eye, is_grads_batched=True)
        with torch.no_grad():
            for (k, v), g in zip(params.items(), grads, strict=True):
                if k.startswith("trunk."):
                    self.params[k] = v - LR * g.sum(0)
                else:
                    m = self.tasks.index(k.split(".")[1])
                    self.params[k] = v - LR * g[m]


def runner(kind: str, suite: MultiDigits, games: int) -> Callable[[], None]:
    if kind == "engine":
        return engine_stepper(suite, games)
    if kind == "hand":
        return HandReference(suite, games).step
    return VmapReference(suite, games).step


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def measure_memory(kind: str, games: int, steps: int) -> int:
    """Bytes of resident memory that ``kind``'s B games hold at their peak while stepping, above what the data
    alone hold (run in this process: call it in a fresh one). A B = 1 step first loads the kernels; the peak is
    then reset after the games are built and stepped once (the engine's initial draws are not a step's)."""
    torch.set_num_threads(1)
    suite = MultiDigits()
    runner(kind, suite, 1)()
    base = _status("VmRSS")
    step = runner(kind, suite, games)
    step()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current resident size
    for _ in range(steps):
        step()
    return _status("VmHWM") - base


def memory_in_subprocess(kind: str, games: int, steps: int) -> int:
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import module_suite_step as m; "
        f"print(m.measure_memory({kind!r}, {games}, {steps}))"
    )
    # Tensors above 16 KiB get their own pages, returned when freed: resident memory then follows the live tensors
    # instead of the C allocator's high-water mark.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "16384", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return int(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (the median is reported)")
    parser.add_argument("--steps", type=int, default=20, help="steps per round at B = 1 (B = 64: steps / 10, ≥ 2)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    suite = MultiDigits()
    print(f"torch {torch.__version__}, 1 thread, {args.rounds} interleaved rounds (median), CPU time")
    print(f"model: MultiDigits, trunk {suite.trunk_size} parameters, heads {list(suite.head_sizes)}, batch {BATCH}")
    print("SPEED B reference engine_ms_per_game_step reference_ms_per_game_step engine_speed_ratio")
    results = {}
    for games in (1, 64):
        kinds = ["engine", "hand"] + (["vmap"] if games > 1 else [])
        runners = {k: runner(k, suite, games) for k in kinds}
        steps = args.steps if games == 1 else max(2, args.steps // 10)
        seconds = median_seconds_per_step(runners, steps=steps, rounds=args.rounds, warmup=2)
        for ref in kinds[1:]:
            ratio = seconds[ref] / seconds["engine"]
            results[(games, ref)] = ratio
            print(
                f"SPEED {games} {ref} {1e3 * seconds['engine'] / games:.3f} {1e3 * seconds[ref] / games:.3f} "
                f"{ratio:.3f}"
            )
    if not args.no_memory:
        print("MEMORY B engine_MiB hand_MiB engine_over_hand")
        for games in (1, 64):
            ours = memory_in_subprocess("engine", games, 3)
            theirs = memory_in_subprocess("hand", games, 3)
            print(f"MEMORY {games} {ours / 2**20:.1f} {theirs / 2**20:.1f} {ours / theirs:.3f}")
    print(json.dumps({f"B={g} vs {r}": round(v, 3) for (g, r), v in results.items()}))


if __name__ == "__main__":
    main()
