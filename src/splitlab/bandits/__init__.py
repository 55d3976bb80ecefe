"""Multi-armed bandits: allocation policies that shift traffic to better variants while an experiment runs.

A pure layer (numpy and scipy; no storage, web or CLI code):

* :mod:`~splitlab.bandits.policies`: Thompson sampling (Beta-Bernoulli, Gaussian, top-two),
  UCB1, UCB1-Tuned and epsilon-greedy, on per-arm sufficient statistics, with one interface:
  ``update`` / ``update_batch`` / ``update_statistics``, ``weights``, ``choose``.
* :mod:`~splitlab.bandits.contextual`: LinUCB and linear Thompson sampling on numeric context.
* :mod:`~splitlab.bandits.production`: production mode (weights fixed per period, burn-in,
  floor, period-weighted statistics, stopping rule).
* :mod:`~splitlab.bandits.estimates`: per-arm means that stay valid after adaptive allocation
  (period-weighted and inverse-propensity weighted).
* :mod:`~splitlab.bandits.simulation`: regret simulations vectorised across replications.

``splitlab.operations.bandits`` wires these to experiment specs, the store and assignment.
"""

from __future__ import annotations

from splitlab.bandits.contextual import (
    CONTEXTUAL_POLICIES,
    ContextualPolicy,
    LinearThompson,
    LinUCB,
    make_contextual_policy,
)
from splitlab.bandits.estimates import (
    ESTIMATORS,
    ArmEstimate,
    ipw_estimates,
    naive_estimates,
    period_weighted_estimates,
)
from splitlab.bandits.policies import (
    POLICIES,
    UCB1,
    BernoulliThompson,
    EpsilonGreedy,
    GaussianThompson,
    Policy,
    ThompsonPolicy,
    TopTwoThompson,
    UCB1Tuned,
    make_policy,
)
from splitlab.bandits.production import PHASES, AllocationDecision, BatchedBandit, ProductionSettings, decide_weights
from splitlab.bandits.simulation import SimulationResult, simulate

__all__ = [
    "CONTEXTUAL_POLICIES",
    "ESTIMATORS",
    "PHASES",
    "POLICIES",
    "UCB1",
    "AllocationDecision",
    "ArmEstimate",
    "BatchedBandit",
    "BernoulliThompson",
    "ContextualPolicy",
    "EpsilonGreedy",
    "GaussianThompson",
    "LinUCB",
    "LinearThompson",
    "Policy",
    "ProductionSettings",
    "SimulationResult",
    "ThompsonPolicy",
    "TopTwoThompson",
    "UCB1Tuned",
    "decide_weights",
    "ipw_estimates",
    "make_contextual_policy",
    "make_policy",
    "naive_estimates",
    "period_weighted_estimates",
    "simulate",
]
