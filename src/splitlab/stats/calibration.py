"""Calibration of splitlab's tests by seeded simulation: each check is a rate with its own error bar.

A check draws many replications of a setting whose truth is known, runs the library's own test
on each, and reports the rate at which the test did what it should not (an A/A false positive,
a missed true effect, an interval that misses the truth) with its Monte Carlo standard error.
Draws are vectorised: sufficient statistics are sampled exactly where the data are normal (a
sum is ``N(m mu, m sigma^2)`` and the within-sum of squares ``sigma^2 chi^2(m - 1)``), unit-level
values otherwise; the tests themselves are splitlab's (:mod:`~splitlab.stats.frequentist`,
:mod:`~splitlab.stats.cuped`, :mod:`~splitlab.stats.bayesian`, :mod:`~splitlab.stats.nonparametric`,
:mod:`~splitlab.stats.srm`, :mod:`~splitlab.stats.sequential`), never a copy.

**The acceptance band.** A calibrated test's rate over ``reps`` replications has the binomial
error ``se0 = sqrt(p0 (1 - p0) / reps)`` around its nominal rate ``p0``. A line passes when the
estimate lies within ``z se0`` of ``p0`` (``calibrated``), or below ``p0 + z se0`` for a test that
is allowed to be conservative (``not-above``: sequential tests, which only bound the error), or,
for a negative control or a bandit that must beat a baseline, when it is significantly beyond it
(``above`` / ``below``). ``z`` is set for the whole suite at once, Bonferroni over its lines,
``z = Phi^-1(1 - a / (2 L))`` with a suite false-alarm rate ``a`` = 1 %: a calibrated splitlab
fails any line of a 28-line run with a chance of at most 1 %, and ``z`` is about 3.6.

References:
    Morris, T. P., White, I. R., Crowther, M. J. (2019). Using simulation studies to evaluate
    statistical methods. Statistics in Medicine 38(11), 2074-2102, table 6 (Monte Carlo standard
    errors of rejection rates and coverage, ``sqrt(p (1 - p) / n_sim)``).
    Dunn, O. J. (1961). Multiple comparisons among means. JASA 56, 52-64 (the Bonferroni bound).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import special

from splitlab.stats._validation import check_probability
from splitlab.stats.bayesian import beta_binomial, gaussian_from_statistics
from splitlab.stats.cuped import cuped_test
from splitlab.stats.frequentist import means_test, proportions_test, ratio_test
from splitlab.stats.nonparametric import bootstrap_effect, mann_whitney
from splitlab.stats.power import sample_size_means, sample_size_proportions
from splitlab.stats.sequential.always_valid import GROWTHBOOK_TUNING, confidence_sequence_path, msprt_path
from splitlab.stats.sequential.group_sequential import sequential_decisions as gst_decisions
from splitlab.stats.sequential.group_sequential import spending_design
from splitlab.stats.sequential.sprt import sprt_paths
from splitlab.stats.sequential.srm import sequential_srm_p_values
from splitlab.stats.srm import srm_test
from splitlab.stats.statistics import CovariateStatistic, MeanStatistic, ProportionStatistic, RatioStatistic

__all__ = [
    "SIDES",
    "SUITE_FALSE_ALARM",
    "CalibrationLine",
    "Check",
    "Outcome",
    "Side",
    "band_z",
    "calibration_checks",
    "mean_outcome",
    "rate_outcome",
    "run_checks",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Side = Literal["calibrated", "not-above", "above", "below"]
SIDES: tuple[str, ...] = ("calibrated", "not-above", "above", "below")
SUITE_FALSE_ALARM = 0.01
"""The chance that a calibrated splitlab fails some line of a run (Bonferroni over the lines)."""

ALPHA = 0.05
SRM_THRESHOLD = 0.001  # the threshold of splitlab's SRM health checks
CHANCE_TO_WIN = 0.95  # the decision engine's default chance_to_win_threshold
LOOKS = 30  # daily looks over a month
PEEKING_MDE = 0.1  # the planned effect of the peeking scenario, in per-unit standard deviations


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationLine:
    """One calibration check: its estimate, the estimate's error bar, the band and the verdict.

    Attributes:
        check: what was checked, e.g. ``"welch-t (means)"``.
        group: the family: ``A/A false positives``, ``peeking``, ``coverage``, ``power``, ``SRM``,
            ``bandit`` or ``pre-period A/A``.
        estimate: the simulated rate (or mean).
        standard_error: the Monte Carlo standard error of ``estimate``: ``sqrt(p (1 - p) / reps)``
            at the estimate for a rate, ``sd / sqrt(reps)`` for a mean.
        target: the nominal value (alpha, 1 - alpha, the planned power, a baseline to beat).
        low, high: the acceptance band (``-inf`` / ``inf`` where unbounded).
        rule: the band in words, e.g. ``"within 3.6 SE of 0.05"``.
        reps: replications behind the estimate.
        verdict: ``PASS``, ``FAIL``, or ``SKIP`` when the data did not allow the check (see ``note``).
        note: what else a reader should know (the setting, why a line was skipped); may be empty.
    """

    check: str
    group: str
    estimate: float
    standard_error: float
    target: float
    low: float
    high: float
    rule: str
    reps: int
    verdict: str
    note: str = ""

    @property
    def passed(self) -> bool:
        """Whether the line did not fail (a skipped line does not fail)."""
        return self.verdict != "FAIL"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary, JSON-ready (an unbounded or undefined number becomes None)."""

        def number(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        return {
            "check": self.check,
            "group": self.group,
            "estimate": number(self.estimate),
            "standard_error": number(self.standard_error),
            "target": number(self.target),
            "low": number(self.low),
            "high": number(self.high),
            "rule": self.rule,
            "reps": self.reps,
            "verdict": self.verdict,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What a check measured: the estimate, its standard error, and the error the band is built from.

    Attributes:
        estimate: the rate or mean.
        standard_error: its Monte Carlo standard error.
        band_se: the standard error the band uses: a calibrated test's, ``sqrt(p0 (1 - p0) / reps)``,
            for a rate; the estimate's own for a mean.
        reps: replications that gave a result (degenerate ones are left out and said in ``note``).
        note: anything to add to the line.
    """

    estimate: float
    standard_error: float
    band_se: float
    reps: int
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """A check to run: its name, group, target, side of the band, and the simulation.

    Attributes:
        check, group: as in :class:`CalibrationLine`.
        target: the nominal value.
        side: ``calibrated``, ``not-above``, ``above`` or ``below`` (see the module docstring).
        reps: replications asked for.
        run: ``run(rng, reps) -> Outcome``.
        note: the setting, shown with the line.
    """

    check: str
    group: str
    target: float
    side: Side
    reps: int
    run: Callable[[np.random.Generator, int], Outcome]
    note: str = ""
    limits: tuple[float, float] = (0.0, 1.0)
    """Where the estimate can lie at all (a rate's [0, 1]); the band is clipped to it."""


def rate_outcome(hits: npt.ArrayLike, target: float, *, note: str = "") -> Outcome:
    """The rate of ``hits`` (booleans, one per replication) with its binomial errors at the estimate and the target."""
    flags = np.asarray(hits, dtype=bool)
    n = int(flags.size)
    if n == 0:
        return Outcome(estimate=math.nan, standard_error=math.nan, band_se=math.nan, reps=0, note=note)
    p = float(flags.mean())
    return Outcome(
        estimate=p,
        standard_error=math.sqrt(p * (1 - p) / n),
        band_se=math.sqrt(target * (1 - target) / n),
        reps=n,
        note=note,
    )


def mean_outcome(values: npt.ArrayLike, *, note: str = "") -> Outcome:
    """The mean of ``values`` with its standard error ``sd / sqrt(n)`` (used for the band too)."""
    array = np.asarray(values, dtype=np.float64)
    n = int(array.size)
    if n < 2:
        return Outcome(estimate=math.nan, standard_error=math.nan, band_se=math.nan, reps=n, note=note)
    se = float(array.std(ddof=1)) / math.sqrt(n)
    return Outcome(estimate=float(array.mean()), standard_error=se, band_se=se, reps=n, note=note)


def band_z(lines: int, *, false_alarm: float = SUITE_FALSE_ALARM) -> float:
    """The band's half-width in standard errors: ``Phi^-1(1 - false_alarm / (2 lines))`` (Bonferroni).

    Example:
        >>> round(band_z(28), 2)
        3.57
    """
    if lines < 1:
        msg = f"lines == {lines}, must be >= 1"
        raise ValueError(msg)
    check_probability("false_alarm", false_alarm)
    return float(special.ndtri(1 - false_alarm / (2 * lines)))


def _band(side: Side, target: float, se: float, z: float) -> tuple[float, float, str]:
    half = z * se
    if side == "calibrated":
        return target - half, target + half, f"within {z:.1f} SE of {target:g}"
    if side == "not-above":
        return -math.inf, target + half, f"at most {target:g} + {z:.1f} SE"
    if side == "above":
        return target + half, math.inf, f"above {target:g} by {z:.1f} SE"
    return -math.inf, target - half, f"below {target:g} by {z:.1f} SE"


def _line(check: Check, outcome: Outcome, z: float) -> CalibrationLine:
    note = "; ".join(part for part in (check.note, outcome.note) if part)
    low, high, rule = _band(check.side, check.target, outcome.band_se, z)
    low, high = max(low, check.limits[0]), min(high, check.limits[1])
    if not math.isfinite(outcome.estimate) or not math.isfinite(outcome.band_se):
        verdict = "SKIP"
    else:
        verdict = "PASS" if low <= outcome.estimate <= high else "FAIL"
    return CalibrationLine(
        check=check.check,
        group=check.group,
        estimate=outcome.estimate,
        standard_error=outcome.standard_error,
        target=check.target,
        low=low,
        high=high,
        rule=rule,
        reps=outcome.reps,
        verdict=verdict,
        note=note,
    )


def run_checks(
    checks: Sequence[Check], *, seed: int = 0, false_alarm: float = SUITE_FALSE_ALARM, lines: int | None = None
) -> tuple[CalibrationLine, ...]:
    """Run every check with its own seeded stream and judge it against the suite's band.

    Each check's generator is seeded by ``(seed, crc32(check))``, so a line gives the same figure
    whatever other lines run with it. ``lines``: the number of lines the band's ``z`` is set for,
    when these checks are part of a larger suite (default: ``len(checks)``).
    """
    if not checks:
        return ()
    z = band_z(len(checks) if lines is None else lines, false_alarm=false_alarm)
    out = []
    for check in checks:
        rng = np.random.default_rng([seed, zlib.crc32(check.check.encode())])
        out.append(_line(check, check.run(rng, check.reps), z))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Draws


def _lognormal(rng: np.random.Generator, reps: int, n: int, sigma: float, shift: float = 0.0) -> FloatArray:
    """Skewed values with mean ``exp(0.6^2 / 2) + shift`` whatever ``sigma`` (unequal variances: Welch's setting)."""
    values = rng.lognormal(0.0, sigma, (reps, n))
    return np.asarray(values - math.exp(sigma**2 / 2) + math.exp(0.6**2 / 2) + shift, dtype=np.float64)


def _means(values: FloatArray) -> list[MeanStatistic]:
    sums, squares = values.sum(axis=1), np.einsum("ij,ij->i", values, values)
    n = values.shape[1]
    return [MeanStatistic(n, float(s), float(q)) for s, q in zip(sums, squares, strict=True)]


def _normal_means(rng: np.random.Generator, reps: int, n: int, mu: float, sigma: float) -> list[MeanStatistic]:
    """Exact sufficient statistics of ``n`` normal values: sum ``N(n mu, n sigma^2)``, within ``sigma^2 chi^2(n-1)``."""
    sums = rng.normal(n * mu, math.sqrt(n) * sigma, reps)
    within = sigma**2 * rng.chisquare(n - 1, reps)
    return [MeanStatistic(n, float(s), float(w + s * s / n)) for s, w in zip(sums, within, strict=True)]


def _proportions(rng: np.random.Generator, reps: int, n: int, p: float) -> list[ProportionStatistic]:
    return [ProportionStatistic(n, float(k)) for k in rng.binomial(n, p, reps)]


def _ratios(rng: np.random.Generator, reps: int, n: int, p: float) -> list[RatioStatistic]:
    """Sessions ``1 + Poisson(3)`` per unit, each converting with chance ``p``: conversions per session."""
    den = (rng.poisson(3.0, (reps, n)) + 1).astype(np.float64)
    num = rng.binomial(den.astype(np.int64), p).astype(np.float64)
    return [
        RatioStatistic(MeanStatistic(n, float(a.sum()), float(a @ a)), MeanStatistic(n, float(d.sum()), float(d @ d)),
                       float(a @ d))
        for a, d in zip(num, den, strict=True)
    ]  # fmt: skip


def _covariates(rng: np.random.Generator, reps: int, n: int, shift: float) -> list[CovariateStatistic]:
    """A pre-period covariate ``x`` and the metric ``y = 2 + 0.8 x + e`` (correlation ~0.8)."""
    x = rng.normal(0.0, 1.0, (reps, n))
    y = 2.0 + 0.8 * x + rng.normal(0.0, 0.6, (reps, n)) + shift
    out = []
    for a, b in zip(y, x, strict=True):
        out.append(
            CovariateStatistic(
                MeanStatistic(n, float(a.sum()), float(a @ a)), MeanStatistic(n, float(b.sum()), float(b @ b)),
                ((float(a @ b),),),
            )
        )  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------
# Fixed-horizon tests: A/A false positives, coverage, power

Draw = Callable[[np.random.Generator, int, float], tuple[Sequence[Any], Sequence[Any]]]


@dataclass(frozen=True, slots=True)
class _Fixed:
    """A fixed-horizon test: the library function, how its data are drawn, and what counts as rejecting."""

    label: str
    test: Callable[..., Any]
    draw: Draw
    rejects: Callable[[Any], bool | None]
    setting: str
    coverage_effect: float | None = None  # the planted effect of the coverage line, if the test has one


def _p_rejects(result: Any) -> bool | None:
    p = result.p_value
    return None if not math.isfinite(p) else bool(p < ALPHA)


def _ci_rejects(result: Any) -> bool | None:
    low, high = result.ci
    return None if not (math.isfinite(low) and math.isfinite(high)) else bool(low > 0 or high < 0)


def _decides(result: Any) -> bool | None:
    win = result.chance_to_win
    return None if not math.isfinite(win) else bool(win >= CHANCE_TO_WIN or win <= 1 - CHANCE_TO_WIN)


def _pair(make: Callable[[np.random.Generator, int, float], Sequence[Any]]) -> Draw:
    def draw(rng: np.random.Generator, reps: int, effect: float) -> tuple[Sequence[Any], Sequence[Any]]:
        return make(rng, reps, 0.0), make(rng, reps, effect)

    return draw


def _skewed_pair(n: int) -> Draw:
    def draw(rng: np.random.Generator, reps: int, effect: float) -> tuple[Sequence[Any], Sequence[Any]]:
        return _means(_lognormal(rng, reps, n, 0.6)), _means(_lognormal(rng, reps, n, 0.8, effect))

    return draw


def _values_pair(n: int) -> Draw:
    def draw(rng: np.random.Generator, reps: int, effect: float) -> tuple[Sequence[Any], Sequence[Any]]:
        return list(_lognormal(rng, reps, n, 0.8)), list(_lognormal(rng, reps, n, 0.8, effect))

    return draw


def _fixed_tests(quick: bool) -> list[_Fixed]:
    # The BCa interval undercovers on small skewed samples (FPR ~0.06 at 200 units); 300 units
    # and 1,000 resamples bring it to nominal for the full run's tighter band.
    bootstrap_units, bootstrap_resamples = (200, 500) if quick else (300, 1_000)

    def bootstrap(control: Any, treatment: Any) -> Any:
        return bootstrap_effect(control, treatment, n_resamples=bootstrap_resamples, seed=0)

    tests = [
        _Fixed("welch-t", means_test, _skewed_pair(400), _p_rejects,
               "lognormal values, sd 0.6 vs 0.8, 400 units per group", 0.1),
        _Fixed("z", lambda c, t: means_test(c, t, test="z"), _skewed_pair(400), _p_rejects,
               "lognormal values, sd 0.6 vs 0.8, 400 units per group"),
        _Fixed("pooled-z", proportions_test,
               _pair(lambda rng, reps, d: _proportions(rng, reps, 2_000, 0.10 + d)), _p_rejects,
               "conversion 10 %, 2,000 units per group", 0.01),
        _Fixed("wald-z", lambda c, t: proportions_test(c, t, test="wald-z"),
               _pair(lambda rng, reps, d: _proportions(rng, reps, 2_000, 0.10 + d)), _p_rejects,
               "conversion 10 %, 2,000 units per group"),
        _Fixed("delta-z", ratio_test, _pair(lambda rng, reps, d: _ratios(rng, reps, 400, 0.2 + d)), _p_rejects,
               "conversions per session (20 %), 1 + Poisson(3) sessions, 400 units per group", 0.02),
        _Fixed("cuped", cuped_test, _pair(lambda rng, reps, d: _covariates(rng, reps, 300, d)), _p_rejects,
               "metric correlated 0.8 with its pre-period covariate, 300 units per group", 0.05),
        _Fixed("bayes-gaussian", lambda c, t: gaussian_from_statistics(c, t, relative=False), _skewed_pair(400),
               _decides, f"flat prior, decision when the chance to win is >= {CHANCE_TO_WIN:g} either way "
               f"(nominal {2 * (1 - CHANCE_TO_WIN):g}); lognormal values, 400 units per group"),
        _Fixed("mann-whitney", mann_whitney, _values_pair(150), _p_rejects,
               "identical lognormal groups, 150 units each"),
        _Fixed("bootstrap", bootstrap, _values_pair(bootstrap_units), _ci_rejects,
               f"BCa CI of the difference of means excludes 0, {bootstrap_resamples} resamples; identical "
               f"lognormal groups, {bootstrap_units} units each"),
    ]  # fmt: skip
    if not quick:
        tests.append(
            _Fixed("beta-binomial", beta_binomial, _pair(lambda rng, reps, d: _proportions(rng, reps, 1_000, 0.1 + d)),
                   _decides, f"uniform prior, decision when the chance to win is >= {CHANCE_TO_WIN:g} either way "
                   f"(nominal {2 * (1 - CHANCE_TO_WIN):g}); conversion 10 %, 1,000 units per group")
        )  # fmt: skip
    return tests


_COST = {"bootstrap": 5, "beta-binomial": 5}  # replications cost that many times more: fewer are run


def _rate_of(
    fixed: _Fixed, test: Callable[..., Any], rejects: Callable[[Any], bool | None], effect: float, target: float
) -> Callable[[np.random.Generator, int], Outcome]:
    def run(rng: np.random.Generator, reps: int) -> Outcome:
        controls, treatments = fixed.draw(rng, reps, effect)
        flags = [rejects(test(c, t)) for c, t in zip(controls, treatments, strict=True)]
        kept = [f for f in flags if f is not None]
        dropped = len(flags) - len(kept)
        return rate_outcome(kept, target, note=f"{dropped} degenerate replications left out" if dropped else "")

    return run


def _covers(effect: float) -> Callable[[Any], bool | None]:
    def covered(result: Any) -> bool | None:
        low, high = result.absolute_ci
        return None if not (math.isfinite(low) and math.isfinite(high)) else bool(low <= effect <= high)

    return covered


def _relative_covers(truth: float) -> Callable[[Any], bool | None]:
    def covered(result: Any) -> bool | None:
        low, high = result.relative_ci
        return None if not (math.isfinite(low) and math.isfinite(high)) else bool(low <= truth <= high)

    return covered


def _power_proportions(test: Callable[..., Any]) -> tuple[Callable[[np.random.Generator, int], Outcome], str]:
    baseline, mde = 0.08, 0.25
    n = sample_size_proportions(baseline, mde, alpha=ALPHA).per_variant

    def run(rng: np.random.Generator, reps: int) -> Outcome:
        pairs = zip(_proportions(rng, reps, n, baseline), _proportions(rng, reps, n, baseline * (1 + mde)), strict=True)
        return rate_outcome([bool(test(c, t).p_value < ALPHA) for c, t in pairs], 0.8)

    return run, f"planned by sample_size_proportions(0.08, +25 % relative): {n:,} units per group"


def _power_means(test: Callable[..., Any]) -> tuple[Callable[[np.random.Generator, int], Outcome], str]:
    mde, sd = 0.5, 2.0
    n = sample_size_means(mde, sd, alpha=ALPHA).per_variant

    def run(rng: np.random.Generator, reps: int) -> Outcome:
        pairs = zip(_normal_means(rng, reps, n, 10.0, sd), _normal_means(rng, reps, n, 10.0 + mde, sd), strict=True)
        return rate_outcome([bool(test(c, t).p_value < ALPHA) for c, t in pairs], 0.8)

    return run, f"planned by sample_size_means(0.5, sd 2): {n:,} units per group"


# --------------------------------------------------------------------------------------------
# Peeking: sequential tests over cumulative looks


@dataclass(frozen=True, slots=True)
class _Paths:
    """Cumulative looks of an A/A difference in means: effect, its variance, units, Welch df; (reps, looks)."""

    effect: FloatArray
    variance: FloatArray
    n: FloatArray  # both groups
    df: FloatArray
    planned_n: float


def _group_looks(rng: np.random.Generator, counts: npt.NDArray[np.int64], reps: int) -> tuple[FloatArray, FloatArray]:
    """Exact cumulative mean and variance of the mean of unit-variance normal values at each look."""
    m = np.diff(counts, prepend=0).astype(np.float64)
    sums = rng.normal(0.0, np.sqrt(m), size=(reps, m.size))
    within = rng.chisquare(np.maximum(m - 1, 1), size=(reps, m.size)) * (m > 1)
    n = counts.astype(np.float64)
    total = np.cumsum(sums, axis=1)
    sum_sq = np.cumsum(within + sums**2 / m, axis=1)
    variance = (sum_sq - total**2 / n) / (n - 1)
    return total / n, variance / n


def _peeking_paths(rng: np.random.Generator, reps: int) -> _Paths:
    per_group = sample_size_means(PEEKING_MDE, 1.0, alpha=ALPHA).per_variant
    counts = np.rint(np.arange(1, LOOKS + 1) * per_group / LOOKS).astype(np.int64)
    mean_c, var_c = _group_looks(rng, counts, reps)
    mean_t, var_t = _group_looks(rng, counts, reps)
    variance = var_c + var_t
    df = variance**2 / ((var_c**2 + var_t**2) / (counts - 1.0))
    return _Paths(mean_t - mean_c, variance, 2.0 * counts.astype(np.float64), df, 2.0 * per_group)


_PeekRule = Callable[[_Paths], BoolArray]


def _naive(paths: _Paths) -> BoolArray:
    z = np.abs(paths.effect) / np.sqrt(paths.variance)
    return np.asarray((z >= special.ndtri(1 - ALPHA / 2)).any(axis=-1))


def _msprt(mode: str) -> _PeekRule:
    def rule(paths: _Paths) -> BoolArray:
        path = msprt_path(paths.effect, paths.variance, paths.n, alpha=ALPHA, mode=mode, planned_n=paths.planned_n)
        return np.asarray(path.rejected.any(axis=-1))

    return rule


def _growthbook(paths: _Paths) -> BoolArray:
    path = confidence_sequence_path(paths.effect, paths.variance, paths.n, alpha=ALPHA, tuning=GROWTHBOOK_TUNING)
    return np.asarray(path.rejected.any(axis=-1))


def _gst(spending: str) -> _PeekRule:
    def rule(paths: _Paths) -> BoolArray:
        design = spending_design(paths.n / paths.planned_n, alpha=ALPHA, spending=spending)
        return np.asarray(gst_decisions(paths.effect, paths.variance, design, df=paths.df).rejected)

    return rule


def _wald(paths: _Paths) -> BoolArray:
    return np.asarray(sprt_paths(paths.effect, paths.variance, delta=PEEKING_MDE, alpha=ALPHA, beta=0.2).accepted_h1)


def _peeking(rule: _PeekRule) -> Callable[[np.random.Generator, int], Outcome]:
    def run(rng: np.random.Generator, reps: int) -> Outcome:
        return rate_outcome(rule(_peeking_paths(rng, reps)), ALPHA)

    return run


# --------------------------------------------------------------------------------------------
# Sample ratio mismatch


def _srm(weights: Sequence[float], units: int) -> Callable[[np.random.Generator, int], Outcome]:
    def run(rng: np.random.Generator, reps: int) -> Outcome:
        counts = rng.multinomial(units, weights, reps)
        return rate_outcome([srm_test(row.tolist(), weights).flag for row in counts], SRM_THRESHOLD)

    return run


def _sequential_srm(weights: Sequence[float], daily: int) -> Callable[[np.random.Generator, int], Outcome]:
    def run(rng: np.random.Generator, reps: int) -> Outcome:
        counts = np.cumsum(rng.multinomial(daily, weights, (reps, LOOKS)), axis=1)
        p_values, _ = sequential_srm_p_values(counts, weights)
        return rate_outcome(p_values[:, -1] < SRM_THRESHOLD, SRM_THRESHOLD)

    return run


# --------------------------------------------------------------------------------------------
# The suite


def calibration_checks(
    *, reps: int, quick: bool = False, tests: Mapping[str, Callable[..., Any]] | None = None
) -> list[Check]:
    """The statistics checks of ``splitlab validate``: A/A false positives, peeking, coverage, power, SRM.

    Args:
        reps: replications of an A/A line (>= 10); the others scale from it: peeking 10x, SRM 2x,
            coverage and power half, bootstrap and beta-binomial a fifth (each costs ~5 tests).
        quick: leave out the slowest line (beta-binomial); the bootstrap runs on 200 units with 500
            resamples instead of 300 with 1,000.
        tests: replacements of the library's tests by name (``welch-t``, ``z``, ``pooled-z``,
            ``wald-z``, ``delta-z``, ``cuped``, ``bayes-gaussian``, ``mann-whitney``, ``bootstrap``,
            ``beta-binomial``), each taking what the library function takes and returning a result
            of the same shape: how a miscalibrated test is shown to fail.

    Raises:
        ValueError: ``reps`` below 10, or a replacement for a test the suite does not run.
    """
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 10:
        msg = f"reps == {reps!r}, must be an integer >= 10"
        raise ValueError(msg)
    fixed = _fixed_tests(quick)
    names = [f.label for f in fixed]
    replaced = dict(tests or {})
    for name in replaced:
        if name not in names:
            msg = f"tests[{name!r}]: no such test in the suite; it runs {', '.join(names)}"
            raise ValueError(msg)
    checks: list[Check] = []
    half = max(reps // 2, 10)
    for f in fixed:
        test = replaced.get(f.label, f.test)
        target = 2 * (1 - CHANCE_TO_WIN) if f.rejects is _decides else ALPHA
        checks.append(Check(check=f.label, group="A/A false positives", target=target, side="calibrated",
                            reps=max(reps // _COST.get(f.label, 1), 10), run=_rate_of(f, test, f.rejects, 0.0, target),
                            note=f.setting))  # fmt: skip
    for f in fixed:
        if f.coverage_effect is None:
            continue
        test = replaced.get(f.label, f.test)
        checks.append(Check(check=f"{f.label} absolute CI", group="coverage", target=1 - ALPHA, side="calibrated",
                            reps=half, run=_rate_of(f, test, _covers(f.coverage_effect), f.coverage_effect, 1 - ALPHA),
                            note=f"true effect {f.coverage_effect:g}; {f.setting}"))  # fmt: skip
    pooled = next(f for f in fixed if f.label == "pooled-z")
    relative = _Fixed("pooled-z", pooled.test, _pair(lambda rng, reps, d: _proportions(rng, reps, 4_000, 0.10 + d)),
                      _p_rejects, "")  # fmt: skip
    checks.append(Check(check="pooled-z relative CI (delta method)", group="coverage", target=1 - ALPHA,
                        side="calibrated", reps=half,
                        run=_rate_of(relative, replaced.get("pooled-z", pooled.test), _relative_covers(0.15), 0.015,
                                     1 - ALPHA),
                        note="conversion 10 % vs 11.5 % (true lift +15 %), 4,000 units per group"))  # fmt: skip
    proportions_power, proportions_note = _power_proportions(replaced.get("pooled-z", proportions_test))
    means_power, means_note = _power_means(replaced.get("welch-t", means_test))
    checks += [
        Check(check="pooled-z at the planned sample", group="power", target=0.8, side="calibrated", reps=half,
              run=proportions_power, note=proportions_note),
        Check(check="welch-t at the planned sample", group="power", target=0.8, side="calibrated", reps=half,
              run=means_power, note=means_note),
    ]  # fmt: skip
    peek_reps = 10 * reps
    setting = f"A/A difference in means, variance estimated, {LOOKS} equally spaced looks up to the planned sample"
    peeking: list[tuple[str, _PeekRule, Side]] = [
        ("msprt (hybrid, the spec's 'msprt')", _msprt("hybrid"), "not-above"),
        ("msprt always-valid", _msprt("always-valid"), "not-above"),
        (f"GrowthBook confidence sequence (N* = {GROWTHBOOK_TUNING:g})", _growthbook, "not-above"),
        ("gst-obf (O'Brien-Fleming spending)", _gst("obrien-fleming"), "not-above"),
        ("gst-pocock (Pocock spending)", _gst("pocock"), "not-above"),
        (f"Wald SPRT (delta = {PEEKING_MDE:g} sd)", _wald, "not-above"),
        ("naive z-test at every look (negative control: must inflate)", _naive, "above"),
    ]
    checks += [
        Check(check=name, group="peeking", target=ALPHA, side=side, reps=peek_reps, run=_peeking(rule), note=setting)
        for name, rule, side in peeking
    ]
    srm_reps = 2 * reps
    checks += [
        Check(check="srm_test, 2 variants 50/50", group="SRM", target=SRM_THRESHOLD, side="calibrated",
              reps=srm_reps, run=_srm([0.5, 0.5], 10_000), note="10,000 units, threshold 0.001"),
        Check(check="srm_test, 3 variants 20/40/40", group="SRM", target=SRM_THRESHOLD, side="calibrated",
              reps=srm_reps, run=_srm([0.2, 0.4, 0.4], 10_000), note="10,000 units, threshold 0.001"),
        Check(check="sequential SRM over daily looks", group="SRM", target=SRM_THRESHOLD, side="not-above",
              reps=srm_reps, run=_sequential_srm([0.5, 0.5], 1_000),
              note=f"{LOOKS} looks of 1,000 units, threshold 0.001"),
    ]  # fmt: skip
    return checks
