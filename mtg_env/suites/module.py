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

import copy
import hashlib
import json
import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtg_env._args import int_arg
from mtg_env.rng import STREAM_BATCH, STREAM_INIT, GameRNG
from mtg_env.suites.base import Split, TaskSpec, TaskSuite, least_squares, resolve_device

#: ``loss(outputs, targets) -> scalar``: a task's loss on a batch (mean over the batch, as the model trains on).
LossFn = Callable[[Any, Tensor], Tensor]
#: ``metric(outputs, targets) -> number``: a held-out metric of a task.
MetricFn = Callable[[Any, Tensor], Any]
Init = Literal["seeded", "module"]

_KEEP, _UNIFORM, _NORMAL = 0, 1, 2


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


@dataclass(frozen=True)
class _Layout:
    """The trainable parameters of one module as one flat vector: names, shapes and sizes in order."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    sizes: tuple[int, ...]

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def views(self, flat: Tensor) -> list[Tensor]:
        """Views of the flat vector ``flat [size]`` shaped as the parameters (no copy; gradients flow to ``flat``)."""
        return [p.view(s) for p, s in zip(flat.split(self.sizes), self.shapes, strict=True)]


class _Bound:
    """A module called with its trainable parameters replaced by views of a flat vector, as
    :func:`torch.func.functional_call` calls it (tied parameters included), without that function's per-call
    bookkeeping (0.08 ms a call here, a sixth of a MultiDigits game-step's overhead): the slots each parameter
    occupies are found once, filled for the call and given their parameters back after it."""

    def __init__(self, module: nn.Module, layout: _Layout):
        self.module, self.layout = module, layout
        params = dict(module.named_parameters())
        position = {id(params[n]): i for i, n in enumerate(layout.names)}
        self.slots: list[tuple[nn.Module, str, int]] = []
        for sub in module.modules():
            for attr, p in sub._parameters.items():
                if p is not None and id(p) in position:
                    self.slots.append((sub, attr, position[id(p)]))

    def __call__(self, flat: Tensor, *args: Any) -> Any:
        views = self.layout.views(flat)
        saved = [sub._parameters[attr] for sub, attr, _ in self.slots]
        try:
            for sub, attr, i in self.slots:
                sub._parameters[attr] = views[i]  # type: ignore[assignment]  # a tensor where a Parameter was
            return self.module(*args)
        finally:
            for (sub, attr, _), p in zip(self.slots, saved, strict=True):
                sub._parameters[attr] = p


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
        outputs = self._check_forward(tasks)
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
        self._solvers = tuple(self._solver(m) for m in range(len(tasks)))
        self.exact_best_response = all(s == "least squares" for s in self._solvers)
        self._eye = torch.eye(len(tasks), dtype=self.dtype, device=self.device)
        self._head_task = self.head_task_index()
        self._head_cols = torch.arange(self.head_offsets[-1], device=self.device)
        self._fingerprint: str | None = None
        self._n_train = torch.tensor(x_train.shape[0], device=self.device)

    def _modules_and_layouts(self) -> list[tuple[nn.Module, _Layout]]:
        """The trunk and each head with its layout, in the order of the flat ``[trunk, heads]`` vector."""
        return [(self._trunk, self._trunk_layout), *zip(self._heads, self._head_layouts, strict=True)]

    # ---------------------------------------------------------------------------------- checks
    def _check_forward(self, tasks: tuple[str, ...]) -> list[Any]:
        """Run the model on the first (up to two) training examples; each head must accept the trunk's output
        and each loss return a scalar. Returns each head's output."""
        x = self._train.inputs[:2]
        try:
            with torch.no_grad():
                feats = self._trunk(x)
        except Exception as err:
            raise ValueError(
                f"trunk: trunk(inputs[:{len(x)}]) failed on the training inputs of shape {tuple(x.shape)} "
                f"({type(err).__name__}: {_one_line(err)})"
            ) from None
        shown = tuple(feats.shape) if isinstance(feats, Tensor) else type(feats).__name__
        outputs = []
        for m, task in enumerate(tasks):
            try:
                with torch.no_grad():
                    out = self._heads[m](feats)
            except Exception as err:
                raise ValueError(
                    f"heads[{task!r}] does not fit the trunk's output: trunk(inputs[:{len(x)}]) has shape {shown}, "
                    f"and the head raised {type(err).__name__}: {_one_line(err)}"
                ) from None
            target = self._train.targets[m][: len(x)]
            try:
                with warnings.catch_warnings(record=True) as caught, torch.enable_grad():
                    warnings.simplefilter("always")
                    value = self._losses[m](out, target)
            except Exception as err:
                raise ValueError(
                    f"losses[{task!r}] failed on heads[{task!r}]'s output "
                    f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__} and targets of shape "
                    f"{tuple(target.shape)} ({type(err).__name__}: {_one_line(err)})"
                ) from None
            if caught:  # e.g. MSE broadcasting outputs [N, 1] against targets [N]: a silently wrong loss
                raise ValueError(
                    f"losses[{task!r}] warned on heads[{task!r}]'s output and its targets of shape "
                    f"{tuple(target.shape)}: {' '.join(str(caught[0].message).split())}"
                )
            if not isinstance(value, Tensor) or value.numel() != 1 or not value.is_floating_point():
                got = f"shape {tuple(value.shape)} {value.dtype}" if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(
                    f"losses[{task!r}] must return a floating scalar tensor (the mean over the batch, "
                    f"reduction='mean'), got {got} on {len(x)} examples"
                )
            for metric, fn in self._metrics[task].items():
                try:
                    number = fn(out, target)
                    float(number)
                except Exception as err:
                    raise ValueError(
                        f"metrics[{task!r}][{metric!r}] must return a number for (outputs, targets), got "
                        f"{type(err).__name__}: {_one_line(err)}"
                    ) from None
            outputs.append(out)
        return outputs

    # ------------------------------------------------------------------------------ the game
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

    def _solver(self, m: int) -> str:
        """How head ``m``'s best response is found: ``least squares`` (exact), ``convex`` (a converged L-BFGS
        solve of a convex problem) or ``approximate`` (L-BFGS on a possibly non-convex one: a lower bound)."""
        head, kind = self._heads[m], self._kinds[m]
        with torch.no_grad():
            feats = self._trunk(self._train.inputs[:2])
        if type(head) is not nn.Linear or not isinstance(feats, Tensor) or feats.dim() != 2:
            return "approximate"
        target = self._train.targets[m]
        if kind == "mse" and target.is_floating_point() and tuple(target.shape[1:]) == (head.out_features,):
            return "least squares"
        if kind == "cross_entropy" and not target.is_floating_point() and target.dim() == 1:
            return "convex"
        return "approximate"

    def _solve_heads(self, heads: Tensor, trunk: Tensor, split: Split) -> tuple[Tensor, Tensor]:
        batch = self.batch_for(split)
        with torch.no_grad():
            feats = self.features(trunk.detach(), batch.inputs)
        best, gaps = [], []
        for m, part in enumerate(heads.detach().split(self.head_sizes)):
            solver, target = self._solvers[m], batch.targets[m]
            if solver == "approximate":
                sol, gap = self._approximate_head(m, part, feats, target)
            else:
                sol, gap = _linear_head_solve(self._heads[m], solver, part, feats.detach().to(torch.float64), target)
            best.append(sol.to(torch.float64))
            gaps.append(gap.to(torch.float64).clamp_min(0.0))
        return torch.cat(best), torch.stack(gaps)

    def _approximate_head(self, m: int, start: Tensor, feats: Any, target: Tensor) -> tuple[Tensor, Tensor]:
        """L-BFGS on head ``m`` alone with the trunk's features frozen, warm-started at ``start``: it only ever
        lowers the loss, so the gap it finds is ≥ 0 and a lower bound of the true gap."""
        if start.numel() == 0:
            return start, torch.zeros((), dtype=torch.float64, device=start.device)
        w = start.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([w], max_iter=self.approximate_best_response_steps, line_search_fn="strong_wolfe")

        def loss_at(v: Tensor) -> Tensor:
            return self._losses[m](self._head_call(m, v, feats), target).reshape(())

        def closure() -> Tensor:
            opt.zero_grad()
            value = loss_at(w)
            value.backward()
            return value

        with torch.enable_grad():
            opt.step(closure)
        with torch.no_grad():
            before, after = loss_at(start), loss_at(w.detach())
            if not after <= before:  # a line search that wandered off (non-finite): keep the start
                return start, torch.zeros((), dtype=torch.float64, device=start.device)
            return w.detach(), (before.to(torch.float64) - after.to(torch.float64))

    # ------------------------------------------------------------------------------ description
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


# ----------------------------------------------------------------------------------------- checks
def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _named_heads(heads: Any) -> list[tuple[str, nn.Module]]:
    """``heads`` as ``(task, module)`` pairs: a non-empty mapping or sequence of pairs, names unique strings."""
    if isinstance(heads, nn.Module) and not isinstance(heads, nn.ModuleDict):
        raise TypeError("heads must be a dict {task: head module}, got a single module; name each task's head")
    if isinstance(heads, Mapping):
        items = list(heads.items())
    elif isinstance(heads, Iterable) and not isinstance(heads, (str, bytes)):
        items = list(heads)
        if not all(isinstance(i, tuple) and len(i) == 2 for i in items):
            raise TypeError("heads must be a dict {task: head module} or a list of (task, module) pairs")
    else:
        raise TypeError(f"heads must be a dict {{task: head module}}, got {type(heads).__name__}")
    if not items:
        raise ValueError("heads is empty: a game needs at least one task (one head per task)")
    seen: set[str] = set()
    for task, module in items:
        if not isinstance(task, str) or not task:
            raise TypeError(f"heads: task names must be non-empty strings, got {task!r}")
        if task in seen:
            raise ValueError(f"heads: task {task!r} is named twice; task names must be unique")
        seen.add(task)
        if not isinstance(module, nn.Module):
            raise TypeError(f"heads[{task!r}] must be a torch.nn.Module, got {type(module).__name__}")
    return items


def _same_tasks(argument: str, given: Mapping[str, Any], tasks: tuple[str, ...]) -> None:
    missing = [t for t in tasks if t not in given]
    extra = [str(k) for k in given if k not in tasks]
    if missing or extra:
        raise ValueError(
            f"{argument} must have one entry per task {list(tasks)} (the heads' keys): missing {missing}, "
            f"unknown {extra}"
        )


def _check_metrics(metrics: Any, tasks: tuple[str, ...]) -> None:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict {{task: {{name: metric(outputs, targets)}}}}, got {metrics!r}")
    unknown = [str(k) for k in metrics if k not in tasks]
    if unknown:
        raise ValueError(f"metrics names unknown tasks {unknown}; the tasks are {list(tasks)}")
    for task, table in metrics.items():
        if not isinstance(table, Mapping) or not all(isinstance(k, str) and callable(v) for k, v in table.items()):
            raise TypeError(f"metrics[{task!r}] must be a dict {{name: metric(outputs, targets)}}, got {table!r}")


def _check_parameters(modules: Mapping[str, nn.Module], cast: bool) -> tuple[torch.device | None, torch.dtype | None]:
    """Every parameter floating, every tensor on one device, and (unless ``cast``: a dtype was given) every
    parameter of one dtype; returns (device, dtype) of the first parameter."""
    devices: dict[torch.device, str] = {}
    dtypes: dict[torch.dtype, str] = {}
    for label, module in modules.items():
        for pname, p in module.named_parameters():
            if not p.is_floating_point():
                raise TypeError(
                    f"{label} parameter {pname!r} has dtype {p.dtype}: every parameter must be floating point "
                    "(keep integer state in a buffer)"
                )
            devices.setdefault(p.device, f"{label}.{pname}")
            dtypes.setdefault(p.dtype, f"{label}.{pname}")
        for bname, b in module.named_buffers():
            devices.setdefault(b.device, f"{label}.{bname}")
    if len(devices) > 1:
        where = ", ".join(f"{name} on {dev}" for dev, name in devices.items())
        raise ValueError(f"device: the model's tensors are on several devices ({where}); put them on one")
    if len(dtypes) > 1 and not cast:
        where = ", ".join(f"{name} is {dt}" for dt, name in dtypes.items())
        raise ValueError(f"dtype: the model's parameters have several dtypes ({where}); pass dtype=... to cast them")
    return next(iter(devices), None), next(iter(dtypes), None)


def _check_no_sharing(modules: Mapping[str, nn.Module]) -> None:
    """No parameter belongs to two of the trunk and the heads (a head is its task's alone, the trunk everyone's)."""
    owner: dict[int, str] = {}
    for label, module in modules.items():
        for pname, p in module.named_parameters():
            other = owner.setdefault(id(p), f"{label}.{pname}")
            if not other.startswith(label + "."):
                raise ValueError(
                    f"{label} shares parameter {pname!r} with {other}: each head must own its parameters and none "
                    "may be the trunk's (a shared layer belongs in the trunk)"
                )


def _check_device_arg(device: Any) -> None:
    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r} ({err})") from None


def _read_data(argument: str, data: Any, tasks: tuple[str, ...]) -> tuple[Tensor, dict[str, Tensor]]:
    """``(inputs, {task: targets})`` from a pair or an iterable of batches, every tensor with one row per example."""
    form = f"{argument} must be (inputs, {{task: targets}}) or an iterable of such batches (a DataLoader)"
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[1], Mapping):
        batches = [data]
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes, Tensor, Mapping)):
        batches = list(data)
        if not batches:
            raise ValueError(f"{argument} is empty: {form}")
    else:
        raise TypeError(f"{form}, got {type(data).__name__}")
    inputs: list[Tensor] = []
    targets: dict[str, list[Tensor]] = {t: [] for t in tasks}
    for i, batch in enumerate(batches):
        where = argument if len(batches) == 1 and batch is data else f"{argument} batch {i}"
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[1], Mapping)):
            raise TypeError(f"{where} must be a pair (inputs, {{task: targets}}), got {type(batch).__name__}")
        x, ys = batch
        if not isinstance(x, Tensor) or x.dim() == 0:
            raise TypeError(f"{where}: inputs must be a tensor with one row per example, got {type(x).__name__}")
        _same_tasks(f"{where}'s targets", ys, tasks)
        for task in tasks:
            y = ys[task]
            if not isinstance(y, Tensor) or y.dim() == 0:
                raise TypeError(f"{where}: targets of task {task!r} must be a tensor with one row per example")
            if y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"{where}: targets of task {task!r} have {y.shape[0]} rows, the inputs {x.shape[0]}; every "
                    "task needs one target per example"
                )
            targets[task].append(y)
        inputs.append(x)
    try:
        x_all = torch.cat(inputs) if len(inputs) > 1 else inputs[0]
        y_all = {t: torch.cat(v) if len(v) > 1 else v[0] for t, v in targets.items()}
    except RuntimeError as err:
        raise ValueError(f"{argument}: its batches do not concatenate ({_one_line(err)})") from None
    if x_all.shape[0] == 0:
        raise ValueError(f"{argument} has no examples")
    return x_all, y_all


# ------------------------------------------------------------------------------------- flattening
def _own_copy(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The suite's copy of ``module``: on ``device``, floating tensors in ``dtype``, in eval mode."""
    own = copy.deepcopy(module).to(device=device, dtype=dtype)
    own.eval()
    return own


def _layout(module: nn.Module) -> _Layout:
    items = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    return _Layout(
        tuple(n for n, _ in items), tuple(p.shape for _, p in items), tuple(int(p.numel()) for _, p in items)
    )


def _flat_values(module: nn.Module, layout: _Layout, device: torch.device) -> Tensor:
    """The module's current trainable parameters as one flat float64 vector on ``device``, in ``layout``'s order."""
    params = dict(module.named_parameters())
    parts = [params[n].detach().reshape(-1).to(torch.float64) for n in layout.names]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64, device=device)


def _init_table(module: nn.Module, layout: _Layout) -> tuple[Tensor, Tensor]:
    """Per coordinate of ``layout``: how ``init="seeded"`` draws it (keep, uniform or normal) and its scale (the
    uniform's bound, the normal's standard deviation), as PyTorch's ``reset_parameters`` of each layer would."""
    rules: dict[str, tuple[int, float]] = {}
    for prefix, sub in module.named_modules():
        own = dict(sub.named_parameters(recurse=False))
        found: dict[str, tuple[int, float]] = {}
        if isinstance(sub, (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)) and "weight" in own:
            w = own["weight"]
            fan_in = w.shape[1] * math.prod(w.shape[2:]) if isinstance(sub, nn.modules.conv._ConvNd) else w.shape[1]
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            found = {k: (_UNIFORM, bound) for k in own if k in ("weight", "bias")}
        elif isinstance(sub, nn.RNNBase):
            bound = 1.0 / math.sqrt(sub.hidden_size) if sub.hidden_size > 0 else 0.0
            found = {k: (_UNIFORM, bound) for k in own}
        elif isinstance(sub, nn.Embedding) and "weight" in own:
            found = {"weight": (_NORMAL, 1.0)}
        for k, rule in found.items():
            rules[f"{prefix}.{k}" if prefix else k] = rule
    kinds: list[Tensor] = []
    scales: list[Tensor] = []
    params = dict(module.named_parameters())
    for name, size in zip(layout.names, layout.sizes, strict=True):
        kind, scale = rules.get(name, (_KEEP, 0.0))
        kind_t = torch.full((size,), kind, dtype=torch.int8)
        owner = _owner(module, name)
        if kind == _NORMAL and isinstance(owner, nn.Embedding) and owner.padding_idx is not None:
            row = torch.zeros(params[name].shape, dtype=torch.bool)
            row[owner.padding_idx] = True
            kind_t[row.view(-1)] = _KEEP  # the padding row stays as the module has it (zeros by default)
        kinds.append(kind_t)
        scales.append(torch.full((size,), scale, dtype=torch.float64))
    if not kinds:
        return torch.zeros(0, dtype=torch.int8), torch.zeros(0, dtype=torch.float64)
    return torch.cat(kinds), torch.cat(scales)


def _owner(module: nn.Module, name: str) -> nn.Module:
    path = name.rpartition(".")[0]
    return module.get_submodule(path) if path else module


# -------------------------------------------------------------------------------- loss detection
def _loss_kind(fn: Any) -> str:
    """``"mse"`` or ``"cross_entropy"`` where ``fn`` is exactly that loss with its defaults (mean reduction, no
    weights, no label smoothing), else ``"other"``."""
    if fn is F.mse_loss or (type(fn) is nn.MSELoss and fn.reduction == "mean"):
        return "mse"
    if fn is F.cross_entropy or (
        type(fn) is nn.CrossEntropyLoss
        and fn.reduction == "mean"
        and fn.weight is None
        and fn.label_smoothing == 0.0
        and fn.ignore_index == -100
    ):
        return "cross_entropy"
    return "other"


def _loss_label(fn: Any) -> str:
    """A stable name of a loss (no memory address): ``CrossEntropyLoss()``, ``torch.nn.functional.mse_loss``."""
    if isinstance(fn, nn.Module):
        return repr(fn)
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else str(name)


# ------------------------------------------------------------------------------- linear heads' solves
def _linear_head_solve(
    head: nn.Module, solver: str, start: Tensor, feats: Tensor, target: Tensor
) -> tuple[Tensor, Tensor]:
    """Best response and gap of an ``nn.Linear`` head on frozen float64 features: least squares (MSE), or
    multinomial logistic regression by L-BFGS in standardised coordinates (cross-entropy), as on ``digits``."""
    assert isinstance(head, nn.Linear)
    out_f, in_f, bias = head.out_features, head.in_features, head.bias is not None
    w0 = start.detach().to(torch.float64)
    weight0 = w0[: out_f * in_f].view(out_f, in_f)
    bias0 = w0[out_f * in_f :] if bias else None
    ones = torch.ones_like(feats[:, :1])
    design = torch.cat([feats, ones], dim=1) if bias else feats
    current = torch.cat([weight0, bias0.unsqueeze(1)], dim=1) if bias0 is not None else weight0  # [out, in(+1)]

    def flat(w: Tensor) -> Tensor:  # [out, in(+1)] back to the head's layout: weight, then bias
        return torch.cat([w[:, :in_f].reshape(-1), w[:, in_f]]) if bias else w.reshape(-1)

    if solver == "least squares":
        y = target.detach().to(torch.float64)
        sol = least_squares(design, y).T  # [out, in(+1)]
        gap = F.mse_loss(design @ current.T, y) - F.mse_loss(design @ sol.T, y)
        return flat(sol), gap
    labels = target.detach()
    mu, sd = feats.mean(0), feats.std(0) if feats.shape[0] > 1 else torch.ones_like(feats[0])
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    if not bias:
        mu = torch.zeros_like(mu)  # without a bias the affine shift is not available: scale only
    std_design = torch.cat([(feats - mu) / sd, ones], dim=1) if bias else feats / sd
    w_std = current.clone()
    w_std[:, :in_f] = current[:, :in_f] * sd
    if bias:
        w_std[:, in_f] = current[:, in_f] + current[:, :in_f] @ mu
    w = w_std.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [w], lr=1.0, max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-14, history_size=20,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(std_design @ w.T, labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_std = w.detach()
    raw = w_std.clone()
    raw[:, :in_f] = w_std[:, :in_f] / sd
    if bias:
        raw[:, in_f] = w_std[:, in_f] - raw[:, :in_f] @ mu
    start_loss = F.cross_entropy(design @ current.T, labels)
    end_loss = F.cross_entropy(std_design @ w_std.T, labels)
    if not end_loss <= start_loss:  # never report a worse head than the current one
        return flat(current), torch.zeros((), dtype=torch.float64, device=feats.device)
    return flat(raw), start_loss - end_loss
