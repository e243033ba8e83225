"""A :class:`~mtg_env.suites.module.ModuleSuite`'s arguments checked: the heads, losses, metrics, parameters,
device and data, and one forward on the first examples."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from mtg_env.suites.module import ModuleSuite


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


def _check_forward(suite: ModuleSuite, tasks: tuple[str, ...]) -> list[Any]:
    """Run the model on the first (up to two) training examples; each head must accept the trunk's output
    and each loss return a scalar. Returns each head's output."""
    x = suite._train.inputs[:2]
    try:
        with torch.no_grad():
            feats = suite._trunk(x)
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
                out = suite._heads[m](feats)
        except Exception as err:
            raise ValueError(
                f"heads[{task!r}] does not fit the trunk's output: trunk(inputs[:{len(x)}]) has shape {shown}, "
                f"and the head raised {type(err).__name__}: {_one_line(err)}"
            ) from None
        target = suite._train.targets[m][: len(x)]
        try:
            with warnings.catch_warnings(record=True) as caught, torch.enable_grad():
                warnings.simplefilter("always")
                value = suite._losses[m](out, target)
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
        for metric, fn in suite._metrics[task].items():
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
