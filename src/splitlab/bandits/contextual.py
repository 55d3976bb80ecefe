"""Contextual policies on numeric context features: LinUCB and linear Thompson sampling.

Each arm ``a`` has its own ridge regression of the reward on the context ``x`` (a vector of
``n_features`` numbers; include a constant 1 for an intercept): ``A_a = l2 I + sum x x^T`` and
``b_a = sum r x``, so ``theta_a = A_a^{-1} b_a``. ``(A_a, b_a)`` are the sufficient statistics:
they add across batches and shards like the context-free ones, through
:meth:`ContextualPolicy.update_statistics`.

The interface mirrors :class:`~splitlab.bandits.policies.Policy`, with the context added:
``update(arm, reward, context)``, ``update_batch(arms, rewards, contexts)``,
``weights(context, rng=None, *, draws=None)`` and ``choose(context, rng)`` (one context -> one
arm, an ``(m, n_features)`` array -> ``m`` arms).

Example:
    >>> import numpy as np
    >>> policy = LinUCB(2, 2, alpha=0.5)
    >>> policy.update_batch([0, 0, 1, 1], [1.0, 0.0, 0.0, 1.0], [[1, 1], [1, -1], [1, 1], [1, -1]])
    >>> policy.choose(np.array([[1.0, 1.0], [1.0, -1.0]]), np.random.default_rng(0)).tolist()
    [0, 1]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from splitlab.bandits._common import (
    FloatArray,
    IntArray,
    argmax_random_ties,
    arm_index,
    as_arms,
    as_rewards,
    check_draws,
    check_generator,
    check_n_arms,
    check_number,
    one_hot_mean,
    reward_value,
    tie_shares,
)
from splitlab.bandits.policies import p_best_normal

__all__ = ["CONTEXTUAL_POLICIES", "ContextualPolicy", "LinUCB", "LinearThompson", "make_contextual_policy"]


class ContextualPolicy(ABC):
    """Disjoint ridge regressions, one per arm, on ``n_features`` numeric context features.

    Attributes:
        n_arms: number of arms, >= 2.
        n_features: length of a context vector, >= 1.
        l2: ridge penalty ``lambda`` (> 0), the prior precision of the coefficients; default 1.
    """

    name: ClassVar[str]

    def __init__(self, n_arms: int, n_features: int, *, l2: float = 1.0) -> None:
        self.n_arms = check_n_arms(n_arms)
        if isinstance(n_features, bool) or not isinstance(n_features, int | np.integer) or n_features < 1:
            msg = f"n_features == {n_features!r}, must be an integer >= 1"
            raise ValueError(msg)
        self.n_features = int(n_features)
        self.l2 = check_number("l2", l2, low=1e-300)
        self._gram = np.broadcast_to(self.l2 * np.eye(self.n_features), (self.n_arms, self.n_features, self.n_features))
        self._gram = self._gram.copy()
        self._xty = np.zeros((self.n_arms, self.n_features))
        self._n = np.zeros(self.n_arms)
        self._solved: tuple[FloatArray, FloatArray] | None = None

    # ---------------------------------------------------------------------------------------
    # State

    @property
    def counts(self) -> FloatArray:
        """Observations per arm."""
        return self._n.copy()

    @property
    def coefficients(self) -> FloatArray:
        """Ridge estimates ``theta_a = A_a^{-1} b_a``, shape ``(n_arms, n_features)``."""
        return self._solve()[1].copy()

    def update(self, arm: int, reward: float, context: Any) -> None:
        """Add one reward earned by ``arm`` in ``context``."""
        i = arm_index(arm, self.n_arms)
        r = reward_value(reward, unit_interval=False)
        x = self._contexts(context, single=True)[0]
        self._gram[i] += np.outer(x, x)
        self._xty[i] += r * x
        self._n[i] += 1
        self._solved = None

    def update_batch(self, arms: Any, rewards: Any, contexts: Any) -> None:
        """Add one reward per decision: ``arms[i]`` earned ``rewards[i]`` in ``contexts[i]``."""
        index = as_arms(arms, self.n_arms)
        values = as_rewards(rewards, index.size, unit_interval=False)
        x = self._contexts(contexts, single=False)
        if x.shape[0] != index.size:
            msg = f"contexts has {x.shape[0]} rows, must have one per arm decision ({index.size})"
            raise ValueError(msg)
        for arm in np.unique(index):
            rows = x[index == arm]
            self._gram[arm] += rows.T @ rows
            self._xty[arm] += rows.T @ values[index == arm]
            self._n[arm] += rows.shape[0]
        self._solved = None

    def update_statistics(self, arm: int, *, n: int, xtx: Any, xty: Any) -> None:
        """Add the sufficient statistics of ``n`` observations of ``arm``: ``X^T X`` and ``X^T r``."""
        i = arm_index(arm, self.n_arms)
        d = self.n_features
        gram = np.asarray(xtx, dtype=np.float64)
        cross = np.asarray(xty, dtype=np.float64)
        if gram.shape != (d, d) or cross.shape != (d,) or not (np.isfinite(gram).all() and np.isfinite(cross).all()):
            msg = f"xtx and xty have shapes {gram.shape} and {cross.shape}, must be ({d}, {d}) and ({d},), finite"
            raise ValueError(msg)
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            msg = f"n == {n!r}, must be an integer >= 0"
            raise ValueError(msg)
        self._gram[i] += gram
        self._xty[i] += cross
        self._n[i] += n
        self._solved = None

    def reset(self) -> None:
        """Forget every reward."""
        self._gram[:] = self.l2 * np.eye(self.n_features)
        self._xty[:] = 0.0
        self._n[:] = 0.0
        self._solved = None

    def _solve(self) -> tuple[FloatArray, FloatArray]:
        if self._solved is None:
            inverse = np.asarray(np.linalg.inv(self._gram), dtype=np.float64)
            self._solved = (inverse, np.asarray(np.einsum("kij,kj->ki", inverse, self._xty), dtype=np.float64))
        return self._solved

    def _contexts(self, context: Any, *, single: bool) -> FloatArray:
        x = np.asarray(context, dtype=np.float64)
        if single and x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.n_features:
            shape = f"({self.n_features},) or (m, {self.n_features})" if single else f"(m, {self.n_features})"
            msg = f"context has shape {np.shape(context)}, must be {shape}"
            raise ValueError(msg)
        if not np.isfinite(x).all():
            msg = "context contains NaN or infinite values, must be finite"
            raise ValueError(msg)
        return x

    def _moments(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Predicted mean ``x^T theta_a`` and its width ``sqrt(x^T A_a^{-1} x)``, each ``(m, k)``."""
        inverse, theta = self._solve()
        mean = x @ theta.T
        width = np.sqrt(np.maximum(np.einsum("md,kde,me->mk", x, inverse, x), 0.0))
        return mean, width

    # ---------------------------------------------------------------------------------------
    # Decisions

    def choose(self, context: Any, rng: np.random.Generator) -> int | IntArray:
        """The arm for one context vector, or one arm per row of an ``(m, n_features)`` array."""
        check_generator(rng)
        single = np.ndim(context) == 1
        chosen = self._choose(self._contexts(context, single=True), rng)
        return int(chosen[0]) if single else chosen

    def weights(self, context: Any, rng: np.random.Generator | None = None, *, draws: int | None = None) -> FloatArray:
        """Allocation probabilities for one context ``(n_arms,)`` or per row ``(m, n_arms)``; rows sum to 1."""
        draws = check_draws(draws)
        if draws is not None:
            check_generator(rng)
        single = np.ndim(context) == 1
        shares = self._weights(self._contexts(context, single=True), rng, draws)
        return shares[0] if single else shares

    @abstractmethod
    def _choose(self, x: FloatArray, rng: np.random.Generator) -> IntArray: ...

    @abstractmethod
    def _weights(self, x: FloatArray, rng: np.random.Generator | None, draws: int | None) -> FloatArray: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_arms={self.n_arms}, n_features={self.n_features}, n={self._n.tolist()})"


class LinUCB(ContextualPolicy):
    """LinUCB with disjoint linear models: play ``argmax_a x^T theta_a + alpha sqrt(x^T A_a^{-1} x)``.

    Ties are broken at random; :meth:`weights` is the (deterministic) one-hot of the choice,
    shared between ties.

    Args:
        n_arms: number of arms, >= 2.
        n_features: length of a context vector, >= 1.
        alpha: width of the confidence bound (> 0); default 1.
        l2: ridge penalty (> 0); default 1.

    References:
        Li, L., Chu, W., Langford, J., Schapire, R. E. (2010). A Contextual-Bandit Approach to
        Personalized News Article Recommendation. WWW, algorithm 1.
    """

    name = "linucb"

    def __init__(self, n_arms: int, n_features: int, *, alpha: float = 1.0, l2: float = 1.0) -> None:
        super().__init__(n_arms, n_features, l2=l2)
        self.alpha = check_number("alpha", alpha, low=1e-300)

    def _choose(self, x: FloatArray, rng: np.random.Generator) -> IntArray:
        mean, width = self._moments(x)
        return argmax_random_ties(mean + self.alpha * width, rng)

    def _weights(self, x: FloatArray, rng: np.random.Generator | None, draws: int | None) -> FloatArray:  # noqa: ARG002 - shared kernel signature
        mean, width = self._moments(x)
        return tie_shares(mean + self.alpha * width)


class LinearThompson(ContextualPolicy):
    """Linear Thompson sampling: draw ``theta_a ~ N(A_a^{-1} b_a, v^2 A_a^{-1})``, play the best ``x^T theta_a``.

    For one context the arm scores are independent ``N(x^T theta_a, v^2 x^T A_a^{-1} x)``, so
    :meth:`weights` is the exact probability that each is the largest (one-dimensional
    quadrature per context), or a Monte Carlo estimate with ``draws``.

    Args:
        n_arms: number of arms, >= 2.
        n_features: length of a context vector, >= 1.
        scale: the posterior scale ``v`` (> 0), about the reward noise standard deviation; default 1.
        l2: ridge penalty (> 0); default 1.

    References:
        Agrawal, S., Goyal, N. (2013). Thompson Sampling for Contextual Bandits with Linear
        Payoffs. ICML, algorithm 1 (here with one parameter vector per arm).
    """

    name = "linear-thompson"

    def __init__(self, n_arms: int, n_features: int, *, scale: float = 1.0, l2: float = 1.0) -> None:
        super().__init__(n_arms, n_features, l2=l2)
        self.scale = check_number("scale", scale, low=1e-300)

    def _choose(self, x: FloatArray, rng: np.random.Generator) -> IntArray:
        mean, width = self._moments(x)
        return argmax_random_ties(mean + self.scale * width * rng.standard_normal(mean.shape), rng)

    def _weights(self, x: FloatArray, rng: np.random.Generator | None, draws: int | None) -> FloatArray:
        mean, width = self._moments(x)
        sd = self.scale * width
        if draws is None:
            return np.stack([p_best_normal(m, s) for m, s in zip(mean, sd, strict=True)])
        assert rng is not None  # noqa: S101 - checked by weights()
        scores = mean[:, None, :] + sd[:, None, :] * rng.standard_normal((mean.shape[0], draws, self.n_arms))
        return one_hot_mean(argmax_random_ties(scores, rng), self.n_arms)


CONTEXTUAL_POLICIES: tuple[str, ...] = ("linucb", "linear-thompson")
"""Names of the contextual policies :func:`make_contextual_policy` builds."""


def make_contextual_policy(name: str, n_arms: int, n_features: int, **options: Any) -> ContextualPolicy:
    """Build ``linucb`` (options ``alpha``, ``l2``) or ``linear-thompson`` (``scale``, ``l2``) by name.

    Raises:
        ValueError: an unknown name or option, or an option out of bounds.
    """
    factories: dict[str, type[ContextualPolicy]] = {"linucb": LinUCB, "linear-thompson": LinearThompson}
    factory = factories.get(name)
    if factory is None:
        msg = f"policy == {name!r}, must be one of {', '.join(CONTEXTUAL_POLICIES)}"
        raise ValueError(msg)
    try:
        return factory(n_arms, n_features, **options)
    except TypeError as exc:
        msg = f"invalid option for policy {name!r}: {exc}"
        raise ValueError(msg) from None
