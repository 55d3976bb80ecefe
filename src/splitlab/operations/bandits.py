"""Bandit allocation of stored experiments: spec settings, the store's bandit state, and sticky assignment.

An experiment whose spec says ``allocation: {method: bandit, bandit: {...}}`` is run by a
context-free policy of :mod:`splitlab.bandits` in production mode:

* **Windows.** Weights are fixed within a window and recomputed when a new one begins: every
  ``update_minutes`` minutes (clock-aligned windows, the default: hourly), or after every
  ``update_every`` rewarded units. A unit belongs to the window of its stored assignment time,
  so every process attributes its reward to the same window.
* **State.** Rewards are kept in the store's bandit state (:class:`~splitlab.storage.BanditStateRepository`)
  as running ``n``, ``sum``, ``sum_sq`` per (variant, window) under the key
  ``"<variant>@<window>"``; each write is one atomic ``INSERT ... ON CONFLICT DO UPDATE``
  increment, so processes recording rewards at once lose nothing. Count-based windows also keep
  ``"~count@<w>"`` (rewarded units of window ``w``) and ``"~start@<w>"`` (``sum`` = the window's
  start, Unix seconds, written once by the process whose reward completed window ``w - 1``); a
  declared winner is kept as ``"~winner@<variant>"``.
* **Weights.** The weights of window ``p`` are :func:`splitlab.bandits.decide_weights` on the
  windows before ``p`` (period-weighted statistics, burn-in, floor, stopping rule), drawn with
  ``numpy.random.default_rng((seed, p))``: any process computes the same weights for a window
  (late rewards for earlier windows can still move them slightly).
* **Assignment.** :func:`splitlab.operations.assignment.assign` assigns a new unit with the
  current weights (hash-based, so the unit's bucket decides within the weights) and records it as
  a sticky assignment (the first writer wins); a unit with an assignment keeps its variant
  whatever the weights do.

A reward is one observation per unit, and the store keeps it so: a unit's first recorded reward
(its conversion as 1 or 0 at the end of its conversion window, its revenue over the attribution
window) is its reward, and later ones for the same unit are counted as duplicates, not added.
Clients can therefore re-send a batch after a timeout without counting anything twice.

Spec settings (``allocation.bandit``) are :class:`splitlab.specs.Bandit`, validated with the
spec (every bound, unknown keys, the floor against the number of variants, the policy's
options): ``policy``, ``options``, ``metric`` (the event whose occurrences or values are the
reward, for :func:`record_events`), ``update_minutes`` (default 60) or ``update_every``,
``burn_in``, ``floor``, ``stop_p_best``, ``stop_expected_loss``, ``draws``, ``statistics``, ``seed``,
``reward_range``.

Rewards are bounded: each must lie in ``allocation.bandit.reward_range``, by default ``[0, 1]``
for the Bernoulli policies and ``[-1e12, 1e12]`` (:attr:`splitlab.specs.Bandit.REWARD_LIMIT`) for
the others, so that no reward can make an arm's sum of squares infinite. The store refuses to
commit a total that is not finite whatever the caller, and totals an older store already holds
that are not finite are left out of the weights (with a warning) instead of freezing them.

Example:
    >>> from splitlab.operations.assignment import assign
    >>> from splitlab.storage import open_store
    >>> spec = {"key": "cta", "variants": [{"key": "a"}, {"key": "b"}],
    ...         "allocation": {"method": "bandit", "bandit": {"policy": "thompson", "update_every": 2}}}
    >>> with open_store("sqlite://") as store:
    ...     _ = store.experiments.create(key="cta", spec=spec, actor="ana", status="running")
    ...     first = assign(store, "cta", "user-1", record=True)
    ...     report = record_rewards(store, "cta", {"user-1": 1.0})
    ...     weights = current_weights(store, "cta")
    >>> first.reason, report.recorded, weights.phase, weights.weights
    ('enrolled', 1, 'burn-in', (0.5, 0.5))
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from splitlab.bandits import (
    PHASES,
    ArmEstimate,
    ContextualPolicy,
    Policy,
    ProductionSettings,
    decide_weights,
    make_contextual_policy,
    make_policy,
)
from splitlab.bandits.estimates import period_weighted_estimates
from splitlab.operations.errors import ConflictError, InvalidInputError
from splitlab.operations.experiments import experiment_with_allocation
from splitlab.specs import Bandit, ExperimentSpec
from splitlab.stats.srm import SrmResult, phased_srm_test, srm_test
from splitlab.stats.statistics import MeanStatistic
from splitlab.storage import AllocationPhase, BanditArm, BanditReward, Event, Store, WindowCounting
from splitlab.storage.bandits import NonFiniteTotalsError

__all__ = [
    "SETTINGS",
    "BanditSettings",
    "BanditWeights",
    "ContextualAllocation",
    "RecordedRewards",
    "bandit_estimates",
    "bandit_settings",
    "current_allocation",
    "current_weights",
    "features",
    "record_events",
    "record_reward",
    "record_rewards",
    "window_phases",
    "window_srm",
]

SETTINGS: tuple[str, ...] = tuple(Bandit.model_fields)
"""The keys ``allocation.bandit`` accepts."""

DEFAULT_UPDATE_MINUTES = 60.0

_log = logging.getLogger("splitlab.operations")


@dataclass(frozen=True, slots=True, kw_only=True)
class BanditSettings:
    """The validated ``allocation.bandit`` settings of a spec.

    Attributes:
        policy: the policy name.
        options: the policy's keyword options.
        context: the unit attributes a contextual policy decides on (empty: context-free).
        metric: the event name whose occurrences (value 1) or values are the reward, or None.
        update_minutes: window length in minutes for clock-aligned windows, or None.
        update_every: rewarded units per window for count-based windows, or None.
        production: burn-in, floor, stopping rule, draws, period weighting.
        seed: seed of the per-window generators.
        reward_range: the spec's ``[low, high]`` for a reward, or None: the policy's default
            (:meth:`reward_bounds`).
    """

    policy: str
    options: dict[str, Any] = field(default_factory=dict)
    context: tuple[str, ...] = ()
    metric: str | None = None
    update_minutes: float | None = DEFAULT_UPDATE_MINUTES
    update_every: int | None = None
    production: ProductionSettings = field(default_factory=ProductionSettings)
    seed: int = 0
    reward_range: tuple[float, float] | None = None

    def make_policy(self, n_arms: int) -> Policy:
        """A fresh context-free policy over ``n_arms`` arms."""
        return make_policy(self.policy, n_arms, **self.options)

    def make_contextual_policy(self, n_arms: int) -> ContextualPolicy:
        """A fresh contextual policy over ``n_arms`` arms on a constant 1 and the ``context`` attributes."""
        return make_contextual_policy(self.policy, n_arms, len(self.context) + 1, **self.options)

    def unit_interval(self, n_arms: int) -> bool:
        """Whether rewards must be in [0, 1] (the Bernoulli policies); contextual rewards are any number."""
        return not self.context and self.make_policy(n_arms).unit_interval

    def reward_bounds(self, n_arms: int) -> tuple[float, float]:
        """The ``[low, high]`` a reward must lie in: ``reward_range``, else ``[0, 1]`` for a Bernoulli
        policy, else the hard bound ``[-REWARD_LIMIT, REWARD_LIMIT]`` (:class:`splitlab.specs.Bandit`).
        """  # noqa: D205
        if self.reward_range is not None:
            return self.reward_range
        if self.unit_interval(n_arms):
            return (0.0, 1.0)
        return (-Bandit.REWARD_LIMIT, Bandit.REWARD_LIMIT)


@dataclass(frozen=True, slots=True)
class BanditWeights:
    """The allocation of a bandit experiment for one window.

    Attributes:
        experiment_key: the experiment.
        window: the window the weights apply to.
        variants: variant keys in spec order.
        weights: allocation probability per variant; they sum to 1.
        phase: ``burn-in``, ``adaptive`` or ``stopped`` (the winner has 100 %).
        winner: the winning variant once stopped, else None.
        p_best: posterior probability that each variant is the best (NaN once stopped earlier).
        expected_loss: per variant, ``E[max_j theta_j - theta_i]`` (NaN once stopped earlier).
        units: rewarded units of the earlier windows the weights are based on.
    """

    experiment_key: str
    window: int
    variants: tuple[str, ...]
    weights: tuple[float, ...]
    phase: str
    winner: str | None
    p_best: tuple[float, ...]
    expected_loss: tuple[float, ...]
    units: int

    def by_variant(self) -> dict[str, float]:
        """Weight per variant key."""
        return dict(zip(self.variants, self.weights, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (tuples become lists)."""
        data = asdict(self)
        for key in ("variants", "weights", "p_best", "expected_loss"):
            data[key] = list(data[key])
        return data


@dataclass(frozen=True, slots=True)
class RecordedRewards:
    """What a batch of rewards did: units ``recorded``, units ``skipped`` for having no assignment, and
    ``duplicates``: units whose reward was recorded before (kept, not added again)."""  # noqa: D205, D209

    recorded: int
    skipped: tuple[str, ...] = ()
    duplicates: int = 0


# ---------------------------------------------------------------------------------------------
# Settings


def bandit_settings(spec: ExperimentSpec) -> BanditSettings:
    """The settings of a bandit experiment, from its ``allocation.bandit``.

    A validated spec has checked every setting (:class:`splitlab.specs.Bandit`), so this converts.

    Raises:
        ValueError: the spec is not a bandit experiment.
    """
    bandit = spec.allocation.bandit
    if bandit is None:  # the spec gives bandit settings exactly when the method is bandit
        msg = f"allocation.method == {spec.allocation.method!r}, must be 'bandit' for a bandit experiment"
        raise ValueError(msg)
    minutes = DEFAULT_UPDATE_MINUTES if bandit.update_minutes is None else bandit.update_minutes
    return BanditSettings(
        policy=bandit.policy,
        options=dict(bandit.options),
        context=tuple(bandit.context),
        metric=bandit.metric,
        update_minutes=None if bandit.update_every is not None else minutes,
        update_every=bandit.update_every,
        production=ProductionSettings(**bandit.production_options()),
        seed=bandit.seed,
        reward_range=bandit.reward_range,
    )


# ---------------------------------------------------------------------------------------------
# State in the store


def _reward_key(variant: str, window: int) -> str:
    return f"{variant}@{window}"


def _weight_key(variant: str, window: int) -> str:
    return f"{_FROZEN}{variant}@{window}"


_FROZEN = "~weight:"
"""Key prefix of a window's frozen weights: ``~weight:<variant>@<window>``, ``n`` writers, ``sum`` their weights."""


@dataclass(frozen=True, slots=True)
class _State:
    stats: dict[int, np.ndarray[Any, np.dtype[np.float64]]]  # window -> (3, k): n, sum, sum_sq
    starts: tuple[tuple[int, float], ...]  # count-based windows: (window, start in Unix seconds), sorted
    winner: str | None
    frozen: dict[int, tuple[float, ...]] = field(default_factory=dict)  # window -> the weights in force


@dataclass(frozen=True, slots=True)
class _Experiment:
    spec: ExperimentSpec
    settings: BanditSettings
    status: str
    bucket_version: int


def _experiment(store: Store, key: str) -> _Experiment:
    record, spec = experiment_with_allocation(
        store, key, "bandit", why="weights and rewards are for bandit experiments"
    )
    return _Experiment(spec, bandit_settings(spec), record.status, spec.bucket_version)


def _read_state(store: Store, experiment: _Experiment) -> _State:
    variants = {v: i for i, v in enumerate(experiment.spec.variant_keys)}
    stats: dict[int, np.ndarray[Any, np.dtype[np.float64]]] = {}
    starts: list[tuple[int, float]] = []
    winners: list[tuple[int, str]] = []
    written: dict[int, np.ndarray[Any, np.dtype[np.float64]]] = {}  # window -> (2, k): writers, sum of weights
    for key, arm in _stored_totals(store, experiment.spec.key).items():
        name, _, suffix = key.rpartition("@") if key.startswith(_FROZEN) else key.partition("@")
        if name.startswith(_FROZEN) and name[len(_FROZEN) :] in variants and suffix.lstrip("-").isdigit():
            writers = written.setdefault(int(suffix), np.zeros((2, len(variants))))
            writers[:, variants[name[len(_FROZEN) :]]] += (arm.n, arm.sum)
        elif name == "~start" and suffix.lstrip("-").isdigit():
            starts.append((int(suffix), arm.sum / max(arm.n, 1)))
        elif name == "~winner" and suffix in variants:
            winners.append((-arm.n, suffix))
        elif name in variants and suffix.lstrip("-").isdigit():
            window = stats.setdefault(int(suffix), np.zeros((3, len(variants))))
            window[:, variants[name]] += (arm.n, arm.sum, arm.sum_sq)
    # A window's weights count once every variant's are written (the writes are one per variant);
    # processes that raced to freeze the same window wrote the same weights but for a reward read
    # in between, and their mean is kept.
    frozen = {w: tuple(float(x) for x in a[1] / a[0]) for w, a in written.items() if (a[0] > 0).all()}
    return _State(stats, tuple(sorted(starts)), min(winners)[1] if winners else None, frozen)


def _stored_totals(store: Store, experiment_key: str) -> dict[str, BanditArm]:
    """The experiment's bandit state, but the windows whose statistics hold a total that is not finite.

    The store refuses to write such a total (:class:`~splitlab.storage.bandits.NonFiniteTotalsError`),
    but a store written before it did may hold one (a reward of 1.5e308, squared): the statistics
    of every later window would be NaN, and the weights would stay near equal for good. So the
    statistics of that window are left out, every variant's (a window with one arm missing would
    compare nothing within it), and a warning is logged, once per process and total.
    """
    rows = store.bandits.get(experiment_key=experiment_key)
    bad = sorted(key for key, arm in rows.items() if not (math.isfinite(arm.sum) and math.isfinite(arm.sum_sq)))
    if not bad:
        return rows
    windows = {window for window in map(_statistics_window, bad) if window is not None}
    for key in bad:
        if (store.url, experiment_key, key) not in _REPORTED:
            _REPORTED.add((store.url, experiment_key, key))
            _log.warning(
                "experiment %r: bandit totals %r are not finite (written before rewards were bounded); "
                "their window is left out of the weights and estimates",
                experiment_key,
                key,
            )
    return {key: arm for key, arm in rows.items() if key not in bad and _statistics_window(key) not in windows}


_REPORTED: set[tuple[str, str, str]] = set()
"""(store, experiment, state key) of the totals that are not finite already logged: once per process, not per read."""


def _statistics_window(key: str) -> str | None:
    """The window whose statistics a state key holds (``<variant>@<w>``, ``~x:...@<w>``, ``~p:...@<w>``), else None."""
    if key.startswith("~") and not key.startswith((_CONTEXT, _PROPENSITY)):
        return None
    return key.rpartition("@")[2]


def _window(moment: datetime, settings: BanditSettings, state: _State) -> int:
    seconds = moment.timestamp()
    if settings.update_minutes is not None:
        return math.floor(seconds / (60.0 * settings.update_minutes))
    times = [start for _, start in state.starts]
    position = bisect.bisect_right(times, seconds)
    return 0 if position == 0 else state.starts[position - 1][0]


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        msg = f"now == {now!r}, must be timezone-aware"
        raise ValueError(msg)
    return now


# ---------------------------------------------------------------------------------------------
# Weights and assignment


def current_weights(store: Store, experiment_key: str, *, now: datetime | None = None) -> BanditWeights:
    """The weights of the window ``now`` falls in (default: the current time), from the earlier windows.

    A newly met stopping rule is recorded in the store, so the winner keeps 100 % from then on.

    Raises:
        NotFoundError: no experiment ``experiment_key``.
        ValueError: the experiment is not a bandit experiment, or its settings are invalid.
    """
    experiment = _experiment(store, experiment_key)
    if experiment.settings.context:
        message = (
            f"experiment {experiment_key!r} runs the contextual policy {experiment.settings.policy!r}: "
            "its weights are per unit, from the unit's attributes (POST /assign with them)"
        )
        raise ConflictError("allocation.bandit.policy", message)
    return _weights(store, experiment, _read_state(store, experiment), _now(now))


def _weights(store: Store, experiment: _Experiment, state: _State, now: datetime) -> BanditWeights:
    """The weights of the window ``now`` falls in: frozen the first time they are computed.

    The first computation of a window writes its weights to the store, and every later one (any
    process) reads them back, so the weights stay fixed for the whole window even when late
    rewards of earlier windows arrive meanwhile (they move the next window's): what the analysis
    checks the split against (:func:`window_phases`) is what the units were assigned with.
    """
    window = _window(now, experiment.settings, state)
    computed = _decide(experiment, state, window)
    frozen = state.frozen.get(window)
    if frozen is not None:
        return replace(computed, weights=frozen)
    key = experiment.spec.key
    if computed.winner is not None and state.winner is None:
        store.bandits.add(experiment_key=key, arm=f"~winner@{computed.winner}", n=1, sum=0.0, sum_sq=0.0)
    for variant, weight in zip(computed.variants, computed.weights, strict=True):
        store.bandits.add(experiment_key=key, arm=_weight_key(variant, window), n=1, sum=weight, sum_sq=0.0)
    return computed


def _decide(experiment: _Experiment, state: _State, window: int) -> BanditWeights:
    """The weights of ``window`` from the windows before it (no store access)."""
    variants = experiment.spec.variant_keys
    k = len(variants)
    earlier = sorted(w for w in state.stats if w < window)
    units = int(sum(state.stats[w][0].sum() for w in earlier))
    if state.winner is not None:
        weights = tuple(float(v == state.winner) for v in variants)
        nan = (math.nan,) * k
        return BanditWeights(experiment.spec.key, window, variants, weights, "stopped", state.winner, nan, nan, units)
    stats = np.stack([state.stats[w] for w in earlier], axis=1) if earlier else np.zeros((3, 1, k))
    policy = experiment.settings.make_policy(k)
    rng = np.random.default_rng((experiment.settings.seed, window) if window >= 0 else experiment.settings.seed)
    weights_array, phase, winner, p_best, loss = decide_weights(
        policy, stats[0], stats[1], stats[2], experiment.settings.production, rng
    )
    won = None if int(winner) < 0 else variants[int(winner)]
    return BanditWeights(
        experiment_key=experiment.spec.key,
        window=window,
        variants=variants,
        weights=tuple(float(w) for w in weights_array),
        phase=PHASES[int(phase)],
        winner=won,
        p_best=tuple(float(p) for p in p_best),
        expected_loss=tuple(float(x) for x in loss),
        units=units,
    )


# ---------------------------------------------------------------------------------------------
# Rewards


def record_reward(store: Store, experiment_key: str, unit_id: str, reward: float) -> None:
    """Record one unit's reward in the window and variant of its stored assignment (atomic increments).

    Raises:
        NotFoundError: no experiment ``experiment_key``.
        ValueError: the unit has no stored assignment, or the reward is not finite (or outside
            [0, 1] for a Bernoulli policy).
    """
    report = record_rewards(store, experiment_key, {unit_id: reward})
    if report.skipped:
        msg = f"unit {unit_id!r} has no assignment in experiment {experiment_key!r}; assign it first"
        raise ValueError(msg)


def record_rewards(
    store: Store,
    experiment_key: str,
    rewards: Mapping[str, float] | Iterable[tuple[str, float]],
    *,
    now: datetime | None = None,
) -> RecordedRewards:
    """Record one reward per unit, once: a unit rewarded before keeps its first reward.

    The batch is checked whole, then written in one transaction (all or nothing) that stores each
    new unit's reward and adds it to its (variant, window) totals with atomic ``INSERT ... ON
    CONFLICT DO UPDATE`` increments, so concurrent writers lose nothing and a re-sent batch adds
    nothing. A unit listed twice in one batch keeps its first reward; the repeat is a duplicate.

    Args:
        store: the store.
        experiment_key: the experiment.
        rewards: unit id -> that unit's reward, or ``(unit id, reward)`` pairs in the order received.
        now: the time a completed count-based window is recorded to end at (default: now).

    Returns:
        The units recorded, those skipped for having no assignment under the current bucket version,
        and how many were rewarded before (or earlier in the batch).

    Raises:
        NotFoundError: no experiment ``experiment_key``.
        ConflictError: the experiment is not a bandit experiment.
        InvalidInputError: rewards that are not finite or outside the reward range
            (:meth:`BanditSettings.reward_bounds`: ``allocation.bandit.reward_range``, else [0, 1]
            for a Bernoulli policy, else [-1e12, 1e12]), each named ``rewards.<position>.reward``;
            or (field ``rewards``) a batch that would make an arm's totals infinite.
    """
    experiment = _experiment(store, experiment_key)
    pairs = list(rewards.items()) if isinstance(rewards, Mapping) else list(rewards)
    low, high = experiment.settings.reward_bounds(len(experiment.spec.variants))
    problems = []
    for index, (unit_id, reward) in enumerate(pairs):
        if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
            problems.append(
                (f"rewards.{index}.reward", f"reward of unit {unit_id!r} == {reward!r}, must be a finite number")
            )
        elif not low <= reward <= high:
            message = f"reward of unit {unit_id!r} == {reward!r}, must be in [{low:g}, {high:g}] {_bounds(experiment)}"
            problems.append((f"rewards.{index}.reward", message))
    if problems:
        raise InvalidInputError(problems)
    first: dict[str, float] = {}
    for unit_id, reward in pairs:
        first.setdefault(unit_id, reward)
    repeated = len(pairs) - len(first)
    rewards = first
    assignments = store.assignments.get_many(experiment_key=experiment_key, unit_ids=rewards)
    state = _read_state(store, experiment) if experiment.settings.update_every is not None else None
    rows: list[BanditReward] = []
    windows: dict[str, int] = {}
    contexts: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
    skipped = []
    for unit_id, reward in rewards.items():
        stored = assignments.get(unit_id)
        if stored is None or stored.bucket_version != experiment.bucket_version:
            skipped.append(unit_id)
            continue
        context = None
        if experiment.settings.context:
            context = _exposed_context(store, experiment, unit_id)
            if context is None:
                skipped.append(unit_id)
                continue
            contexts[unit_id] = context
        window = _window(stored.assigned_at, experiment.settings, state or _State({}, (), None))
        windows[unit_id] = window
        rows.append(BanditReward(unit_id, stored.variant, _reward_key(stored.variant, window), float(reward)))
    every = experiment.settings.update_every
    try:
        new = store.bandits.add_rewards(
            experiment_key=experiment_key,
            bucket_version=experiment.bucket_version,
            rewards=rows,
            windows=None if every is None else WindowCounting(windows, every, _now(now).timestamp()),
        )
    except NonFiniteTotalsError as exc:  # within the bounds, yet the totals overflow: refused whole, nothing stored
        raise InvalidInputError([("rewards", str(exc))]) from None
    if contexts and new:
        _add_context_statistics(store, experiment, new, windows, contexts)
    return RecordedRewards(len(new), tuple(skipped), len(rows) - len(new) + repeated)


def _bounds(experiment: _Experiment) -> str:
    """Where a reward's bounds come from, for the message that refuses one outside them."""
    if experiment.settings.reward_range is not None:
        return "(allocation.bandit.reward_range)"
    if experiment.settings.unit_interval(len(experiment.spec.variants)):
        return f"for policy {experiment.settings.policy!r}"
    return "(the default bound; declare the rewards' range in allocation.bandit.reward_range)"


def record_events(store: Store, experiment_key: str, events: Iterable[Event]) -> RecordedRewards:
    """Record rewards from metric events: each event named ``allocation.bandit.metric`` adds its value (1 without one).

    Rewards are summed per unit within the batch (and capped at 1 for Bernoulli policies, where
    the reward is "converted"), then recorded with :func:`record_rewards`: a unit already rewarded
    keeps its first reward, so replaying events adds nothing.

    Raises:
        ValueError: the spec names no ``metric``.
    """
    experiment = _experiment(store, experiment_key)
    metric = experiment.settings.metric
    if metric is None:
        msg = f"allocation.bandit.metric is not set for experiment {experiment_key!r}; name the reward event"
        raise ValueError(msg)
    unit_interval = experiment.settings.unit_interval(len(experiment.spec.variants))
    rewards: dict[str, float] = {}
    for event in events:
        if event.name == metric:
            rewards[event.unit_id] = rewards.get(event.unit_id, 0.0) + (1.0 if event.value is None else event.value)
    if unit_interval:
        rewards = {unit: min(max(value, 0.0), 1.0) for unit, value in rewards.items()}
    return record_rewards(store, experiment_key, rewards)


def bandit_estimates(store: Store, experiment_key: str, *, alpha: float = 0.05) -> dict[str, ArmEstimate]:
    """Period-weighted mean reward per variant over every window (see :mod:`splitlab.bandits.estimates`).

    Raises:
        NotFoundError: no experiment ``experiment_key``.
        ValueError: the experiment has no rewards yet.
    """
    experiment = _experiment(store, experiment_key)
    state = _read_state(store, experiment)
    if not state.stats:
        msg = f"experiment {experiment_key!r} has no rewards yet"
        raise ValueError(msg)
    periods = [
        [MeanStatistic(round(n), float(s), float(ss)) for n, s, ss in state.stats[w].T] for w in sorted(state.stats)
    ]
    estimates = period_weighted_estimates(periods, alpha=alpha)
    return dict(zip(experiment.spec.variant_keys, estimates, strict=True))


# ---------------------------------------------------------------------------------------------
# Windows as allocation phases, for the analysis


def window_phases(store: Store, experiment_key: str, *, as_of: datetime | None = None) -> list[AllocationPhase]:
    """The bandit's windows as allocation phases: when each started and the weights in force.

    A window's weights are the ones frozen when it was first computed (:func:`current_weights`);
    a window with rewards but no frozen weights (recorded before weights were frozen) gets the
    weights recomputed from the windows before it. A contextual policy's weights are per unit: a
    window's are the mean of its rewarded units' probabilities (what a unit drawn from the
    window's traffic gets, on average). Consecutive windows with the same weights
    (burn-in, after a stop) are one phase. The analysis places each unit in the phase of its first
    exposure (docs/bandits.md, "Analysis"), checks the split per phase against these weights and
    combines per-phase effects with the period weighting (:mod:`splitlab.bandits.estimates`).

    Args:
        store: the store.
        experiment_key: a bandit experiment.
        as_of: leave out windows that started after this (aware) time; default none.

    Raises:
        NotFoundError: no experiment ``experiment_key``.
        ConflictError: the experiment is not a bandit experiment.
    """
    experiment = _experiment(store, experiment_key)
    state = _read_state(store, experiment)
    if experiment.settings.context:  # per-unit weights: each window's mean over its rewarded units
        state = replace(state, frozen=_mean_propensities(experiment, _stored_totals(store, experiment_key)))
        state.stats.clear()
    variants = experiment.spec.variant_keys
    stored = store.experiments.phases(key=experiment_key)
    first = stored[0].started_at if stored else _started_at(store, experiment_key)
    starts = dict(state.starts)
    windows: list[tuple[datetime | None, tuple[float, ...]]] = []
    for window in sorted(set(state.frozen) | set(state.stats)):
        if experiment.settings.update_minutes is not None:
            start: datetime | None = datetime.fromtimestamp(window * 60.0 * experiment.settings.update_minutes, UTC)
        else:
            start = datetime.fromtimestamp(starts[window], UTC) if window in starts else None
        if start is not None and first is not None and start <= first:
            start = None  # the experiment's own start opens its first window
        if as_of is not None and start is not None and start > as_of:
            break
        weights = state.frozen.get(window) or _decide(experiment, state, window).weights
        windows.append((start, weights))
    phases: list[AllocationPhase] = []
    for start, weights in windows:
        if phases and (start is None or np.allclose(weights, tuple(phases[-1].weights.values()), rtol=0, atol=1e-12)):
            continue
        if phases and start is not None and start <= phases[-1].started_at:
            continue
        at = start or first or datetime.now(UTC)
        version = max((p.spec_version for p in stored if p.started_at <= at), default=1)
        phases.append(
            AllocationPhase(experiment_key, len(phases) + 1, at, version, dict(zip(variants, weights, strict=True)))
        )
    return phases


def window_srm(store: Store, experiment_key: str, *, threshold: float = 0.001) -> SrmResult:
    """The split of a bandit experiment's exposed units, checked per window against its weights.

    The same check as the readout's (:func:`window_phases`, each unit in the window of its first
    exposure, :func:`splitlab.stats.srm.phased_srm_test`), from the unit counts alone: what the
    service's ``splitlab_srm_flag`` gauge reads at scrape time.

    Raises:
        NotFoundError: no experiment ``experiment_key``.
        ConflictError: the experiment is not a bandit experiment.
    """
    from splitlab.analysis.sql import CellKey, Source, aggregate_experiment
    from splitlab.specs import MetricDefinition

    experiment = _experiment(store, experiment_key)
    variants = experiment.spec.variant_keys
    phases = window_phases(store, experiment_key)
    # Unit counts need no metric, but the query takes one: any event name, none is summed here.
    units = MetricDefinition(name="units", kind="count", event=experiment.settings.metric or "~units")
    aggregates = aggregate_experiment(
        store.engine,
        experiment_key=experiment_key,
        metrics=[units],
        source=Source.splitlab_store(),
        phase_starts=[p.started_at for p in phases[1:]],
    )
    if len(phases) <= 1:
        weights = phases[0].weights if phases else {v: 1 / len(variants) for v in variants}
        counts = {v: aggregates.variant_units.get(v, 0) for v in variants}
        return srm_test(counts, {v: weights.get(v, 0.0) for v in variants}, threshold=threshold)
    per_window = [
        (
            {v: aggregates.cell_units.get(CellKey(v, None, None, p.phase), 0) for v in variants},
            {v: p.weights.get(v, 0.0) for v in variants},
        )
        for p in phases
    ]
    overall, _ = phased_srm_test(per_window, threshold=threshold)
    return overall


# ---------------------------------------------------------------------------------------------
# Contextual policies: per-unit weights from the unit's attributes

_CONTEXT = "~x:"
"""``~x:<variant>:<i>:<j>@<w>``: entry ``(i, j)``, ``i <= j``, of ``sum x x^T`` of the variant's rewarded
units of window ``w``; ``~x:<variant>:<i>:r@<w>``: entry ``i`` of ``sum r x``."""
_PROPENSITY = "~p:"
"""``~p:<variant>@<w>``: ``n`` rewarded units of window ``w``, ``sum`` their probabilities of the variant."""


def features(settings: BanditSettings, attributes: Mapping[str, Any] | None) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A unit's context vector for a contextual policy: a constant 1, then its ``context`` attributes.

    Raises:
        ValueError: an attribute missing, or not a finite number (the message names it).
    """
    values = [1.0]
    for name in settings.context:
        value = (attributes or {}).get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            msg = f"attributes.{name} == {value!r}, must be a finite number: the contextual bandit decides on it"
            raise ValueError(msg)
        values.append(float(value))
    return np.array(values)


@dataclass(frozen=True, slots=True)
class ContextualAllocation:
    """A contextual bandit's policy for one window: each unit's weights from its attributes.

    Attributes:
        experiment_key: the experiment.
        window: the window the policy decides in.
        variants: variant keys in spec order.
        policy: the policy fitted on the rewards of the earlier windows, or None during burn-in
            (equal weights).
        floor: every variant's minimum weight.
        settings: the experiment's bandit settings.
    """

    experiment_key: str
    window: int
    variants: tuple[str, ...]
    policy: ContextualPolicy | None
    floor: float
    settings: BanditSettings

    def weights(self, contexts: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Weights per row of ``contexts`` (``(m, features)``), ``(m, k)``, rows summing to 1.

        The policy's allocation (LinUCB: its choice, ties shared; linear Thompson: the exact
        ``P(best)``) floored as in production mode, ``floor + (1 - k floor) p``.
        """
        k = len(self.variants)
        if self.policy is None:
            return np.full((contexts.shape[0], k), 1.0 / k)
        return self.floor + (1.0 - k * self.floor) * self.policy.weights(contexts)

    def unit_weights(self, attributes: Sequence[Mapping[str, Any] | None]) -> list[tuple[float, ...]]:
        """Each unit's weights from its attributes (see :func:`features`)."""
        if not attributes:
            return []
        contexts = np.stack([features(self.settings, a) for a in attributes])
        return [tuple(row) for row in self.weights(contexts).tolist()]


def current_allocation(store: Store, experiment_key: str, *, now: datetime | None = None) -> ContextualAllocation:
    """The contextual policy of the window ``now`` falls in, fitted on the rewards of the earlier windows.

    Raises:
        NotFoundError: no experiment ``experiment_key``.
        ConflictError: the experiment is not a contextual bandit experiment.
    """
    experiment = _contextual(store, experiment_key)
    rows = _stored_totals(store, experiment_key)
    state = _read_state(store, experiment) if experiment.settings.update_every is not None else _State({}, (), None)
    window = _window(_now(now), experiment.settings, state)
    return _allocation(experiment, _context_statistics(experiment, rows), window)


def _contextual(store: Store, key: str) -> _Experiment:
    experiment = _experiment(store, key)
    if not experiment.settings.context:
        message = f"experiment {key!r} runs the context-free policy {experiment.settings.policy!r}"
        raise ConflictError("allocation.bandit.policy", message)
    return experiment


def _allocation(experiment: _Experiment, statistics: dict[int, Any], window: int) -> ContextualAllocation:
    variants = experiment.spec.variant_keys
    settings = experiment.settings
    earlier = [statistics[w] for w in sorted(statistics) if w < window]
    rewarded = sum(float(n.sum()) for n, _, _ in earlier)
    policy = None
    if rewarded >= max(settings.production.burn_in, 1):
        policy = settings.make_contextual_policy(len(variants))
        for n, gram, cross in earlier:
            for arm in range(len(variants)):
                if n[arm]:
                    policy.update_statistics(arm, n=round(n[arm]), xtx=gram[arm], xty=cross[arm])
    return ContextualAllocation(experiment.spec.key, window, variants, policy, settings.production.floor, settings)


def _context_statistics(experiment: _Experiment, rows: Mapping[str, Any]) -> dict[int, Any]:
    """Per window: rewarded units ``(k,)``, ``sum x x^T`` ``(k, d, d)`` and ``sum r x`` ``(k, d)``."""
    variants = {v: i for i, v in enumerate(experiment.spec.variant_keys)}
    k, d = len(variants), len(experiment.settings.context) + 1
    out: dict[int, Any] = {}
    for key, arm in rows.items():
        if not key.startswith(_CONTEXT):
            continue
        name, _, window = key.rpartition("@")
        parts = name[len(_CONTEXT) :].rsplit(":", 2)
        if len(parts) != 3 or parts[0] not in variants or not window.lstrip("-").isdigit():
            continue
        n, gram, cross = out.setdefault(int(window), (np.zeros(k), np.zeros((k, d, d)), np.zeros((k, d))))
        a, i = variants[parts[0]], int(parts[1])
        if parts[2] == "r":
            cross[a, i] += arm.sum
        else:
            j = int(parts[2])
            gram[a, i, j] += arm.sum
            if i != j:
                gram[a, j, i] += arm.sum
            elif i == 0:
                n[a] += arm.sum  # x_0 = 1: the (0, 0) entry counts the units
    return out


def _exposed_context(
    store: Store, experiment: _Experiment, unit_id: str
) -> np.ndarray[Any, np.dtype[np.float64]] | None:
    """The unit's context as logged with its exposure (the attributes it was assigned on), or None."""
    exposure = store.exposures.get(experiment_key=experiment.spec.key, unit_id=unit_id)
    if exposure is None:
        return None
    try:
        return features(experiment.settings, exposure.attributes)
    except ValueError:
        return None


def _add_context_statistics(
    store: Store,
    experiment: _Experiment,
    rewards: Sequence[BanditReward],
    windows: Mapping[str, int],
    contexts: Mapping[str, np.ndarray[Any, np.dtype[np.float64]]],
) -> None:
    """Add the new rewards' ``x x^T``, ``r x`` and propensities to their (variant, window) totals."""
    statistics = _context_statistics(experiment, _stored_totals(store, experiment.spec.key))
    allocations: dict[int, ContextualAllocation] = {}
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for reward in rewards:
        window, x = windows[reward.unit_id], contexts[reward.unit_id]
        allocation = allocations.get(window)
        if allocation is None:
            allocation = allocations[window] = _allocation(experiment, statistics, window)
        gram, cross = np.outer(x, x), reward.reward * x
        for i in range(len(x)):
            totals[f"{_CONTEXT}{reward.variant}:{i}:r@{window}"] = totals.get(
                f"{_CONTEXT}{reward.variant}:{i}:r@{window}", 0.0
            ) + float(cross[i])
            for j in range(i, len(x)):
                key = f"{_CONTEXT}{reward.variant}:{i}:{j}@{window}"
                totals[key] = totals.get(key, 0.0) + float(gram[i, j])
        shares = allocation.weights(x[None, :])[0]
        for variant, share in zip(allocation.variants, shares, strict=True):
            key = f"{_PROPENSITY}{variant}@{window}"
            totals[key] = totals.get(key, 0.0) + float(share)
            counts[key] = counts.get(key, 0) + 1
    for key, total in totals.items():
        store.bandits.add(experiment_key=experiment.spec.key, arm=key, n=counts.get(key, 1), sum=total, sum_sq=0.0)


def _mean_propensities(experiment: _Experiment, rows: Mapping[str, Any]) -> dict[int, tuple[float, ...]]:
    """Per window, each variant's mean probability over the window's rewarded units."""
    variants = {v: i for i, v in enumerate(experiment.spec.variant_keys)}
    sums: dict[int, np.ndarray[Any, np.dtype[np.float64]]] = {}
    for key, arm in rows.items():
        if not key.startswith(_PROPENSITY):
            continue
        name, _, window = key[len(_PROPENSITY) :].rpartition("@")
        if name in variants and window.lstrip("-").isdigit():
            sums.setdefault(int(window), np.zeros((2, len(variants))))[:, variants[name]] += (arm.n, arm.sum)
    return {w: tuple(float(x) for x in a[1] / a[0]) for w, a in sums.items() if (a[0] > 0).all()}


def _started_at(store: Store, experiment_key: str) -> datetime | None:
    """When the experiment first started running (a bandit records no allocation phase: its weights move), or None."""
    return next((v.changed_at for v in store.experiments.history(key=experiment_key) if v.status == "running"), None)
