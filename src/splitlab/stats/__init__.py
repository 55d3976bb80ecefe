"""Pure statistics on sufficient statistics: numpy and scipy only, no I/O.

The public names of every module are re-exported here; the modules are small and named after
the concept they hold (frequentist, cuped, bayesian, nonparametric, srm, multiplicity, power).

They are loaded on first use (PEP 562): ``splitlab.stats.statistics`` and the other light modules
are imported by the service's start-up (assignment, bandits), which must not pay for scipy.stats.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from splitlab.stats.bayesian import BayesianResult, ProbabilityBest, beta_binomial, gaussian, probability_best
    from splitlab.stats.cuped import cuped_estimates, cuped_test, pooled_theta
    from splitlab.stats.frequentist import (
        GroupEstimate,
        compare_estimates,
        estimate,
        means_test,
        proportions_test,
        ratio_test,
        two_sample_test,
    )
    from splitlab.stats.multiplicity import adjust_p_values, adjust_results, ci_alpha, reject
    from splitlab.stats.nonparametric import (
        BootstrapResult,
        MannWhitneyResult,
        QuantileEffectResult,
        bootstrap_effect,
        mann_whitney,
        quantile_test,
    )
    from splitlab.stats.power import (
        SampleSizePlan,
        duration_days,
        minimum_detectable_effect,
        plan_sample_size,
        power_at,
        sample_size_means,
        sample_size_proportions,
        sample_size_ratio,
    )
    from splitlab.stats.results import EffectResult, ErrorCode
    from splitlab.stats.srm import SrmResult, srm_test
    from splitlab.stats.statistics import (
        CovariateStatistic,
        Linearization,
        MeanStatistic,
        ProportionStatistic,
        RatioStatistic,
    )

__all__ = [
    "BayesianResult",
    "BootstrapResult",
    "CovariateStatistic",
    "EffectResult",
    "ErrorCode",
    "GroupEstimate",
    "Linearization",
    "MannWhitneyResult",
    "MeanStatistic",
    "ProbabilityBest",
    "ProportionStatistic",
    "QuantileEffectResult",
    "RatioStatistic",
    "SampleSizePlan",
    "SrmResult",
    "adjust_p_values",
    "adjust_results",
    "beta_binomial",
    "bootstrap_effect",
    "ci_alpha",
    "compare_estimates",
    "cuped_estimates",
    "cuped_test",
    "duration_days",
    "estimate",
    "gaussian",
    "mann_whitney",
    "means_test",
    "minimum_detectable_effect",
    "plan_sample_size",
    "pooled_theta",
    "power_at",
    "probability_best",
    "proportions_test",
    "quantile_test",
    "ratio_test",
    "reject",
    "sample_size_means",
    "sample_size_proportions",
    "sample_size_ratio",
    "srm_test",
    "two_sample_test",
]

_MODULE_OF = {
    name: module
    for module, names in {
        "bayesian": (
            "BayesianResult",
            "ProbabilityBest",
            "beta_binomial",
            "gaussian",
            "probability_best",
        ),
        "cuped": (
            "cuped_estimates",
            "cuped_test",
            "pooled_theta",
        ),
        "frequentist": (
            "GroupEstimate",
            "compare_estimates",
            "estimate",
            "means_test",
            "proportions_test",
            "ratio_test",
            "two_sample_test",
        ),
        "multiplicity": (
            "adjust_p_values",
            "adjust_results",
            "ci_alpha",
            "reject",
        ),
        "nonparametric": (
            "BootstrapResult",
            "MannWhitneyResult",
            "QuantileEffectResult",
            "bootstrap_effect",
            "mann_whitney",
            "quantile_test",
        ),
        "power": (
            "SampleSizePlan",
            "duration_days",
            "minimum_detectable_effect",
            "plan_sample_size",
            "power_at",
            "sample_size_means",
            "sample_size_proportions",
            "sample_size_ratio",
        ),
        "results": (
            "EffectResult",
            "ErrorCode",
        ),
        "srm": (
            "SrmResult",
            "srm_test",
        ),
        "statistics": (
            "CovariateStatistic",
            "Linearization",
            "MeanStatistic",
            "ProportionStatistic",
            "RatioStatistic",
        ),
    }.items()
    for name in names
}


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(import_module(f"splitlab.stats.{_MODULE_OF[name]}"), name)
    msg = f"module 'splitlab.stats' has no attribute {name!r}"
    raise AttributeError(msg)
