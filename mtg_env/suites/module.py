"""Any PyTorch multi-task model as a game: a shared trunk module, one head module per task, losses and data.

A practitioner's model (LibMTL's ``encoder`` and ``decoders``, torchjd's ``features`` and heads) becomes a
suite: the trunk's trainable parameters are the flat trunk vector Ψ and each head's the flat head vector Θ_m
(heads in one vector, head m a contiguous slice, in the order of ``heads``' keys). Each game evaluates the
modules on views of its own flat vectors (as :func:`torch.func.functional_call` does), so every game of an
engine batch plays its own parameters and the user's modules are never touched.

Gradients. Each game's losses come from one forward through the trunk and the heads and its per-task trunk
Jacobian from one batched backward over the M tasks (``is_grads_batched``), which also gives each head's own
gradient: the hand-written multi-task step that needs per-task trunk gradients. Games are computed one after
another (``jacobian = "closed_form"``: the suite returns losses and gradients itself). A batch of B games is
then bit for bit the B lone games on CPU, since no kernel sees another game's numbers or the batch's shape;
vectorising over the games (``torch.func.vmap``) measured slower on CPU (grouped convolutions) and changed
the last bits of float32 Jacobians with B.

Initial parameters (``init``). ``"seeded"`` (default): the game's seed decides them, drawn from the
counter-based generator (stream ``STREAM_INIT``) as PyTorch's default initialisation draws them:
``nn.Linear``, ``nn.ConvNd``, ``nn.ConvTransposeNd`` and ``nn.Bilinear`` weights and biases from
U(−1/√fan_in, 1/√fan_in), RNN/LSTM/GRU parameters from U(−1/√hidden, 1/√hidden), ``nn.Embedding`` weights from
N(0, 1) (its padding row kept); every other parameter (norm layers' scales and shifts, a module's own
``nn.Parameter``) starts at the module's given value in every game. ``"module"``: every game starts at the
module's given parameters; the seed decides only the batches. Either way the same seed gives the same game,
and game b of a batch the lone game.

The head Nash gap (Definition 1). A head that is an ``nn.Linear`` on 2-D features with an MSE loss has an
exact best response (least squares); with a cross-entropy loss, a converged convex solve (L-BFGS, as on
``digits``: a lower bound when the classes are separable, where the infimum is not attained). Any other head's
best response is approximate (L-BFGS warm-started at the current head): its gap is a labelled lower bound
(``describe()["best_response"]``).

Modules are copied at construction (the suite owns its copies, in ``eval()`` mode: a game draws no randomness
from torch's global generator, so dropout is off and batch norm uses its running statistics). Parameters with
``requires_grad=False`` and buffers are constants of the game.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from mtg_env._args import int_arg
from mtg_env.rng import STREAM_BATCH, STREAM_INIT, GameRNG
from mtg_env.suites._module_checks import (
    _check_device_arg,
    _check_forward,
    _check_metrics,
    _check_no_sharing,
    _check_parameters,
    _named_heads,
    _read_data,
    _same_tasks,
)
from mtg_env.suites._module_heads import _approximate_head, _linear_head_solve, _loss_kind, _loss_label, _solver
from mtg_env.suites._module_params import (
    _KEEP,
    _NORMAL,
    _UNIFORM,
    _Bound,
    _flat_values,
    _init_table,
    _Layout,
    _layout,
    _own_copy,
)
from mtg_env.suites.base import Split, TaskSpec, TaskSuite, resolve_device

#: ``loss(outputs, targets) -> scalar``: a task's loss on a batch (mean over the batch, as the model trains on).
LossFn = Callable[[Any, Tensor], Tensor]
#: ``metric(outputs, targets) -> number``: a held-out metric of a task.
MetricFn = Callable[[Any, Tensor], Any]
Init = Literal["seeded", "module"]


class ModuleBatch(NamedTuple):
    """A batch of the game: the data and, per game, which examples it draws (``None``: all of them)."""

    inputs: Tensor
    """``[N, ...]`` the data set's inputs."""
    targets: tuple[Tensor, ...]
    """One ``[N, ...]`` tensor per task, in task order."""
    rows: Tensor | None = None
    """``[B, batch_size]`` the examples of each game's batch; ``None``: every game sees every example."""

    def game(self, b: int) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Game ``b``'s inputs and targets (gathered game by game: a batch of B games holds B index rows, not B
        copies of the examples)."""
        if self.rows is None:
            return self.inputs, self.targets
        rows = self.rows[b]
        return self.inputs[rows], tuple(t[rows] for t in self.targets)


class ModuleSuite(TaskSuite):
    """A user's multi-task model as a game: a shared ``trunk``, a head and a loss per task, and data.

    Args:
        trunk: The shared encoder, called as ``trunk(inputs)``.
        heads: One module per task, called on the trunk's output; tasks are named after the keys (a mapping, or
            ``(name, module)`` pairs).
        losses: One ``loss(outputs, targets) -> scalar`` per task (``nn.CrossEntropyLoss()``, ``F.mse_loss``, ...).
        train: The training data, ``(inputs, {task: targets})`` with one row per example, or an iterable of such
            batches (a ``DataLoader``), read once at construction and concatenated (its order is not used: the
            game draws its own batches).
        eval: Held-out data in the same form, for :meth:`evaluate` and ``split="eval"`` metrics (default: the
            training data, and :meth:`evaluate` then reports ``train_*`` metrics).
        batch_size: Examples per step, drawn uniformly with replacement from the training data by each game's
            generator (stream ``STREAM_BATCH``; one batch shared by the tasks). ``None``: the whole training set
            every step.
        metrics: Extra held-out metrics, ``{task: {name: metric(outputs, targets)}}``. Built in: ``test_accuracy``
            (and ``test_loss``) for classification tasks (cross-entropy, or integer targets), ``test_mse`` for MSE
            tasks, ``test_loss`` for others.
        init: ``"seeded"`` (the game's seed draws the layers' parameters as PyTorch's default initialisation does)
            or ``"module"`` (every game starts at the module's parameters); see the module docstring.
        name: The suite's name (the env is ``mtg_<name>_v6``).
        device: Where the game runs; default the model's device. A model on another device is refused.
        dtype: ``"float32"`` or ``"float64"``; default the model's. The suite's copies of the modules are cast to it.

    Raises:
        TypeError, ValueError: naming the argument: non-floating parameters, a head that does not fit the
            trunk's output (tried on the first training examples), a loss that does not return a scalar, data of
            mismatched lengths or tasks, no tasks or a task named twice, a model on a device other than ``device``.
    """

    name = "module"
    jacobian = "closed_form"  # the suite's own per-game autograd: one forward, one batched backward per game

    def __init__(
        self,
        trunk: nn.Module,
        heads: Mapping[str, nn.Module] | Iterable[tuple[str, nn.Module]],
        losses: Mapping[str, LossFn],
        train: Any,
        *,
        eval: Any = None,
        batch_size: int | None = None,
        metrics: Mapping[str, Mapping[str, MetricFn]] | None = None,
        init: Init = "seeded",
        name: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ):
        # ---------------------------------------------------------------- the model, checked before any copy
        if not isinstance(trunk, nn.Module):
            raise TypeError(f"trunk must be a torch.nn.Module, got {type(trunk).__name__}")
        head_items = _named_heads(heads)
        tasks = tuple(n for n, _ in head_items)
        if not isinstance(losses, Mapping):
            raise TypeError(f"losses must be a dict {{task: loss(outputs, targets)}}, got {type(losses).__name__}")
        _same_tasks("losses", losses, tasks)
        for task in tasks:
            if not callable(losses[task]):
                raise TypeError(f"losses[{task!r}] must be callable as loss(outputs, targets), got "
                                f"{type(losses[task]).__name__}")  # fmt: skip
        if metrics is not None:
            _check_metrics(metrics, tasks)
        if init not in ("seeded", "module"):
            raise ValueError(f"init must be 'seeded' or 'module', got {init!r}")
        if name is not None:
            if not isinstance(name, str) or not re.fullmatch(r"\w[\w.-]*", name):
                raise ValueError(f"name must be a non-empty string of letters, digits, '_', '.', '-', got {name!r}")
            self.name = name
        if batch_size is not None:
            int_arg("batch_size", batch_size, low=1, hint="examples per step, or None for the whole training set")
        modules = {"trunk": trunk, **{f"heads[{t!r}]": m for t, m in head_items}}
        model_device, model_dtype = _check_parameters(modules, cast=dtype is not None)
        _check_no_sharing(modules)
        if device is None:
            device = model_device or "cpu"
        else:
            _check_device_arg(device)
            if model_device is not None and resolve_device(device) != resolve_device(model_device):
                raise ValueError(
                    f"device={str(device)!r}, but the model's parameters are on {model_device}: move the model "
                    f"(model.to({str(device)!r})) or pass device={str(model_device)!r}"
                )
        if dtype is None:
            if model_dtype is not None and model_dtype not in (torch.float32, torch.float64):
                raise ValueError(f"dtype: the model's parameters are {model_dtype}; pass dtype='float32' or 'float64'")
            dtype = model_dtype or torch.float32
        super().__init__(device=device, dtype=dtype)
        self.init: Init = init
        self.batch_size = batch_size

        # ----------------------------------------------------------------------------- the data, checked
        x_train, y_train = _read_data("train", train, tasks)
        n_train = x_train.shape[0]
        if batch_size is not None and batch_size > n_train:
            raise ValueError(
                f"batch_size must be in [1, {n_train}] (the training set's size) or None, got {batch_size}"
            )
        eval_data = None if eval is None else _read_data("eval", eval, tasks)

        # --------------------------------------------------- the suite's own copies (the user's stay as they are)
        self._trunk = _own_copy(trunk, self.device, self.dtype)
        self._heads = tuple(_own_copy(m, self.device, self.dtype) for _, m in head_items)
        self._losses = tuple(losses[t] for t in tasks)
        self._metrics = {t: dict(metrics.get(t, {})) for t in tasks} if metrics is not None else {t: {} for t in tasks}
        self._trunk_layout = _layout(self._trunk)
        self._head_layouts = tuple(_layout(h) for h in self._heads)
        self._trunk_call = _Bound(self._trunk, self._trunk_layout)
        self._head_calls = tuple(_Bound(h, lay) for h, lay in zip(self._heads, self._head_layouts, strict=True))

        def put(t: Tensor) -> Tensor:
            return t.to(self.device, self.dtype if t.is_floating_point() else t.dtype)

        self._train = ModuleBatch(put(x_train), tuple(put(y_train[t]) for t in tasks))
        self._eval = (
            None if eval_data is None else ModuleBatch(put(eval_data[0]), tuple(put(eval_data[1][t]) for t in tasks))
        )

        # ------------------------------------------------ one forward on the first examples: heads and losses fit
        outputs = _check_forward(self, tasks)
        self._kinds = tuple(_loss_kind(fn) for fn in self._losses)
        specs = []
        for m, task in enumerate(tasks):
            out, target = outputs[m], self._train.targets[m]
            classification = self._kinds[m] == "cross_entropy" or (
                not target.is_floating_point() and isinstance(out, Tensor) and out.dim() >= 2 and out.shape[1] > 1
            )
            specs.append(
                TaskSpec(
                    name=task,
                    kind="classification" if classification else "regression",
                    head_size=self._head_layouts[m].size,
                    num_classes=int(out.shape[1]) if classification else None,
                )
            )
        self.tasks = tuple(specs)
        self.trunk_size = self._trunk_layout.size
        if self.trunk_size == 0:
            raise ValueError("trunk has no trainable parameters: the game's shared trunk Ψ would be empty")

        # --------------------------------------------------------------- initialisation, best responses
        self._base = torch.cat(
            [_flat_values(module, layout, self.device) for module, layout in self._modules_and_layouts()]
        )
        kinds, scales = zip(
            *(_init_table(module, layout) for module, layout in self._modules_and_layouts()), strict=True
        )
        self._init_kind = torch.cat(kinds).to(self.device)
        self._init_scale = torch.cat(scales).to(self.device)
        self._solvers = tuple(_solver(self, m) for m in range(len(tasks)))
        self.exact_best_response = all(s == "least squares" for s in self._solvers)
        self._eye = torch.eye(len(tasks), dtype=self.dtype, device=self.device)
        self._head_task = self.head_task_index()
        self._head_cols = torch.arange(self.head_offsets[-1], device=self.device)
        self._fingerprint: str | None = None
        self._n_train = torch.tensor(x_train.shape[0], device=self.device)

    def _modules_and_layouts(self) -> list[tuple[nn.Module, _Layout]]:
        """The trunk and each head with its layout, in the order of the flat ``[trunk, heads]`` vector."""
        return [(self._trunk, self._trunk_layout), *zip(self._heads, self._head_layouts, strict=True)]

    def init_params(self, rng: GameRNG) -> tuple[Tensor, Tensor]:
        bsz = rng.seeds.shape[0]
        base = self._base.unsqueeze(0).expand(bsz, -1)
        if self.init == "module":
            params = base.clone()
        else:
            u = rng.uniform(STREAM_INIT, self._base.numel()).to(self.device)
            uniform = (2 * u - 1) * self._init_scale
            # N(0, 1) by the inverse CDF of the same uniform; clamped off ±1, where erfinv is infinite.
            bound = 1.0 - 2.0**-52
            normal = math.sqrt(2.0) * torch.erfinv((2 * u - 1).clamp(-bound, bound)) * self._init_scale
            kind = self._init_kind
            params = torch.where(kind == _UNIFORM, uniform, torch.where(kind == _NORMAL, normal, base))
        params = params.to(self.dtype)
        return params[:, self.trunk_size :], params[:, : self.trunk_size]

    def sample_batch(self, rng: GameRNG) -> ModuleBatch:
        if self.batch_size is None:
            return self._train
        # Uniform with replacement (i.i.d. examples, as SGD's analysis draws them): batch_size draws per game, so a
        # step costs the same on 1000 examples as on a million (a subset without replacement needs a key per example).
        idx = rng.integers(STREAM_BATCH, self.batch_size, self._n_train)
        return self._train._replace(rows=idx)

    def train_batch(self) -> ModuleBatch:
        return self._train

    def eval_batch(self) -> ModuleBatch:
        return self._train if self._eval is None else self._eval

    def features(self, trunk: Tensor, inputs: Tensor) -> Any:
        """The trunk's output for ``inputs`` with one game's flat trunk ``[n]``."""
        return self._trunk_call(trunk, inputs)

    def outputs(self, heads: Tensor, trunk: Tensor, inputs: Tensor) -> list[Any]:
        """Each task's head output for ``inputs``, with one game's flat ``heads [H]`` and ``trunk [n]``."""
        feats = self.features(trunk, inputs)
        return [self._head_call(m, part, feats) for m, part in enumerate(heads.split(self.head_sizes))]

    def _head_call(self, m: int, flat: Tensor, feats: Any) -> Any:
        return self._head_calls[m](flat, feats)

    def _game_losses(self, heads: Tensor, trunk: Tensor, inputs: Tensor, targets: Sequence[Tensor]) -> Tensor:
        """``[M]`` the task losses of one game: one forward through the trunk, one through each head."""
        outs = self.outputs(heads, trunk, inputs)
        return torch.stack([fn(out, y).reshape(()) for fn, out, y in zip(self._losses, outs, targets, strict=True)])

    def batched_losses(self, heads: Tensor, trunk: Tensor, batch: ModuleBatch) -> Tensor:
        return torch.stack([self._game_losses(heads[b], trunk[b], *batch.game(b)) for b in range(heads.shape[0])])

    def closed_form(self, heads: Tensor, trunk: Tensor, batch: ModuleBatch) -> tuple[Tensor, Tensor, Tensor]:
        """Per game: the losses from one forward, then the gradient of every task's loss with respect to the trunk
        and the heads from one batched backward over the tasks (row m of the head part is zero outside head m, so
        each head's own gradient is its slice of its own row). Differentiable in ``heads`` and ``trunk`` when they
        require grad (gradients then keep their graph too)."""
        differentiable = torch.is_grad_enabled() and (heads.requires_grad or trunk.requires_grad)
        bsz, m = heads.shape[0], self.num_tasks
        if not differentiable:  # filled game by game: no list of B results beside their stacked copy
            losses = torch.empty(bsz, m, dtype=self.dtype, device=self.device)
            head_grads = torch.empty_like(heads)
            jacobian = torch.empty(bsz, m, self.trunk_size, dtype=self.dtype, device=self.device)
        rows_l, rows_h, rows_j = [], [], []
        with torch.enable_grad():
            for b in range(bsz):
                if differentiable:
                    h, t = heads[b], trunk[b]
                else:
                    h, t = heads[b].detach().requires_grad_(True), trunk[b].detach().requires_grad_(True)
                game_losses = self._game_losses(h, t, *batch.game(b))
                jac, rows = torch.autograd.grad(
                    game_losses,
                    (t, h),
                    grad_outputs=self._eye,
                    is_grads_batched=True,
                    create_graph=differentiable,
                    allow_unused=True,
                    materialize_grads=True,
                )
                own = rows[self._head_task, self._head_cols]  # head m's gradient: its slice of row m
                if differentiable:
                    rows_l.append(game_losses)
                    rows_h.append(own)
                    rows_j.append(jac)
                else:
                    losses[b], head_grads[b], jacobian[b] = game_losses.detach(), own, jac
        if differentiable:
            return torch.stack(rows_l), torch.stack(rows_h), torch.stack(rows_j)
        return losses, head_grads, jacobian

    # ---------------------------------------------------------------------------------- metrics
    @torch.no_grad()
    def evaluate(self, heads: Tensor, trunk: Tensor) -> dict[str, dict[str, float]]:
        """Per task on the held-out data: ``test_accuracy`` and ``test_loss`` (classification), ``test_mse`` (an MSE
        loss) or ``test_loss``, and the user's ``metrics``; without ``eval`` data, the same on the training data,
        named ``train_*``."""
        batch = self.eval_batch()
        prefix = "train_" if self._eval is None else "test_"
        outs = self.outputs(heads.detach(), trunk.detach(), batch.inputs)
        result: dict[str, dict[str, float]] = {}
        for m, (task, out, target) in enumerate(zip(self.tasks, outs, batch.targets, strict=True)):
            row: dict[str, float] = {}
            loss = float(self._losses[m](out, target))
            if self._kinds[m] == "mse":
                row[prefix + "mse"] = loss
            else:
                if task.kind == "classification" and not target.is_floating_point():
                    row[prefix + "accuracy"] = float((out.argmax(1) == target).to(torch.float64).mean())
                row[prefix + "loss"] = loss
            for metric, fn in self._metrics[task.name].items():
                row[metric] = float(fn(out, target))
            result[task.name] = row
        return result

    def best_response(self, heads: Tensor, trunk: Tensor, split: Split = "train") -> Tensor:
        """Each head's best response to the frozen trunk on the whole ``split`` objective (see the module
        docstring: least squares, a converged convex solve, or an approximate one)."""
        return self._solve_heads(heads, trunk, split)[0].to(heads.dtype)

    def nash_gaps(self, heads: Tensor, trunk: Tensor, split: Split = "train") -> Tensor:
        """Head Nash gap per task on the ``split`` objective, in float64: exact for least-squares heads, a lower
        bound for the others (``describe()["best_response"]`` says which)."""
        return self._solve_heads(heads, trunk, split)[1]

    def _solve_heads(self, heads: Tensor, trunk: Tensor, split: Split) -> tuple[Tensor, Tensor]:
        batch = self.batch_for(split)
        with torch.no_grad():
            feats = self.features(trunk.detach(), batch.inputs)
        best, gaps = [], []
        for m, part in enumerate(heads.detach().split(self.head_sizes)):
            solver, target = self._solvers[m], batch.targets[m]
            if solver == "approximate":
                sol, gap = _approximate_head(self, m, part, feats, target)
            else:
                sol, gap = _linear_head_solve(self._heads[m], solver, part, feats.detach().to(torch.float64), target)
            best.append(sol.to(torch.float64))
            gaps.append(gap.to(torch.float64).clamp_min(0.0))
        return torch.cat(best), torch.stack(gaps)

    def describe(self) -> dict[str, Any]:
        """The suite's configuration: tasks, modules, losses, sizes, how each best response is found, and a
        fingerprint (sha256) of everything the game's numbers depend on (the modules' structure and the values
        they start from, buffers and data), so a checkpoint only loads into the same game."""
        return {
            "suite": self.name,
            "tasks": list(self.task_names),
            "trunk": type(self._trunk).__name__,
            "heads": {t.name: type(h).__name__ for t, h in zip(self.tasks, self._heads, strict=True)},
            "losses": {t.name: _loss_label(fn) for t, fn in zip(self.tasks, self._losses, strict=True)},
            "trunk_size": self.trunk_size,
            "head_sizes": list(self.head_sizes),
            "init": self.init,
            "batch_size": self.batch_size,
            "n_train": int(self._train.inputs.shape[0]),
            "n_eval": None if self._eval is None else int(self._eval.inputs.shape[0]),
            "best_response": {t.name: s for t, s in zip(self.tasks, self._solvers, strict=True)},
            "fingerprint": self.fingerprint(),
        }

    def fingerprint(self) -> str:
        """sha256 of the modules (structure, parameter names and shapes, starting values, buffers) and the data."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            structure = {
                "trunk": repr(self._trunk),
                "heads": [repr(h) for h in self._heads],
                "layouts": [[list(lay.names), [list(s) for s in lay.shapes]] for lay in
                            (self._trunk_layout, *self._head_layouts)],
                "dtype": str(self.dtype),
                "init": self.init,
            }  # fmt: skip
            digest.update(json.dumps(structure, sort_keys=True).encode())
            # The starting values the game can use: all of them with init="module", else the kept ones only.
            used = self._base if self.init == "module" else self._base[self._init_kind.to(self._base.device) == _KEEP]
            tensors = [used, self._init_kind, self._init_scale]
            for module in (self._trunk, *self._heads):
                tensors += [b for _, b in module.named_buffers()]
                tensors += [p for p in module.parameters() if not p.requires_grad]
            for batch in (self._train, self._eval):
                if batch is not None:
                    tensors += [batch.inputs, *batch.targets]
            for t in tensors:
                digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
                digest.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def __repr__(self) -> str:
        return (
            f"ModuleSuite(tasks={self.task_names!r}, trunk_size={self.trunk_size}, head_sizes={self.head_sizes}, "
            f"batch_size={self.batch_size}, init={self.init!r}, device={str(self.device)!r}, dtype={self.dtype})"
        )
