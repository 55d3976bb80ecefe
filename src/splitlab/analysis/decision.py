"""The decision engine: from an experiment's readout to one of seven categories, with reasons.

Each treatment is judged against control by the first rule that holds, in this order (the table
and the reasoning are in ``docs/decisions.md``); every reason line starts with its rule's name:

1. ``INVALID`` (``health check``): an error-severity health check failed (SRM, data health).
   Nothing else can be trusted, so nothing else is looked at.
2. ``ROLLBACK`` (``guardrail breach``, ``goal harm``): a guardrail's CI of the relative effect lies
   wholly beyond its tolerated degradation in the bad direction, or a goal metric is significantly
   harmed. At any time, whatever the schedule.
3. ``INVALID`` (``primary metric``): the primary metric is missing, or untestable with its plan met.
4. ``EXTEND_TEST`` (``minimum duration``): fewer days run than the schedule's ``min_duration_days``.
5. ``EXTEND_TEST`` (``planned sample``): a fixed-horizon test below its planned sample, unless
   reaching it would take too long (then it is judged on the units it has). A sequential primary
   metric lets its boundary decide instead.
6. ``STRONG_LAUNCH``: significantly better, practically significant (the CI's lower end is at least
   the MDE), with strong evidence (``p < alpha / 10`` or chance to win >= 0.99), every guardrail
   shown within tolerance.
7. ``LAUNCH``: significantly better, no guardrail harmed beyond tolerance.
8. ``CONSIDER_LAUNCH``: significantly better but by less than the MDE; or not significant once
   the test is over, with a positive estimate and a chance to win >= 0.9.
9. ``EXTEND_TEST`` (``power``, ``sequential boundary``): not significant and the test has not had
   its power yet; the reasons say how many days are left at the current traffic.
10. ``NO_LAUNCH``: not significant and the test had its power (or extending would take too long).

With a sequential monitor on the primary metric its decision replaces the fixed-horizon test
(``stop_efficacy`` is significantly better, ``stop_harm`` significantly worse, ``stop_futility``
over without an effect, ``continue`` extend) and its confidence sequence replaces the CI. With
several treatments the best eligible one is chosen (rank of category, then the primary metric's
effect); a treatment to roll back wins over anything short of a launch.

Power is the power at the MDE given the standard error reached, never the "observed power" at the
estimated effect, which is a function of the p-value and says nothing new (Hoenig & Heisey 2001).

References:
    Kohavi, R., Tang, D., Xu, Y. (2020). Trustworthy Online Controlled Experiments. Cambridge
    University Press: ch. 17 (power and the minimum detectable effect), ch. 21 (SRM invalidates
    the experiment), ch. 7 (guardrail metrics).
    Chow, S.-C., Shao, J., Wang, H. (2008). Sample Size Calculations in Clinical Research, 2nd ed.,
    section 3.2.1 (power of the two-sample z-test, both tails).
    Hoenig, J. M., Heisey, D. M. (2001). The abuse of power. The American Statistician 55, 19-24.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from scipy import stats as sps

from splitlab.analysis.format import count, interval, num, p_value, pct, share, signed
from splitlab.analysis.readout import Decision, ExperimentReadout, MetricResult, Verdict
from splitlab.stats._validation import check_choice, check_positive, check_probability
from splitlab.stats.results import Interval

__all__ = ["DEFAULT_RULES", "RANK", "DecisionRules", "decide", "guardrail_status"]

SIGNIFICANCE = ("p_value", "chance_to_win")
# Order in which the treatments of one experiment are preferred (lower is better); ROLLBACK and
# INVALID are not eligible for a launch and are handled apart.
RANK = {
    Decision.STRONG_LAUNCH: 0,
    Decision.LAUNCH: 1,
    Decision.CONSIDER_LAUNCH: 2,
    Decision.EXTEND_TEST: 3,
    Decision.NO_LAUNCH: 4,
}
_LAUNCHES = (Decision.STRONG_LAUNCH, Decision.LAUNCH)


def _check_optional_positive(name: str, value: float | None) -> float | None:
    return None if value is None else check_positive(name, value)


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        msg = f"{name} == {value!r}, must be true or false"
        raise ValueError(msg)  # noqa: TRY004 - caller mistakes raise ValueError naming the field (DESIGN.md)
    return value


@dataclass(frozen=True, slots=True)
class DecisionRules:
    """The thresholds of the decision engine, each configurable per experiment.

    Attributes:
        alpha: significance level of the launch decision; None (default) uses each result's own
            ``alpha`` (the analysis's). A stricter value than the analysis's makes the decision
            stricter; the reported CIs stay those of the analysis.
        significance: ``p_value`` (default: the frequentist test, ``p < alpha``) or
            ``chance_to_win`` (Bayesian: better when the chance to win is at least
            ``chance_to_win_threshold``, worse when it is at most ``1 - chance_to_win_threshold``).
        chance_to_win_threshold: see ``significance``; in (0.5, 1), default 0.95.
        strong_launch_chance_to_win: strong evidence for STRONG_LAUNCH when the chance to win is
            at least this; in (0.5, 1), default 0.99.
        strong_launch_p_value_factor: strong evidence for STRONG_LAUNCH when
            ``p < alpha * factor``; in (0, 1], default 0.1 (``p < alpha / 10``).
        practical_significance: use the hypothesis MDE (default True): STRONG_LAUNCH needs the CI's
            lower end (in the good direction) to be at least the MDE, and a significant estimate
            below the MDE is CONSIDER_LAUNCH. Without an MDE the check is skipped.
        consider_launch_chance_to_win: a non-significant, positive result at the end of the test
            is CONSIDER_LAUNCH when its chance to win is at least this; in (0.5, 1), default 0.9.
        min_power_for_no_launch: a non-significant result is NO_LAUNCH once the test has at least
            this power at the MDE (before that, EXTEND_TEST); in (0, 1), default 0.8.
        default_max_degradation: tolerated relative degradation of a guardrail whose readout
            gives none; >= 0, default 0 (any significant harm rolls back).
        rollback_on_goal_harm: a goal metric significantly worse rolls back; default True.
        strong_launch_requires_guardrail_non_inferiority: STRONG_LAUNCH needs every guardrail's CI
            to exclude a degradation beyond its tolerance (non-inferiority shown), not just
            no breach; default True.
        extend_if_days_left_below: EXTEND_TEST only when fewer days than this are left at the
            current traffic, else NO_LAUNCH (the effect, if any, is too small to find in a
            reasonable time); > 0, default 30. None: always extend.
        max_duration_days: never extend past this many days in total (the schedule's
            ``max_duration_days``); > 0, default None (no limit).
    """

    alpha: float | None = None
    significance: Literal["p_value", "chance_to_win"] = "p_value"
    chance_to_win_threshold: float = 0.95
    strong_launch_chance_to_win: float = 0.99
    strong_launch_p_value_factor: float = 0.1
    practical_significance: bool = True
    consider_launch_chance_to_win: float = 0.9
    min_power_for_no_launch: float = 0.8
    default_max_degradation: float = 0.0
    rollback_on_goal_harm: bool = True
    strong_launch_requires_guardrail_non_inferiority: bool = True
    extend_if_days_left_below: float | None = 30.0
    max_duration_days: float | None = None

    def __post_init__(self) -> None:
        if self.alpha is not None:
            check_probability("alpha", self.alpha)
        check_choice("significance", self.significance, SIGNIFICANCE)
        for name in ("chance_to_win_threshold", "strong_launch_chance_to_win", "consider_launch_chance_to_win"):
            value = check_probability(name, getattr(self, name))
            if value <= 0.5:
                msg = f"{name} == {value}, must be > 0.5"
                raise ValueError(msg)
        check_probability("strong_launch_p_value_factor", self.strong_launch_p_value_factor, open_high=False)
        check_probability("min_power_for_no_launch", self.min_power_for_no_launch)
        check_positive("default_max_degradation", self.default_max_degradation, allow_zero=True)
        for name in (
            "practical_significance",
            "rollback_on_goal_harm",
            "strong_launch_requires_guardrail_non_inferiority",
        ):
            _check_bool(name, getattr(self, name))
        _check_optional_positive("extend_if_days_left_below", self.extend_if_days_left_below)
        _check_optional_positive("max_duration_days", self.max_duration_days)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> DecisionRules:
        """Rules from a mapping (a spec's YAML section); missing fields keep their defaults.

        Raises:
            ValueError: an unknown field (named, with the known ones) or a field out of bounds.

        Example:
            >>> DecisionRules.from_mapping({"min_power_for_no_launch": 0.9}).min_power_for_no_launch
            0.9
            >>> DecisionRules.from_mapping({"alhpa": 0.01})
            Traceback (most recent call last):
            ...
            ValueError: decision rules have unknown field(s) 'alhpa'; known: alpha, significance, ...
        """
        if not isinstance(mapping, Mapping):
            msg = f"decision rules must be a mapping of field to value, got {type(mapping).__name__}"
            raise ValueError(msg)  # noqa: TRY004 - caller mistakes raise ValueError (DESIGN.md)
        known = [f.name for f in fields(cls)]
        unknown = [str(key) for key in mapping if key not in known]
        if unknown:
            msg = f"decision rules have unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
            raise ValueError(msg)
        return cls(**mapping)


DEFAULT_RULES = DecisionRules()


@dataclass(frozen=True, slots=True, kw_only=True)
class Quote:
    """The interval and p-value one metric's result is quoted with, in the decision and in every table.

    With a sequential monitor they are its last look's: the confidence sequence (mSPRT) or the
    repeated CI (group-sequential), because only those stay valid under continuous looks, and the
    always-valid (mSPRT) or stage-wise (group-sequential; n/a until the design stops) p-value.
    Otherwise the fixed-horizon CI and p-value of the analysis (corrected when it says so).

    Attributes:
        relative_ci, absolute_ci: the interval on both scales, in the metric's own direction.
        p_value: the p-value quoted beside it.
        ci_name: what the interval is (``95% CI``, ``holm-corrected CI``, ``msprt confidence sequence``).
        p_name: what the p-value is (``p``, ``always-valid p``, ``stage-wise p``).
        monitor: the sequential monitor's decision, None without one.
    """

    relative_ci: Interval
    absolute_ci: Interval
    p_value: float
    ci_name: str
    p_name: str
    monitor: str | None


def quote(m: MetricResult) -> Quote:
    """The interval and p-value that every form quotes for ``m`` (see :class:`Quote`)."""
    e = m.effect
    seq = m.sequential
    if seq is not None and seq.looks:
        look = seq.looks[-1]
        if seq.relative:
            scale = abs(e.control_mean) if math.isfinite(e.control_mean) else math.nan
            rel_ci, abs_ci = look.ci, (look.ci[0] * scale, look.ci[1] * scale)
        else:
            abs_ci, rel_ci = look.ci, _to_relative(look.ci, e.control_mean)
        msprt = seq.method == "msprt"
        return Quote(
            relative_ci=rel_ci,
            absolute_ci=abs_ci,
            p_value=look.p_value,
            ci_name=f"{seq.method} {'confidence sequence' if msprt else 'repeated CI'}",
            p_name="always-valid p" if msprt else "stage-wise p",
            monitor=seq.decision,
        )
    corrected = e.correction not in (None, "none")
    return Quote(
        relative_ci=e.relative_ci,
        absolute_ci=e.absolute_ci,
        p_value=e.p_value,
        ci_name=f"{e.correction}-corrected CI" if corrected else f"{1 - e.alpha:.0%} CI",
        p_name="p",
        monitor=None,
    )


@dataclass(frozen=True, slots=True)
class _Evidence:
    """One metric readout seen in its good direction, on the relative and absolute scales.

    ``good`` and ``good_ci`` are the relative effect and CI signed so that positive is an
    improvement; ``good_abs`` and ``good_abs_ci`` the same on the absolute scale; ``quoted`` the
    interval and p-value as every form prints them.
    """

    metric: MetricResult
    good: float
    good_ci: Interval
    good_abs: float
    good_abs_ci: Interval
    better: bool
    worse: bool
    alpha: float
    quoted: Quote

    @property
    def p_value(self) -> float:
        return self.quoted.p_value

    @property
    def sequential(self) -> str | None:
        return self.quoted.monitor


def _oriented(ci: Interval, sign: float) -> Interval:
    low, high = sign * ci[0], sign * ci[1]
    return (low, high) if sign > 0 else (high, low)


def _to_relative(ci: Interval, control_mean: float) -> Interval:
    if control_mean == 0 or not math.isfinite(control_mean):
        return (math.nan, math.nan)
    scale = abs(control_mean)
    return (ci[0] / scale, ci[1] / scale)


def _evidence(m: MetricResult, rules: DecisionRules) -> _Evidence:
    e = m.effect
    sign = 1.0 if m.higher_is_better else -1.0
    alpha = rules.alpha if rules.alpha is not None else e.alpha
    quoted = quote(m)
    if quoted.monitor is not None:
        better, worse = quoted.monitor == "stop_efficacy", quoted.monitor == "stop_harm"
    elif rules.significance == "chance_to_win":
        better = m.chance_to_win >= rules.chance_to_win_threshold
        worse = m.chance_to_win <= 1 - rules.chance_to_win_threshold
    else:
        significant = bool(quoted.p_value < alpha)
        better = significant and sign * e.absolute_effect > 0
        worse = significant and sign * e.absolute_effect < 0
    return _Evidence(
        metric=m,
        good=sign * e.relative_effect,
        good_ci=_oriented(quoted.relative_ci, sign),
        good_abs=sign * e.absolute_effect,
        good_abs_ci=_oriented(quoted.absolute_ci, sign),
        better=better,
        worse=worse,
        alpha=alpha,
        quoted=quoted,
    )


def _describe(ev: _Evidence, *, absolute: bool = False) -> str:
    """``'conversion' (higher is better) b vs a: +3.21% (0.1 -> 0.1032), 95% CI [...], p = 0.0031, ...``.

    Then the chance to win and the sequential monitor's decision. The interval and p-value are
    :func:`quote`'s, formatted as the tables format them.
    """
    m, e, q = ev.metric, ev.metric.effect, ev.quoted
    direction = "higher is better" if m.higher_is_better else "lower is better"
    text = (
        f"'{m.metric}' ({direction}) {m.variant} vs {m.control}: {pct(e.relative_effect)} "
        f"({num(e.control_mean)} -> {num(e.treatment_mean)}), {q.ci_name} {interval(q.relative_ci)}"
    )
    if absolute:
        text += f", absolute {signed(e.absolute_effect)} {interval(q.absolute_ci, relative=False)}"
    shown = p_value(q.p_value)
    text += f", {q.p_name} {shown if shown.startswith('<') else '= ' + shown}"
    if q.monitor == "continue" and not math.isfinite(q.p_value) and q.p_name == "stage-wise p":
        text += " (given once the design stops)"
    text += f", chance to win {share(m.chance_to_win)}"
    if q.monitor is not None:
        text += f", sequential monitor: {q.monitor}"
    return text


def _critical(alpha: float, alternative: str, df: float | None) -> float:
    q = 1 - alpha / 2 if alternative == "two-sided" else 1 - alpha
    if df is not None and math.isfinite(df):
        return float(sps.t.ppf(q, df))
    return float(sps.norm.ppf(q))


def _standard_error(m: MetricResult) -> float:
    """Standard error of the absolute effect: the record's own, which the analysis always fills.

    A record built without it (by hand) has it read off its CI instead: an uncorrected CI is
    ``effect -/+ c * se`` with ``c`` the critical value of its ``alpha``; a corrected one is at an
    unknown per-comparison level, so ``|effect / statistic|`` is used.
    """
    if m.absolute_se is not None:
        return m.absolute_se
    e = m.effect
    if e.correction in (None, "none"):
        crit = _critical(e.alpha, e.alternative, e.df)
        sides = [
            side
            for side in (e.absolute_effect - e.absolute_ci[0], e.absolute_ci[1] - e.absolute_effect)
            if math.isfinite(side)
        ]
        if sides and crit > 0:
            return math.fsum(sides) / len(sides) / crit
    if math.isfinite(e.statistic) and e.statistic != 0 and math.isfinite(e.absolute_effect):
        return abs(e.absolute_effect / e.statistic)
    return math.nan


@dataclass(frozen=True, slots=True)
class _Power:
    """Power at the MDE, and the smallest effect detectable at ``target`` power (on the MDE's scale)."""

    power: float
    detectable: float
    target: float


def _power(m: MetricResult, *, mde: float, relative: bool, alpha: float, target: float) -> _Power | None:
    """``power = Phi(d/se - z) + Phi(-d/se - z)``, ``detectable = (z + z_target) se`` (Chow et al. 2008, 3.2.1).

    ``d`` is the MDE on the absolute scale (``mde * |control mean|`` for a relative MDE, as the
    sample size was planned) and ``z`` the critical value of ``alpha`` for the test's alternative.
    """
    se = _standard_error(m)
    scale = abs(m.effect.control_mean) if relative else 1.0
    delta = mde * scale
    if not (math.isfinite(se) and se > 0 and math.isfinite(delta) and delta > 0):
        return None
    z = _critical(alpha, m.effect.alternative, None)
    power = float(sps.norm.cdf(delta / se - z))
    if m.effect.alternative == "two-sided":
        power += float(sps.norm.cdf(-delta / se - z))
    detectable = (z + float(sps.norm.ppf(target))) * se / scale
    return _Power(power, detectable, target)


def _mde_text(mde: float, *, relative: bool) -> str:
    return share(mde, 2) if relative else num(mde)


@dataclass(frozen=True, slots=True)
class _Judgement:
    category: Decision
    reasons: tuple[str, ...]
    variant: str
    score: float


@dataclass(frozen=True, slots=True)
class _Context:
    readout: ExperimentReadout
    rules: DecisionRules
    mde: float | None
    mde_relative: bool
    primary: str | None


def _weights(readout: ExperimentReadout) -> dict[str, float]:
    total = math.fsum(readout.configured_weights.values())
    return {k: w / total for k, w in readout.configured_weights.items()} if total > 0 else {}


def _days_for(readout: ExperimentReadout, needed: Mapping[str, float]) -> float | None:
    """Days until every variant of ``needed`` has its extra units, at the configured split of the current traffic."""
    weights = _weights(readout)
    days = 0.0
    for variant, extra in needed.items():
        rate = readout.daily_units * weights.get(variant, 0.0)
        if extra <= 0:
            continue
        if not (math.isfinite(rate) and rate > 0):
            return None
        days = max(days, extra / rate)
    return days


def _traffic_text(readout: ExperimentReadout) -> str:
    return f"at the current {count(readout.daily_units)} units a day"


def _days_text(readout: ExperimentReadout, days: float | None) -> str:
    if days is None:
        return "days left unknown (no traffic to project from)"
    return f"about {days:.1f} more days {_traffic_text(readout)}"


def _health(readout: ExperimentReadout) -> tuple[list[str], list[str]]:
    """Reasons of failed error checks, and of the other failed checks (warnings, infos)."""
    errors = [
        f"health check: '{h.name}' failed: {h.message}"
        for h in readout.health
        if not h.passed and h.severity == "error"
    ]
    srm = readout.srm
    if srm.flag and not any("srm" in h.name.lower() or "sample ratio" in h.name.lower() for h in readout.health):
        shares = ", ".join(f"{v}={share(s)}" for v, s in zip(srm.variants, srm.observed_shares, strict=True))
        errors.append(
            f"health check: sample ratio mismatch: actual split {shares}, p = {p_value(srm.p_value)} "
            f"(below {srm.threshold:g})"
        )
    others = [
        f"health check: '{h.name}' ({h.severity}) failed: {h.message}"
        for h in readout.health
        if not h.passed and h.severity != "error" and h.name != _SAMPLE_SIZE_CHECK
    ]
    return errors, others


# The analysis's check of the planned sample; the planned-sample rule speaks for it.
_SAMPLE_SIZE_CHECK = "sample_size"
_PLANNED = "planned sample"


def _sample_size_reason(readout: ExperimentReadout, verdict: _Judgement, sequential: bool) -> list[str]:
    """The failed sample-size check in the decision's words, unless the planned-sample rule already spoke."""
    failed = [h for h in readout.health if h.name == _SAMPLE_SIZE_CHECK and not h.passed]
    if not failed or any(r.startswith(f"{_PLANNED}:") for r in verdict.reasons):
        return []
    if verdict.category == Decision.ROLLBACK:
        why = "a rollback does not wait for it"
    elif sequential:
        why = "a sequential design may stop before it: its boundary decides"
    else:
        why = "the decision does not rest on the primary metric's test"
    return [f"{_PLANNED}: health check '{_SAMPLE_SIZE_CHECK}' failed: {failed[0].message}; {why}."]


# How a guardrail stands against its tolerated degradation, in the one wording every form uses.
TOLERANCE_WORDS = {
    "beyond": "harmed beyond tolerance",
    "unshown": "not shown to be within tolerance",
    "within": "shown within tolerance",
}


def _guardrail_status(ev: _Evidence, tolerance: float) -> str:
    """The state of one guardrail against its tolerated degradation.

    ``breached``: the CI lies wholly beyond ``-tolerance``; ``harmed``: significantly worse but not
    breached; ``uncertain``: the CI reaches past ``-tolerance``; else ``ok``.
    """
    low, high = ev.good_ci
    if high < -tolerance:
        return "breached"
    if ev.worse or high < 0:
        return "harmed"
    if not low >= -tolerance:
        return "uncertain"
    return "ok"


def _guardrail_words(ev: _Evidence, tolerance: float) -> str:
    """A guardrail's state in :data:`TOLERANCE_WORDS`, after ``significantly worse,`` when it is."""
    status = _guardrail_status(ev, tolerance)
    if status == "breached":
        return TOLERANCE_WORDS["beyond"]
    words = TOLERANCE_WORDS["unshown" if not ev.good_ci[0] >= -tolerance else "within"]
    return f"significantly worse, {words}" if status == "harmed" else words


def _tolerance(m: MetricResult, rules: DecisionRules) -> float:
    return rules.default_max_degradation if m.max_degradation is None else m.max_degradation


def guardrail_status(metric: MetricResult, *, rules: DecisionRules = DEFAULT_RULES) -> str:
    """Where a guardrail stands against its tolerated degradation, as the decision engine sees it.

    Returns:
        ``breached`` (the CI of the relative effect lies wholly beyond the tolerated degradation in
        the bad direction: ROLLBACK), ``harmed`` (significantly worse, not breached), ``uncertain``
        (the CI reaches past the tolerated degradation) or ``ok``.
    """
    return _guardrail_status(_evidence(metric, rules), _tolerance(metric, rules))


def guardrail_words(metric: MetricResult, *, rules: DecisionRules = DEFAULT_RULES) -> str:
    """A guardrail's state in the words the decision uses (:data:`TOLERANCE_WORDS`).

    Example: ``significantly worse, shown within tolerance`` for a CI of [-1.5%, -0.5%] against a
    tolerated degradation of 2%.
    """
    return _guardrail_words(_evidence(metric, rules), _tolerance(metric, rules))


def _guardrail_line(m: MetricResult, ev: _Evidence, rules: DecisionRules, rule: str = "guardrail") -> str:
    tolerance = _tolerance(m, rules)
    return (
        f"{rule}: {_describe(ev)}: {_guardrail_words(ev, tolerance)} "
        f"(tolerated degradation {share(tolerance, 1)}, against the CI's bad end)"
    )


def _judge(ctx: _Context, treatment: str) -> _Judgement:
    readout, rules = ctx.readout, ctx.rules
    mine = [m for m in readout.metrics if m.variant == treatment]
    goals = [m for m in mine if m.role == "goal"]
    primary = next((m for m in goals if m.metric == ctx.primary), None) if ctx.primary else None
    if primary is None and ctx.primary is None and goals:
        primary = goals[0]
    guards = [(m, _evidence(m, rules)) for m in mine if m.role == "guardrail"]
    status = {m.metric: _guardrail_status(ev, _tolerance(m, rules)) for m, ev in guards}

    breaches = [_guardrail_line(m, ev, rules, "guardrail breach") for m, ev in guards if status[m.metric] == "breached"]
    goal_evidence = [(m, _evidence(m, rules)) for m in goals]
    harmed_goals = [f"goal harm: {_describe(ev)}: significantly worse." for m, ev in goal_evidence if ev.worse]
    if breaches or (rules.rollback_on_goal_harm and harmed_goals):
        head = (
            f"rollback: roll back '{treatment}' at once, whatever the schedule: a guardrail is harmed beyond "
            "tolerance or a goal metric is significantly worse."
        )
        reasons = [head, *breaches]
        if rules.rollback_on_goal_harm:
            reasons += harmed_goals
        return _Judgement(Decision.ROLLBACK, tuple(reasons), treatment, -math.inf)

    if primary is None:
        wanted = f"'{ctx.primary}'" if ctx.primary else "a goal metric"
        reason = f"primary metric: no readout of {wanted} for '{treatment}': there is nothing to decide on."
        return _Judgement(Decision.INVALID, (reason,), treatment, -math.inf)
    ev = next(ev for m, ev in goal_evidence if m is primary)
    verdict = _judge_primary(ctx, treatment, ev, status)
    return _Judgement(
        verdict.category,
        verdict.reasons + tuple(_context_reasons(ctx, treatment, primary, guards, goal_evidence, status)),
        verdict.variant,
        verdict.score,
    )


def _below_plan(readout: ExperimentReadout, treatment: str) -> bool:
    planned = readout.planned_units_per_variant
    return planned is not None and any(readout.units.get(v, 0) < planned for v in (readout.control, treatment))


def _sample_text(readout: ExperimentReadout, treatment: str) -> str:
    """``control=9,000 / treatment=8,900 units of the planned 10,000 per variant (2,100 more in all)``."""
    sides = (readout.control, treatment)
    planned = readout.planned_units_per_variant
    text = " / ".join(f"{v}={count(readout.units.get(v, 0))}" for v in sides) + " units"
    if planned is None:
        return text
    left = sum(max(planned - readout.units.get(v, 0), 0) for v in sides)
    text += f" of the planned {count(planned)} per variant"
    return text + (f" ({count(left)} more in all)" if left else "")


def _cap(readout: ExperimentReadout, rules: DecisionRules) -> float | None:
    """The longest total duration: the rules' or the schedule's, whichever is shorter."""
    caps = [c for c in (rules.max_duration_days, readout.max_duration_days) if c is not None]
    return min(caps) if caps else None


def _waits(ctx: _Context, treatment: str, ev: _Evidence, *, untestable: bool) -> tuple[list[str], str]:
    """The schedule's and the plan's reasons to keep running, and why a plan out of reach is not one.

    Minimum duration: no launch or no-launch category before ``min_duration_days`` of running.
    Planned sample: a fixed-horizon test (no sequential monitor on the primary metric) read before
    its planned sample overstates its evidence; it is read when the plan is met, or when reaching it
    would take longer than the rules allow (then it is judged on the units it has).
    """
    readout, rules = ctx.readout, ctx.rules
    lines: list[str] = []
    minimum = readout.min_duration_days
    if minimum is not None and readout.days_running < minimum:
        left = minimum - readout.days_running
        lines.append(
            f"minimum duration: {readout.days_running:.1f} of the schedule's {minimum:g} days run; keep "
            f"'{treatment}' running {left:.1f} more days before deciding to launch or not."
        )
    out_of_reach = ""
    if ev.sequential is None and _below_plan(readout, treatment):
        to_plan = _days_to_plan(readout, treatment)
        too_long = None if untestable else _too_long(readout, rules, to_plan)
        sample = _sample_text(readout, treatment)
        if too_long is None:
            lines.append(
                f"{_PLANNED}: {sample}; keep '{treatment}' running, {_days_text(readout, to_plan)}: a fixed-horizon "
                "test read before its planned sample overstates its evidence."
            )
        else:
            out_of_reach = f"{_PLANNED}: {sample}, not reached; {too_long} It is judged on the units it has."
    return lines, out_of_reach


def _judge_primary(ctx: _Context, treatment: str, ev: _Evidence, status: Mapping[str, str]) -> _Judgement:
    rules, m, readout = ctx.rules, ev.metric, ctx.readout
    score = ev.good if math.isfinite(ev.good) else -math.inf
    absolute = ctx.mde is not None and not ctx.mde_relative
    described = _describe(ev, absolute=absolute)
    untestable = ev.sequential is None and not math.isfinite(ev.p_value) and rules.significance == "p_value"
    why = m.effect.error_message or (str(m.effect.error_code) if m.effect.error_code else "no p-value")
    if untestable and not _below_plan(readout, treatment):
        reason = f"primary metric: '{m.metric}' could not be tested ({why}): no decision can be made on it."
        return _Judgement(Decision.INVALID, (reason,), treatment, -math.inf)
    waits, out_of_reach = _waits(ctx, treatment, ev, untestable=untestable)
    extra = (out_of_reach,) if out_of_reach else ()
    if waits:
        interim = (
            f"interim: '{m.metric}' could not be tested yet ({why})."
            if untestable
            else f"interim (not a decision): {described}."
        )
        return _Judgement(Decision.EXTEND_TEST, (*waits, *extra, interim), treatment, score)
    if ev.better:
        verdict = _judge_better(ctx, treatment, ev, status, described, score)
        return _Judgement(verdict.category, verdict.reasons + extra, treatment, score)
    return _judge_not_better(ctx, treatment, ev, described, score, out_of_reach)


def _strong_evidence(ev: _Evidence, rules: DecisionRules) -> bool:
    return bool(ev.p_value < ev.alpha * rules.strong_launch_p_value_factor) or (
        ev.metric.chance_to_win >= rules.strong_launch_chance_to_win
    )


def _judge_better(
    ctx: _Context, treatment: str, ev: _Evidence, status: Mapping[str, str], described: str, score: float
) -> _Judgement:
    rules = ctx.rules
    practical = rules.practical_significance and ctx.mde is not None
    mde = ctx.mde if ctx.mde is not None else math.nan
    estimate = ev.good if ctx.mde_relative else ev.good_abs
    lower = (ev.good_ci if ctx.mde_relative else ev.good_abs_ci)[0]
    mde_text = _mde_text(mde, relative=ctx.mde_relative)
    what = "significantly better" if ev.sequential is None else "better (the sequential monitor stopped for efficacy)"
    if practical and not estimate >= mde:
        reason = (
            f"consider launch: consider launching '{treatment}': {described}; {what}, but the estimate is below "
            f"the MDE of {mde_text}, the smallest effect worth shipping the test was planned for."
        )
        return _Judgement(Decision.CONSIDER_LAUNCH, (reason,), treatment, score)
    strong = _strong_evidence(ev, rules)
    require = rules.strong_launch_requires_guardrail_non_inferiority
    blocking = ["harmed", "uncertain"] if require else ["harmed"]
    flagged = sorted(name for name, s in status.items() if s in blocking)
    above = not practical or lower >= mde
    if above and strong and not flagged:
        evidence = (
            f"p < alpha x {rules.strong_launch_p_value_factor:g} or chance to win >= "
            f"{share(rules.strong_launch_chance_to_win)}"
        )
        floor = f"; the CI's lower end is at least the MDE of {mde_text}" if practical else ""
        if not status:
            guards = "no guardrail to check"
        elif require:
            guards = f"every guardrail {TOLERANCE_WORDS['within']}"
        else:
            guards = "no guardrail significantly worse"
        reason = (
            f"strong launch: launch '{treatment}' with confidence: {described}; {what}{floor}; strong evidence "
            f"({evidence}); {guards}."
        )
        return _Judgement(Decision.STRONG_LAUNCH, (reason,), treatment, score)
    short = []
    if not above:
        short.append(f"the CI's lower end is below the MDE of {mde_text}")
    if not strong:
        short.append(
            f"the evidence is not strong (p >= alpha x {rules.strong_launch_p_value_factor:g} and chance "
            f"to win < {share(rules.strong_launch_chance_to_win)})"
        )
    if flagged:
        short.append(f"guardrail(s) {', '.join(map(repr, flagged))} (below)")
    guards = f"no guardrail {TOLERANCE_WORDS['beyond']}" if status else "no guardrail to check"
    reason = f"launch: launch '{treatment}': {described}; {what}; {guards}. Not a strong launch: {'; '.join(short)}."
    return _Judgement(Decision.LAUNCH, (reason,), treatment, score)


def _days_to_plan(readout: ExperimentReadout, treatment: str) -> float | None:
    planned = readout.planned_units_per_variant
    if planned is None:
        return None
    needed = {v: planned - readout.units.get(v, 0) for v in (readout.control, treatment)}
    return _days_for(readout, needed)


def _judge_not_better(
    ctx: _Context, treatment: str, ev: _Evidence, described: str, score: float, out_of_reach: str
) -> _Judgement:
    readout, rules, m = ctx.readout, ctx.rules, ev.metric
    sides = (readout.control, treatment)
    lead = f"no significant difference: {described}."
    over_reasons: list[str] = []
    days: float | None = None
    days_text = ""
    rule = "power"
    if ev.sequential is not None and m.sequential is not None:
        rule = "sequential boundary"
        look = m.sequential.looks[-1]
        over = ev.sequential != "continue"
        if over:
            over_reasons.append(
                f"{rule}: the {m.sequential.method} monitor stopped for futility at look {look.look} "
                f"with {count(look.n)} of {count(m.sequential.planned_n)} planned units."
            )
        else:
            weights = _weights(readout)
            rate = readout.daily_units * (weights.get(sides[0], 0.0) + weights.get(sides[1], 0.0))
            extra = m.sequential.planned_n - look.n
            days = extra / rate if rate > 0 and math.isfinite(rate) else None
            days_text = (
                f"the {m.sequential.method} monitor continues: {count(look.n)} of "
                f"{count(m.sequential.planned_n)} planned units in both groups"
            )
    else:
        planned = readout.planned_units_per_variant
        power = None
        if ctx.mde is not None:
            power = _power(
                m, mde=ctx.mde, relative=ctx.mde_relative, alpha=ev.alpha, target=rules.min_power_for_no_launch
            )
        sample = _sample_text(readout, treatment)
        if out_of_reach:
            # The plan cannot be met in the time allowed: the test is over, judged on what it has.
            over = True
            if power is not None:
                over_reasons.append(
                    f"power: with {sample} the test has {share(power.power)} power at the MDE of "
                    f"{_mde_text(ctx.mde or math.nan, relative=ctx.mde_relative)}."
                )
            over_reasons.append(out_of_reach)
        elif power is not None:
            power_text = (
                f"with {sample} the test has {share(power.power)} power at the MDE of "
                f"{_mde_text(ctx.mde or math.nan, relative=ctx.mde_relative)}; the smallest effect it can detect "
                f"with {share(power.target, 0)} power is {_mde_text(power.detectable, relative=ctx.mde_relative)}"
            )
            over = power.power >= rules.min_power_for_no_launch
            if over:
                over_reasons.append(f"power: the test had its power: {power_text}.")
            else:
                # Planned sample reached (or none planned) but the variance is larger than planned:
                # the standard error shrinks as 1/sqrt(n), so n must grow by (detectable / mde)^2.
                factor = (power.detectable / (ctx.mde or math.nan)) ** 2
                days = _days_for(readout, {v: (factor - 1) * readout.units.get(v, 0) for v in sides})
                needs = f"power {share(rules.min_power_for_no_launch, 0)} needs about {factor:.2g}x the units"
                days_text = f"{power_text} ({needs})"
        elif planned is not None:
            over = True
            over_reasons.append(f"{_PLANNED}: the test reached its planned sample: {sample}.")
        else:
            over = True
            over_reasons.append(f"{_PLANNED}: there is no planned sample size or MDE to extend the test towards.")
    if not over:
        too_long = _too_long(readout, rules, days)
        if too_long is None:
            return _Judgement(
                Decision.EXTEND_TEST,
                (
                    f"{rule}: keep '{treatment}' running: {lead}",
                    f"{rule}: not yet conclusive: {days_text}; {_days_text(readout, days)}.",
                ),
                treatment,
                score,
            )
        over_reasons.append(too_long)
    if ev.good > 0 and m.chance_to_win >= rules.consider_launch_chance_to_win:
        reason = (
            f"consider launch: consider launching '{treatment}': {lead} The estimate is positive with a chance to "
            f"win of {share(m.chance_to_win)} (at least {share(rules.consider_launch_chance_to_win)})."
        )
        return _Judgement(Decision.CONSIDER_LAUNCH, (reason, *over_reasons), treatment, score)
    no_launch = f"no launch: do not launch '{treatment}': {lead}"
    return _Judgement(Decision.NO_LAUNCH, (no_launch, *over_reasons), treatment, score)


def _too_long(readout: ExperimentReadout, rules: DecisionRules, days: float | None) -> str | None:
    """Why extending is not worth it (a reason line naming its rule), or None."""
    if days is None:
        return None
    limit = rules.extend_if_days_left_below
    if limit is not None and days >= limit:
        return (
            f"extension limit: extending would take about {days:.1f} more days {_traffic_text(readout)}, more than "
            f"the {limit:g}-day limit for an extension."
        )
    cap = _cap(readout, rules)
    if cap is not None and readout.days_running + days > cap:
        return (
            f"maximum duration: extending would take about {days:.1f} more days {_traffic_text(readout)}, past the "
            f"maximum duration of {cap:g} days ({readout.days_running:.1f} days run)."
        )
    return None


def _context_reasons(
    ctx: _Context,
    treatment: str,
    primary: MetricResult,
    guards: list[tuple[MetricResult, _Evidence]],
    goals: list[tuple[MetricResult, _Evidence]],
    status: Mapping[str, str],
) -> list[str]:
    """Guardrails that are harmed or inconclusive, other goal and secondary results, heterogeneity."""
    rules = ctx.rules
    out = [_guardrail_line(m, ev, rules) for m, ev in guards if status[m.metric] in ("harmed", "uncertain")]
    for m, ev in goals:
        if m is not primary and ev.better:
            out.append(f"goal metric: {_describe(ev)}: significantly better.")
    for m in ctx.readout.metrics:
        if m.variant == treatment and m.role == "secondary":
            ev = _evidence(m, rules)
            if ev.better or ev.worse:
                out.append(f"secondary metric: {_describe(ev)}: significantly {'better' if ev.better else 'worse'}.")
    dimensions = sorted(
        {
            s.segment[0]
            for s in ctx.readout.segments
            if s.segment is not None and s.heterogeneous and s.metric == primary.metric and s.variant == treatment
        }
    )
    out.extend(
        f"heterogeneity: the effect on '{primary.metric}' differs across '{d}' levels (heterogeneous effects): read "
        "the segment table before launching to everyone."
        for d in dimensions
    )
    return out


def _combine(verdicts: list[_Judgement]) -> _Judgement:
    """The best eligible treatment; a rollback wins over anything short of a launch."""
    if len(verdicts) == 1:
        return verdicts[0]
    eligible = [v for v in verdicts if v.category in RANK]
    rollbacks = [v for v in verdicts if v.category == Decision.ROLLBACK]
    best = min(eligible, key=lambda v: (RANK[v.category], -v.score), default=None)
    others = ", ".join(f"'{v.variant}' is {v.category}" for v in verdicts if v is not best)
    if rollbacks and (best is None or best.category not in _LAUNCHES):
        first = rollbacks[0]
        rest = ", ".join(f"'{v.variant}' is {v.category}" for v in verdicts if v is not first)
        head = f"several treatments: of {len(verdicts)} treatments, '{first.variant}' must be rolled back ({rest})."
        return _Judgement(
            Decision.ROLLBACK,
            (head, *first.reasons, *(r for v in rollbacks[1:] for r in v.reasons)),
            first.variant,
            first.score,
        )
    if best is None:
        invalid = verdicts[0]
        return _Judgement(invalid.category, tuple(r for v in verdicts for r in v.reasons), invalid.variant, -math.inf)
    head = (
        f"several treatments: '{best.variant}' is the best eligible of {len(verdicts)} treatments ({best.category}; "
        f"{others}): ranked by category, then by the primary metric's effect."
    )
    excluded = [r for v in rollbacks for r in v.reasons]
    return _Judgement(best.category, (head, *best.reasons, *excluded), best.variant, best.score)


def decide(
    readout: ExperimentReadout,
    *,
    rules: DecisionRules = DEFAULT_RULES,
    hypothesis_mde: float | None = None,
    mde_relative: bool = True,
    primary_metric: str | None = None,
) -> Verdict:
    """One decision for the experiment, with its reasons in plain words, each line naming its rule.

    Args:
        readout: the analysis; only its overall ``metrics``, ``health``, ``srm``, ``units``,
            ``planned_units_per_variant``, ``daily_units``, ``configured_weights``,
            ``days_running``, the schedule's ``min_duration_days`` and ``max_duration_days`` and
            (for the heterogeneity note) ``segments`` are read. Its own ``decision`` is ignored.
        rules: the thresholds, default :data:`DEFAULT_RULES`.
        hypothesis_mde: the hypothesis MDE, a magnitude > 0 (0.05 = 5 % for a relative MDE);
            None when the experiment has no hypothesis (practical significance is then skipped).
        mde_relative: whether the MDE is relative (default) or absolute, in metric units.
        primary_metric: the goal metric the decision rests on (``hypothesis.primary_metric``);
            default the first goal metric of each treatment.

    Returns:
        A :class:`Verdict`; its ``variant`` is the treatment to launch, consider or roll back,
        None for INVALID, EXTEND_TEST and NO_LAUNCH.

    Raises:
        ValueError: an invalid ``hypothesis_mde``.
    """
    if hypothesis_mde is not None:
        check_positive("hypothesis_mde", hypothesis_mde)
    errors, others = _health(readout)
    if errors:
        head = (
            "health check: the experiment's data failed a health check, so no result can be trusted: fix the cause "
            "and re-run before reading any metric."
        )
        return Verdict(category=Decision.INVALID, reasons=(head, *errors, *others))
    ctx = _Context(readout, rules, hypothesis_mde, mde_relative, primary_metric)
    treatments = [v for v in readout.variants if v != readout.control]
    if not treatments:
        reasons = ("primary metric: the readout has no treatment to compare with control.", *others)
        return Verdict(category=Decision.INVALID, reasons=reasons)
    verdict = _combine([_judge(ctx, t) for t in treatments])
    sequential = any(m.sequential is not None and m.sequential.looks for m in readout.metrics if m.role == "goal")
    keeps_variant = verdict.category in (*_LAUNCHES, Decision.CONSIDER_LAUNCH, Decision.ROLLBACK)
    return Verdict(
        category=verdict.category,
        reasons=(*verdict.reasons, *_sample_size_reason(readout, verdict, sequential), *others),
        variant=verdict.variant if keeps_variant else None,
    )
