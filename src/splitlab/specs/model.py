"""Pydantic models of an experiment spec and of a metric definition.

Every model refuses unknown keys and is immutable. A validation error names the field by its path
(``variants.1.weight``, ``targeting.exclude.0.value``); rules that involve several fields say which
ones in the message (``hypothesis.primary_metric == 'aov' is not in metrics.goal``).

Example:
    >>> spec = ExperimentSpec(
    ...     key="button-color",
    ...     variants=[{"key": "control", "weight": 0.5}, {"key": "blue", "weight": 0.5}],
    ... )
    >>> spec.seed, spec.unit, spec.hash_version
    ('button-color', 'user_id', '1')
    >>> ExperimentSpec(key="x", variants=[{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.4}])
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for ExperimentSpec
    variants
      Value error, variant weights sum to 0.9, must sum to 1 (tolerance 1e-06) ...
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import urllib.parse
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, NoReturn, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from splitlab.assignment.config import OPERATORS

__all__ = [
    "ALLOCATION_METHODS",
    "ANALYSIS_METHODS",
    "CORRECTIONS",
    "HASH_VERSIONS",
    "METRIC_KINDS",
    "METRIC_TESTS",
    "SEQUENTIAL_METHODS",
    "WEIGHT_TOLERANCE",
    "Allocation",
    "Analysis",
    "Bandit",
    "Breaker",
    "Canary",
    "Capping",
    "Condition",
    "Covariate",
    "DecisionOptions",
    "EventAggregate",
    "ExperimentSpec",
    "Export",
    "ExportTarget",
    "Guardrail",
    "Holdout",
    "Hypothesis",
    "MetricDefinition",
    "Metrics",
    "ModelEndpoint",
    "Monitoring",
    "Namespace",
    "NotificationKind",
    "NotificationTarget",
    "NotificationTargets",
    "Routing",
    "Schedule",
    "Shadow",
    "Targeting",
    "Variant",
    "check_metric_references",
    "check_target_references",
    "metric_references",
    "model_endpoints",
    "parse_export_target",
    "undefined_metrics",
    "undefined_targets",
]

WEIGHT_TOLERANCE = 1e-6
HashVersion = Literal["1", "growthbook-v2"]
AllocationMethod = Literal["hash", "attributes", "random", "bandit"]
AnalysisMethod = Literal["frequentist", "bayesian", "sequential"]
SequentialMethod = Literal["msprt", "gst-obf", "gst-pocock"]
Correction = Literal["bonferroni", "holm", "hochberg", "benjamini-hochberg", "benjamini-yekutieli", "none"]
MetricKind = Literal["binary", "mean", "sum", "count", "ratio", "quantile"]
MetricTest = Literal["mann-whitney", "bootstrap"]

HASH_VERSIONS: tuple[str, ...] = ("1", "growthbook-v2")
ALLOCATION_METHODS: tuple[str, ...] = ("hash", "attributes", "random", "bandit")
ANALYSIS_METHODS: tuple[str, ...] = ("frequentist", "bayesian", "sequential")
SEQUENTIAL_METHODS: tuple[str, ...] = ("msprt", "gst-obf", "gst-pocock")
# Same names as splitlab.stats.multiplicity.METHODS (a test keeps them equal); not imported so that
# loading a spec does not import the statistics engine (scipy).
CORRECTIONS: tuple[str, ...] = ("bonferroni", "holm", "hochberg", "benjamini-hochberg", "benjamini-yekutieli", "none")
METRIC_KINDS: tuple[str, ...] = ("binary", "mean", "sum", "count", "ratio", "quantile")
# Same names as splitlab.analysis.value_tests.VALUE_TESTS (a test keeps them equal).
METRIC_TESTS: tuple[str, ...] = ("mann-whitney", "bootstrap")

_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]*")
_VARIANT_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# SemVer-like: optional v, dot-separated integers, optional pre-release and build metadata; the same
# grammar as splitlab.assignment.targeting.version_key, so a spec that validates also compiles.
_VERSION = re.compile(r"[vV]?[0-9]+(?:\.[0-9]+)*(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z.-]*)?")


def _check_slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        msg = f"{value!r} is not a slug: use lowercase letters, digits, '-' and '_', starting with a letter or digit"
        raise ValueError(msg)
    return value


def _check_variant_key(value: str) -> str:
    if not _VARIANT_KEY.fullmatch(value):
        msg = f"{value!r} is not a variant key: use letters, digits, '.', '-' and '_', starting with a letter or digit"
        raise ValueError(msg)
    return value


Slug = Annotated[str, AfterValidator(_check_slug)]
VariantKey = Annotated[str, AfterValidator(_check_variant_key)]
Name = Annotated[str, Field(min_length=1)]
# Free text; YAML block scalars (`>`) leave a trailing newline that would otherwise show up in diffs.
Text = Annotated[str, AfterValidator(str.strip)]


def _duplicates(values: Iterable[str]) -> list[str]:
    return [value for value, count in Counter(values).items() if count > 1]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _raise_at(model: _Model, loc: tuple[str | int, ...], message: str, value: object) -> NoReturn:
    """Raise a validation error at ``loc`` under ``model``, worded as pydantic's own value errors.

    A rule on several fields (the bandit floor against the number of variants) runs on the model
    that holds them all, yet belongs to one field: pydantic prefixes the path of a
    ``ValidationError`` raised in a validator with the validator's own, so the field is named.
    """
    error = PydanticCustomError("value_error", "Value error, {error}", {"error": message})
    details = InitErrorDetails(type=error, loc=loc, input=value)
    raise ValidationError.from_exception_data(type(model).__name__, [details])


class Hypothesis(_Model):
    """What the experiment is expected to show, and the error rates it is planned for.

    Attributes:
        primary_metric: the goal metric the decision rests on (must be listed in ``metrics.goal``).
        direction: ``increase`` or ``decrease``: the change the treatment is expected to cause.
        mde: minimum detectable effect, > 0; relative (0.08 = +8 %) or absolute per ``mde_type``.
        mde_type: ``relative`` (default) or ``absolute``.
        alpha: significance level of the plan, in (0, 1); default 0.05.
        power: planned power at ``mde``, in (0, 1); default 0.8.
        baseline: expected value of the primary metric in control (e.g. 0.045), used to plan the
            sample size; optional.
        statement: the hypothesis in plain words; optional.
    """

    primary_metric: Slug
    direction: Literal["increase", "decrease"]
    mde: float = Field(strict=True, gt=0)
    mde_type: Literal["relative", "absolute"] = "relative"
    alpha: float = Field(default=0.05, strict=True, gt=0, lt=1)
    power: float = Field(default=0.8, strict=True, gt=0, lt=1)
    baseline: float | None = Field(default=None, strict=True)
    statement: Text = ""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.mde_type == "relative" and self.direction == "decrease" and self.mde >= 1:
            msg = f"mde == {self.mde}, must be < 1 for a relative decrease (a metric cannot fall by 100 % or more)"
            raise ValueError(msg)
        if self.mde_type == "relative" and self.baseline == 0:
            msg = "baseline == 0, must be != 0 with a relative mde"
            raise ValueError(msg)
        return self


class Variant(_Model):
    """One arm: its key, its share of enrolled traffic, and the payload the application receives.

    Attributes:
        key: letters, digits, ``.``, ``-``, ``_``; unique within the experiment.
        weight: share of enrolled units, in [0, 1]; the weights of an experiment sum to 1.
        payload: any JSON value (feature flags, a model version for a router, prices ...).
    """

    key: VariantKey
    weight: float = Field(strict=True, ge=0, le=1)
    payload: JsonValue = None


class Condition(_Model):
    """One targeting rule: ``attributes[attribute] <operator> value``.

    The value is checked against the operator: a scalar for ``eq``/``ne``, a non-empty list of
    scalars for ``in``/``not_in``, a number or string for ``gt``/``gte``/``lt``/``lte``, a regular
    expression that compiles for ``regex``, a quoted version string (``"1.10.2"``) for ``version_*``
    and ``true``/``false`` for ``exists`` (omitted means ``true``).
    """

    attribute: Name
    operator: str
    value: JsonValue = None

    @model_validator(mode="before")
    @classmethod
    def _default_exists(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("operator") == "exists" and data.get("value") is None:
            return {**data, "value": True}
        return data

    @field_validator("operator")
    @classmethod
    def _check_operator(cls, value: str) -> str:
        if value not in OPERATORS:
            msg = f"operator == {value!r}, must be one of {', '.join(OPERATORS)}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check_value(self) -> Self:
        problem = _value_problem(self.operator, self.value)
        if problem:
            msg = f"value == {self.value!r} {problem} (operator {self.operator!r})"
            raise ValueError(msg)
        return self


def _value_problem(operator: str, value: JsonValue) -> str | None:
    """Why ``value`` does not suit ``operator``, or None."""
    if operator in ("eq", "ne"):
        return None if _is_scalar(value) else "must be a string, number or boolean"
    if operator in ("in", "not_in"):
        if not isinstance(value, list) or not value or not all(_is_scalar(v) for v in value):
            return "must be a non-empty list of strings, numbers or booleans"
        return None
    if operator in ("gt", "gte", "lt", "lte"):
        return None if _is_number(value) or isinstance(value, str) else "must be a number or a string"
    if operator == "regex":
        if not isinstance(value, str):
            return "must be a regular expression string"
        try:
            re.compile(value)
        except re.error as exc:
            return f"is not a valid regular expression: {exc}"
        return None
    if operator.startswith("version_"):
        if not isinstance(value, str):
            return "must be a quoted version string such as '1.10.2' (YAML reads an unquoted 1.10 as the number 1.1)"
        return None if _VERSION.fullmatch(value) else "is not a version string such as '1.10.2' or 'v2.0.0-beta.1'"
    return None if isinstance(value, bool) else "must be true or false"  # exists


class Targeting(_Model):
    """Eligibility: every ``include`` condition holds and no ``exclude`` condition does."""

    include: tuple[Condition, ...] = ()
    exclude: tuple[Condition, ...] = ()


class Namespace(_Model):
    """A layer of mutually exclusive experiments; this one takes units whose namespace hash is in [start, end).

    Attributes:
        name: the layer; experiments of the same layer must have disjoint ranges (checked by the catalog).
        range: ``[start, end)`` with 0 <= start < end <= 1.
    """

    name: Name
    range: tuple[Annotated[float, Field(strict=True)], Annotated[float, Field(strict=True)]]

    @field_validator("range")
    @classmethod
    def _check_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        start, end = value
        if start < 0 or end > 1:
            msg = f"range == [{start}, {end}], must lie within [0, 1]"
            raise ValueError(msg)
        if start >= end:
            msg = f"range == [{start}, {end}) is empty or reversed, must have start < end"
            raise ValueError(msg)
        return value


class Holdout(_Model):
    """Units whose hash under ``seed`` falls below ``share`` (in (0, 1)) get no variant."""

    seed: Name
    share: float = Field(strict=True, gt=0, lt=1)


_RangeEnd = Annotated[float, Field(strict=True)]
_PRODUCTION_FIELDS = ("burn_in", "floor", "stop_p_best", "stop_expected_loss", "draws", "statistics")


class Bandit(_Model):
    """How a bandit experiment's weights are decided (``allocation.bandit``), for :mod:`splitlab.operations.bandits`.

    Each bound is the one :mod:`splitlab.bandits` enforces, applied by building its objects (so
    the bounds are written once): the policy with its options, and its
    :class:`~splitlab.bandits.ProductionSettings`. :class:`ExperimentSpec` checks what depends on
    the number of variants (the floor, the options).

    Attributes:
        policy: one of :data:`splitlab.bandits.POLICIES`, or a contextual policy
            (:data:`splitlab.bandits.CONTEXTUAL_POLICIES`: ``linucb``, ``linear-thompson``), which
            needs ``context``.
        context: the unit attributes (numbers) a contextual policy decides on, in order; its
            features are a constant 1 and these. Required for a contextual policy, refused otherwise.
        options: the policy's keyword options (``{epsilon: 0.2}``), checked by building the policy.
        metric: the event whose occurrences (1) or values are the reward; None: rewards are recorded directly.
        update_minutes: window length in minutes (clock-aligned windows, > 0); 60 when neither
            this nor ``update_every`` is given.
        update_every: rewarded units per window (count-based windows, >= 1); give one of the two.
        burn_in, floor, stop_p_best, stop_expected_loss, draws, statistics: the
            :class:`~splitlab.bandits.ProductionSettings` fields, with its bounds; None: its
            default (burn-in 0, floor 0.01 with ``floor * variants <= 1``, never stop, 10,000
            draws, ``within-period``).
        seed: >= 0, seeds the per-window generators; default 0.
        reward_range: ``[low, high]``, finite, ``low < high``, within
            ``[-REWARD_LIMIT, REWARD_LIMIT]``: a reward outside it is refused. For the Bernoulli
            policies (rewards are conversions) it must lie within ``[0, 1]``, their default; for the
            others the default is the hard bound ``[-REWARD_LIMIT, REWARD_LIMIT]``.
    """

    REWARD_LIMIT: ClassVar[float] = 1e12
    """The largest magnitude of a reward, whatever the range: ``1e12`` squared, summed over
    ``1e18`` rewards, is ``1e42``, far from overflowing, while one reward of ``1.5e308`` would make
    an arm's sum of squares infinite (and its statistics useless) for good."""

    policy: str
    context: tuple[Name, ...] = ()
    options: dict[str, JsonValue] = Field(default_factory=dict)
    metric: Name | None = None
    update_minutes: float | None = Field(default=None, strict=True, gt=0)
    update_every: int | None = Field(default=None, strict=True, ge=1)
    burn_in: int | None = Field(default=None, strict=True)
    floor: float | None = Field(default=None, strict=True)
    stop_p_best: float | None = Field(default=None, strict=True)
    stop_expected_loss: float | None = Field(default=None, strict=True)
    draws: int | None = Field(default=None, strict=True)
    statistics: str | None = None
    seed: int = Field(default=0, strict=True, ge=0)
    reward_range: tuple[_RangeEnd, _RangeEnd] | None = None

    @field_validator("policy")
    @classmethod
    def _check_policy(cls, value: str) -> str:
        from splitlab.bandits import CONTEXTUAL_POLICIES, POLICIES  # numpy and scipy: imported by bandit specs only

        if value not in POLICIES + CONTEXTUAL_POLICIES:
            msg = f"policy == {value!r}, must be one of {', '.join(POLICIES + CONTEXTUAL_POLICIES)}"
            raise ValueError(msg)
        return value

    @property
    def contextual(self) -> bool:
        """Whether the policy decides per unit, on the unit's ``context`` attributes."""
        return bool(self.context)

    @field_validator(*_PRODUCTION_FIELDS)
    @classmethod
    def _check_production(cls, value: float | str | None, info: ValidationInfo) -> float | str | None:
        from splitlab.bandits import ProductionSettings

        if value is not None and info.field_name is not None:
            options: dict[str, Any] = {info.field_name: value}
            ProductionSettings(**options)  # its own check of this one field, with its message
        return value

    @field_validator("reward_range")
    @classmethod
    def _check_reward_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is None:
            return value
        low, high = value
        if not low < high:
            msg = f"reward_range == [{low:g}, {high:g}], must be [low, high] with low < high"
            raise ValueError(msg)
        if low < -cls.REWARD_LIMIT or high > cls.REWARD_LIMIT:
            limit = cls.REWARD_LIMIT
            msg = f"reward_range == [{low:g}, {high:g}], must lie within [{-limit:g}, {limit:g}] (the hard bound)"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        from splitlab.bandits import CONTEXTUAL_POLICIES

        if self.update_minutes is not None and self.update_every is not None:
            msg = "update_minutes and update_every are both set, give one of them"
            raise ValueError(msg)
        if self.policy in CONTEXTUAL_POLICIES and not self.context:
            msg = f"policy {self.policy!r} is contextual: context must name the unit attributes it decides on"
            raise ValueError(msg)
        if self.context and self.policy not in CONTEXTUAL_POLICIES:
            names = ", ".join(CONTEXTUAL_POLICIES)
            msg = f"context == {list(self.context)}, only a contextual policy ({names}) takes one"
            raise ValueError(msg)
        if len(set(self.context)) != len(self.context):
            msg = f"context == {list(self.context)} names an attribute more than once"
            raise ValueError(msg)
        return self

    def production_options(self) -> dict[str, Any]:
        """The production settings given, as keyword arguments of :class:`splitlab.bandits.ProductionSettings`."""
        return {name: getattr(self, name) for name in _PRODUCTION_FIELDS if getattr(self, name) is not None}


def _named_option(message: str, options: Mapping[str, object]) -> str | None:
    """The option a policy's error is about: ``epsilon == 2, ...``, ``prior[0] == ...``, ``... argument 'colour'``."""
    for name in options:
        quoted = re.escape(name)
        if re.search(rf"(?:^|: ){quoted}(?:\[\d+\])? ==|'{quoted}'", message):
            return name
    return None


def _check_bandit_arms(spec: ExperimentSpec, bandit: Bandit) -> None:
    """Refuse a floor, policy options or a reward range unfit for the variants or the policy, naming the field."""
    from splitlab.bandits import ProductionSettings, make_contextual_policy, make_policy

    n_arms = len(spec.variants)
    production = ProductionSettings(**bandit.production_options())
    try:
        production.check_arms(n_arms)
    except ValueError:
        default = " (the default)" if bandit.floor is None else ""
        msg = (
            f"floor == {production.floor:g}{default}, must be <= 1/{n_arms} for {n_arms} "
            "variants (every variant keeps at least the floor)"
        )
        _raise_at(spec, ("allocation", "bandit", "floor"), msg, production.floor)
    try:
        if bandit.contextual:
            make_contextual_policy(bandit.policy, n_arms, len(bandit.context) + 1, **bandit.options)
            unit_interval = False
        else:
            unit_interval = make_policy(bandit.policy, n_arms, **bandit.options).unit_interval
    except (TypeError, ValueError) as exc:
        name = _named_option(str(exc), bandit.options)
        loc = ("allocation", "bandit", "options", *(() if name is None else (name,)))
        _raise_at(spec, loc, str(exc), bandit.options if name is None else bandit.options[name])
    low, high = bandit.reward_range or (0.0, 1.0)
    if unit_interval and not (low >= 0 and high <= 1):
        msg = f"reward_range == [{low:g}, {high:g}], must lie within [0, 1] for policy {bandit.policy!r} (conversions)"
        _raise_at(spec, ("allocation", "bandit", "reward_range"), msg, [low, high])


class Allocation(_Model):
    """How enrolled units are split between variants.

    Attributes:
        method: ``hash`` (default: hash of the unit id), ``attributes`` (hash of the values of
            ``attributes``, e.g. a feature tuple for an ML router), ``random`` (a fresh draw per
            unit, kept by sticky assignment) or ``bandit`` (weights set by a policy).
        attributes: the hashed attributes; required for ``attributes``, refused otherwise.
        bandit: see :class:`Bandit`; required for ``bandit``, refused otherwise.
    """

    method: AllocationMethod = "hash"
    attributes: tuple[Name, ...] = ()
    bandit: Bandit | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.method == "attributes" and not self.attributes:
            msg = "attributes is required when method is 'attributes' (the attribute names whose values are hashed)"
            raise ValueError(msg)
        if self.method != "attributes" and self.attributes:
            msg = f"attributes is only used with method 'attributes', not {self.method!r}"
            raise ValueError(msg)
        if dup := _duplicates(self.attributes):
            msg = f"attributes lists {', '.join(map(repr, dup))} more than once"
            raise ValueError(msg)
        if self.method == "bandit" and self.bandit is None:
            msg = "bandit is required when method is 'bandit' (e.g. bandit: {policy: thompson})"
            raise ValueError(msg)
        if self.method != "bandit" and self.bandit is not None:
            msg = f"bandit is only used with method 'bandit', not {self.method!r}"
            raise ValueError(msg)
        return self


class Guardrail(_Model):
    """A metric that must not get worse by more than ``max_degradation`` (relative, e.g. 0.05 = 5 %)."""

    metric: Slug
    max_degradation: float = Field(strict=True, ge=0)


class Metrics(_Model):
    """The metrics an experiment is judged on; each name refers to a metric definition."""

    goal: tuple[Slug, ...] = ()
    secondary: tuple[Slug, ...] = ()
    guardrails: tuple[Guardrail, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Self:
        lists = {"goal": self.goal, "secondary": self.secondary, "guardrails": [g.metric for g in self.guardrails]}
        for field, names in lists.items():
            if dup := _duplicates(names):
                msg = f"{field} lists {', '.join(map(repr, dup))} more than once"
                raise ValueError(msg)
        if both := sorted(set(self.goal) & set(self.secondary)):
            msg = f"{', '.join(map(repr, both))} is in both goal and secondary, must be in one"
            raise ValueError(msg)
        return self


class DecisionOptions(_Model):
    """The thresholds of the decision engine for one experiment (``analysis.decision``).

    The fields, bounds and defaults of :class:`splitlab.analysis.decision.DecisionRules` (its
    docstring says what each one does), written here because specs sit below the analysis; a test
    keeps the two equal.

    Attributes:
        alpha: significance level of the launch decision, in (0, 1); None (default): the analysis's alpha.
        significance: ``p_value`` or ``chance_to_win``; None (default): ``chance_to_win`` with
            analysis method ``bayesian``, else ``p_value``.
        chance_to_win_threshold: in (0.5, 1), default 0.95.
        strong_launch_chance_to_win: in (0.5, 1), default 0.99.
        strong_launch_p_value_factor: in (0, 1], default 0.1.
        practical_significance: default true.
        consider_launch_chance_to_win: in (0.5, 1), default 0.9.
        min_power_for_no_launch: in (0, 1), default 0.8.
        default_max_degradation: >= 0, default 0.
        rollback_on_goal_harm: default true.
        strong_launch_requires_guardrail_non_inferiority: default true.
        extend_if_days_left_below: > 0, default 30; None: always extend.
        max_duration_days: > 0; default None (no limit).
    """

    alpha: float | None = Field(default=None, strict=True, gt=0, lt=1)
    significance: Literal["p_value", "chance_to_win"] | None = None
    chance_to_win_threshold: float = Field(default=0.95, strict=True, gt=0.5, lt=1)
    strong_launch_chance_to_win: float = Field(default=0.99, strict=True, gt=0.5, lt=1)
    strong_launch_p_value_factor: float = Field(default=0.1, strict=True, gt=0, le=1)
    practical_significance: bool = Field(default=True, strict=True)
    consider_launch_chance_to_win: float = Field(default=0.9, strict=True, gt=0.5, lt=1)
    min_power_for_no_launch: float = Field(default=0.8, strict=True, gt=0, lt=1)
    default_max_degradation: float = Field(default=0.0, strict=True, ge=0)
    rollback_on_goal_harm: bool = Field(default=True, strict=True)
    strong_launch_requires_guardrail_non_inferiority: bool = Field(default=True, strict=True)
    extend_if_days_left_below: float | None = Field(default=30.0, strict=True, gt=0)
    max_duration_days: float | None = Field(default=None, strict=True, gt=0)


class Analysis(_Model):
    """How the results are tested.

    Attributes:
        method: ``frequentist`` (default, fixed horizon), ``bayesian`` or ``sequential``.
        sequential: ``msprt``, ``gst-obf`` (O'Brien-Fleming group sequential) or ``gst-pocock``;
            required with method ``sequential``, refused otherwise.
        correction: multiple-testing correction across metrics and treatments, one of
            :data:`CORRECTIONS`; default ``holm``.
        alpha: significance level; default ``hypothesis.alpha`` (0.05 without a hypothesis).
        post_stratify: estimate every additive metric post-stratified on the spec's ``stratify_by``
            attributes (per-stratum means weighted by the strata's shares of all units; Miratrix,
            Sekhon & Yu 2013); needs ``stratify_by``. Default false.
        decision: the decision engine's thresholds, see :class:`DecisionOptions` (e.g.
            ``{min_power_for_no_launch: 0.9}``). With method ``bayesian`` the rules judge by
            chance to win unless ``significance`` says otherwise.
    """

    method: AnalysisMethod = "frequentist"
    sequential: SequentialMethod | None = None
    correction: Correction = "holm"
    alpha: float | None = Field(default=None, strict=True, gt=0, lt=1)
    decision: DecisionOptions = Field(default_factory=DecisionOptions)
    post_stratify: bool = Field(default=False, strict=True)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.method == "sequential" and self.sequential is None:
            msg = f"sequential is required when method is 'sequential' (one of {', '.join(SEQUENTIAL_METHODS)})"
            raise ValueError(msg)
        if self.method != "sequential" and self.sequential is not None:
            msg = f"sequential is only used with method 'sequential', not {self.method!r}"
            raise ValueError(msg)
        return self


class Schedule(_Model):
    """When the experiment may be read: sample size per variant and duration bounds, in days."""

    min_sample_size: int | None = Field(default=None, strict=True, ge=1)
    min_duration_days: int | None = Field(default=None, strict=True, ge=0)
    max_duration_days: int | None = Field(default=None, strict=True, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        low, high = self.min_duration_days, self.max_duration_days
        if low is not None and high is not None and low > high:
            msg = f"min_duration_days == {low}, must be <= max_duration_days == {high}"
            raise ValueError(msg)
        return self


class NotificationKind(StrEnum):
    """What a notification is about; ``test`` is sent only by ``splitlab notify test``."""

    SRM_DETECTED = "srm_detected"
    GUARDRAIL_HARM = "guardrail_harm"
    DECISION_REACHED = "decision_reached"
    DECISION_CHANGED = "decision_changed"
    SAMPLE_REACHED = "sample_reached"
    ACTION_TAKEN = "action_taken"
    MONITOR_ERROR = "monitor_error"
    TEST = "test"


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class NotificationTarget(_Model):
    """Where notifications go: a webhook that takes a signed JSON body, or a Slack-compatible one.

    Attributes:
        name: a slug, unique among the targets of a spec (or of the global targets file); what
            ``monitoring.notify`` names.
        url: the ``http://`` or ``https://`` URL the notification is POSTed to.
        format: ``json`` (default: the generic body of docs/notifications.md) or ``slack``
            (``{"text": ...}``, which Slack's incoming webhooks and their clones accept).
        secret_env: the name of an environment variable holding the HMAC-SHA256 secret that signs
            each request, read when it is sent (a spec never holds the secret itself); None: unsigned.
        kinds: the kinds of notification this target takes, each once; None (default): every kind.
    """

    name: Slug
    url: str
    format: Literal["json", "slack"] = "json"
    secret_env: str | None = None
    kinds: tuple[NotificationKind, ...] | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = f"url == {value!r}, must be an http:// or https:// URL with a host"
            raise ValueError(msg)
        return value

    @field_validator("secret_env")
    @classmethod
    def _check_secret_env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            msg = (
                f"secret_env == {value!r}, must be the name of an environment variable "
                "(letters, digits and '_', not starting with a digit), not the secret itself"
            )
            raise ValueError(msg)
        return value

    @field_validator("kinds")
    @classmethod
    def _check_kinds(cls, value: tuple[NotificationKind, ...] | None) -> tuple[NotificationKind, ...] | None:
        if value is None:
            return value
        if not value:
            msg = "kinds == [], must name at least one kind (leave it out for every kind)"
            raise ValueError(msg)
        if dup := _duplicates(value):
            msg = f"kinds lists {', '.join(repr(str(kind)) for kind in dup)} more than once"
            raise ValueError(msg)
        return value

    def takes(self, kind: NotificationKind | str) -> bool:
        """Whether this target is sent notifications of ``kind``."""
        return self.kinds is None or kind in self.kinds


def _check_target_names(model: _Model, targets: tuple[NotificationTarget, ...], field: str) -> None:
    """Refuse a target name used twice, at the second one's ``name``."""
    seen: set[str] = set()
    for i, target in enumerate(targets):
        if target.name in seen:
            msg = f"name == {target.name!r} is already the name of another target, names must be unique"
            _raise_at(model, (field, i, "name"), msg, target.name)
        seen.add(target.name)


class NotificationTargets(_Model):
    """The global targets file: ``notifications:``, a list of :class:`NotificationTarget` with unique names."""

    notifications: tuple[NotificationTarget, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Self:
        _check_target_names(self, self.notifications, "notifications")
        return self


class Monitoring(_Model):
    """What ``splitlab monitor`` does for this experiment (``monitoring``).

    Attributes:
        interval_minutes: how often the monitor analyses the running experiment, >= 1; default 60.
        auto_stop, auto_rollback, auto_promote: the actions the monitor may take on its own
            (docs/notifications.md says which decision leads to which); all default false.
        notify: the names of the targets to notify, each once: a target of the spec's
            ``notifications`` or of the global targets file (checked when the spec is applied,
            by :func:`undefined_targets`).
    """

    interval_minutes: int = Field(default=60, strict=True, ge=1)
    auto_stop: bool = Field(default=False, strict=True)
    auto_rollback: bool = Field(default=False, strict=True)
    auto_promote: bool = Field(default=False, strict=True)
    notify: tuple[Slug, ...] = ()

    @field_validator("notify")
    @classmethod
    def _check_notify(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if dup := _duplicates(value):
            msg = f"notify lists {', '.join(map(repr, dup))} more than once"
            raise ValueError(msg)
        return value


class ModelEndpoint(_Model):
    """The model a variant's requests are routed to (``variants[].payload.model`` of a routed experiment).

    Exactly one of ``url``, ``python`` and ``entry_point``:

    Attributes:
        url: an ``http://`` or ``https://`` URL; the request's model input is POSTed to it as JSON
            and its answer is returned to the client as it is.
        python: ``module:attribute``, an in-process model: a callable taking the input (a JSON
            value) and returning a JSON value, or a class whose no-argument instance is one.
        entry_point: the name of an entry point of group ``splitlab.models`` naming such a callable.
        name: the model's name in logs, headers and metrics; default the variant key.
        timeout_ms: how long the router waits for an answer, in (0, 60000]; default
            ``routing.timeout_ms``.
    """

    url: str | None = None
    python: str | None = None
    entry_point: str | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    timeout_ms: float | None = Field(default=None, strict=False, gt=0, le=60_000)

    @model_validator(mode="after")
    def _check(self) -> Self:
        given = [field for field in ("url", "python", "entry_point") if getattr(self, field) is not None]
        if len(given) != 1:
            msg = f"give exactly one of url, python and entry_point (given: {', '.join(given) or 'none'})"
            raise ValueError(msg)
        if self.url is not None:
            parts = urllib.parse.urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                msg = f"url == {self.url!r}, must be an http:// or https:// URL with a host"
                raise ValueError(msg)
        if self.python is not None and not _IMPORT_PATH.fullmatch(self.python):
            msg = f"python == {self.python!r}, must be 'module:attribute' (e.g. 'my_models.fraud:predict')"
            raise ValueError(msg)
        return self


_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


class Breaker(_Model):
    """The circuit breaker of each routed variant (per service worker).

    Attributes:
        failures: consecutive failures (timeouts, 5xx, dropped connections) that open it, >= 1; default 5.
        pause_seconds: how long it stays open before one trial request is let through (half-open), > 0; default 30.
    """

    failures: int = Field(default=5, strict=True, ge=1)
    pause_seconds: float = Field(default=30.0, strict=True, gt=0, le=3600)


class Shadow(_Model):
    """A challenger that receives a copy of a share of the requests after the answer is sent.

    Attributes:
        variant: the shadow model's variant key; its answer is logged, never returned.
        share: share of requests copied, in (0, 1]; decided by the request id's hash.
        max_in_flight: shadow calls in progress at once per worker, >= 1; a copy beyond is dropped
            (and counted); default 32.
    """

    variant: VariantKey
    share: float = Field(default=1.0, strict=True, gt=0, le=1)
    max_in_flight: int = Field(default=32, strict=True, ge=1, le=10_000)


class Canary(_Model):
    """A progressive rollout of one challenger, advanced by the monitor while its guardrails show no harm.

    Attributes:
        variant: the challenger's variant key (not the control, the first variant).
        steps: the challenger's share of traffic at each step, strictly increasing in (0, 1]; a
            last step of 1 is the promotion itself (the winner is rolled out to everyone).
        min_step_minutes: how long each step is held before the next, > 0; default 60.
        min_units_per_step: units the challenger and the control must each have before the gate
            moves the canary (a ramp, a promotion or a rollback), >= 2; default 20: the intervals
            plug in each group's variance, which a handful of units cannot estimate.
    """

    variant: VariantKey
    steps: tuple[Annotated[float, Field(strict=False, gt=0, le=1)], ...]
    min_step_minutes: float = Field(default=60.0, strict=False, gt=0)
    min_units_per_step: int = Field(default=20, strict=True, ge=2)

    @field_validator("steps")
    @classmethod
    def _check_steps(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            msg = "steps == [], must list at least one share (e.g. [0.05, 0.25, 0.5, 1])"
            raise ValueError(msg)
        if any(b <= a for a, b in itertools.pairwise(value)):
            msg = f"steps == {list(value)}, must be strictly increasing"
            raise ValueError(msg)
        return value

    @property
    def ramp(self) -> tuple[float, ...]:
        """The steps at which the challenger is tested against the control (a last step of 1 is the promotion)."""
        return self.steps[:-1] if self.steps[-1] == 1 else self.steps


class Routing(_Model):
    """How ``POST /api/v1/route/{experiment}/predict`` serves this experiment's models (see docs/router.md).

    Every variant's payload declares its model (``payload: {model: {...}}``, a :class:`ModelEndpoint`).

    Attributes:
        fallback: ``control`` (default): a variant's failed call is answered by the control model
            (the first variant) and counted as an error of the variant; ``none``: the failure is
            answered (502, or 504 for a timeout).
        timeout_ms: the default wait for a model's answer, in (0, 60000]; default 1000.
        breaker: see :class:`Breaker`.
        shadow: see :class:`Shadow`; optional.
        canary: see :class:`Canary`; optional. Needs ``analysis.method: sequential`` with
            ``msprt`` and at least one guardrail: its gates are always-valid tests.
        envelope: answer ``{"request_id", "variant", "model", "response"}`` instead of the model's
            body as it is; default false (the variant, model and request id are headers either way).
    """

    fallback: Literal["control", "none"] = "control"
    timeout_ms: float = Field(default=1000.0, strict=False, gt=0, le=60_000)
    breaker: Breaker = Field(default_factory=Breaker)
    shadow: Shadow | None = None
    canary: Canary | None = None
    envelope: bool = Field(default=False, strict=True)


def model_endpoints(spec: ExperimentSpec) -> dict[str, ModelEndpoint]:
    """Each variant's model, by variant key, for a spec with ``routing`` (checked when the spec was validated)."""
    endpoints = {}
    for variant in spec.variants:
        payload = variant.payload
        assert isinstance(payload, dict)  # noqa: S101 - ExperimentSpec checks it for a routed spec
        endpoints[variant.key] = ModelEndpoint.model_validate(payload["model"])
    return endpoints


def _check_routing(spec: ExperimentSpec, routing: Routing) -> None:
    """Refuse a routed spec whose variants declare no model, or whose shadow or canary does not fit; name the field."""
    for i, variant in enumerate(spec.variants):
        payload = variant.payload
        loc: tuple[str | int, ...] = ("variants", i, "payload")
        if not isinstance(payload, dict) or "model" not in payload:
            msg = "must declare the variant's model, e.g. {model: {url: 'http://127.0.0.1:9001/predict'}}"
            _raise_at(spec, (*loc, "model"), f"a routed experiment's payload {msg}", payload)
        try:
            ModelEndpoint.model_validate(payload["model"])
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            where = (*loc, "model", *error["loc"])
            _raise_at(spec, where, str(error["msg"]).removeprefix("Value error, "), error.get("input"))
    keys = spec.variant_keys
    control = keys[0]
    for field, part in (("shadow", routing.shadow), ("canary", routing.canary)):
        if part is not None and part.variant not in keys:
            msg = f"variant == {part.variant!r} is not a variant of this experiment ({', '.join(keys)})"
            _raise_at(spec, ("routing", field, "variant"), msg, part.variant)
        if part is not None and part.variant == control:
            msg = f"variant == {part.variant!r} is the control (the first variant), must be a challenger"
            _raise_at(spec, ("routing", field, "variant"), msg, part.variant)
    canary = routing.canary
    if canary is None:
        return
    if len(keys) != 2:
        msg = f"a canary ramps one challenger against the control: the experiment must have 2 variants, not {len(keys)}"
        _raise_at(spec, ("routing", "canary"), msg, len(keys))
    if spec.analysis.method != "sequential" or spec.analysis.sequential != "msprt":
        msg = (
            "a canary is advanced at every monitor run, so its gates must be valid at any look: "
            "set analysis.method: sequential and analysis.sequential: msprt"
        )
        _raise_at(spec, ("routing", "canary"), msg, spec.analysis.method)
    if not spec.metrics.guardrails:
        msg = "a canary advances while its guardrails show no harm: list at least one in metrics.guardrails"
        _raise_at(spec, ("routing", "canary"), msg, None)
    weight = next(v.weight for v in spec.variants if v.key == canary.variant)
    if not any(abs(weight - step) <= WEIGHT_TOLERANCE for step in canary.ramp):
        msg = (
            f"the challenger {canary.variant!r} has weight {weight:g}, must be one of the ramp's steps "
            f"{list(canary.ramp)} (the monitor moves it from step to step)"
        )
        _raise_at(spec, ("variants", keys.index(canary.variant), "weight"), msg, weight)


EXPORT_KINDS: tuple[str, ...] = ("postgresql", "duckdb", "parquet", "spark")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_POSTGRES_SCHEMES = ("postgresql+psycopg", "postgresql", "postgres")
_EXPORT_FORMS = (
    "postgresql+psycopg://USER@HOST/DB[?schema=S], duckdb:///FILE.duckdb, parquet:///DIR (or a directory path), "
    "spark:DATABASE"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportTarget:
    """Where ``splitlab export`` writes the results tables, parsed from a target string.

    Attributes:
        kind: ``postgresql``, ``duckdb``, ``parquet`` or ``spark``.
        location: the database URL without its ``schema`` parameter (``postgresql``, always
            ``postgresql+psycopg://``), the DuckDB file or the Parquet directory (a path,
            relative to the working directory unless absolute), or ``""`` (``spark``).
        schema: the PostgreSQL or DuckDB schema, or the Spark database; None: the connection's
            default (PostgreSQL's ``search_path``, DuckDB's ``main``, Spark's current database).
    """

    kind: Literal["postgresql", "duckdb", "parquet", "spark"]
    location: str
    schema: str | None = None

    def __str__(self) -> str:
        """The target as a user would write it, a password hidden."""
        shown = self.location
        if self.kind == "postgresql":
            parts = urllib.parse.urlsplit(shown)
            if parts.password is not None:
                host = parts.netloc.rpartition("@")[2]
                shown = parts._replace(netloc=f"{parts.username}:***@{host}").geturl()
        elif self.kind == "duckdb":
            shown = f"duckdb:///{shown}"
        elif self.kind == "spark":
            shown = f"spark:{self.schema or ''}"
        if self.schema is not None and self.kind in ("postgresql", "duckdb"):
            shown += f"{'&' if '?' in shown else '?'}schema={self.schema}"
        return shown


def parse_export_target(to: str, schema: str | None = None) -> ExportTarget:
    """Parse an export target: the one grammar of ``splitlab export --to`` and of a spec's ``export.to``.

    A path without a scheme is a Parquet directory. ``duckdb:///`` and ``parquet:///`` take the
    path after the third slash, as SQLAlchemy's ``sqlite:///`` does (``duckdb:////abs/x.duckdb``
    is absolute). ``spark://`` is refused: it is a Spark master's URL, not a place for tables.

    Args:
        to: the target string.
        schema: the schema (Spark: the database), when ``to`` does not give one; both may give
            it only if they agree.

    Raises:
        ValueError: an unknown scheme, a malformed URL, an empty path, a schema that is not a
            plain identifier or that disagrees with the URL's; the message starts with ``to``'s value.

    Example:
        >>> target = parse_export_target("postgresql://ana@db.example.com/dw?schema=experiments")
        >>> target.kind, target.location, target.schema
        ('postgresql', 'postgresql+psycopg://ana@db.example.com/dw', 'experiments')
        >>> parse_export_target("results/").kind
        'parquet'
    """
    if not isinstance(to, str) or not to.strip():
        msg = f"{to!r} is empty, must be an export target: {_EXPORT_FORMS}"
        raise ValueError(msg)
    to = to.strip()
    match = _SCHEME.match(to)
    scheme = match.group(1).lower() if match else None
    if scheme is None or (len(scheme) == 1 and to[1:2] == ":"):  # no scheme, or a drive letter
        return ExportTarget(kind="parquet", location=to, schema=_export_schema(to, None, schema))
    rest = to[match.end() :] if match else to
    if scheme in _POSTGRES_SCHEMES:
        parts = urllib.parse.urlsplit(to)
        if not parts.hostname and not parts.path.strip("/"):
            msg = f"{to!r} names no host or database, must look like postgresql+psycopg://USER@HOST/DB"
            raise ValueError(msg)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        given = [value for name, value in query if name == "schema"]
        kept = urllib.parse.urlencode([(name, value) for name, value in query if name != "schema"])
        location = parts._replace(scheme="postgresql+psycopg", query=kept).geturl()
        return ExportTarget(
            kind="postgresql", location=location, schema=_export_schema(to, given[-1] if given else None, schema)
        )
    if scheme in ("duckdb", "parquet"):
        if not rest.startswith("///"):
            msg = f"{to!r} must look like {scheme}:///PATH (three slashes; four for an absolute path)"
            raise ValueError(msg)
        path, _, query_text = rest[3:].partition("?")
        if not path:
            msg = f"{to!r} names no path, must look like {scheme}:///PATH"
            raise ValueError(msg)
        query = urllib.parse.parse_qsl(query_text, keep_blank_values=True)
        unknown = [name for name, _ in query if name != "schema" or scheme == "parquet"]
        if unknown:
            msg = f"{to!r}: unknown parameter {unknown[0]!r}" + (", only schema" if scheme == "duckdb" else "")
            raise ValueError(msg)
        given = [value for _, value in query]
        url_schema = given[-1] if given else None
        kind: Literal["duckdb", "parquet"] = "duckdb" if scheme == "duckdb" else "parquet"
        return ExportTarget(kind=kind, location=path, schema=_export_schema(to, url_schema, schema))
    if scheme == "spark":
        if rest.startswith("//"):
            msg = (
                f"{to!r} is a Spark master URL; export to Spark tables with spark:DATABASE "
                "(the session's master is SPLITLAB_SPARK_MASTER)"
            )
            raise ValueError(msg)
        database = rest or None
        if database is not None and not _IDENTIFIER.fullmatch(database):
            msg = f"{to!r}: database {database!r} must be a plain identifier (letters, digits, _)"
            raise ValueError(msg)
        return ExportTarget(kind="spark", location="", schema=_export_schema(to, database, schema))
    msg = f"{to!r} is not an export target (scheme {scheme!r}), must be one of: {_EXPORT_FORMS}"
    raise ValueError(msg)


def _export_schema(to: str, given: str | None, schema: str | None) -> str | None:
    if given is not None and schema is not None and given != schema:
        msg = f"{to!r} names schema {given!r} and schema == {schema!r} another; give it once"
        raise ValueError(msg)
    chosen = given if given is not None else schema
    if chosen is not None and not _IDENTIFIER.fullmatch(chosen):
        msg = f"schema == {chosen!r}, must be a plain identifier (letters, digits, _, not starting with a digit)"
        raise ValueError(msg)
    return chosen


class Export(_Model):
    """Where every saved readout of the experiment is also written as results tables (``export``).

    Attributes:
        to: an export target (:func:`parse_export_target`): a PostgreSQL URL, ``duckdb:///FILE``,
            ``parquet:///DIR`` or a directory, ``spark:DATABASE``. A PostgreSQL URL may not hold a
            password (a spec is stored, listed and exported): libpq's ``PGPASSWORD`` or
            ``~/.pgpass`` supply it.
        schema: the schema (Spark: the database) of the tables; default the target's own.
    """

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=False, validate_by_alias=True)

    to: str
    db_schema: str | None = Field(default=None, alias="schema")

    @field_validator("db_schema")
    @classmethod
    def _check_schema(cls, value: str | None) -> str | None:
        return _export_schema("", None, value)

    @model_validator(mode="after")
    def _check(self) -> Self:
        try:
            target = parse_export_target(self.to, self.db_schema)
        except ValueError as exc:
            _raise_at(self, ("to",), f"to == {exc}", self.to)
        if target.kind == "postgresql" and urllib.parse.urlsplit(target.location).password is not None:
            msg = "to holds a password; a spec is stored and shown: give it in PGPASSWORD or ~/.pgpass instead"
            _raise_at(self, ("to",), msg, str(target))
        return self

    @property
    def target(self) -> ExportTarget:
        """The parsed target."""
        return parse_export_target(self.to, self.db_schema)


class ExperimentSpec(_Model):
    """A versioned experiment: who is eligible, how they are split, and how the result is judged.

    The lifecycle status is not part of the spec: it lives in the store.

    Attributes:
        key: the experiment's identity, a slug (lowercase letters, digits, ``-``, ``_``).
        name: display name; default the key.
        description, owner: free text.
        hypothesis: see :class:`Hypothesis`; optional.
        unit: the randomisation unit (``user_id``, ``device_id``, ``session_id`` ...); default ``user_id``.
        variants: at least 2 arms with unique keys and weights summing to 1 (within 1e-6). When no
            variant gives a weight, traffic is split equally.
        coverage: share of eligible units enrolled, in [0, 1]; default 1.
        targeting, namespace, holdout: eligibility.
        allocation: see :class:`Allocation`.
        hash_version: ``"1"`` (default, splitlab's MurmurHash3 scheme) or ``"growthbook-v2"``.
        seed: hashing seed; default the key.
        bucket_version: >= 1, bumped by a re-randomisation; default 1.
        stratify_by: attributes to balance variants within, for batch assignment of a known population.
        metrics: goal, secondary and guardrail metrics; ``hypothesis.primary_metric`` must be a goal metric.
        analysis, schedule: see :class:`Analysis` and :class:`Schedule`.
        monitoring: see :class:`Monitoring`: the monitor's interval, its automatic actions and
            the targets it notifies.
        notifications: this experiment's own :class:`NotificationTarget` list (unique names).
        routing: see :class:`Routing`: the experiment routes model traffic (every variant's
            payload declares its model); optional.
        export: see :class:`Export`: every saved readout is also written to these results
            tables; optional.

    When validated with ``context={"metrics": names}`` every metric reference must be in ``names``.
    """

    key: Slug
    name: Text = ""
    description: Text = ""
    owner: Text = ""
    hypothesis: Hypothesis | None = None
    unit: Name = "user_id"
    variants: tuple[Variant, ...]
    coverage: float = Field(default=1.0, strict=True, ge=0, le=1)
    targeting: Targeting = Field(default_factory=Targeting)
    namespace: Namespace | None = None
    holdout: Holdout | None = None
    allocation: Allocation = Field(default_factory=Allocation)
    hash_version: HashVersion = "1"
    seed: str = ""
    bucket_version: int = Field(default=1, strict=True, ge=1)
    stratify_by: tuple[Name, ...] = ()
    metrics: Metrics = Field(default_factory=Metrics)
    analysis: Analysis = Field(default_factory=Analysis)
    schedule: Schedule = Field(default_factory=Schedule)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    notifications: tuple[NotificationTarget, ...] = ()
    routing: Routing | None = None
    export: Export | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        key = data.get("key")
        if isinstance(key, str):
            for field in ("seed", "name"):
                if data.get(field) in (None, ""):
                    data[field] = key
        # YAML reads `hash_version: 1` as an integer.
        if isinstance(data.get("hash_version"), int) and not isinstance(data["hash_version"], bool):
            data["hash_version"] = str(data["hash_version"])
        variants = data.get("variants")
        if (
            isinstance(variants, list | tuple)
            and variants
            and all(isinstance(v, dict) and "weight" not in v for v in variants)
        ):
            data["variants"] = [{**v, "weight": 1 / len(variants)} for v in variants]
        return data

    @field_validator("variants")
    @classmethod
    def _check_variants(cls, variants: tuple[Variant, ...]) -> tuple[Variant, ...]:
        if len(variants) < 2:
            msg = f"at least 2 variants are needed, got {len(variants)}"
            raise ValueError(msg)
        if dup := _duplicates(v.key for v in variants):
            msg = f"duplicate variant key(s) {', '.join(map(repr, dup))}, keys must be unique"
            raise ValueError(msg)
        total = math.fsum(v.weight for v in variants)
        if abs(total - 1) > WEIGHT_TOLERANCE:
            msg = f"variant weights sum to {total:.10g}, must sum to 1 (tolerance {WEIGHT_TOLERANCE:g})"
            raise ValueError(msg)
        return variants

    @field_validator("stratify_by")
    @classmethod
    def _check_stratify_by(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if dup := _duplicates(value):
            msg = f"stratify_by lists {', '.join(map(repr, dup))} more than once"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Self:
        if self.hypothesis is not None and self.hypothesis.primary_metric not in self.metrics.goal:
            msg = (
                f"hypothesis.primary_metric == {self.hypothesis.primary_metric!r} is not in metrics.goal "
                f"{list(self.metrics.goal)}, must be one of the goal metrics"
            )
            raise ValueError(msg)
        if self.hypothesis is not None and self.analysis.alpha not in (None, self.hypothesis.alpha):
            msg = (
                f"analysis.alpha == {self.analysis.alpha} differs from hypothesis.alpha == {self.hypothesis.alpha}; "
                "give one of them (the sample size was planned at hypothesis.alpha)"
            )
            raise ValueError(msg)
        if self.analysis.post_stratify and not self.stratify_by:
            msg = "analysis.post_stratify needs stratify_by: the attributes whose strata the estimates weight"
            raise ValueError(msg)
        if self.hash_version == "growthbook-v2" and len(self.allocation.attributes) > 1:
            msg = (
                f"allocation.attributes has {len(self.allocation.attributes)} attributes, but hash_version "
                "'growthbook-v2' hashes a single attribute (GrowthBook's hashAttribute)"
            )
            raise ValueError(msg)
        if self.allocation.bandit is not None:
            _check_bandit_arms(self, self.allocation.bandit)
        _check_target_names(self, self.notifications, "notifications")
        if self.routing is not None:
            _check_routing(self, self.routing)
        defined = info.context.get("metrics") if isinstance(info.context, dict) else None
        if defined is not None:
            check_metric_references(self, defined)
        return self

    @property
    def variant_keys(self) -> tuple[str, ...]:
        """Variant keys in spec order."""
        return tuple(v.key for v in self.variants)

    @property
    def alpha(self) -> float:
        """The significance level of the analysis: ``analysis.alpha``, else ``hypothesis.alpha``, else 0.05."""
        if self.analysis.alpha is not None:
            return self.analysis.alpha
        return self.hypothesis.alpha if self.hypothesis is not None else 0.05


def metric_references(spec: ExperimentSpec) -> list[tuple[str, str]]:
    """Every metric name the spec refers to, as ``(field path, name)`` pairs in spec order."""
    refs = [(f"metrics.goal.{i}", name) for i, name in enumerate(spec.metrics.goal)]
    refs += [(f"metrics.secondary.{i}", name) for i, name in enumerate(spec.metrics.secondary)]
    refs += [(f"metrics.guardrails.{i}.metric", g.metric) for i, g in enumerate(spec.metrics.guardrails)]
    return refs


def undefined_metrics(spec: ExperimentSpec, defined: Collection[str]) -> list[tuple[str, str]]:
    """Every metric reference of ``spec`` not in ``defined``, as ``(field path, message)`` pairs.

    The one wording of this problem, whoever checks (a catalog of files, the store, a validation
    context): the message suggests the closest defined name, or lists what is defined.

    Example:
        >>> spec = ExperimentSpec(key="x", variants=[{"key": "a"}, {"key": "b"}], metrics={"goal": ["conversion"]})
        >>> undefined_metrics(spec, {"conversions", "revenue"})
        [('metrics.goal.0', "'conversion' is not a defined metric, did you mean 'conversions'?")]
    """
    problems = []
    for path, name in metric_references(spec):
        if name in defined:
            continue
        close = difflib.get_close_matches(name, list(defined), n=1)
        hint = f", did you mean {close[0]!r}?" if close else f" (defined: {', '.join(sorted(defined)) or 'none'})"
        problems.append((path, f"{name!r} is not a defined metric{hint}"))
    return problems


def check_metric_references(spec: ExperimentSpec, defined: Collection[str]) -> None:
    """Raise ``ValueError`` naming every metric reference of ``spec`` that is not in ``defined``.

    Example:
        >>> spec = ExperimentSpec(key="x", variants=[{"key": "a"}, {"key": "b"}], metrics={"goal": ["conversion"]})
        >>> check_metric_references(spec, {"revenue"})
        Traceback (most recent call last):
        ...
        ValueError: metrics.goal.0: 'conversion' is not a defined metric (defined: revenue)
    """
    if problems := undefined_metrics(spec, defined):
        raise ValueError("; ".join(f"{path}: {message}" for path, message in problems))


def undefined_targets(spec: ExperimentSpec, defined: Collection[str]) -> list[tuple[str, str]]:
    """Every name in ``monitoring.notify`` that is neither a target of the spec nor in ``defined``.

    ``defined`` holds the names of the global targets (:class:`NotificationTargets`); the result
    is ``(field path, message)`` pairs, worded as :func:`undefined_metrics` words its own.

    Example:
        >>> spec = ExperimentSpec(
        ...     key="x", variants=[{"key": "a"}, {"key": "b"}],
        ...     monitoring={"notify": ["team", "ops-slak"]},
        ...     notifications=[{"name": "team", "url": "https://hooks.example.com/team"}],
        ... )
        >>> undefined_targets(spec, {"ops-slack"})
        [('monitoring.notify.1', "'ops-slak' is not a notification target, did you mean 'ops-slack'?")]
    """
    own = [target.name for target in spec.notifications]
    known = own + sorted(name for name in defined if name not in own)
    problems = []
    for i, name in enumerate(spec.monitoring.notify):
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f", did you mean {close[0]!r}?" if close else f" (defined: {', '.join(sorted(known)) or 'none'})"
        problems.append((f"monitoring.notify.{i}", f"{name!r} is not a notification target{hint}"))
    return problems


def check_target_references(spec: ExperimentSpec, defined: Collection[str]) -> None:
    """Raise ``ValueError`` naming every target in ``monitoring.notify`` that neither the spec nor ``defined`` has.

    Example:
        >>> spec = ExperimentSpec(key="x", variants=[{"key": "a"}, {"key": "b"}], monitoring={"notify": ["ops"]})
        >>> check_target_references(spec, set())
        Traceback (most recent call last):
        ...
        ValueError: monitoring.notify.0: 'ops' is not a notification target (defined: none)
    """
    if problems := undefined_targets(spec, defined):
        raise ValueError("; ".join(f"{path}: {message}" for path, message in problems))


class EventAggregate(_Model):
    """One side of a ratio metric: the per-unit ``sum`` of an event's values or ``count`` of its occurrences."""

    event: Name
    aggregation: Literal["sum", "count"] = "sum"


class Capping(_Model):
    """Winsorisation of the per-unit value.

    Attributes:
        type: ``absolute`` (bounds are values) or ``percentile`` (bounds are shares in (0, 1) of the
            pooled per-unit distribution, e.g. ``upper: 0.99``).
        lower, upper: the bounds; at least one, ``lower < upper``.
    """

    type: Literal["absolute", "percentile"]
    lower: float | None = Field(default=None, strict=True)
    upper: float | None = Field(default=None, strict=True)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.lower is None and self.upper is None:
            msg = "lower or upper is required (a cap without bounds does nothing)"
            raise ValueError(msg)
        if self.type == "percentile":
            for field, bound in (("lower", self.lower), ("upper", self.upper)):
                if bound is not None and not 0 < bound < 1:
                    msg = f"{field} == {bound}, must be in (0, 1) for percentile capping (0.99 = 99th percentile)"
                    raise ValueError(msg)
        if self.lower is not None and self.upper is not None and self.lower >= self.upper:
            msg = f"lower == {self.lower}, must be < upper == {self.upper}"
            raise ValueError(msg)
        return self


class Covariate(_Model):
    """CUPED covariate: the same metric computed over ``pre_window_days`` (> 0) before first exposure."""

    pre_window_days: float = Field(strict=True, gt=0)


class MetricDefinition(_Model):
    """How a metric is computed from events, per unit, relative to the unit's first exposure.

    Attributes:
        name: a slug, referenced by experiment specs.
        description: free text.
        kind: the per-unit value and what is compared across variants:

            - ``binary``: 1 if the unit had at least one ``event``, else 0 (conversion);
            - ``count``: the unit's number of ``event`` occurrences (0 without one);
            - ``sum``: the total of the unit's ``event`` values (0 without one): revenue per user;
            - ``mean``: the average of the unit's ``event`` values; units without the event have no
              value and are left out;
            - ``ratio``: ``numerator`` over ``denominator``, each a per-unit sum or count, compared as
              the ratio of their totals (average order value = revenue / orders);
            - ``quantile``: the ``quantile`` (in (0, 1)) across units of the per-unit ``sum``.

        event: the event name (every kind but ``ratio``).
        numerator, denominator: :class:`EventAggregate` (``ratio`` only).
        quantile: in (0, 1), ``quantile`` only.
        window_days: attribution window after the unit's first exposure (> 0); None: until the
            analysis. Events before first exposure never count.
        capping: :class:`Capping` of the per-unit value (of the numerator for ``ratio``); not for
            ``binary`` or ``quantile``.
        direction: ``higher`` (default) or ``lower`` is better.
        covariate: :class:`Covariate` for CUPED; not for ``quantile``.
        test: a test on the unit-level values instead of the kind's default: ``mann-whitney``
            (rank-sum p-value, with the probability of superiority) or ``bootstrap`` (BCa CIs of
            the difference of means, or of the ``quantile``); not for ``ratio`` (two values per
            unit) nor with a ``covariate``. None (default): the kind's test on sufficient statistics.
    """

    name: Slug
    description: Text = ""
    kind: MetricKind
    event: Name | None = None
    numerator: EventAggregate | None = None
    denominator: EventAggregate | None = None
    quantile: float | None = Field(default=None, strict=True, gt=0, lt=1)
    window_days: float | None = Field(default=None, strict=True, gt=0)
    capping: Capping | None = None
    direction: Literal["higher", "lower"] = "higher"
    covariate: Covariate | None = None
    test: MetricTest | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        kind = self.kind
        if self.test is not None and kind == "ratio":
            msg = f"test {self.test!r} needs one value per unit, kind 'ratio' has two (numerator and denominator)"
            raise ValueError(msg)
        if self.test is not None and self.covariate is not None:
            msg = f"test {self.test!r} does not use a covariate (CUPED); remove one of them"
            raise ValueError(msg)
        if kind == "ratio":
            for field in ("numerator", "denominator"):
                if getattr(self, field) is None:
                    msg = f"{field} is required for kind 'ratio'"
                    raise ValueError(msg)
            if self.event is not None:
                msg = "event is not used by kind 'ratio' (give numerator and denominator)"
                raise ValueError(msg)
        else:
            if self.event is None:
                msg = f"event is required for kind {kind!r}"
                raise ValueError(msg)
            for field in ("numerator", "denominator"):
                if getattr(self, field) is not None:
                    msg = f"{field} is only used by kind 'ratio', not {kind!r}"
                    raise ValueError(msg)
        if kind == "quantile" and self.quantile is None:
            msg = "quantile is required for kind 'quantile' (e.g. 0.9)"
            raise ValueError(msg)
        if kind != "quantile" and self.quantile is not None:
            msg = f"quantile is only used by kind 'quantile', not {kind!r}"
            raise ValueError(msg)
        if self.capping is not None and kind in ("binary", "quantile"):
            msg = f"capping does not apply to kind {kind!r}"
            raise ValueError(msg)
        if self.covariate is not None and kind == "quantile":
            msg = "covariate (CUPED) is not supported for kind 'quantile'"
            raise ValueError(msg)
        return self

    @property
    def higher_is_better(self) -> bool:
        """Whether an increase of the metric is an improvement."""
        return self.direction == "higher"
