"""Metric definitions for unit-level data: which columns make a metric and how it is tested."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from splitlab.stats._validation import check_choice
from splitlab.stats.frequentist import MEAN_TESTS, PROPORTION_TESTS, RATIO_TESTS

KINDS = ("auto", "proportion", "mean", "ratio")
VALUE_TESTS = ("mann-whitney", "bootstrap")
"""Tests on a metric's unit-level values (:mod:`splitlab.analysis.value_tests`): proportion and mean metrics."""
_TESTS = {"proportion": PROPORTION_TESTS, "mean": MEAN_TESTS, "ratio": RATIO_TESTS, "auto": ()}

Covariate = str | tuple[str, str]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric of an analysis.

    Attributes:
        name: label in results.
        kind: ``proportion`` (0/1 per unit), ``mean`` (a per-unit value), ``ratio`` (sum of
            ``numerator`` over sum of ``denominator``), or ``auto``: proportion when the column
            holds only 0/1 or booleans, mean otherwise.
        column: the per-unit column of a proportion or mean metric.
        numerator, denominator: the per-unit columns of a ratio metric.
        covariate: a pre-exposure column (or ``(numerator, denominator)`` pair) for CUPED.
        test: the named test; ``None`` takes the default of the kind (``pooled-z``, ``welch-t``,
            ``delta-z``; with a covariate ``welch-t`` or ``delta-z``). A proportion or mean
            metric without a covariate may also name a test on its unit-level values,
            ``mann-whitney`` or ``bootstrap`` (:mod:`splitlab.analysis.value_tests`).
        higher_is_better: direction of the metric, used by chance to win and expected loss.
    """

    name: str
    kind: str
    column: str | None = None
    numerator: str | None = None
    denominator: str | None = None
    covariate: Covariate | None = None
    test: str | None = None
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        check_choice(f"metrics[{self.name!r}].kind", self.kind, KINDS)
        if self.kind == "ratio" and not (self.numerator and self.denominator):
            msg = f"metrics[{self.name!r}]: a ratio metric needs numerator and denominator columns"
            raise ValueError(msg)
        if self.kind != "ratio" and not self.column:
            msg = f"metrics[{self.name!r}]: a {self.kind} metric needs a column"
            raise ValueError(msg)
        if self.test in VALUE_TESTS:
            if self.kind == "ratio" or self.covariate is not None:
                what = "a ratio metric" if self.kind == "ratio" else "a metric with a covariate"
                msg = f"metrics[{self.name!r}].test == {self.test!r} needs one value per unit, not {what}"
                raise ValueError(msg)
        elif self.test is not None and self.kind != "auto":
            tests = MEAN_TESTS if self.kind == "proportion" and self.covariate else _TESTS[self.kind]
            values = () if self.kind == "ratio" or self.covariate else VALUE_TESTS
            check_choice(f"metrics[{self.name!r}].test", self.test, (*tests, *values))

    @property
    def columns(self) -> tuple[str, ...]:
        """Every data column the metric reads (covariates included)."""
        own = (self.numerator, self.denominator) if self.kind == "ratio" else (self.column,)
        cov: tuple[str, ...] = (
            ()
            if self.covariate is None
            else (self.covariate if isinstance(self.covariate, tuple) else (self.covariate,))
        )
        return tuple(c for c in (*own, *cov) if c is not None)


def proportion(
    column: str, *, covariate: Covariate | None = None, test: str | None = None, higher_is_better: bool = True
) -> MetricSpec:
    """A binary metric: the share of units with a 1 in ``column`` (conversion)."""
    return MetricSpec(
        "", "proportion", column=column, covariate=covariate, test=test, higher_is_better=higher_is_better
    )


def mean(
    column: str, *, covariate: Covariate | None = None, test: str | None = None, higher_is_better: bool = True
) -> MetricSpec:
    """The mean of a per-unit value (revenue per user)."""
    return MetricSpec("", "mean", column=column, covariate=covariate, test=test, higher_is_better=higher_is_better)


def ratio(
    numerator: str,
    denominator: str,
    *,
    covariate: Covariate | None = None,
    test: str | None = None,
    higher_is_better: bool = True,
) -> MetricSpec:
    """A ratio of per-unit sums (average order value = revenue / orders)."""
    return MetricSpec(
        "",
        "ratio",
        numerator=numerator,
        denominator=denominator,
        covariate=covariate,
        test=test,
        higher_is_better=higher_is_better,
    )


def parse_metric(name: str, definition: MetricSpec | str | tuple[str, str]) -> MetricSpec:
    """Build a :class:`MetricSpec` from the short forms ``analyze`` accepts.

    ``"col"`` (kind ``auto``: inferred from the data),
    ``"col:proportion"``, ``"col:mean"``, ``"num/den"``, ``"num/den:ratio"``, ``("num", "den")``.
    """
    if isinstance(definition, MetricSpec):
        return replace(definition, name=name)
    if isinstance(definition, tuple):
        numerator, denominator = definition
        return MetricSpec(name, "ratio", numerator=numerator, denominator=denominator)
    if not isinstance(definition, str) or not definition:
        msg = f"metrics[{name!r}] == {definition!r}, must be a column name, 'col:kind', 'num/den' or a MetricSpec"
        raise ValueError(msg)
    body, _, kind = definition.partition(":")
    if "/" in body:
        numerator, _, denominator = body.partition("/")
        if kind not in ("", "ratio"):
            msg = f"metrics[{name!r}] == {definition!r}: 'num/den' is a ratio metric, not {kind!r}"
            raise ValueError(msg)
        return MetricSpec(name, "ratio", numerator=numerator, denominator=denominator)
    return MetricSpec(name, kind or "auto", column=body)


def parse_metrics(
    metrics: Mapping[str, MetricSpec | str | tuple[str, str]] | list[MetricSpec],
    covariates: Mapping[str, Covariate] | None = None,
    tests: Mapping[str, str] | None = None,
) -> list[MetricSpec]:
    """Parse ``analyze``'s ``metrics``, ``covariates`` and ``tests`` arguments into specs."""
    if isinstance(metrics, Mapping):
        specs = [parse_metric(name, definition) for name, definition in metrics.items()]
    else:
        specs = list(metrics)
        for spec in specs:
            if not isinstance(spec, MetricSpec) or not spec.name:
                msg = "metrics given as a list must be named MetricSpec objects; use a dict {name: definition}"
                raise ValueError(msg)
    if not specs:
        msg = "metrics is empty; give at least one metric"
        raise ValueError(msg)
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        msg = f"metrics has duplicate names: {sorted({n for n in names if names.count(n) > 1})}"
        raise ValueError(msg)
    for name, covariate in (covariates or {}).items():
        if name not in names:
            msg = f"covariates[{name!r}] refers to no metric; metrics are {names}"
            raise ValueError(msg)
        index = names.index(name)
        specs[index] = replace(specs[index], covariate=covariate)
    for name, test in (tests or {}).items():
        if name not in names:
            msg = f"tests[{name!r}] refers to no metric; metrics are {names}"
            raise ValueError(msg)
        index = names.index(name)
        specs[index] = replace(specs[index], test=test)
    return specs
