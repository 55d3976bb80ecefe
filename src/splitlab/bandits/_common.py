"""Array types, parameter checks and tie-aware arg-max shared by the bandit modules.

Every kernel works on arrays with any leading shape ``(..., k)``: one row per decision, per
replication of a simulation, or none at all for a single policy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


def check_n_arms(n_arms: int) -> int:
    """``n_arms`` if it is an integer >= 2, else ValueError naming it."""
    if isinstance(n_arms, bool) or not isinstance(n_arms, int | np.integer) or n_arms < 2:
        msg = f"n_arms == {n_arms!r}, must be an integer >= 2"
        raise ValueError(msg)
    return int(n_arms)


def check_count(name: str, value: int, *, minimum: int = 0) -> int:
    """``value`` if it is an integer >= ``minimum``, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        msg = f"{name} == {value!r}, must be an integer >= {minimum}"
        raise ValueError(msg)
    return int(value)


def check_number(name: str, value: float, *, low: float = -math.inf, high: float = math.inf) -> float:
    """``value`` if it is a finite real in ``[low, high]``, else ValueError naming ``name`` and the bound."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        msg = f"{name} == {value!r}, must be a number"
        raise TypeError(msg)
    number = float(value)
    if math.isnan(number) or number < low or number > high:
        msg = f"{name} == {value!r}, must be in [{low:g}, {high:g}]"
        raise ValueError(msg)
    return number


def check_generator(rng: Any, *, name: str = "rng") -> np.random.Generator:
    """``rng`` if it is a numpy Generator, else ValueError (policies never draw from global state)."""
    if not isinstance(rng, np.random.Generator):
        msg = f"{name} == {rng!r}, must be a numpy Generator such as np.random.default_rng(seed)"
        raise TypeError(msg)
    return rng


def check_draws(draws: int | None) -> int | None:
    """``draws`` if it is None (exact) or an integer >= 100 (Monte Carlo)."""
    if draws is None:
        return None
    return check_count("draws", draws, minimum=100)


def as_arms(arms: Any, n_arms: int) -> IntArray:
    """Arm indices as a 1-d integer array, each in ``[0, n_arms)``."""
    array = np.asarray(arms)
    if array.ndim != 1 or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
        msg = f"arms must be a one-dimensional array of integers, got dtype {array.dtype} and shape {array.shape}"
        raise ValueError(msg)
    if array.size and (array.min() < 0 or array.max() >= n_arms):
        bad = int(array[(array < 0) | (array >= n_arms)][0])
        msg = f"arms contains {bad}, must be in [0, {n_arms})"
        raise ValueError(msg)
    return array.astype(np.intp, copy=False)


def as_rewards(rewards: Any, size: int, *, unit_interval: bool) -> FloatArray:
    """Rewards as a 1-d float array of ``size`` finite values (in [0, 1] when ``unit_interval``)."""
    array = np.asarray(rewards, dtype=np.float64)
    if array.ndim != 1 or array.size != size:
        msg = f"rewards has shape {array.shape}, must be ({size},) like arms"
        raise ValueError(msg)
    if not np.isfinite(array).all():
        msg = "rewards contains NaN or infinite values, must be finite"
        raise ValueError(msg)
    if unit_interval and array.size and (array.min() < 0 or array.max() > 1):
        bad = float(array[(array < 0) | (array > 1)][0])
        msg = f"rewards contains {bad!r}, must be in [0, 1] for this policy"
        raise ValueError(msg)
    return array


def arm_index(arm: Any, n_arms: int) -> int:
    """One arm index in ``[0, n_arms)``."""
    if isinstance(arm, bool) or not isinstance(arm, int | np.integer) or not 0 <= arm < n_arms:
        msg = f"arm == {arm!r}, must be an integer in [0, {n_arms})"
        raise ValueError(msg)
    return int(arm)


def reward_value(reward: Any, *, unit_interval: bool) -> float:
    """One finite reward (in [0, 1] when ``unit_interval``)."""
    if isinstance(reward, bool):
        return float(reward)
    if not isinstance(reward, int | float | np.integer | np.floating) or not math.isfinite(reward):
        msg = f"reward == {reward!r}, must be a finite number"
        raise ValueError(msg)
    if unit_interval and not 0 <= reward <= 1:
        msg = f"reward == {reward!r}, must be in [0, 1] for this policy"
        raise ValueError(msg)
    return float(reward)


def argmax_random_ties(values: FloatArray, rng: np.random.Generator) -> IntArray:
    """Arg-max over the last axis, ties broken uniformly at random (one draw per tied row only)."""
    if values.ndim == 1:  # one decision, the hot path of online use: plain Python beats numpy's call overhead
        row = values.tolist()
        top = max(row)
        ties = [i for i, v in enumerate(row) if v == top]
        return np.asarray(ties[0] if len(ties) == 1 else ties[int(rng.integers(len(ties)))], dtype=np.intp)
    best = np.asarray(values.argmax(axis=-1))
    top = np.take_along_axis(values, best[..., None], axis=-1)
    tied = (values == top).sum(axis=-1) > 1
    if tied.any():
        mask = values[tied] == top[tied]
        best[tied] = (mask * rng.random(mask.shape)).argmax(axis=-1)
    return best


def tie_shares(values: FloatArray) -> FloatArray:
    """One-hot of the arg-max over the last axis, shared equally between tied maxima."""
    top = values.max(axis=-1, keepdims=True)
    mask = (values == top).astype(np.float64)
    return np.asarray(mask / mask.sum(axis=-1, keepdims=True), dtype=np.float64)


def one_hot_mean(indices: IntArray, n_arms: int) -> FloatArray:
    """Share of each arm among ``indices`` over the last axis: ``(..., m) -> (..., n_arms)``."""
    counts = (indices[..., None] == np.arange(n_arms)).sum(axis=-2)
    return np.asarray(counts / indices.shape[-1], dtype=np.float64)
