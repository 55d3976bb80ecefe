"""Calibration of splitlab's sequential tests: false positives under peeking, power and sample size.

One seeded Monte Carlo table. Setting: two-sample difference in means, unit standard deviation in
both groups, variance ESTIMATED at every look (unpooled, ``s^2 / n`` per group), planned size
``N`` (both groups) from the fixed z-test's 80 % power at the MDE (``sample_size_means``), alpha
0.05 two-sided, looks equally spaced up to ``N``. H0: both means 0; H1: the treatment mean is the
MDE. A method that stops earlier records its stopping ``n``; one that never rejects stops at ``N``
(Wald's SPRT also stops when it accepts H0; one still running at ``N`` counts as not rejecting).

No unit is drawn: the sufficient statistics of a batch of ``m`` normal draws are sampled exactly,
``sum ~ N(m mu, m sigma^2)`` and the within-batch sum of squares ``sigma^2 chi^2(m - 1)``, then
cumulated over looks; replications are vectorised and chunked to bound memory.

    .venv/bin/python benchmarks/sequential_calibration.py [--reps 100000] [--seed 2024] [--quick]
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from splitlab.stats.power import sample_size_means
from splitlab.stats.sequential.always_valid import GROWTHBOOK_TUNING, confidence_sequence_path, msprt_path
from splitlab.stats.sequential.group_sequential import GroupSequentialDesign, sequential_decisions, spending_design
from splitlab.stats.sequential.sprt import sprt_paths

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

ALPHA = 0.05
POWER = 0.8
MDE = 0.05  # in units of the per-unit standard deviation
SIGMA = 1.0
CHUNK_CELLS = 2_000_000  # replications x looks per chunk (a few arrays of 16 MB)


@dataclass(frozen=True)
class Looks:
    """Cumulative units per group at each look, and the derived totals."""

    per_group: npt.NDArray[np.int64]  # shape (looks,)
    planned_n: float  # both groups

    @property
    def total(self) -> FloatArray:
        return np.asarray(2.0 * self.per_group, dtype=np.float64)

    @property
    def fractions(self) -> FloatArray:
        return self.total / self.planned_n


def equally_spaced(per_group: int, looks: int) -> Looks:
    counts = np.rint(np.arange(1, looks + 1) * per_group / looks).astype(np.int64)
    return Looks(counts, 2.0 * per_group)


def sample_group(rng: np.random.Generator, looks: Looks, reps: int, mu: float) -> tuple[FloatArray, FloatArray]:
    """Exact cumulative mean and variance of the mean at each look, shape (reps, looks)."""
    m = np.diff(looks.per_group, prepend=0).astype(np.float64)
    sums = rng.normal(m * mu, np.sqrt(m) * SIGMA, size=(reps, m.size))
    within = SIGMA**2 * 2.0 * rng.standard_gamma(np.maximum(m - 1, 0) / 2, size=(reps, m.size))
    n = looks.per_group.astype(np.float64)
    total = np.cumsum(sums, axis=1)
    sum_sq = np.cumsum(within + sums**2 / m, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = np.where(n > 1, (sum_sq - total**2 / n) / (n - 1), np.nan)
    return total / n, variance / n


@dataclass(frozen=True)
class Outcome:
    rejected: BoolArray
    stop_n: FloatArray


Method = Callable[[FloatArray, FloatArray, Looks, FloatArray], Outcome]


def first_stop(stop: BoolArray, looks: Looks, reject: BoolArray | None = None) -> Outcome:
    """Stop at the first True of ``stop`` (else at N); rejected where ``reject`` (default: stopped)."""
    stopped = np.asarray(stop.any(axis=-1))
    index = np.argmax(stop, axis=-1)
    stop_n = np.where(stopped, looks.total[index], looks.planned_n)
    return Outcome(stopped if reject is None else reject, stop_n)


Z_CRIT = float(special.ndtri(1 - ALPHA / 2))


def fixed(effect: FloatArray, variance: FloatArray, looks: Looks, _df: FloatArray) -> Outcome:
    z = effect[:, -1] / np.sqrt(variance[:, -1])
    return Outcome(np.abs(z) >= Z_CRIT, np.full(z.shape, looks.planned_n))


def naive(effect: FloatArray, variance: FloatArray, looks: Looks, _df: FloatArray) -> Outcome:
    with np.errstate(invalid="ignore"):
        z = effect / np.sqrt(variance)
        return first_stop(np.abs(z) >= Z_CRIT, looks)


def hybrid(effect: FloatArray, variance: FloatArray, looks: Looks, _df: FloatArray) -> Outcome:
    path = msprt_path(effect, variance, looks.total, alpha=ALPHA, planned_n=looks.planned_n)
    return first_stop(path.rejected, looks)


def always_valid(effect: FloatArray, variance: FloatArray, looks: Looks, _df: FloatArray) -> Outcome:
    path = msprt_path(effect, variance, looks.total, alpha=ALPHA, mode="always-valid", planned_n=looks.planned_n)
    return first_stop(path.rejected, looks)


def growthbook(effect: FloatArray, variance: FloatArray, looks: Looks, _df: FloatArray) -> Outcome:
    path = confidence_sequence_path(effect, variance, looks.total, alpha=ALPHA, tuning=GROWTHBOOK_TUNING)
    return first_stop(path.rejected, looks)


_DESIGNS: dict[tuple[str, int], GroupSequentialDesign] = {}


def gst(spending: str) -> Method:
    def run(effect: FloatArray, variance: FloatArray, looks: Looks, df: FloatArray) -> Outcome:
        key = (spending, looks.per_group.size)
        if key not in _DESIGNS:
            _DESIGNS[key] = spending_design(looks.fractions, alpha=ALPHA, power=POWER, spending=spending)
        paths = sequential_decisions(effect, variance, _DESIGNS[key], df=df)
        rejected = paths.rejected
        stop_n = np.where(rejected, looks.total[np.maximum(paths.stop_look, 0)], looks.planned_n)
        return Outcome(rejected, stop_n)

    return run


def wald(effect: FloatArray, variance: FloatArray, looks: Looks, _df: FloatArray) -> Outcome:
    paths = sprt_paths(effect, variance, delta=MDE * SIGMA, alpha=ALPHA, beta=1 - POWER)
    decided = paths.stop_look >= 0
    stop_n = np.where(decided, looks.total[np.maximum(paths.stop_look, 0)], looks.planned_n)
    return Outcome(paths.accepted_h1, stop_n)


METHODS: dict[str, Method] = {
    "fixed-horizon z-test at N (reference)": fixed,
    "naive z-test at every look": naive,
    "mSPRT hybrid (splitlab default)": hybrid,
    "mSPRT always-valid (tuned at N)": always_valid,
    f"GrowthBook CS (N* = {GROWTHBOOK_TUNING:.0f})": growthbook,
    "GST O'Brien-Fleming spending": gst("obrien-fleming"),
    "GST Pocock spending": gst("pocock"),
    "Wald SPRT (delta = MDE)": wald,
}


def simulate(rng: np.random.Generator, looks: Looks, reps: int, effect_size: float) -> dict[str, tuple[float, float]]:
    """Rejection rate and mean E[n]/N of every method over ``reps`` replications."""
    chunk = max(1, CHUNK_CELLS // looks.per_group.size)
    rejections = dict.fromkeys(METHODS, 0)
    stop_sum = dict.fromkeys(METHODS, 0.0)
    done = 0
    while done < reps:
        size = min(chunk, reps - done)
        control_mean, control_var = sample_group(rng, looks, size, 0.0)
        treatment_mean, treatment_var = sample_group(rng, looks, size, effect_size)
        effect = treatment_mean - control_mean
        variance = control_var + treatment_var
        # Welch-Satterthwaite df of the estimated variance (equal group sizes), for the GST's t-to-z map.
        n = looks.per_group.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            df = variance**2 / ((control_var**2 + treatment_var**2) / np.maximum(n - 1, 1))
        for name, method in METHODS.items():
            outcome = method(effect, variance, looks, df)
            rejections[name] += int(outcome.rejected.sum())
            stop_sum[name] += float(outcome.stop_n.sum())
        done += size
    return {name: (rejections[name] / reps, stop_sum[name] / reps / looks.planned_n) for name in METHODS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100_000, help="replications per scenario (default 100000)")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the random streams (default 2024)")
    parser.add_argument("--quick", action="store_true", help="2000 replications (a smoke run)")
    args = parser.parse_args()
    reps = 2_000 if args.quick else args.reps
    if reps < 1:
        parser.error(f"--reps == {reps}, must be >= 1")

    plan = sample_size_means(MDE, SIGMA, alpha=ALPHA, power=POWER)
    per_group = plan.per_variant
    few, many = equally_spaced(per_group, 30), equally_spaced(per_group, 1000)
    h0_few, h1_few, h0_many = (np.random.default_rng(s) for s in np.random.SeedSequence(args.seed).spawn(3))
    start = time.perf_counter()
    null_30 = simulate(h0_few, few, reps, 0.0)
    alt_30 = simulate(h1_few, few, reps, MDE * SIGMA)
    null_1000 = simulate(h0_many, many, reps, 0.0)
    elapsed = time.perf_counter() - start

    se = math.sqrt(ALPHA * (1 - ALPHA) / reps)
    print("$ " + " ".join(["python", *(shlex.quote(a) for a in sys.argv)]))
    print(
        f"Difference in means, sigma = {SIGMA:g} per unit (estimated at every look), MDE = {MDE:g} sigma, "
        f"alpha = {ALPHA:g} two-sided; planned N = {2 * per_group} units ({per_group} per group, fixed z-test "
        f"at {POWER:.0%} power); {reps} replications per scenario, seed {args.seed}, {elapsed:.0f} s."
    )
    print()
    headers = [
        "method",
        f"FPR, 30 looks (± {se:.4f})",
        f"FPR, 1,000 looks (± {se:.4f})",
        "power at N, 30 looks",
        "E[n]/N H1, 30 looks",
        "E[n]/N H0, 30 looks",
    ]
    rows = [
        [
            name,
            f"{null_30[name][0]:.4f}",
            f"{null_1000[name][0]:.4f}",
            f"{alt_30[name][0]:.4f}",
            f"{alt_30[name][1]:.3f}",
            f"{null_30[name][1]:.3f}",
        ]
        for name in METHODS
    ]
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|")
    for row in rows:
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]
        print("| " + " | ".join(cells) + " |")
    print()
    power_se = math.sqrt(POWER * (1 - POWER) / reps)
    fixed_name, hybrid_name, obf_name = (
        "fixed-horizon z-test at N (reference)",
        "mSPRT hybrid (splitlab default)",
        "GST O'Brien-Fleming spending",
    )
    loss = 100 * (alt_30[fixed_name][0] - alt_30[hybrid_name][0])
    print(f"MC standard error: FPR ± {se:.4f}, power ± {power_se:.4f} (binomial, at the nominal rates).")
    print(f"Hybrid power loss vs the fixed test: {loss:.1f} points (asked: <= 15).")
    print(f"O'Brien-Fleming E[n]/N under H1: {alt_30[obf_name][1]:.3f} (asked: <= 0.77).")
    print(f"O'Brien-Fleming power: {100 * alt_30[obf_name][0]:.1f} % (asked: >= 77 %).")
    limit = ALPHA + 3 * se
    over = [
        f"{name} ({label})"
        for name in METHODS
        if name != "naive z-test at every look"
        for label, result in (("30 looks", null_30), ("1,000 looks", null_1000))
        if result[name][0] > limit
    ]
    print(f"FPR above alpha + 3 SE = {limit:.4f}: {', '.join(over) if over else 'none'} (naive test excluded).")


if __name__ == "__main__":
    main()
