"""A monitor for running experiments: continue, or stop for efficacy, futility or harm.

Give it the cumulative sufficient statistics of control and treatment at each look (daily, say)
and a method; it replays the looks in order and stops at the first boundary crossing:

* ``msprt`` — the mixture SPRT in its hybrid mode (:mod:`.always_valid`): an always-valid
  p-value and confidence sequence before the planned size, a calibrated fixed-horizon test at
  the first look that reaches it. The experiment may be looked at any number of times.
* ``gst-obf`` / ``gst-pocock`` — a group-sequential test with Lan-DeMets O'Brien-Fleming-type or
  Pocock-type alpha spending (:mod:`.group_sequential`) at the information fractions
  ``n / planned_n`` of the looks actually taken, with optional non-binding futility bounds.

Decisions are direction-aware: a significant effect in the metric's good direction is
``stop_efficacy``, in the bad direction ``stop_harm``. Reaching the planned size without either
is ``stop_futility`` (the test is over and found no effect it was powered for).

References:
    Johari, Koomen, Pekelis, Walsh (2017, 2022); Lan & DeMets (1983); Jennison & Turnbull (2000).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from splitlab.stats._validation import check_alternative, check_choice, check_positive, check_probability
from splitlab.stats.frequentist import GroupEstimate
from splitlab.stats.results import Interval
from splitlab.stats.sequential.always_valid import AlwaysValidResult, msprt
from splitlab.stats.sequential.group_sequential import sequential_look, spending_design
from splitlab.stats.statistics import MetricStatistic

METHODS = ("msprt", "gst-obf", "gst-pocock")
DECISIONS = ("continue", "stop_efficacy", "stop_futility", "stop_harm")
_SPENDING = {"gst-obf": "obrien-fleming", "gst-pocock": "pocock"}

Group = MetricStatistic | GroupEstimate

__all__ = ["DECISIONS", "METHODS", "MonitorLook", "MonitorResult", "monitor"]


@dataclass(frozen=True, slots=True)
class MonitorLook:
    """One look of the monitor.

    Attributes:
        look: 1-based look number.
        n: units in both groups at this look.
        information_fraction: ``n / planned_n`` (capped at 1 for group-sequential designs).
        effect: the effect estimate (absolute, or relative when the monitor is relative).
        statistic: ``effect / standard error``.
        boundary: the efficacy boundary on the statistic's scale for group-sequential designs;
            for the mSPRT the p-value threshold ``alpha``.
        p_value: the mSPRT's always-valid p-value; for a group-sequential design the stage-wise
            adjusted p-value once it stops (NaN while it continues).
        ci: the mSPRT's confidence sequence; a group-sequential design's repeated CI.
        decision: one of :data:`DECISIONS`.
        error_code: set when the data of this look allow no test (the monitor then continues).
    """

    look: int
    n: int
    information_fraction: float
    effect: float
    statistic: float
    boundary: float
    p_value: float
    ci: Interval
    decision: str
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class MonitorResult:
    """The looks and the decision that stands now.

    Group-sequential looks end at the first stop (the design ends there). mSPRT looks go on after
    an efficacy or harm crossing, since a confidence sequence holds at every look: the crossing
    stands and the interval keeps narrowing; they end at a futility stop.
    """

    method: str
    alpha: float
    alternative: str
    relative: bool
    planned_n: float
    higher_is_better: bool
    looks: tuple[MonitorLook, ...]

    @property
    def decision(self) -> str:
        """The decision at the last look (``continue`` when there is no look)."""
        return self.looks[-1].decision if self.looks else "continue"

    @property
    def stopped_at(self) -> int | None:
        """The look that stopped the experiment (the first crossing), if one did."""
        return next((look.look for look in self.looks if look.decision != "continue"), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (tuples become lists)."""
        data = asdict(self)
        data["looks"] = [{**asdict(look), "ci": list(look.ci)} for look in self.looks]
        data["decision"] = self.decision
        data["stopped_at"] = self.stopped_at
        return data


def _direction(effect: float, *, higher_is_better: bool) -> str:
    improved = effect > 0 if higher_is_better else effect < 0
    return "stop_efficacy" if improved else "stop_harm"


def _msprt_looks(
    looks: Sequence[tuple[Group, Group]], *, planned_n: float, alpha: float, alternative: str, relative: bool,
    higher_is_better: bool,
) -> list[MonitorLook]:  # fmt: skip
    out: list[MonitorLook] = []
    previous: AlwaysValidResult | None = None
    crossed: str | None = None  # the first crossing's decision, which stands
    for index, (control, treatment) in enumerate(looks, start=1):
        result = msprt(control, treatment, alpha=alpha, alternative=alternative, relative=relative,
                       planned_n=planned_n, previous=previous)  # fmt: skip
        previous = result
        if crossed is not None:
            decision = crossed
        elif result.error_code is None and result.significant:
            decision = crossed = _direction(result.effect, higher_is_better=higher_is_better)
        elif result.stage in ("final", "closed"):
            decision = "stop_futility"
        else:
            decision = "continue"
        code = None if result.error_code is None else str(result.error_code)
        out.append(MonitorLook(index, result.n, result.n / planned_n, result.effect, result.statistic, alpha,
                               result.p_value, result.ci, decision, code))  # fmt: skip
        # A confidence sequence holds at every look, so after a crossing the looks go on and the
        # interval keeps narrowing (a harmed guardrail can then be shown beyond its tolerance);
        # the crossing stays (the always-valid p-value never rises, the interval never widens).
        if decision == "stop_futility":
            break
    return out


def _gst_looks(
    looks: Sequence[tuple[Group, Group]], *, method: str, planned_n: float, alpha: float, alternative: str,
    relative: bool, futility: bool, higher_is_better: bool,
) -> list[MonitorLook]:  # fmt: skip
    spending = _SPENDING[method]
    design = spending_design([1.0], alpha=alpha, alternative=alternative, spending=spending,
                             futility=spending if futility else None)  # fmt: skip
    out: list[MonitorLook] = []
    fractions: list[float] = []
    for control, treatment in looks:
        look = sequential_look(control, treatment, design=design, previous_fractions=fractions, max_n=planned_n,
                               relative=relative)  # fmt: skip
        n = look.control_n + look.treatment_n
        if look.error_code is not None:
            out.append(MonitorLook(len(out) + 1, n, n / planned_n, look.effect, look.statistic, math.nan, math.nan,
                                   look.repeated_ci, "continue", str(look.error_code)))  # fmt: skip
            continue
        fractions.append(look.information_fraction)
        # The design's "efficacy" is a crossing in the direction of the alternative and "harm" the
        # opposite crossing of a two-sided design; map both to the metric's own direction.
        if look.decision in ("efficacy", "harm"):
            decision = _direction(look.effect, higher_is_better=higher_is_better)
        elif look.decision == "futility":
            decision = "stop_futility"
        else:
            decision = "continue"
        out.append(MonitorLook(len(out) + 1, n, look.information_fraction, look.effect, look.statistic,
                               look.efficacy_bound, look.p_value, look.repeated_ci, decision))  # fmt: skip
        if decision != "continue":
            break
    return out


def monitor(
    looks: Sequence[tuple[Group, Group]],
    *,
    method: str = "msprt",
    planned_n: float,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    relative: bool = False,
    futility: bool = False,
    higher_is_better: bool = True,
) -> MonitorResult:
    """Replay the looks of a running experiment and say whether to continue or stop.

    Args:
        looks: ``(control, treatment)`` cumulative statistics (or CUPED-adjusted
            :class:`GroupEstimate` pairs) at each look, in time order.
        method: ``msprt`` (default), ``gst-obf`` or ``gst-pocock``.
        planned_n: units in both groups together at the planned end (from the power analysis).
        alpha: type I error, in (0, 1).
        alternative: ``two-sided`` (efficacy and harm), ``greater`` or ``less``.
        relative: monitor the relative lift ``t / c - 1`` instead of the difference.
        futility: add non-binding futility bounds (group-sequential methods only).
        higher_is_better: the metric's direction, which tells efficacy from harm.

    Example:
        >>> from splitlab.stats.statistics import ProportionStatistic as P
        >>> days = [(P(2000 * d, 200 * d), P(2000 * d, 260 * d)) for d in range(1, 6)]
        >>> result = monitor(days, method="gst-obf", planned_n=20000)
        >>> result.decision, result.stopped_at
        ('stop_efficacy', 2)
    """
    check_choice("method", method, METHODS)
    check_positive("planned_n", planned_n)
    check_probability("alpha", alpha)
    check_alternative(alternative)
    if futility and method == "msprt":
        msg = "futility == True needs a group-sequential method ('gst-obf' or 'gst-pocock'), not 'msprt'"
        raise ValueError(msg)
    if method == "msprt":
        found = _msprt_looks(looks, planned_n=planned_n, alpha=alpha, alternative=alternative, relative=relative,
                             higher_is_better=higher_is_better)  # fmt: skip
    else:
        found = _gst_looks(looks, method=method, planned_n=planned_n, alpha=alpha, alternative=alternative,
                           relative=relative, futility=futility, higher_is_better=higher_is_better)  # fmt: skip
    return MonitorResult(method, alpha, alternative, relative, planned_n, higher_is_better, tuple(found))
