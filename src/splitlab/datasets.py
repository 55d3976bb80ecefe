"""Synthetic unit-level experiment data with known effects, for examples, tests and benchmarks."""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

CHECKOUT_FILE = "checkout_experiment.csv.gz"


def make_checkout_data(
    n_users: int = 40_000,
    *,
    seed: int = 2026,
    variants: tuple[str, ...] = ("control", "free_shipping_35"),
    conversion_rate: float = 0.045,
    conversion_lift: float = 0.12,
    order_value_change: float = -0.02,
) -> pd.DataFrame:
    """A checkout experiment: one row per user with pre-period covariates.

    Columns: ``user_id``, ``variant``, ``sessions``, ``orders``, ``converted`` (0/1),
    ``revenue``, ``pre_sessions``, ``pre_revenue`` (the 14 days before exposure, for CUPED).
    Every variant after the first gets ``conversion_lift`` (relative) on the chance of ordering
    and ``order_value_change`` on the order value, so the truth is known.
    """
    if n_users < len(variants):
        msg = f"n_users == {n_users}, must be >= the number of variants ({len(variants)})"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    arm = rng.integers(0, len(variants), n_users)
    treated = arm > 0
    # A user's engagement and basket size carry over from the pre-period: what makes CUPED work.
    engagement = rng.gamma(0.6, 1 / 0.6, n_users)
    basket = rng.lognormal(np.log(45.0), 0.5, n_users)
    pre_sessions = rng.poisson(2.0 * engagement) + 1
    sessions = rng.poisson(2.0 * engagement) + 1
    base_rate = np.clip(conversion_rate * engagement, 0, 0.9)
    rate = np.where(treated, np.clip(base_rate * (1 + conversion_lift), 0, 0.95), base_rate)
    orders = (rng.random(n_users) < rate) * (1 + rng.poisson(0.3 * engagement))
    value = basket * rng.lognormal(0.0, 0.3, n_users) * np.where(treated, 1 + order_value_change, 1.0)
    revenue = np.round(orders * value, 2)
    pre_orders = (rng.random(n_users) < base_rate) * (1 + rng.poisson(0.3 * engagement))
    pre_revenue = np.round(pre_orders * basket * rng.lognormal(0.0, 0.3, n_users), 2)
    return pd.DataFrame(
        {
            "user_id": np.arange(1, n_users + 1),
            "variant": np.asarray(variants, dtype=object)[arm],
            "sessions": sessions,
            "orders": orders,
            "converted": (orders > 0).astype(np.int64),
            "revenue": revenue,
            "pre_sessions": pre_sessions,
            "pre_revenue": pre_revenue,
        }
    )


def checkout_path() -> Any:
    """Path of the bundled checkout example (``make_checkout_data()`` written as gzipped CSV)."""
    return resources.files("splitlab") / "data" / CHECKOUT_FILE


def load_checkout_data() -> pd.DataFrame:
    """The bundled checkout example as a pandas frame."""
    with resources.as_file(checkout_path()) as path:
        return pd.read_csv(path)
