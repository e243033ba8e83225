"""The layout of observations and actions, and their units: the one place that says what each number means.

One task's observation:

- ``step_size`` mode: the :data:`FEATURES` alone, ``[NUM_FEATURES]``;
- ``update`` mode: ``concat[∇_Θm ℓ_m (its head slot: h_m, or the largest head with zeros after it), ∇_Ψ ℓ_m,
  features]``, ``[slot + n + NUM_FEATURES]``. Gradients are bounded by the dtype's largest finite value
  (:func:`largest`); features by :func:`feature_bounds`.

One task's action:

- ``step_size`` mode: ``(head step, trunk step)`` as natural-log step sizes in ``log_step_range``
  (``step_size_units="log"``), or in [−1, 1] mapped affinely onto them (``"unit"``, the default):
  :func:`unit_to_log_steps` and its inverse :func:`log_steps_to_unit`;
- ``update`` mode: ``concat[head update (its slot), trunk proposal]``, in units of each coordinate's reference
  descent step (``update_units="relative"``) or the update itself (``"raw"``). The per-coordinate units depend on
  the gradients the action answers, so they live in :mod:`mtg_env.engine.codec`; this module holds their Box
  (:func:`action_bounds`).

Everything here is a pure function of the options (no game needed), in numpy or torch alike where it is a map, so
the env, the vector env, the wrappers, the players and the tests all read the layout from here.
"""

from __future__ import annotations

import math
from typing import Literal, TypeVar

import numpy as np
import torch
from torch import Tensor

from mtg_env.engine.codec import UPDATE_UNITS, UPHILL

ActionMode = Literal["update", "step_size"]
ACTION_MODES: tuple[str, ...] = ("update", "step_size")
StepSizeUnits = Literal["unit", "log"]
STEP_SIZE_UNITS: tuple[str, ...] = ("unit", "log")

#: Names of the scalar features of every observation (see :func:`mtg_env.engine.features.features`).
FEATURES: tuple[str, ...] = (
    "symlog_loss",
    "symlog_loss_change",
    "symlog_head_grad_norm",
    "symlog_trunk_grad_norm",
    "cos_trunk_grad_mean_grad",
    "cos_descent_last_trunk_move",
    "progress",
    "symlog_trunk_move_norm",
)
NUM_FEATURES = len(FEATURES)

_Array = TypeVar("_Array", Tensor, np.ndarray, float)


# ------------------------------------------------------------------------------------------ observations
def observations(
    features: Tensor, head_grads: Tensor, jacobian: Tensor, padded_head_index: Tensor, max_head: int
) -> Tensor:
    """``update``-mode observations ``[B, M, max_head + n + NUM_FEATURES]`` of B games in the padded layout: each
    task's head gradient followed by zeros up to the largest head, its trunk gradient, its features; non-finite
    values (only after a divergence, or gradients beyond the float range) kept inside the Box (NaN 0, ±inf ±largest).

    Args:
        features: ``[B, M, NUM_FEATURES]``.
        head_grads: ``[B, H]`` every head's gradient, the tasks' heads concatenated.
        jacobian: ``[B, M, n]`` each task's trunk gradient.
        padded_head_index: ``[H]`` where each head coordinate sits in a flattened ``[M, max_head]`` layout
            (:attr:`mtg_env.engine.Game.padded_head_index`).
        max_head: The largest head.
    """
    bsz, m = features.shape[:2]
    heads = torch.zeros(bsz, m * max(1, max_head), dtype=features.dtype, device=features.device)
    heads[:, padded_head_index] = head_grads
    heads = heads.view(bsz, m, -1)[:, :, :max_head]
    big = largest(features.dtype)
    return torch.cat([heads, jacobian, features], dim=2).nan_to_num(nan=0.0, posinf=big, neginf=-big)


# ----------------------------------------------------------------------------------------------- checks
def check_action_mode(action_mode: object) -> None:
    """``action_mode`` is ``"update"`` or ``"step_size"``, else a ``ValueError`` naming it."""
    if action_mode not in ACTION_MODES:
        raise ValueError(f"action_mode must be 'update' or 'step_size', got {action_mode!r}")


def check_update_units(update_units: object) -> None:
    """``update_units`` is ``"relative"`` or ``"raw"``, else a ``ValueError`` naming it."""
    if update_units not in UPDATE_UNITS:
        raise ValueError(
            f"update_units must be 'relative' (units of a reference descent step) or 'raw' (the update itself, "
            f"v5), got {update_units!r}"
        )


def check_step_size_units(step_size_units: object) -> None:
    """``step_size_units`` is ``"unit"`` or ``"log"``, else a ``ValueError`` naming it."""
    if step_size_units not in STEP_SIZE_UNITS:
        raise ValueError(f"step_size_units must be 'unit' ([-1, 1] actions) or 'log', got {step_size_units!r}")


# --------------------------------------------------------------------------------------------- bounds
def largest(dtype: torch.dtype) -> float:
    """The dtype's largest finite value: the bound of every gradient in an observation."""
    return float(torch.finfo(dtype).max)


def feature_bounds(dtype: torch.dtype, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """``(low, high)`` ``[NUM_FEATURES]`` of the features in ``dtype``: symlog values within ±symlog(largest)
    (norms ≥ 0), cosines in [−1, 1], progress in [0, 1]."""
    s_max = math.log1p(largest(dtype))
    low = torch.tensor([-s_max, -s_max, 0.0, 0.0, -1.0, -1.0, 0.0, 0.0], dtype=dtype, device=device)
    high = torch.tensor([s_max, s_max, s_max, s_max, 1.0, 1.0, 1.0, s_max], dtype=dtype, device=device)
    return low, high


def observation_size(action_mode: ActionMode, head_slot: int, trunk_size: int) -> int:
    """Length of one task's observation (``head_slot``: the length of its head part, padded or not)."""
    return NUM_FEATURES if action_mode == "step_size" else head_slot + trunk_size + NUM_FEATURES


def observation_bounds(
    action_mode: ActionMode,
    head_slot: int,
    trunk_size: int,
    dtype: torch.dtype,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """``(low, high)`` of one task's observation (see the module docstring), ``[observation_size]`` in ``dtype``."""
    low, high = feature_bounds(dtype, device)
    if action_mode == "step_size":
        return low, high
    grad = torch.full((head_slot + trunk_size,), largest(dtype), dtype=dtype, device=device)
    return torch.cat([-grad, low]), torch.cat([grad, high])


def action_size(action_mode: ActionMode, head_slot: int, trunk_size: int) -> int:
    """Length of one task's action: 2 log step sizes, or its head slot plus the trunk."""
    return 2 if action_mode == "step_size" else head_slot + trunk_size


def action_bounds(
    action_mode: ActionMode,
    *,
    update_units: str = "relative",
    max_update: float = 1.0,
    step_size_units: str = "unit",
    log_step_range: tuple[float, float] = (-5.0, -1.0),
) -> tuple[float, float]:
    """``(low, high)`` of every coordinate of an action (each Box has these bounds on every coordinate).

    ``update`` mode: ``[UPHILL · max_update, max_update]`` in relative units (uphill at most a quarter as far),
    ``[−max_update, max_update]`` raw (``max_update`` may be ``inf``: no bound). ``step_size`` mode: [−1, 1] in
    unit actions, ``log_step_range`` in log units.
    """
    if action_mode == "update":
        return (UPHILL * max_update if update_units == "relative" else -max_update), max_update
    if step_size_units == "log":
        return float(log_step_range[0]), float(log_step_range[1])
    return -1.0, 1.0


# ------------------------------------------------------------------------------------------ unit maps
def from_unit(unit: _Array, low: _Array | float, high: _Array | float) -> _Array:
    """[−1, 1] onto [low, high] affinely (−1 is low, 1 is high), for tensors, arrays or floats alike."""
    return low + (unit + 1.0) * (0.5 * (high - low))  # type: ignore[operator,return-value]


def to_unit(value: _Array, low: _Array | float, high: _Array | float) -> _Array:
    """The inverse of :func:`from_unit`: [low, high] onto [−1, 1] (not clipped: round-off may leave it a hair
    outside at the ends)."""
    return 2.0 * (value - low) / (high - low) - 1.0  # type: ignore[operator,return-value]


def unit_to_log_steps(actions: _Array, log_step_range: tuple[float, float]) -> _Array:
    """``step_size`` actions in [−1, 1] as natural-log step sizes in ``log_step_range`` = (lo, hi)."""
    lo, hi = log_step_range
    return from_unit(actions, lo, hi)


def log_steps_to_unit(log_steps: _Array, log_step_range: tuple[float, float]) -> _Array:
    """Natural-log step sizes as ``step_size`` actions in [−1, 1] (the inverse of :func:`unit_to_log_steps`)."""
    lo, hi = log_step_range
    return to_unit(log_steps, lo, hi)
