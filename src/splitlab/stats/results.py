"""Typed, immutable result records shared by the tests, and the error codes they carry."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Why a result could not be computed from the data (caller mistakes raise instead)."""

    EMPTY_GROUP = "EMPTY_GROUP"
    TOO_FEW_UNITS = "TOO_FEW_UNITS"
    ZERO_VARIANCE = "ZERO_VARIANCE"
    ZERO_CONTROL_MEAN = "ZERO_CONTROL_MEAN"
    NONPOSITIVE_MEAN = "NONPOSITIVE_MEAN"
    ZERO_DENOMINATOR = "ZERO_DENOMINATOR"
    NON_FINITE = "NON_FINITE"
    """A group's sums are infinite or NaN: a value is not finite, or its square (or the sum) overflows."""


Interval = tuple[float, float]
NAN_INTERVAL: Interval = (math.nan, math.nan)


@dataclass(frozen=True, slots=True)
class EffectResult:
    """A two-sample comparison of a treatment against control.

    Attributes:
        test: the named variant of the test, e.g. ``"pooled-z"`` or ``"welch-t"``.
        alternative: ``"two-sided"``, ``"greater"`` (treatment higher) or ``"less"``.
        alpha: significance level of the CIs and of ``significant``.
        control_mean, treatment_mean: estimates per group (CUPED-adjusted when ``cuped``).
        control_n, treatment_n: units per group.
        absolute_effect, absolute_ci: ``treatment - control`` and its CI.
        relative_effect, relative_ci: ``treatment / control - 1`` and its CI.
        relative_ci_method: ``"delta"`` or ``"log"``.
        statistic, p_value: test statistic and p-value for the null of the ``alternative``.
        df: Welch degrees of freedom of the absolute scale (its CI, and the test unless the margin
            is relative); ``None`` for normal and exact tests.
        margin, relative_margin: non-inferiority margin and whether it is relative.
        cuped: whether the estimates are regression-adjusted.
        correction: the multiple-testing method applied to ``p_value`` and the CIs, if any.
        unadjusted_p_value: the p-value before that correction.
        error_code, error_message: set when the data do not allow (part of) the result.
        relative_df: Welch degrees of freedom of the relative CI (each scale has its own).
    """

    test: str
    alternative: str
    alpha: float
    control_mean: float
    treatment_mean: float
    control_n: int
    treatment_n: int
    absolute_effect: float
    absolute_ci: Interval
    relative_effect: float
    relative_ci: Interval
    relative_ci_method: str
    statistic: float
    p_value: float
    df: float | None = None
    margin: float = 0.0
    relative_margin: bool = False
    cuped: bool = False
    correction: str | None = None
    unadjusted_p_value: float | None = None
    error_code: ErrorCode | None = None
    error_message: str | None = None
    relative_df: float | None = None

    @property
    def significant(self) -> bool:
        """Whether the null is rejected at ``alpha`` (False when the p-value is undefined)."""
        return bool(self.p_value < self.alpha)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (tuples become lists; JSON-ready except NaN)."""
        data = asdict(self)
        data["absolute_ci"] = list(self.absolute_ci)
        data["relative_ci"] = list(self.relative_ci)
        data["error_code"] = None if self.error_code is None else str(self.error_code)
        return data
