"""The hyper-parameters of the learned update rules (:mod:`agents.learned.rules`): dataclasses that hold no
weights, so a rule file stores them beside its state dict (:mod:`agents.learned.checkpoint`)."""

from __future__ import annotations

from dataclasses import dataclass

from agents.learned.guard import GuardConfig


@dataclass(frozen=True)
class MLPRuleConfig(GuardConfig):
    """Hyper-parameters of :class:`MLPRule`."""

    hidden: int = 32
    """Width of the two hidden layers."""
    decays: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)
    """Momentum decay rates; the one equal to ``adam_beta1`` is the Adam step's first moment."""
    adam_beta1: float = 0.9
    """The first-moment decay of the base Adam step (must be one of ``decays``)."""
    beta2: float = 0.999
    """The second-moment (RMS) decay."""
    eps: float = 1e-8
    """Added to the RMS."""
    scale: float = 0.1
    """c: how strongly the network's outputs modulate the base steps (small, as small_fc_lopt's)."""
    max_log_gain: float = 1.0
    """Bound of the modulation: the magnitude factor stays in [e^−b, e^b] (a smooth tanh bound, equal to the
    unbounded exp(c·a) near zero), so no input off the training range can make the rule take an arbitrarily large
    step."""
    init_lr: float = 0.01
    """Initial step size α of the heads' Adam step, and η₀ of their gradient step."""
    init_gate: float = 3.0
    """Initial gate γ: the share sigmoid(γ) of the Barzilai–Borwein step in a head's update (≈ 0.95; −30: Adam alone).
    Mostly BB: AMSGrad's effective step only shrinks, so alone it stalls once the gradients are far below their early
    size; BB's keeps converging linearly (quadratics at 5× the horizon: 1e-11 with γ = 3, a stall at 1e-9 with −2)."""
    init_trunk_lr: float = 0.01
    """Initial step size of the trunk's heavy-ball proposal (learned)."""
    init_trunk_momentum: float = 0.9
    """Initial momentum coefficient of the trunk's heavy-ball proposal (learned)."""
    trunk_warmup: int = 20
    """The trunk step ramps up linearly over this many steps (for every player alike): a too large step turns
    unstable gradually, while the brake can still catch it."""
    brake_threshold: float = 0.4
    """The trunk brake engages when the consensus's trunk moves keep growing, by more than e^0.4 ≈ 50 % a step on
    average: an exponential moving average (weight ``brake_weight``, from step ``brake_warmup``) of the log growth,
    clipped to ±1, of ‖ΔΨ‖ / (α_Ψ·c), the move over the step that made it and the heavy ball's momentum mass c."""
    brake_weight: float = 0.5
    """Weight of the newest step in the brake's growth average."""
    brake_warmup: int = 0
    """Steps before the brake's growth average starts."""
    brake_step: float = 1.39
    """> 0: the brake cuts the log step by this much (1.39: to a quarter) when the average passes the threshold, then
    waits ``brake_cooldown`` steps. 0: continuous, a cut by the average's excess over the threshold each step."""
    brake_cooldown: int = 3
    """Steps between two quantised cuts."""
    brake_recovery: float = 1.0
    """Each step the brake's log factor is multiplied by this (1: a brake holds for good; < 1: it wears off)."""
    trunk_boost: float = 0.0
    """> 0: a bold driver on the trunk's shared step: while the brake's growth average is in (−``boost_margin``,
    ``brake_threshold``) (the moves stall) the log step rises by this a step, up to ``boost_max``. 0: off."""
    boost_margin: float = 0.05
    """The boost rises only while the moves shrink slower than e^−margin per step."""
    boost_floor: float = 0.0
    """> 0: the boost is off and reset while ‖ΔΨ‖ is under this share of its largest (at a floor, moves stall)."""
    boost_max: float = 2.3
    """The boost's largest log factor (2.3: the trunk step at most ≈ 10× its schedule)."""
    boost_linear_only: bool = False
    """The boost plays only in games whose consensus rule is linear (``sum``, ``mean``: the game's
    ``linear_consensus``, :attr:`mtg_env.engine.Game.linear_consensus`; the env's info of that name), where the
    trunk's fixed point does not depend on the step. Under the other rules (``mgda``, ``upgrad``, ...) the point a
    game reaches on its Pareto set depends on the path, and a bolder step changes it: on 144 quadratic games under
    ``upgrad`` the boost made 9 ten times worse and 8 ten times better. ``EngineDriver`` reads the game's, the agent
    the info; a game that does not say (``MLPRule.init_state`` without it) counts as linear."""
    anneal: float = 0.0
    """w in [0, 1]: every update (heads and trunk alike: the trunk's fixed point under ``sum`` stays) times
    1 − w·(1 − cos(π p)) / 2 at progress p = t / horizon: 0 (default) plays as before, 1 a cosine decay to 0 (the
    tuned baselines' schedule on minibatch games, which the modulation, bounded by e^±b, cannot make on its own)."""
    direction_offset: bool = False
    """Also learn an additive direction for the heads' Adam step, −α(m̂/(√v̂ + ε) + B(c·b)) (a third network output).
    It does not vanish where the gradient does, so the rule no longer stops at the game's fixed points (it held the
    quadratic family at ≈ 1e-11 of its start); off by default, on for digits, whose games end far from one and
    where it is worth a quarter of the final loss at 1× (``agents.learned.meta_config.DIGITS_RULE``)."""
    offset_vanishes: bool = False
    """With ``direction_offset``: scale the offset by min(1, |g|/(√v̂_max + ε)), the normalised gradient's size, so it
    vanishes where the gradient does and a fixed point of the game stays one of the rule (the offset's gain on
    digits without giving up the quadratic family's convergence)."""
    heads_adam: bool = False
    """The heads play Adam's step, −α_H·m̂/(√v̂ + ε) (first moment at ``adam_beta1``, Adam's own bias-corrected v̂ at
    ``beta2``, not AMSGrad's maximum; α_H = ``heads_adam_lr``), the step the tuned Adam baselines take on the heads,
    handed over from the trained heads' step over the first ``heads_handover`` of the horizon: at progress p
    (t / horizon) the heads play (1 − w)·(the trained step) + w·(Adam's), w = min(1, p / ``heads_handover``). The
    trunk plays as trained. It plays only in games whose gradients are estimates (a minibatch a step, or a noise
    model: :attr:`mtg_env.engine.Game.stochastic_gradients`, the env's info of that name), where a secant read on
    noisy gradients is noise too; in games of exact gradients the trained heads play, whose Barzilai–Borwein step
    converges there (Adam's heads everywhere diverged in 2 of the stability survey's 104 stiff quadratics).
    ``EngineDriver`` reads the game's property, the agent the info (a game that does not say counts as exact). Off
    by default. On digits' one-layer trunks the trained heads were what fell behind tuned Adam at five times the
    horizon, while the trained trunk led; early in a game they lead (docs/results/learned.md, thirty-first session)."""
    heads_adam_lr: float = 0.1
    """α_H of ``heads_adam``."""
    heads_handover: float = 0.1
    """The share of the horizon over which ``heads_adam`` hands the heads from the trained step to Adam's (0: Adam's
    from the first step)."""
    heads_adam_min_horizon: int = 0
    """``heads_adam`` plays only in games of more than this many steps; in shorter ones the trained heads play
    throughout, bit for bit as without it (0: in every game). The rule reads the game's horizon off its clock, as
    round(t / progress) from the second step on (exact for horizons below 2**20 in float32, the bound's range); on the
    first it cannot, so the option needs a handover (``heads_handover`` > 0), whose weight is 0 there. On digits the
    trained heads lead at the suite's own horizon (100 steps) and Adam's at twice and five times it
    (docs/results/learned.md, thirty-second session)."""
    trunk_adam: bool = False
    """Also give each trunk proposal a per-player AMSGrad step on the player's own trunk gradient,
    −s·α_A·m̂/(√v̂_max + ε) (first moment at ``adam_beta1``, AMSGrad's running maximum of v̂ as the heads'), with a
    learned step α_A and a share s = (1 + cos πp)/2 · e^B(c·a) at progress p (a the clock network's third output):
    per coordinate it preconditions the trunk as the tuned Adam baselines do on MLP trunks, where the heavy ball's
    one step cannot serve every layer. Being per-player it moves the fixed point of ``sum`` while it plays (see
    :class:`~agents.learned.rules.MLPRule`); its share falls to 0 at the horizon's end and hands the trunk back to
    the shared heavy ball, whose fixed point is the game's. The brake, the warm-up and ``anneal`` scale it as they
    scale the heavy ball. Off by default; the shipped digits specialist and generalist have it added after training, the
    regression specialist shipped since K16 trains with it."""
    init_trunk_adam_lr: float = 0.01
    """Initial step α_A of the trunk's AMSGrad share (``trunk_adam``): a step in the trunk's own units (about α_A a
    coordinate). The guard measures its safe step along the heavy ball's direction and was not built to bound the
    share; too large a share diverges: the regression specialist's at α_A = 0.3 diverged in 22 of 48 validation
    games under ``sum``. Check a new value with ``-m slow tests/test_learned_stability.py``."""
    trunk_adam_beta1: float | None = None
    """The first-moment decay of the trunk's AMSGrad share (``trunk_adam``); ``None``: ``adam_beta1``, the heads'.
    0 makes the share an RMSprop step on the AMSGrad maximum: each player's current gradient over its own gradients'
    largest RMS so far."""
    adam_min_bounded_only: bool = False
    """The AMSGrad share (``trunk_adam``) plays only in games whose consensus rule lets the shortest proposal bound
    the move and is not linear (``mgda``: the game's ``min_bounded_consensus`` and not its ``linear_consensus``,
    :attr:`mtg_env.engine.Game.min_bounded_consensus`; the env's infos of those names). There every player's proposal
    caps the trunk's move, so a player whose gradients are small (near its own optimum) holds the others back: a
    share normalised by each player's own gradient RMS evens the players' proposals early in the game, as the tuned
    RMSprop and Adam baselines that win under ``mgda`` do, and falls to 0 by the horizon's end. Under the other rules
    the share does not play (under a linear rule a per-player step moves the trunk's fixed point while it plays).
    ``EngineDriver`` reads the game's, the agent the infos; a game that does not say (``MLPRule.init_state``
    without it) counts as not min-bounded: the share is off there."""
    balance_min_bounded: bool = False
    """Balance the players' trunk proposals in games whose consensus rule lets the shortest proposal bound the move
    and is not linear (``mgda``; the game's ``min_bounded_consensus`` and not its ``linear_consensus``, as for
    ``adam_min_bounded_only``). MGDA's min-norm point leans toward the shortest proposals, so a player whose gradient
    stays long (a hard task, or one whose head sharpens) loses its say in the trunk. Balanced, player m's heavy ball
    steps by G / ‖∇_Ψ ℓ_m‖ times the common step, G the mean over the game's players of ‖∇_Ψ ℓ_j‖ (the env's
    ``trunk_grad_norm_mean`` info; :func:`mtg_env.engine.trunk_grad_norm_mean`), as if every player's gradient were
    G long; and the AMSGrad share's direction (``trunk_adam``) is scaled to RMS 1 per player. The consensus rule then
    weighs the players by their directions, not their lengths. The move still vanishes where MGDA's min-norm point
    does (Pareto stationarity: G itself need not fall), and the share's schedule still takes it to 0 by the horizon's
    end. The factor G / ‖∇_Ψ ℓ_m‖ is not bounded: a player whose gradient collapses while its momentum does not
    proposes far, and the guard (which sees the balanced step) caps it; with ``guard=False`` (meta-training's
    default) nothing does, though MGDA's move stays within the shortest proposal. Where the guard caps a balanced
    proposal, its restart (a gradient step at the cap) steps as if the player's gradient were at least G long: a
    capped player whose gradient is short would otherwise bound every player's move. Such a restart is longer than
    the cap: for that player the balance, not the guard, sets the step (no stability test diverges with it:
    tests/test_learned_stability.py). Under the other rules nothing changes. ``EngineDriver`` reads the game's
    property and computes G from the step's Jacobian; the agent reads the infos; a game that does not say counts as
    not min-bounded (no balance)."""
    lift_growing: bool = True
    """With ``balance_min_bounded`` where it plays: the restart of a capped proposal is lifted (as if the player's
    gradient were at least G long) also on a step over whose last move the player's trunk gradient grew, as trained;
    ``False``: on such a step the restart is the guard's own, c·g / L̂. A lifted restart is longer than the cap, so
    along the player's stiffest direction it can overshoot, and a gradient that grew is the sign that it did: once
    the lift is held there, an oscillation it starts ends on the next step. On the stability tests' stiff quadratics
    the digits specialist's lifted restarts drifted one game of 26 under ``mgda`` to a blow-up over 1 000 steps
    (docs/results/learned.md, thirtieth session)."""
    guard_memory_noisy_bounded: float | None = None
    """The guard's ``guard_memory`` in games whose gradients are estimates (a minibatch a step, or a noise model:
    :attr:`mtg_env.engine.Game.stochastic_gradients`) and whose consensus rule lets the shortest proposal bound the
    move and is not linear (``mgda``; as for ``balance_min_bounded``); ``None``: ``guard_memory`` in every game. There
    the guard's secant ‖g_t − g_{t−1}‖ / ‖s‖ measures the minibatch's noise as well as the curvature: a capped
    proposal's ‖s‖ shrinks, the noise does not, so its L̂ grows and the cap tightens further, and L̂ lifts by only
    1/``guard_memory`` a step; under a min-bounded rule that one player's stalled proposal bounds every player's
    move (the digits specialist's trunk stopped moving a third of the way through 500-step ``mgda`` games). A lower
    memory here lets L̂ follow the newest secant. In games of exact gradients (the ill-conditioned quadratics the
    guard is for) ``guard_memory`` plays: a lower one there lets a stiff direction return (the digits specialist with
    0.3 everywhere diverged in 4 of 20 ``mgda`` games at condition 1e4–1e5 over ten times the horizon). Plays only
    with the guard; ``EngineDriver`` reads the game's properties, the agent the infos (a game that does not say counts
    as exact and not min-bounded). The digits specialist plays 0.3 (docs/results/learned.md, twenty-ninth session),
    and so does the portfolio wherever it picks that expert: every game of estimated gradients whose trunk is about
    500 coordinates or more (regression's widest trunks, a quadratic with a noise model), where 0.3 was not
    validated."""
    adam_floor: float = 0.0
    """> 0: the AMSGrad share also times min(1, ‖ΔΨ‖ / (this · the largest ‖ΔΨ‖ so far)): a game converging to
    its fixed point, whose moves fall far below its largest, is handed back to the heavy ball early (every player
    sees the same moves: the factor is the same for all)."""
    sum_scaled: bool = False
    """Scale every trunk proposal by the game's ``sum_scale``, M / γ (γ the consensus rule's unanimity gain,
    :func:`mtg_env.consensus.unanimity_gain`), so that proposals every player makes alike move the trunk as under
    ``sum``: under ``mean`` the game then plays exactly as under ``sum`` (the mean of M proposals M times the size is
    their sum; with a ``max_update`` bound, up to the clipping of the larger proposals), so a rule trained under
    ``sum`` keeps its trunk step under the rules that average. 1 under ``sum`` (the rule plays as without it), and 1
    where the game has no ``sum_scale`` (a consensus rule without a constant gain: the loss-aware rules, ``fairgrad``):
    there the proposals are played as they are (``trunk_scale`` of the agent or driver says which). Applied by the
    agent (the env's info ``sum_scale``) and by :class:`~agents.learned.batched.EngineDriver` (the game's), after
    the rule's guard."""
    trunk_reads_moves: bool = False
    """The trunk's shared step and momentum also read the consensus's own history, not only the clock: a small network
    (zero at initialisation: an untrained rule plays as without it) of the brake's growth average (the log growth of
    ‖ΔΨ‖ / (α_Ψ·c), averaged), its newest log growth, and log(‖ΔΨ‖ / the largest ‖ΔΨ‖ so far) adds to the trunk's log
    step (within ±``max_log_gain`` of its own, beside the clock schedule's: the two together move the log step by at
    most 2·``max_log_gain`` from ``trunk_log_lr``, before the warm-up, ``anneal``, the brake and the boost) and to its
    momentum logit. Every player sees the same moves, so every player's step stays the same and the game still stops
    where ``sum`` does; a game can then set its own trunk step from how its moves go (a game whose moves stall at a
    noise floor, one whose moves still fall), where the clock's schedule is the same for every game. Off by default; the
    regression specialist shipped since K16 plays it (docs/results/learned.md, twentieth session)."""
    seed: int = 0
    """Seed of the initial weights."""


@dataclass(frozen=True)
class LSTMRuleConfig(GuardConfig):
    """Hyper-parameters of :class:`LSTMRule` (Andrychowicz et al. 2016's values)."""

    hidden: int = 20
    """Units of each of the two LSTM layers."""
    preprocess_p: float = 10.0
    """p of the LogAndSign preprocessing."""
    output_scale: float = 0.1
    """The network's output times this is the update."""
    sum_scaled: bool = False
    """Trunk proposals times the game's ``sum_scale``: as :attr:`MLPRuleConfig.sum_scaled`."""
    seed: int = 0
    """Seed of the initial weights."""


@dataclass(frozen=True)
class StepRuleConfig(GuardConfig):
    """Hyper-parameters of :class:`StepRule`."""

    hidden: int = 32
    """Width of the hidden layer."""
    init_log_step: float = -3.0
    """Initial natural-log step size (head and trunk) of the untrained rule."""
    guard_raise: float = 2.0
    """Until the guard is armed, a block's step is at most this times its last one (after the first move)."""
    seed: int = 0
    """Seed of the initial weights."""
