"""The resumable state of a meta-training run (:mod:`agents.learned.train`): ``last.pt``, written atomically after
every iteration and refused when it holds non-finite tensors, and read back whole and checked before a resumed run
installs it; and the rule that a run writes only into a new or empty directory."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from agents.learned.checkpoint import check_state_dict, non_finite, read_torch_file, torch_bytes
from agents.learned.meta_config import MetaTrainConfig, NonFiniteMetaUpdate, _config_dict
from agents.learned.rules import Rule
from mtg_env._io import write_atomic

#: Marks a resumable meta-training checkpoint.
CHECKPOINT_FORMAT = "mtg_env.meta_train/2"


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``last.pt`` atomically (never half written), refusing NaN or infinite tensors."""
    bad = [f"{part}[{key!r}]" for part in ("rule", "best_state") for key in non_finite(payload[part])]
    bad += [f"optimizer state {key}" for key in non_finite(_optimizer_tensors(payload["optimizer"]))]
    if bad:  # pragma: no cover - the loop stops before: a guard that no NaN checkpoint is ever written
        raise NonFiniteMetaUpdate(f"refusing to write {path}: {', '.join(bad)} hold NaN or infinite values")
    write_atomic(path, torch_bytes(payload))


def _optimizer_tensors(state: Any) -> dict[str, Tensor]:
    """The tensors of an optimizer's ``state_dict()`` by ``"<param index>.<name>"``."""
    per_param = state.get("state", {}) if isinstance(state, dict) else {}
    return {f"{i}.{k}": v for i, entry in per_param.items() if isinstance(entry, dict)
            for k, v in entry.items() if isinstance(v, Tensor)}  # fmt: skip


def _check_out(out_dir: Path, resume: bool) -> None:
    """A run writes into a new or empty directory; one that holds files is a run's own, continued with ``resume``."""
    if resume or not out_dir.is_dir():
        return
    held = sorted(p.name for p in out_dir.iterdir())
    if held:
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise FileExistsError(
            f"{out_dir} is not empty (it holds {shown}); meta-training there would overwrite it: resume the run "
            "(resume=True, --resume) or pick a new directory"
        )


#: What ``last.pt`` holds, and the type of each entry.
_CHECKPOINT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str, "config": dict, "iteration": int, "rule": dict, "optimizer": dict, "rows": list,
    "best_val": (float, int), "best_iteration": int, "best_state": dict, "elapsed": (float, int),
}  # fmt: skip


def _read_checkpoint(
    path: Path, config: MetaTrainConfig, rule: Rule, optimizer: torch.optim.Optimizer, device: torch.device
) -> dict[str, Any]:
    """The resumable state in ``path`` (``last.pt``), read with ``weights_only=True`` and checked whole before
    anything is installed: its format and fields, the same config as ``config``, the rule's tensors (names, shapes,
    finite values) for the rule, the best rule and the meta-optimizer. Installs the rule's and the optimizer's
    state and returns the checkpoint. Raises ``ValueError`` naming ``path`` and the reason."""
    ckpt, _ = read_torch_file(path, "meta-training checkpoint", map_location=device)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path} is not a meta-training checkpoint of format {CHECKPOINT_FORMAT!r} (found {found!r})")
    wrong = [k for k, kind in _CHECKPOINT_FIELDS.items() if not isinstance(ckpt.get(k), kind)]
    if wrong:
        raise ValueError(f"{path} is a damaged meta-training checkpoint: {wrong} missing or of the wrong type")
    # A checkpoint from before MetaTrainConfig.floor was written by a run that measured as floor="legacy" does, one
    # from before head_search by a run that searched no head step and scored its search by the meta-loss, one from
    # before init by a run that started untrained.
    kept = {k: v for k, v in ckpt["config"].items() if k not in ("budget_s", "device")}
    saved = {"floor": "legacy", "head_search": [], "search_metric": "mean", "init": None, **kept}
    mine = {k: v for k, v in _config_dict(config).items() if k not in ("budget_s", "device")}
    if saved != mine:
        absent = object()  # a key on one side only differs, even where the other side's value is None
        diff = sorted(k for k in mine.keys() | saved.keys() if saved.get(k, absent) != mine.get(k, absent))
        raise ValueError(f"the checkpoint's config differs from this run's in {diff}; resume with the same config")
    if not 0 <= ckpt["iteration"] <= config.iterations or not -1 <= ckpt["best_iteration"] <= ckpt["iteration"]:
        raise ValueError(f"{path}: its iteration counts are out of range")
    if math.isnan(ckpt["best_val"]) or ckpt["best_val"] == -math.inf:
        raise ValueError(f"{path}: its best validation meta-loss is {ckpt['best_val']}")
    expected = rule.state_dict()
    check_state_dict(path, ckpt["rule"], expected)
    check_state_dict(path, ckpt["best_state"], expected, what="the best rule")
    _check_optimizer_state(path, ckpt["optimizer"], list(rule.parameters()))
    rule.load_state_dict(ckpt["rule"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt


def _check_optimizer_state(path: Path, state: dict[str, Any], params: list[Tensor]) -> None:
    groups = state.get("param_groups")
    if not isinstance(state.get("state"), dict) or not isinstance(groups, list) or len(groups) != 1:
        raise ValueError(f"{path}: its meta-optimizer state is not Adam's for one group of parameters")
    if groups[0].get("params") != list(range(len(params))):
        raise ValueError(f"{path}: its meta-optimizer state is for other parameters than the rule's")
    for index, entry in state["state"].items():
        if not isinstance(index, int) or not 0 <= index < len(params) or not isinstance(entry, dict):
            raise ValueError(f"{path}: its meta-optimizer state has an entry for no parameter ({index!r})")
        for key in ("exp_avg", "exp_avg_sq"):
            value = entry.get(key)
            if not isinstance(value, Tensor) or value.shape != params[index].shape:
                raise ValueError(f"{path}: the meta-optimizer's {key} of parameter {index} does not fit it")
    bad = non_finite(_optimizer_tensors(state))
    if bad:
        raise ValueError(f"{path}: the meta-optimizer's state {bad} holds NaN or infinite values")
