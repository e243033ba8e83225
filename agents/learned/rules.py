"""Learned update rules as batched torch modules acting on per-coordinate inputs ``[B, K]``.

A rule sees, for each of K coordinates of B games, the gradient g, the task's observation features (one row a
block: :class:`~agents.learned.blocks.Blocks`) and the step count, carries its own per-coordinate state, and returns
an update. The same module plays inside the PettingZoo env (one agent's K = h_m + n coordinates, B = 1; see
:mod:`agents.learned.policy`) and on the engine's outputs (all tasks' K = H + M·n coordinates of B games; see
:mod:`agents.learned.batched`), so the two forms agree by construction: every operation is per coordinate or per
block (a player's head, or its trunk proposal).

* :class:`MLPRule` — heads: a per-coordinate MLP in the style of learned_optimization's ``small_fc_lopt`` (inputs
  the gradient, momenta at several decays and the RMS, normalised; a saturating time embedding; the task's features)
  modulating, within bounds, a mix of a safeguarded Barzilai–Borwein step and AMSGrad's; trunk proposals: a heavy
  ball whose step and momentum depend on the clock alone, the same for every player (a per-player trunk scaling
  moves the fixed point of ``sum``), with a brake on the consensus's growing moves, which every player sees alike.
  Output layers start at zero, so an untrained rule plays those base steps.
* :class:`LSTMRule` (:mod:`agents.learned.lstm_rule`) — the coordinatewise two-layer LSTM of Andrychowicz et al.
  2016 with their LogAndSign gradient preprocessing (p = 10) and output scale 0.1: the canonical learned optimizer.
* :class:`StepRule` (:mod:`agents.learned.step_rule`) — ``step_size`` mode: a small network from a task's first 7
  features to its head's log step size, shared by all tasks, and one learned trunk log step for every player, starting
  at a constant step.

What the three share (the features they read, the clock, the seeded initialisation) is in
:mod:`agents.learned.rule_base`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from agents.learned.balance import balance_heavy_ball, common_scale, unit_rms
from agents.learned.blocks import Blocks
from agents.learned.guard import apply_guard, guard_state
from agents.learned.lstm_rule import LSTMRule
from agents.learned.rule_base import (  # noqa: F401 - STEP_FEATURES: re-exported, as rules.py defined it before
    MOVE,
    PROGRESS,
    RULE_FEATURES,
    STEP_FEATURES,
    TIME_SCALES,
    RuleState,
    seeded_init,
    zero_init,
)
from agents.learned.rule_configs import LSTMRuleConfig, MLPRuleConfig, StepRuleConfig
from agents.learned.step_rule import StepRule

__all__ = [
    "LSTMRule", "LSTMRuleConfig", "MLPRule", "MLPRuleConfig", "Rule", "RuleState", "StepRule", "StepRuleConfig",
    "seeded_init", "zero_init",
]  # fmt: skip


class MLPRule(nn.Module):
    """Per-coordinate MLP update rule (see the module docstring).

    **Heads** (a player's own parameters): the rule mixes two steps that work without training: Adam's,
    −α m̂/(√v̂ + ε) with AMSGrad's running maximum of v̂ (its effective step never grows), and a Barzilai–Borwein
    gradient step −η g, η = sᵀy / yᵀy from the player's last head update s and head gradient change y (kept from
    the last step where sᵀy ≤ 0; at most doubling per step). Per coordinate, with the network's outputs (a, d) and
    the bound B(x) = b·tanh(x / b) (b = ``max_log_gain``), the update is
    exp(B(c·a))·[(1 − σ)(−α m̂/(√v̂ + ε)) + σ(−η g)], σ = sigmoid(γ + c·d): a modulated magnitude and mix of two
    descent directions, zero where the gradient and the momenta are (a learned additive direction would not vanish
    there and held the quadratic family at ≈ 1e-11 of its start: a fixed point of the game stays one of the rule).

    **Trunk proposals** are a heavy-ball step on the player's own trunk gradient, −α_Ψ(t)·μ_t with
    μ_t = β(t) μ_{t−1} + g_t, whose step α_Ψ(t) and momentum β(t) come from a small network of the time
    embedding and the progress t / horizon alone. Why not per-player adaptive like the heads: under
    ``sum``/``mean`` consensus the trunk stops where Σ_m D_m ∇_Ψ ℓ_m = 0, which is the minimiser of L = Σ_m ℓ_m
    only when every player's scaling D_m is the same; a per-player adaptive step (Adam's RMS, a player's own BB
    estimate, a network reading the player's own gradient) makes the D_m differ and moves the fixed point
    (``python scripts/fixed_point_shift.py``: on the quadratic family, trunk steps 10 % apart leave L_T − L* at 7e-5 of
    its start instead of 1e-11). Coefficients that depend on the clock only are the same for every player, so the
    trunk converges where ``sum`` does. The trunk step ramps up over ``trunk_warmup`` steps. A **brake** slows a
    game whose curvature is beyond the learned step: it reads the one observation every player shares besides the
    clock, the norm of the trunk's last move (feature ``symlog_trunk_move_norm``), and cuts the log step when the
    moves keep growing (see ``brake_threshold``); players of one rule see the same moves and make the same cuts, so
    their steps stay equal and the game still converges where ``sum`` does. (The continuous, wearing-off variant,
    ``brake_step = 0`` and ``brake_recovery < 1``, is what the quadratic rule meta-trains with:
    ``agents.learned.meta_config.TRAINING_BRAKE``.)

    With ``trunk_adam`` a proposal adds a per-player AMSGrad step whose share falls to 0 at the horizon's end: it
    moves the fixed point while it plays and hands the trunk back to the shared heavy ball (see
    :class:`~agents.learned.rule_configs.MLPRuleConfig`; there too ``trunk_reads_moves``, a trunk that reads the moves).

    Parameters: the MLP (heads), log α, log η₀ (η before the first BB estimate) and γ of the heads, the trunk's
    time network, log α_Ψ and logit β (and log α_A with ``trunk_adam``, the moves' network with
    ``trunk_reads_moves``).
    """

    def __init__(self, config: MLPRuleConfig | None = None):
        super().__init__()
        self.config = config = config or MLPRuleConfig()
        if config.adam_beta1 not in config.decays:
            raise ValueError(f"adam_beta1 ({config.adam_beta1}) must be one of decays {config.decays}")
        if not config.max_log_gain > 0:
            raise ValueError(f"max_log_gain must be > 0 (the bound of the step modulation), got {config.max_log_gain}")
        boost = (config.trunk_boost, config.boost_max, config.boost_margin, config.boost_floor)
        if not all(x >= 0 for x in boost):
            raise ValueError(f"trunk_boost, boost_max, boost_margin, boost_floor must be >= 0 (0: off), got {boost}")
        if not (config.adam_floor >= 0 and config.init_trunk_adam_lr > 0):
            raise ValueError(
                f"adam_floor must be >= 0 (0: off) and init_trunk_adam_lr > 0, got {config.adam_floor!r} and "
                f"{config.init_trunk_adam_lr!r}"
            )
        b1 = config.trunk_adam_beta1
        if b1 is not None and not (isinstance(b1, float) and 0.0 <= b1 < 1.0):
            raise ValueError(f"trunk_adam_beta1 must be None (adam_beta1) or a float in [0, 1), got {b1!r}")
        if not isinstance(config.balance_min_bounded, bool):
            raise TypeError(f"balance_min_bounded must be a bool, got {config.balance_min_bounded!r}")
        if not isinstance(config.lift_growing, bool):
            raise TypeError(f"lift_growing must be a bool, got {config.lift_growing!r}")
        if (b1 is not None or config.adam_min_bounded_only) and not config.trunk_adam:
            raise ValueError(
                "trunk_adam_beta1 and adam_min_bounded_only set the trunk's AMSGrad share: they need trunk_adam=True"
            )
        fade = config.guard_memory_noisy_bounded
        if fade is not None and (isinstance(fade, bool) or not isinstance(fade, float) or not 0.0 <= fade < 1.0):
            raise ValueError(
                f"guard_memory_noisy_bounded must be None (guard_memory) or a float in [0, 1), got {fade!r}"
            )
        if config.offset_vanishes and not config.direction_offset:
            raise ValueError("offset_vanishes scales the heads' direction offset: it needs direction_offset=True")
        if not isinstance(config.heads_adam, bool):
            raise TypeError(f"heads_adam must be a bool, got {config.heads_adam!r}")
        for name in ("heads_adam_lr", "heads_handover"):
            value = getattr(config, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not config.heads_adam_lr > 0:
            raise ValueError(f"heads_adam_lr must be > 0 (Adam's step on the heads), got {config.heads_adam_lr!r}")
        if not 0.0 <= config.heads_handover <= 1.0:
            raise ValueError(f"heads_handover must be in [0, 1] (a share of the horizon), got {config.heads_handover}")
        low = config.heads_adam_min_horizon
        if isinstance(low, bool) or not isinstance(low, int) or not 0 <= low < 2**20:
            raise ValueError(f"heads_adam_min_horizon must be an int in [0, 2**20) (steps; 0: every game), got {low!r}")
        if config.heads_adam and low > 0 and not config.heads_handover > 0:
            raise ValueError(
                "heads_adam_min_horizon needs heads_handover > 0: the rule reads the horizon off its clock from the"
                f" second step on, and only a handover keeps Adam's step out of the first; got heads_handover="
                f"{config.heads_handover!r} (set heads_handover > 0, or heads_adam_min_horizon = 0)"
            )
        if not 0.0 <= config.anneal <= 1.0:
            raise ValueError(f"anneal must be in [0, 1] (0: no decay, 1: cosine to 0), got {config.anneal!r}")
        self._adam_index = config.decays.index(config.adam_beta1)
        inputs = 1 + len(config.decays) + len(TIME_SCALES) + len(RULE_FEATURES)
        self.net = nn.Sequential(
            nn.Linear(inputs, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, 3 if config.direction_offset else 2),
        )
        seeded_init(self, config.seed)
        zero_init(self.net[-1])
        self.log_lr = nn.Parameter(torch.tensor(math.log(config.init_lr)))
        self.log_eta0 = nn.Parameter(torch.tensor(math.log(config.init_lr)))
        self.gate = nn.Parameter(torch.tensor(float(config.init_gate)))
        # The trunk's schedule: time embedding -> (log-step change, momentum-logit change), zero at initialisation.
        outputs = 3 if config.trunk_adam else 2  # (+ the AMSGrad share's log gain)
        self.trunk_net = nn.Sequential(nn.Linear(len(TIME_SCALES) + 1, 16), nn.Tanh(), nn.Linear(16, outputs))
        seeded_init(self.trunk_net, config.seed + 1)
        zero_init(self.trunk_net[-1])
        self.trunk_log_lr = nn.Parameter(torch.tensor(math.log(config.init_trunk_lr)))
        beta = config.init_trunk_momentum
        self.trunk_logit_beta = nn.Parameter(torch.tensor(math.log(beta / (1.0 - beta))))
        if config.trunk_adam:
            self.trunk_adam_log_lr = nn.Parameter(torch.tensor(math.log(config.init_trunk_adam_lr)))
        if config.trunk_reads_moves:  # (growth average, newest growth, log fall from the top move) -> (log step, logit)
            self.move_net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))
            seeded_init(self.move_net, config.seed + 2)
            zero_init(self.move_net[-1])

    def scale_trunk_step(self, factor: float) -> None:
        """Multiply the trunk step (the same for every player) by ``factor``, in place."""
        with torch.no_grad():
            self.trunk_log_lr.add_(math.log(factor))

    def scale_head_step(self, factor: float) -> None:
        """Multiply the heads' steps by ``factor``, in place: the Adam step and the Barzilai–Borwein step's start
        (its estimates after that are the curvature's, at most doubling a step)."""
        with torch.no_grad():
            self.log_lr.add_(math.log(factor))
            self.log_eta0.add_(math.log(factor))

    def init_state(
        self, g: Tensor, blocks: Blocks, linear_consensus: bool = True, min_bounded_consensus: bool = False,
        balanced: bool = False, noisy_bounded: bool = False, stochastic: bool = False,
    ) -> RuleState:  # fmt: skip
        """Zero moments for gradients ``g [B, K]`` laid out as ``blocks``: the heads' moments over the head
        coordinates, the heavy ball's over the trunk's. ``linear_consensus``: whether the games' consensus rule is
        linear (:attr:`mtg_env.engine.Game.linear_consensus`); with ``boost_linear_only`` the boost plays only then.
        ``min_bounded_consensus``: whether it lets the shortest proposal bound the move and is not linear
        (:attr:`mtg_env.engine.Game.min_bounded_consensus`); with ``adam_min_bounded_only`` the AMSGrad share plays
        only then. ``balanced``: whether a rule with ``balance_min_bounded`` balances its proposals in these games
        (min-bounded and not linear): the state then carries ``balance_on`` (elsewhere the rule does no balancing work),
        and the rule reads ``state["trunk_grad_norm_mean"]`` (``[B, 1]``, G:
        :func:`mtg_env.engine.trunk_grad_norm_mean`) that the caller adds before every call (the rule's next state
        drops it). ``noisy_bounded``: whether a rule with ``guard_memory_noisy_bounded`` plays that guard memory in
        these games (their gradients are estimates, and they are min-bounded and not linear): the state then carries
        it as ``guard_fade``. ``stochastic``: whether the games' gradients are estimates
        (:attr:`mtg_env.engine.Game.stochastic_gradients`); a rule with ``heads_adam`` plays Adam's heads only then
        (the state carries ``heads_adam_on``)."""
        b, num_groups = g.shape[0], blocks.num_groups
        kh, kt = blocks.num_heads, blocks.num_trunks * blocks.trunk_size
        dtype = self.log_lr.dtype
        # A fresh tensor for every key (no two keys one tensor: a compiled step would specialise on the aliasing of
        # its first call and compile again for the second).

        def zeros(*shape: int) -> Tensor:
            return torch.zeros(b, *shape, dtype=dtype, device=g.device)

        # kh: the heads' coordinates, kt: the trunk proposals', 1: the trunk schedule's, the same for every player
        extra = (
            ({"boost": zeros(1), "boost_on": zeros(1) + float(linear_consensus or not self.config.boost_linear_only)}
             if self.config.trunk_boost > 0 else {})
            | ({"trunk_m": zeros(kt), "trunk_v": zeros(kt), "trunk_v_max": zeros(kt)} if self.config.trunk_adam else {})
            | ({"adam_on": zeros(1) + float(min_bounded_consensus)} if self.config.adam_min_bounded_only else {})
            | ({"balance_on": zeros(1) + 1.0} if self.config.balance_min_bounded and balanced else {})
            # the largest ‖ΔΨ‖ so far, the same for every player: the boost's floor and the AMSGrad share's read it
            | ({"top_move": zeros(1)} if self.config.trunk_boost > 0 or self.config.trunk_adam
               or self.config.trunk_reads_moves else {})
            | (guard_state(g, num_groups, dtype) if self.config.guard else {})
            | ({"heads_adam_on": zeros(1) + 1.0} if self.config.heads_adam and stochastic else {})
            | ({"guard_fade": zeros(1) + self.config.guard_memory_noisy_bounded}
               if self.config.guard and self.config.guard_memory_noisy_bounded is not None and noisy_bounded else {})
        )  # fmt: skip
        return {
            "m": zeros(kh, len(self.config.decays)),
            "v": zeros(kh),
            "v_max": zeros(kh),
            "prev_g": zeros(kh),
            "prev_u": zeros(kh),
            "eta": zeros(num_groups),
            "mu": zeros(kt),
            "log_step": zeros(1),
            "mass": zeros(1),
            "signal": zeros(1),
            "signalled": zeros(1),
            "growth": zeros(1),
            "brake": zeros(1),
            "cooldown": zeros(1),
        } | extra

    def forward(
        self, g: Tensor, features: Tensor, blocks: Blocks, t: Tensor, state: RuleState
    ) -> tuple[Tensor, RuleState]:
        """The update ``[B, K]`` and the next state.

        Args:
            g: ``[B, K]`` gradients, laid out as ``blocks``.
            features: ``[B, G, 8]`` the observation features of each block's player.
            blocks: The coordinates' layout (:class:`~agents.learned.blocks.Blocks`: the heads, then the trunk
                proposals).
            t: ``[B]`` steps already taken this episode (0 on the first action).
            state: From :meth:`init_state` or the previous call.
        """
        cfg = self.config
        dtype = self.log_lr.dtype
        g = g.detach().to(dtype)
        features = features.to(dtype)
        b = g.shape[0]
        # The network and the head steps run on the head coordinates, the heavy ball on the trunk's (most of K on a
        # wide trunk, a [B, P, n] view): each keeps its state on its own coordinates only.
        g_h, g_t = blocks.split(g)  # [B, Kh], [B, P, n]
        kh, groups_h = blocks.num_heads, blocks.head_groups
        t1 = (t.to(dtype) + 1.0).unsqueeze(1)  # [B, 1]
        decays = torch.tensor(cfg.decays, dtype=dtype, device=g.device)
        m = decays * state["m"] + (1.0 - decays) * g_h.unsqueeze(2)
        v = cfg.beta2 * state["v"] + (1.0 - cfg.beta2) * g_h.square()
        # AMSGrad's running maximum of v̂: the effective step α/√v̂ never grows. With Adam's own v̂ it grows as the
        # gradients shrink, until the heads turn unstable late in a long game (seen on quadratics past 100 steps).
        v_max = torch.maximum(state["v_max"], v / (1.0 - cfg.beta2**t1))
        rms = v_max.sqrt() + cfg.eps
        m_hat = m / (1.0 - decays ** t1.unsqueeze(2))
        normed = torch.cat([(g_h / rms).unsqueeze(2), m_hat / rms.unsqueeze(2)], dim=2).clamp(-10.0, 10.0)
        # Barzilai–Borwein (short) step per head: η = sᵀy / yᵀy, kept where the curvature estimate is not positive.
        s, y = state["prev_u"], g_h - state["prev_g"]
        zeros = torch.zeros_like(state["eta"])
        sy, yy = zeros.index_add(1, groups_h, s * y), zeros.index_add(1, groups_h, y * y)
        fresh = (sy > 0) & (yy > 0)
        estimate = (sy / torch.where(fresh, yy, 1.0)).clamp(1e-6, 1e2)
        # Safeguard: η at most doubles per step (a noisy or game-distorted curvature estimate cannot blow up).
        prev = state["eta"]
        estimate = torch.where(prev > 0, torch.minimum(estimate, 2.0 * prev), estimate)
        eta = torch.where(fresh, estimate, prev)
        eta_k = eta[:, groups_h]
        eta_k = torch.where(eta_k > 0, eta_k, self.log_eta0.exp())
        time = torch.tanh(t1.unsqueeze(2) / torch.tensor(TIME_SCALES, dtype=dtype, device=g.device))  # [B, 1, 3]
        bound = cfg.max_log_gain
        progress = features[:, :1, PROGRESS]  # [B, 1]: t / horizon, the same for every player
        inputs = torch.cat(
            [normed, time.expand(b, kh, len(TIME_SCALES)), features[:, :, list(RULE_FEATURES)][:, groups_h]],
            dim=2,
        )
        out = self.net(inputs)
        gain = bound * torch.tanh(cfg.scale * out[..., 0] / bound)
        mix = torch.sigmoid(self.gate + cfg.scale * out[..., 1])
        adam = normed[:, :, 1 + self._adam_index]
        if cfg.direction_offset:
            offset = bound * torch.tanh(cfg.scale * out[..., 2] / bound)
            if cfg.offset_vanishes:  # as large as the normalised gradient, at most: 0 where the gradient is
                offset = offset * normed[:, :, 0].abs().clamp(max=1.0)
            adam = adam + offset
        step_adam = -self.log_lr.exp() * adam
        head_update = torch.exp(gain) * ((1.0 - mix) * step_adam - mix * eta_k * g_h)
        heads_adam = {"heads_adam_on": state["heads_adam_on"]} if "heads_adam_on" in state else {}
        if heads_adam:  # Adam's own step on the heads, taking over from the trained one (MLPRuleConfig.heads_adam)
            v_hat = v / (1.0 - cfg.beta2**t1)
            direction = (m_hat[:, :, self._adam_index] / (v_hat.sqrt() + cfg.eps)).clamp(-10.0, 10.0)
            adam_update = -cfg.heads_adam_lr * direction
            if cfg.heads_handover > 0:  # lerp: the trained step at w = 0 and Adam's at w = 1, exactly
                handed = (progress / cfg.heads_handover).clamp(0.0, 1.0)
                playing = handed > 0  # at w = 0 the trained update itself (a lerp would make an infinite one NaN)
                if cfg.heads_adam_min_horizon > 0:  # the horizon off the clock (progress = t / horizon); 0 at t = 0
                    horizon = (t.to(dtype).unsqueeze(1) / torch.where(progress > 0, progress, 1.0)).round()
                    playing = playing & (horizon > cfg.heads_adam_min_horizon)
                head_update = torch.where(playing, torch.lerp(head_update, adam_update, handed), head_update)
            else:
                head_update = adam_update
        log_anneal = None
        if cfg.anneal > 0:  # a cosine decay of every update over the horizon, the same for every player
            factor = (1.0 - cfg.anneal * 0.5 * (1.0 - torch.cos(math.pi * progress.clamp(0.0, 1.0)))).clamp_min(1e-3)
            head_update = head_update * factor
            log_anneal = factor.log()
        # Trunk: heavy ball with coefficients common to every player: the clock's schedule, and the brake.
        # The brake's signal: log ‖ΔΨ‖ / (α_Ψ·c) of the last move (made with the step and mass in the state).
        move = torch.expm1(features[:, :1, MOVE])  # [B, 1]
        valid = (move > 0) & (state["mass"] > 0)
        tiny = torch.finfo(dtype).tiny
        signal = move.clamp_min(tiny).log() - state["log_step"] - state["mass"].clamp_min(1).log()
        signal = torch.where(valid, signal, state["signal"])
        seen = valid & (state["signalled"] > 0) & (t1 > cfg.brake_warmup)
        w = cfg.brake_weight
        newest = (signal - state["signal"]).clamp(-1.0, 1.0)
        growth = torch.where(seen, (1 - w) * state["growth"] + w * newest, state["growth"])
        top = torch.maximum(state["top_move"], move) if "top_move" in state else move  # the largest ‖ΔΨ‖ so far
        clock = torch.cat([time[:, 0, :], progress], dim=1)  # [B, 4]
        schedule = self.trunk_net(clock)  # [B, 2] (log step, momentum logit), [B, 3] with trunk_adam (its share)
        ramp = torch.log(torch.clamp(t1 / cfg.trunk_warmup, max=1.0))  # [B, 1]: a linear warm-up
        log_step = self.trunk_log_lr + ramp + bound * torch.tanh(cfg.scale * schedule[:, :1] / bound)  # [B, 1]
        logit_beta = self.trunk_logit_beta + cfg.scale * schedule[:, 1:2]  # [B, 1]
        if cfg.trunk_reads_moves:  # the moves' shared history: the same for every player (MLPRuleConfig)
            fall = torch.where(top > 0, (move.clamp_min(tiny) / top.clamp_min(tiny)).log().clamp(-10.0, 0.0), 0.0)
            adjust = self.move_net(torch.cat([growth, torch.where(seen, newest, 0.0), fall / 5.0], dim=1))  # [B, 2]
            log_step = log_step + bound * torch.tanh(cfg.scale * adjust[:, :1] / bound)
            logit_beta = logit_beta + cfg.scale * adjust[:, 1:2]
        beta = torch.sigmoid(logit_beta)  # [B, 1]
        beta_t = beta.unsqueeze(2)  # [B, 1, 1]: the same for every trunk coordinate
        mu = beta_t * state["mu"].view(g_t.shape) + g_t  # [B, P, n]
        if cfg.brake_step > 0:
            ready = (growth > cfg.brake_threshold) & (state["cooldown"] <= 0)
            brake = cfg.brake_recovery * state["brake"] - cfg.brake_step * ready.to(dtype)
            cooldown = torch.where(ready, float(cfg.brake_cooldown), (state["cooldown"] - 1).clamp_min(0))
        else:
            brake = cfg.brake_recovery * state["brake"] - torch.relu(growth - cfg.brake_threshold)
            cooldown = state["cooldown"]
        log_step = log_step + brake
        boosted: RuleState = {}
        if cfg.trunk_boost > 0:  # a bold driver on the shared growth average: rise while the moves stall
            stall = seen & (growth > -cfg.boost_margin) & (growth < cfg.brake_threshold) & (cooldown <= 0)
            live = (move > cfg.boost_floor * top) | (cfg.boost_floor <= 0)
            rise = cfg.trunk_boost * (stall & live).to(dtype) * state["boost_on"]  # boost_on: 0 where it may not play
            boost = (state["boost"] + rise).clamp(max=cfg.boost_max)
            boosted = {"boost": torch.where(live, boost, 0.0), "boost_on": state["boost_on"]}
            log_step = log_step + boosted["boost"]
        if log_anneal is not None:
            log_step = log_step + log_anneal
        proposal = -torch.exp(log_step).unsqueeze(2) * mu  # [B, P, n]
        # balance_min_bounded where it plays (the key is there only then): each player's step as if its gradient were G
        balance_state = {"balance_on": state["balance_on"]} if "balance_on" in state else {}
        common = common_scale(state, dtype) if balance_state else None  # [B, 1, 1] G of this step
        if common is not None:
            proposal = balance_heavy_ball(proposal, g_t, common)
        adam_state: RuleState = {}
        if cfg.trunk_adam:  # a per-player AMSGrad share that falls to 0 at the horizon's end (MLPRuleConfig)
            t1_t = t1.unsqueeze(2)  # [B, 1, 1]
            b1 = cfg.adam_beta1 if cfg.trunk_adam_beta1 is None else cfg.trunk_adam_beta1
            m_t = b1 * state["trunk_m"].view(g_t.shape) + (1.0 - b1) * g_t
            v_t = cfg.beta2 * state["trunk_v"].view(g_t.shape) + (1.0 - cfg.beta2) * g_t.square()
            v_max_t = torch.maximum(state["trunk_v_max"].view(g_t.shape), v_t / (1.0 - cfg.beta2**t1_t))
            direction_t = m_t / (1.0 - b1**t1_t) / (v_max_t.sqrt() + cfg.eps)
            if balance_state:  # balanced: RMS 1 for every player
                direction_t = unit_rms(direction_t)
            log_share = torch.log(0.5 * (1.0 + torch.cos(math.pi * progress.clamp(0.0, 1.0))).clamp_min(1e-30))
            log_share = log_share + bound * torch.tanh(cfg.scale * schedule[:, 2:] / bound)
            if cfg.adam_floor > 0:  # handed back to the heavy ball as the moves fall far below their largest
                ratio = move / (cfg.adam_floor * top).clamp_min(tiny)
                log_share = log_share + torch.where(top > 0, ratio.clamp(1e-30, 1.0).log(), 0.0)
            log_adam = self.trunk_adam_log_lr + ramp + brake + log_share
            if log_anneal is not None:
                log_adam = log_adam + log_anneal
            share = torch.exp(log_adam)
            if "adam_on" in state:  # adam_min_bounded_only: 0 where the share may not play
                share = share * state["adam_on"]
            proposal = proposal - share.unsqueeze(2) * direction_t
            adam_state = {"trunk_m": m_t.flatten(1), "trunk_v": v_t.flatten(1), "trunk_v_max": v_max_t.flatten(1)}
            if "adam_on" in state:
                adam_state["adam_on"] = state["adam_on"]
        guard: RuleState = {}
        if cfg.guard:  # heads: loosely (BB is a secant step); trunk: the heavy ball, stable while αL < 2(1 + β)
            # ‖d‖ per block: the gradient's on a head, the heavy ball's (1 + β)·‖μ‖ on a trunk proposal
            reach = blocks.norms(g_h, mu) * torch.where(blocks.trunk_block, 1.0 + beta, 1.0)
            loss, change = (torch.sign(x) * torch.expm1(x.abs()) for x in features[..., :2].unbind(2))  # [B, G]
            (head_update, proposal), capped, guard = apply_guard(
                (head_update, proposal), reach, g, blocks, move[:, 0], state, cfg, restart=True,
                capped_blocks=blocks.trunk_block, rise=change - (loss - change).abs(),
                restart_floor=None if common is None else common[:, :, 0], lift_growing=cfg.lift_growing,
            )  # fmt: skip
            mu = torch.where(blocks.per_trunk(capped), g_t, mu)
        update = blocks.join(head_update, proposal)
        top_state = {"top_move": top} if "top_move" in state else {}
        return update, guard | {
            "m": m, "v": v, "v_max": v_max, "prev_g": g_h.contiguous(), "prev_u": head_update.detach(), "eta": eta,
            "mu": mu.flatten(1), "log_step": log_step, "mass": beta * state["mass"] + 1.0, "signal": signal,
            "signalled": torch.maximum(state["signalled"], valid.to(dtype)), "growth": growth, "brake": brake,
            "cooldown": cooldown,
        } | boosted | adam_state | balance_state | heads_adam | top_state  # fmt: skip


#: Any learned rule.
Rule = MLPRule | LSTMRule | StepRule
