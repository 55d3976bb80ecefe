"""The decision engine on hand-built readouts: every category, its reasons, and the rules' validation."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from scipy import stats as sps

from splitlab.analysis.decision import DEFAULT_RULES, TOLERANCE_WORDS, DecisionRules, decide, guardrail_words
from splitlab.analysis.readout import Decision, ExperimentReadout, HealthCheck, MetricResult
from splitlab.stats.results import EffectResult
from splitlab.stats.sequential.monitor import MonitorLook, MonitorResult
from splitlab.stats.srm import srm_test

Z = float(sps.norm.ppf(0.975))


def effect(rel: float, se: float, *, control_mean: float = 0.1, n: int = 10_000, alpha: float = 0.05) -> EffectResult:
    """A z-test result with relative effect ``rel`` and relative standard error ``se`` (delta CI)."""
    abs_effect, abs_se = rel * control_mean, se * control_mean
    p = float(2 * sps.norm.sf(abs(rel) / se))
    return EffectResult(
        test="pooled-z",
        alternative="two-sided",
        alpha=alpha,
        control_mean=control_mean,
        treatment_mean=control_mean + abs_effect,
        control_n=n,
        treatment_n=n,
        absolute_effect=abs_effect,
        absolute_ci=(abs_effect - Z * abs_se, abs_effect + Z * abs_se),
        relative_effect=rel,
        relative_ci=(rel - Z * se, rel + Z * se),
        relative_ci_method="delta",
        statistic=rel / se,
        p_value=p,
    )


def metric(
    name: str = "conversion",
    rel: float = 0.05,
    se: float = 0.01,
    *,
    role: str = "goal",
    variant: str = "treatment",
    higher_is_better: bool = True,
    chance_to_win: float | None = None,
    max_degradation: float | None = None,
    **kwargs: object,
) -> MetricResult:
    sign = 1 if higher_is_better else -1
    win = float(sps.norm.cdf(sign * rel / se)) if chance_to_win is None else chance_to_win
    return MetricResult(
        metric=name, role=role, kind="binary", variant=variant, control="control",  # type: ignore[arg-type]
        higher_is_better=higher_is_better, effect=effect(rel, se), chance_to_win=win, expected_loss=0.0,
        max_degradation=max_degradation, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def readout(
    *metrics: MetricResult,
    units: dict[str, int] | None = None,
    weights: dict[str, float] | None = None,
    planned: int | None = 10_000,
    daily: float = 1_000.0,
    health: tuple[HealthCheck, ...] = (),
    segments: tuple[MetricResult, ...] = (),
    days_running: float = 10.0,
) -> ExperimentReadout:
    variants = ("control", *dict.fromkeys(m.variant for m in metrics))
    units = units or dict.fromkeys(variants, 10_000)
    weights = weights or dict.fromkeys(variants, 1 / len(variants))
    return ExperimentReadout(
        experiment_key="checkout", name="Checkout", spec_version=1, status="running",
        analysed_at=datetime(2024, 5, 1, tzinfo=UTC), days_running=days_running, control="control",
        variants=variants, configured_weights=weights, units=units, excluded_units=0,
        planned_units_per_variant=planned, daily_units=daily, srm=srm_test(units, weights), health=health,
        metrics=metrics, segments=segments,
    )  # fmt: skip


def strong(rel: float = 0.05, se: float = 0.01, **kwargs: object) -> MetricResult:
    return metric("conversion", rel, se, **kwargs)  # type: ignore[arg-type]


SRM_FAILED = HealthCheck("srm", passed=False, severity="error", message="actual 52.0% / 48.0%, p = 1e-9")


# --- INVALID ----------------------------------------------------------------------------------


def test_failed_srm_check_is_invalid_whatever_the_metrics_say() -> None:
    decision = decide(readout(strong(), health=(SRM_FAILED,)), hypothesis_mde=0.01)
    assert decision.category == "INVALID"
    assert decision.variant is None
    assert any("'srm' failed: actual 52.0% / 48.0%" in r for r in decision.reasons)


def test_srm_flag_without_a_health_check_is_invalid() -> None:
    units = {"control": 10_400, "treatment": 9_600}
    decision = decide(readout(strong(), units=units))
    assert decision.category == "INVALID"
    assert any(r.startswith("health check: sample ratio mismatch") and "control=52.0%" in r for r in decision.reasons)


def test_failed_warning_is_reported_but_does_not_invalidate() -> None:
    warning = HealthCheck("multiple_exposures", passed=False, severity="warning", message="1.2% of units")
    decision = decide(readout(strong(), health=(warning,)), hypothesis_mde=0.01)
    assert decision.category == "STRONG_LAUNCH"
    assert decision.reasons[-1] == "health check: 'multiple_exposures' (warning) failed: 1.2% of units"


def test_a_passed_error_check_does_not_invalidate() -> None:
    ok = HealthCheck("srm", passed=True, severity="error", message="ok")
    assert decide(readout(strong(), health=(ok,)), hypothesis_mde=0.01).category == "STRONG_LAUNCH"


def test_missing_primary_metric_is_invalid() -> None:
    decision = decide(readout(strong()), primary_metric="revenue")
    assert decision.category == "INVALID"
    assert decision.reasons[0].startswith("primary metric: no readout of 'revenue'")


# --- ROLLBACK ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("rel", "category"), [(0.08, "ROLLBACK"), (0.05 + Z * 0.01 + 1e-4, "ROLLBACK"),
                                               (0.05 + Z * 0.01 - 1e-4, "LAUNCH"), (0.03, "LAUNCH")])  # fmt: skip
def test_lower_is_better_guardrail_rolls_back_only_beyond_its_tolerance(rel: float, category: str) -> None:
    # CI (rel -/+ 1.96 se) wholly above +5 % of latency breaches the 5 % tolerance; touching it does not.
    guard = metric("latency", rel, 0.01, role="guardrail", higher_is_better=False, max_degradation=0.05)
    decision = decide(readout(strong(), guard), hypothesis_mde=0.01)
    assert decision.category == category
    if category == "ROLLBACK":
        assert decision.variant == "treatment"
        assert decision.reasons[1].startswith("guardrail breach: 'latency' (lower is better)")
        assert "harmed beyond tolerance (tolerated degradation 5.0%" in decision.reasons[1]
    else:
        # significantly worse, not beyond the tolerance: a launch, not a strong one, in one wording
        words = "not shown to be within tolerance" if rel > 0.05 else "shown within tolerance"
        assert decision.reasons[-1].startswith("guardrail: 'latency'")
        assert f"significantly worse, {words} (tolerated degradation 5.0%" in decision.reasons[-1]
        assert "no guardrail harmed beyond tolerance. Not a strong launch" in decision.reasons[0]
        assert "guardrails within tolerance" not in decision.reasons[0]


def test_higher_is_better_guardrail_rolls_back_on_a_drop_beyond_tolerance() -> None:
    guard = metric("revenue", -0.08, 0.01, role="guardrail", max_degradation=0.05)
    decision = decide(readout(strong(), guard), hypothesis_mde=0.01)
    assert decision.category == "ROLLBACK"
    assert "-8.00%" in decision.reasons[1]
    assert "[-9.96%, -6.04%]" in decision.reasons[1]


def test_guardrail_without_tolerance_uses_the_default_rule() -> None:
    guard = metric("revenue", -0.03, 0.01, role="guardrail")
    assert decide(readout(strong(), guard)).category == "ROLLBACK"
    lenient = DecisionRules(default_max_degradation=0.1)
    assert decide(readout(strong(), guard), rules=lenient).category == "LAUNCH"


def test_goal_metric_significantly_harmed_rolls_back() -> None:
    decision = decide(readout(strong(-0.05)), hypothesis_mde=0.01)
    assert decision.category == "ROLLBACK"
    assert "significantly worse" in decision.reasons[1]
    relaxed = decide(readout(strong(-0.05)), rules=DecisionRules(rollback_on_goal_harm=False), hypothesis_mde=0.01)
    assert relaxed.category == "NO_LAUNCH"


# --- STRONG_LAUNCH / LAUNCH / CONSIDER_LAUNCH --------------------------------------------------


@pytest.mark.parametrize(("delta", "category"), [(1e-6, "STRONG_LAUNCH"), (-1e-6, "LAUNCH")])
def test_strong_launch_needs_the_ci_lower_end_above_the_mde(delta: float, category: str) -> None:
    mde, se = 0.02, 0.005
    decision = decide(readout(strong(mde + Z * se + delta, se)), hypothesis_mde=mde)
    assert decision.category == category
    assert decision.variant == "treatment"
    assert "'conversion' (higher is better) treatment vs control" in decision.reasons[0]
    if category == "LAUNCH":
        assert "lower end is below the MDE of 2.00%" in decision.reasons[0]


def test_strong_launch_needs_strong_evidence() -> None:
    # significant (p ~ 0.03) and the CI's lower end above a tiny MDE, but p > alpha / 10
    weak = strong(0.022, 0.01, chance_to_win=0.98)
    decision = decide(readout(weak), hypothesis_mde=0.0001)
    assert decision.category == "LAUNCH"
    assert "the evidence is not strong" in decision.reasons[0]
    assert decide(readout(strong(0.022, 0.01, chance_to_win=0.995)), hypothesis_mde=0.0001).category == "STRONG_LAUNCH"


def test_strong_launch_without_mde_rests_on_the_evidence() -> None:
    assert decide(readout(strong(0.05, 0.01))).category == "STRONG_LAUNCH"
    off = DecisionRules(practical_significance=False)
    assert decide(readout(strong(0.05, 0.01)), rules=off, hypothesis_mde=0.2).category == "STRONG_LAUNCH"


def test_inconclusive_guardrail_blocks_a_strong_launch_only_by_rule() -> None:
    guard = metric("latency", 0.0, 0.05, role="guardrail", higher_is_better=False, max_degradation=0.05)
    decision = decide(readout(strong(), guard), hypothesis_mde=0.01)
    assert decision.category == "LAUNCH"
    assert decision.reasons[-1].startswith("guardrail: 'latency'")
    assert ": not shown to be within tolerance (tolerated degradation 5.0%" in decision.reasons[-1]
    rules = DecisionRules(strong_launch_requires_guardrail_non_inferiority=False)
    assert decide(readout(strong(), guard), rules=rules, hypothesis_mde=0.01).category == "STRONG_LAUNCH"


def test_significant_but_below_the_mde_is_consider_launch() -> None:
    decision = decide(readout(strong(0.03, 0.01)), hypothesis_mde=0.04)
    assert decision.category == "CONSIDER_LAUNCH"
    assert decision.variant == "treatment"
    assert "below the MDE of 4.00%" in decision.reasons[0]


def test_absolute_mde_is_compared_on_the_absolute_scale() -> None:
    # +5 % of 0.1 is +0.005 absolute; CI [0.00402, 0.00598]
    readout_ = readout(strong(0.05, 0.005))
    assert decide(readout_, hypothesis_mde=0.004, mde_relative=False).category == "STRONG_LAUNCH"
    assert decide(readout_, hypothesis_mde=0.0045, mde_relative=False).category == "LAUNCH"
    consider = decide(readout_, hypothesis_mde=0.006, mde_relative=False)
    assert consider.category == "CONSIDER_LAUNCH"
    assert "absolute +0.005 [+0.00402, +0.00598]" in consider.reasons[0]


def test_positive_not_significant_with_high_chance_to_win_at_the_end_is_consider_launch() -> None:
    # se 0.01, MDE 0.04: power ~0.98 reached; +1.5 % with chance to win 0.93 (the fixed test says p ~ 0.13)
    decision = decide(readout(strong(0.015, 0.01, chance_to_win=0.93)), hypothesis_mde=0.04)
    assert decision.category == "CONSIDER_LAUNCH"
    assert "chance to win of 93.0%" in decision.reasons[0]


# --- EXTEND_TEST / NO_LAUNCH -------------------------------------------------------------------


def test_extend_test_days_left_at_current_traffic() -> None:
    # 4,000 of 10,000 units per variant; 1,200 units a day split 50/50: 6,000 / 600 = 10.0 days.
    decision = decide(readout(strong(0.01, 0.02), units={"control": 4_000, "treatment": 4_000}, daily=1_200),
                      hypothesis_mde=0.02)  # fmt: skip
    assert decision.category == "EXTEND_TEST"
    assert decision.variant is None
    assert decision.reasons[0].startswith(
        "planned sample: control=4,000 / treatment=4,000 units of the planned 10,000 per variant (12,000 more in all)"
    )
    assert "about 10.0 more days at the current 1,200 units a day" in decision.reasons[0]
    assert decision.reasons[1].startswith("interim (not a decision): 'conversion'")


def test_extend_test_days_left_follow_the_configured_split() -> None:
    # control gets 20 % of 1,000 a day and lacks 3,000 units: 15.0 days; treatment has its sample.
    decision = decide(
        readout(strong(0.01, 0.05), units={"control": 2_000, "treatment": 8_000},
                weights={"control": 0.2, "treatment": 0.8}, planned=5_000),
        hypothesis_mde=0.02,
    )  # fmt: skip
    assert decision.category == "EXTEND_TEST"
    assert "about 15.0 more days" in decision.reasons[0]


def test_extension_beyond_the_limits_is_no_launch() -> None:
    slow = readout(strong(0.01, 0.02), units={"control": 4_000, "treatment": 4_000}, daily=120)  # 100 days
    decision = decide(slow, hypothesis_mde=0.02)
    assert decision.category == "NO_LAUNCH"
    assert decision.reasons[0].startswith("no launch: do not launch 'treatment'")
    assert decision.reasons[-1].startswith("planned sample: control=4,000 / treatment=4,000 units")
    assert "extension limit: extending would take about 100.0 more days" in decision.reasons[-1]
    assert "30-day limit" in decision.reasons[-1]
    assert decision.reasons[-1].endswith("It is judged on the units it has.")
    unlimited = DecisionRules(extend_if_days_left_below=None)
    assert decide(slow, rules=unlimited, hypothesis_mde=0.02).category == "EXTEND_TEST"
    capped = DecisionRules(extend_if_days_left_below=None, max_duration_days=60)
    assert (
        "maximum duration: extending would take about 100.0 more days"
        in decide(slow, rules=capped, hypothesis_mde=0.02).reasons[-1]
    )
    # the schedule's maximum duration caps the extension as the rules' does
    scheduled = replace(slow, max_duration_days=60.0)
    assert "maximum duration of 60 days" in decide(scheduled, rules=unlimited, hypothesis_mde=0.02).reasons[-1]


def test_no_launch_when_the_test_had_its_power() -> None:
    mde, se = 0.03, 0.01
    decision = decide(readout(strong(0.004, se)), hypothesis_mde=mde)
    assert decision.category == "NO_LAUNCH"
    assert decision.variant is None
    power = sps.norm.cdf(mde / se - Z) + sps.norm.cdf(-mde / se - Z)  # relative se = absolute se / control mean
    detectable = (Z + sps.norm.ppf(0.8)) * se
    assert decision.reasons[1].startswith("power: the test had its power")
    assert f"has {power:.1%} power at the MDE of 3.00%" in decision.reasons[1]
    assert f"detect with 80% power is {detectable:.2%}" in decision.reasons[1]
    assert "control=10,000 / treatment=10,000 units of the planned 10,000 per variant" in decision.reasons[1]


def test_planned_sample_reached_but_underpowered_extends_by_the_variance_seen() -> None:
    # power at the MDE < 0.8 although the plan is reached: units must grow by (detectable / mde)^2.
    mde, se = 0.02, 0.01
    decision = decide(readout(strong(0.004, se)), hypothesis_mde=mde)
    factor = ((Z + sps.norm.ppf(0.8)) * se / mde) ** 2
    days = (factor - 1) * 10_000 / 500
    assert decision.category == "EXTEND_TEST"
    assert f"about {days:.1f} more days" in decision.reasons[1]


def test_power_reached_before_the_plan_does_not_end_a_fixed_horizon_test() -> None:
    decision = decide(readout(strong(0.0, 0.005), units={"control": 5_000, "treatment": 5_000}), hypothesis_mde=0.03)
    assert decision.category == "EXTEND_TEST"
    assert decision.reasons[0].startswith("planned sample: control=5,000 / treatment=5,000 units")


def test_without_mde_the_planned_sample_decides() -> None:
    assert decide(readout(strong(0.004, 0.01))).category == "NO_LAUNCH"
    early = decide(readout(strong(0.004, 0.01), units={"control": 9_000, "treatment": 9_000}))
    assert early.category == "EXTEND_TEST"
    assert "about 2.0 more days" in early.reasons[0]
    no_plan = decide(readout(strong(0.004, 0.01), planned=None))
    assert no_plan.category == "NO_LAUNCH"
    assert no_plan.reasons[1] == "planned sample: there is no planned sample size or MDE to extend the test towards."


def test_untestable_primary_extends_before_the_plan_and_is_invalid_after() -> None:
    broken = MetricResult(
        metric="conversion", role="goal", kind="binary", variant="treatment", control="control",
        effect=effect(0.0, 0.01).__class__(**{**effect(0.0, 0.01).to_dict(), "p_value": math.nan, "absolute_ci": (
            math.nan, math.nan), "relative_ci": (math.nan, math.nan), "error_message": "zero variance"}),
        chance_to_win=math.nan, expected_loss=math.nan,
    )  # fmt: skip
    early = decide(readout(broken, units={"control": 5_000, "treatment": 5_000}))
    assert early.category == "EXTEND_TEST"
    assert early.reasons[0].startswith("planned sample: control=5,000 / treatment=5,000 units")
    assert "about 10.0 more days" in early.reasons[0]
    assert early.reasons[1] == "interim: 'conversion' could not be tested yet (zero variance)."
    assert decide(readout(broken)).category == "INVALID"


# --- direction, sequential, several treatments, Bayesian rule ----------------------------------


def test_lower_is_better_primary() -> None:
    faster = metric("load-time", -0.05, 0.01, higher_is_better=False)
    decision = decide(readout(faster), hypothesis_mde=0.02)
    assert decision.category == "STRONG_LAUNCH"
    assert "'load-time' (lower is better) treatment vs control: -5.00%" in decision.reasons[0]
    slower = metric("load-time", 0.05, 0.01, higher_is_better=False)
    assert decide(readout(slower), hypothesis_mde=0.02).category == "ROLLBACK"
    # a decrease of 1.5 % against a 2 % MDE: significant, below the MDE
    assert decide(readout(metric("load-time", -0.015, 0.005, higher_is_better=False)),
                  hypothesis_mde=0.02).category == "CONSIDER_LAUNCH"  # fmt: skip


def monitor(
    decision: str, *, n: int = 8_000, ci: tuple[float, float] = (0.001, 0.009), p: float = 0.01
) -> MonitorResult:
    look = MonitorLook(3, n, n / 20_000, 0.005, 3.0, 0.05, p, ci, decision)
    return MonitorResult("msprt", 0.05, "two-sided", False, 20_000, True, (look,))


@pytest.mark.parametrize(
    ("decision", "category"),
    [
        ("stop_efficacy", "LAUNCH"),
        ("stop_harm", "ROLLBACK"),
        ("stop_futility", "NO_LAUNCH"),
        ("continue", "EXTEND_TEST"),
    ],
)
def test_sequential_monitor_decides(decision: str, category: str) -> None:
    ci = (-0.009, -0.001) if decision == "stop_harm" else (0.001, 0.009)
    # the fixed-horizon result is hugely significant; the monitor's decision still rules
    m = strong(0.05, 0.005, chance_to_win=0.5, sequential=monitor(decision, ci=ci))
    result = decide(readout(m, units={"control": 4_000, "treatment": 4_000}), hypothesis_mde=0.02)
    assert result.category == category
    if category == "LAUNCH":
        # the confidence sequence [+0.001, +0.009] is [+1%, +9%] of 0.1: lower end below the 2 % MDE
        assert "msprt confidence sequence [+1.00%, +9.00%]" in result.reasons[0]
        assert "always-valid p = 0.0100" in result.reasons[0]
    if category == "EXTEND_TEST":
        # 12,000 more units in both groups at 1,000 a day (both variants): 12.0 days
        assert result.reasons[1].startswith("sequential boundary: not yet conclusive")
        assert "about 12.0 more days" in result.reasons[1]
        assert "8,000 of 20,000 planned units" in result.reasons[1]


def test_sequential_strong_launch_uses_the_confidence_sequence() -> None:
    m = strong(0.05, 0.005, chance_to_win=0.999, sequential=monitor("stop_efficacy", ci=(0.003, 0.007), p=1e-4))
    assert decide(readout(m), hypothesis_mde=0.02).category == "STRONG_LAUNCH"
    assert decide(readout(m), hypothesis_mde=0.04).category == "LAUNCH"


def test_several_treatments_pick_the_best_eligible() -> None:
    a = metric("conversion", 0.03, 0.01, variant="a")  # LAUNCH against a 2 % MDE (lower end +1.04 %)
    b = metric("conversion", 0.06, 0.01, variant="b")  # STRONG_LAUNCH
    decision = decide(readout(a, b), hypothesis_mde=0.02)
    assert (decision.category, decision.variant) == ("STRONG_LAUNCH", "b")
    assert decision.reasons[0].startswith(
        "several treatments: 'b' is the best eligible of 2 treatments (STRONG_LAUNCH; 'a' is LAUNCH)"
    )


def test_several_treatments_of_one_category_rank_by_effect() -> None:
    a = metric("conversion", 0.08, 0.01, variant="a")
    b = metric("conversion", 0.06, 0.01, variant="b")
    assert decide(readout(a, b), hypothesis_mde=0.02).variant == "a"


def test_a_harmful_treatment_is_not_eligible_but_a_launch_wins() -> None:
    a = metric("conversion", 0.03, 0.01, variant="a")
    b = metric("conversion", 0.06, 0.01, variant="b")
    b_guard = metric("latency", 0.2, 0.01, role="guardrail", variant="b", higher_is_better=False, max_degradation=0.05)
    decision = decide(readout(a, b, b_guard), hypothesis_mde=0.02)
    assert (decision.category, decision.variant) == ("LAUNCH", "a")
    assert "'b' is ROLLBACK" in decision.reasons[0]
    assert any(r.startswith("guardrail breach: 'latency'") and "b vs control" in r for r in decision.reasons)


def test_a_harmful_treatment_rolls_back_when_nothing_launches() -> None:
    a = metric("conversion", 0.004, 0.02, variant="a")  # EXTEND_TEST
    b = metric("conversion", -0.06, 0.01, variant="b")  # goal harmed
    decision = decide(readout(a, b, units={"control": 4_000, "a": 4_000, "b": 4_000}), hypothesis_mde=0.02)
    assert (decision.category, decision.variant) == ("ROLLBACK", "b")
    assert decision.reasons[0] == "several treatments: of 2 treatments, 'b' must be rolled back ('a' is EXTEND_TEST)."


def test_primary_metric_is_chosen_among_goals_and_other_goals_are_reported() -> None:
    conversion = metric("conversion", 0.004, 0.01)
    revenue = metric("revenue", 0.05, 0.01)
    assert decide(readout(conversion, revenue), primary_metric="revenue").category == "STRONG_LAUNCH"
    decision = decide(readout(conversion, revenue), primary_metric="conversion")
    assert decision.category == "NO_LAUNCH"
    assert any(r.startswith("goal metric: 'revenue'") and "significantly better" in r for r in decision.reasons)


def test_secondary_results_and_heterogeneity_are_reported() -> None:
    secondary = metric("clicks", -0.05, 0.01, role="secondary")
    segment = metric(segment=("country", "DE"), heterogeneous=True)
    decision = decide(readout(strong(), secondary, segments=(segment,)))
    assert any(r.startswith("secondary metric: 'clicks'") and "significantly worse" in r for r in decision.reasons)
    assert any(r.startswith("heterogeneity: the effect on 'conversion' differs across 'country' levels")
               for r in decision.reasons)  # fmt: skip


def test_chance_to_win_significance() -> None:
    rules = DecisionRules(significance="chance_to_win")
    # p ~ 0.13 but a chance to win of 0.96 >= 0.95: better
    decision = decide(readout(strong(0.015, 0.01, chance_to_win=0.96)), rules=rules, hypothesis_mde=0.01)
    assert decision.category == "LAUNCH"
    assert decide(readout(strong(0.015, 0.01, chance_to_win=0.03)), rules=rules).category == "ROLLBACK"


def test_stricter_alpha_rule() -> None:
    m = strong(0.022, 0.01, chance_to_win=0.5)  # p ~ 0.028
    assert decide(readout(m)).category == "LAUNCH"
    assert decide(readout(m), rules=DecisionRules(alpha=0.01)).category == "NO_LAUNCH"


def test_corrected_results_recover_the_standard_error_from_the_statistic() -> None:
    base = strong(0.004, 0.01)
    wide = (base.effect.absolute_ci[0] * 3, base.effect.absolute_ci[1] * 3)  # a corrected, wider CI
    corrected = MetricResult(**{**{f: getattr(base, f) for f in base.__slots__},  # type: ignore[arg-type]
                                 "effect": base.effect.__class__(**{**base.effect.to_dict(), "absolute_ci": wide,
                                                                    "correction": "holm"})})  # fmt: skip
    plain, adjusted = decide(readout(base), hypothesis_mde=0.03), decide(readout(corrected), hypothesis_mde=0.03)
    assert plain.reasons[1].split("power at")[0] == adjusted.reasons[1].split("power at")[0]


def test_every_category_is_a_known_one() -> None:
    for m in (strong(), strong(-0.05), strong(0.004, 0.01)):
        assert decide(readout(m)).category in list(Decision)


# --- rules ------------------------------------------------------------------------------------


def test_rules_from_mapping() -> None:
    mapping = {"alpha": 0.01, "extend_if_days_left_below": None, "significance": "chance_to_win"}
    rules = DecisionRules.from_mapping(mapping)
    assert (rules.alpha, rules.extend_if_days_left_below, rules.significance) == (0.01, None, "chance_to_win")
    assert DecisionRules.from_mapping({}) == DEFAULT_RULES


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        ({"alhpa": 0.01}, "unknown field.*'alhpa'.*known: alpha"),
        ({"alpha": 1.5}, r"alpha == 1.5, must be < 1"),
        ({"significance": "bayes"}, "significance == 'bayes', must be one of p_value, chance_to_win"),
        ({"strong_launch_chance_to_win": 0.4}, "strong_launch_chance_to_win == 0.4, must be > 0.5"),
        ({"min_power_for_no_launch": 1.0}, "min_power_for_no_launch == 1.0, must be < 1"),
        ({"strong_launch_p_value_factor": 0}, "strong_launch_p_value_factor == 0, must be > 0"),
        ({"default_max_degradation": -0.1}, "default_max_degradation == -0.1, must be >= 0"),
        ({"practical_significance": "yes"}, "practical_significance == 'yes', must be true or false"),
        ({"extend_if_days_left_below": 0}, "extend_if_days_left_below == 0, must be > 0"),
        ({"max_duration_days": "ten"}, "max_duration_days == 'ten', must be a finite number"),
    ],
)
def test_rules_from_mapping_name_the_bad_field(mapping: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DecisionRules.from_mapping(mapping)


def test_rules_from_a_non_mapping() -> None:
    with pytest.raises(ValueError, match="must be a mapping"):
        DecisionRules.from_mapping([("alpha", 0.01)])  # type: ignore[arg-type]


def test_bad_mde_is_refused() -> None:
    with pytest.raises(ValueError, match=r"hypothesis_mde == -0\.1, must be > 0"):
        decide(readout(strong()), hypothesis_mde=-0.1)


# --- schedule and plan -------------------------------------------------------------------------


def scheduled(*metrics: MetricResult, minimum: float | None = 14, days_running: float = 3.0,
              **kwargs: object) -> ExperimentReadout:  # fmt: skip
    return replace(readout(*metrics, days_running=days_running, **kwargs), min_duration_days=minimum)  # type: ignore[arg-type]


@pytest.mark.parametrize("primary", [strong(), strong(0.004, 0.003)], ids=["launch", "no-launch"])
def test_no_launch_or_no_launch_category_before_the_minimum_duration(primary: MetricResult) -> None:
    decision = decide(scheduled(primary), hypothesis_mde=0.01)
    assert decision.category == "EXTEND_TEST"
    assert decision.variant is None
    assert decision.reasons[0] == (
        "minimum duration: 3.0 of the schedule's 14 days run; keep 'treatment' running 11.0 more days before "
        "deciding to launch or not."
    )
    assert decision.reasons[1].startswith("interim (not a decision): 'conversion'")
    assert decide(scheduled(primary, days_running=14.0), hypothesis_mde=0.01).category != "EXTEND_TEST"


def test_rollback_and_invalid_come_before_the_minimum_duration() -> None:
    guard = metric("latency", 0.2, 0.01, role="guardrail", higher_is_better=False, max_degradation=0.05)
    assert decide(scheduled(strong(), guard), hypothesis_mde=0.01).category == "ROLLBACK"
    assert decide(scheduled(strong(), health=(SRM_FAILED,)), hypothesis_mde=0.01).category == "INVALID"


def test_minimum_duration_and_planned_sample_both_say_what_is_left() -> None:
    decision = decide(scheduled(strong(), units={"control": 9_000, "treatment": 9_000}), hypothesis_mde=0.01)
    assert decision.category == "EXTEND_TEST"
    assert decision.reasons[0].startswith("minimum duration: ")
    assert decision.reasons[1].startswith("planned sample: control=9,000 / treatment=9,000 units")


def test_fixed_horizon_test_below_its_planned_sample_extends_whatever_it_shows() -> None:
    # 89 % of the planned sample with a result that would be a STRONG_LAUNCH at the plan.
    low = readout(strong(), units={"control": 8_900, "treatment": 8_900}, daily=1_000)
    decision = decide(low, hypothesis_mde=0.01)
    assert decision.category == "EXTEND_TEST"
    assert decision.reasons[0] == (
        "planned sample: control=8,900 / treatment=8,900 units of the planned 10,000 per variant (2,200 more in "
        "all); keep 'treatment' running, about 2.2 more days at the current 1,000 units a day: a fixed-horizon test "
        "read before its planned sample overstates its evidence."
    )
    assert decide(readout(strong()), hypothesis_mde=0.01).category == "STRONG_LAUNCH"


def test_sequential_test_below_its_planned_sample_lets_the_boundary_decide() -> None:
    check = HealthCheck("sample_size", passed=False, severity="info", message="4,000 units of 10,000 planned (40%)")
    m = strong(0.05, 0.005, chance_to_win=0.5, sequential=monitor("stop_efficacy"))
    decision = decide(readout(m, units={"control": 4_000, "treatment": 4_000}, health=(check,)), hypothesis_mde=0.02)
    assert decision.category == "LAUNCH"
    assert decision.reasons[-1] == (
        "planned sample: health check 'sample_size' failed: 4,000 units of 10,000 planned (40%); a sequential design "
        "may stop before it: its boundary decides."
    )


RULE_NAMES = (
    "health check", "rollback", "guardrail breach", "goal harm", "primary metric", "minimum duration",
    "planned sample", "interim", "strong launch", "launch", "consider launch", "power", "sequential boundary",
    "no launch", "extension limit", "maximum duration", "guardrail", "goal metric", "secondary metric",
    "heterogeneity", "several treatments",
)  # fmt: skip
WARNING = HealthCheck("multiple_exposures", passed=False, severity="warning", message="1.2% of units")
SAMPLE = HealthCheck("sample_size", passed=False, severity="info", message="8,000 of 10,000 (80%)")
GUARD = metric("latency", 0.0, 0.05, role="guardrail", higher_is_better=False, max_degradation=0.05)
CASES = {
    "invalid": readout(strong(), health=(SRM_FAILED, WARNING)),
    "rollback": readout(strong(-0.05), health=(SAMPLE,), units={"control": 8_000, "treatment": 8_000}),
    "minimum": scheduled(strong(), GUARD, health=(WARNING,)),
    "planned": readout(strong(), health=(SAMPLE,), units={"control": 8_000, "treatment": 8_000}),
    "out of reach": readout(
        strong(0.004, 0.02), GUARD, health=(SAMPLE,), units={"control": 8_000, "treatment": 8_000}, daily=50
    ),
    "launch": readout(strong(0.03, 0.01), GUARD, metric("clicks", -0.05, 0.01, role="secondary")),
    "power": readout(strong(0.004, 0.01)),
    "sequential": readout(
        strong(sequential=monitor("continue")), health=(SAMPLE,), units={"control": 8_000, "treatment": 8_000}
    ),
    "several": readout(
        metric(variant="a"),
        metric("conversion", 0.08, variant="b"),
        segments=(metric(variant="b", segment=("country", "DE"), heterogeneous=True),),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_every_reason_line_names_its_rule(case: str) -> None:
    for reason in decide(CASES[case], hypothesis_mde=0.02).reasons:
        rule = re.match(r"[a-z ]+", reason)
        assert rule is not None, reason
        assert rule.group().strip() in RULE_NAMES, reason


@pytest.mark.parametrize("case", CASES)
def test_every_failed_health_row_is_reflected_in_the_decision(case: str) -> None:
    decision = decide(CASES[case], hypothesis_mde=0.02)
    for check in CASES[case].health:
        if not check.passed:
            assert any(f"'{check.name}'" in r or r.startswith("planned sample: ") for r in decision.reasons), check
            assert check.name != "sample_size" or any(r.startswith("planned sample: ") for r in decision.reasons)


@pytest.mark.parametrize("rel", [-0.02, 0.0, 0.012, 0.03, 0.045, 0.06, 0.08])
def test_guardrail_wording_never_contradicts_itself(rel: float) -> None:
    guard = metric("latency", rel, 0.01, role="guardrail", higher_is_better=False, max_degradation=0.05)
    text = " ".join(decide(readout(strong(), guard), hypothesis_mde=0.01).reasons)
    words = guardrail_words(guard)
    assert words.endswith(("harmed beyond tolerance", "not shown to be within tolerance", "shown within tolerance"))
    said = [phrase for phrase in TOLERANCE_WORDS.values() if phrase in text.replace(words, "")]
    # the only tolerance phrases are the guardrail's own state, and the launch lines' "no guardrail harmed beyond"
    assert said in ([], ["harmed beyond tolerance"]), text
    assert "guardrails within tolerance" not in text
    if words != "shown within tolerance":
        assert words in text
