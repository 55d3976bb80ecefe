"""A weight ramp over a drifting baseline: the pooled estimate is biased, the phase-by-phase one is not.

Each replication is one experiment ramped from 10/90 to 50/50 (control/treatment) while the
baseline conversion drifts from 10 % to 20 %; the units of each phase are split at random by the
phase's weights. It prints, over seeded replications:

* the bias of the naive pooled difference of means and of the period-weighted one
  (``splitlab.analysis.comparison.compare_phases``, the weighting of
  ``splitlab.bandits.estimates.period_weighted_estimates``), in units of the average standard error
  of one experiment (goal: pooled off by more than 3 SE, phased within simulation noise);
* the A/A false-positive rate of the phased test at alpha (goal: at most alpha + 3 simulation SE);
* how often the split is flagged against the latest weights (what splitlab did before phases) and
  phase by phase (``splitlab.stats.srm.phased_srm_test``).

    .venv/bin/python benchmarks/phase_bias.py [--replications 4000] [--units 4000] [--seed 20261209]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from splitlab.analysis.comparison import Options, compare_phases
from splitlab.stats.srm import phased_srm_test, srm_test
from splitlab.stats.statistics import ProportionStatistic

PHASES = ((0.1, 0.10), (0.5, 0.20))
"""(control weight, baseline conversion) of each phase."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replications", type=int, default=4000)
    parser.add_argument("--units", type=int, default=4000, help="units per phase")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=20261209)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    n, reps, alpha = args.units, args.replications, args.alpha
    cells = np.zeros((reps, len(PHASES), 2, 2))  # replication, phase, variant, (units, conversions)
    for p, (share, baseline) in enumerate(PHASES):
        control = rng.binomial(n, share, reps)
        cells[:, p, 0, 0], cells[:, p, 1, 0] = control, n - control
        cells[:, p, 0, 1] = rng.binomial(control, baseline)
        cells[:, p, 1, 1] = rng.binomial(n - control, baseline)
    phased, errors, pooled = np.empty(reps), np.empty(reps), np.empty(reps)
    rejected = flagged_latest = flagged_phased = 0
    options = Options(alpha=alpha)
    for r, rep in enumerate(cells):
        parts = [(ProportionStatistic(int(c[0]), c[1]), ProportionStatistic(int(t[0]), t[1]), n) for c, t in rep]
        result = compare_phases(parts, options=options, metric="m", kind="binary", variant="b", control="a")
        phased[r], errors[r] = result.effect.absolute_effect, result.absolute_se or math.nan
        rejected += result.effect.p_value < alpha
        total = rep.sum(axis=0)
        pooled[r] = total[1, 1] / total[1, 0] - total[0, 1] / total[0, 0]
        latest = {"a": PHASES[-1][0], "b": 1 - PHASES[-1][0]}
        flagged_latest += srm_test({"a": int(total[0, 0]), "b": int(total[1, 0])}, latest).flag
        split = [
            ({"a": int(c[0]), "b": int(t[0])}, {"a": w, "b": 1 - w}) for (c, t), (w, _) in zip(rep, PHASES, strict=True)
        ]
        flagged_phased += phased_srm_test(split)[0].flag
    se = float(np.mean(errors))
    for name, values in (("pooled", pooled), ("phased", phased)):
        simulation_se = values.std(ddof=1) / math.sqrt(reps)
        print(
            f"{name:>6}: mean effect {values.mean():+.5f} (truth 0), bias {values.mean() / se:+.2f} SE of one "
            f"experiment, {values.mean() / simulation_se:+.1f} SE of the simulation"
        )
    rate = rejected / reps
    bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / reps)
    print(f"phased A/A false-positive rate at alpha {alpha:g}: {rate:.4f} (goal <= {bound:.4f})")
    print(f"claimed SE {se:.5f} / spread of the phased estimates {phased.std(ddof=1):.5f}")
    print(
        f"SRM flagged against the latest weights: {flagged_latest / reps:.1%}; per phase: {flagged_phased / reps:.2%}"
    )
    print(f"{reps:,} replications, {n:,} units per phase, ramp {' -> '.join(f'{w:.0%}' for w, _ in PHASES)} control")


if __name__ == "__main__":
    main()
