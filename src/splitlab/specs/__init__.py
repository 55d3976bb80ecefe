"""Experiments as versioned YAML specs: models, loading, lifecycle, change rules, assignment plans.

Example:
    >>> from splitlab.specs import load_spec, to_plan
    >>> spec = load_spec("{key: checkout, variants: [{key: control}, {key: one-page}]}")
    >>> to_plan(spec).weights
    (0.5, 0.5)
"""

from __future__ import annotations

from splitlab.specs.changes import PROTECTED, Change, UpdatePlan, check_update, diff, plan_update
from splitlab.specs.lifecycle import TRANSITIONS, Action, Status, allowed_actions, apply_action, has_run, transition
from splitlab.specs.loading import (
    Catalog,
    SpecError,
    dump_metrics,
    dump_spec,
    load_catalog,
    load_notification_targets,
    load_spec,
)
from splitlab.specs.model import (
    Allocation,
    Analysis,
    Bandit,
    Capping,
    Condition,
    Covariate,
    DecisionOptions,
    EventAggregate,
    ExperimentSpec,
    Guardrail,
    Holdout,
    Hypothesis,
    MetricDefinition,
    Metrics,
    Monitoring,
    Namespace,
    NotificationKind,
    NotificationTarget,
    NotificationTargets,
    Schedule,
    Targeting,
    Variant,
    check_metric_references,
    check_target_references,
    metric_references,
    undefined_metrics,
    undefined_targets,
)
from splitlab.specs.plan import to_plan

__all__ = [
    "PROTECTED",
    "TRANSITIONS",
    "Action",
    "Allocation",
    "Analysis",
    "Bandit",
    "Capping",
    "Catalog",
    "Change",
    "Condition",
    "Covariate",
    "DecisionOptions",
    "EventAggregate",
    "ExperimentSpec",
    "Guardrail",
    "Holdout",
    "Hypothesis",
    "MetricDefinition",
    "Metrics",
    "Monitoring",
    "Namespace",
    "NotificationKind",
    "NotificationTarget",
    "NotificationTargets",
    "Schedule",
    "SpecError",
    "Status",
    "Targeting",
    "UpdatePlan",
    "Variant",
    "allowed_actions",
    "apply_action",
    "check_metric_references",
    "check_target_references",
    "check_update",
    "diff",
    "dump_metrics",
    "dump_spec",
    "has_run",
    "load_catalog",
    "load_notification_targets",
    "load_spec",
    "metric_references",
    "plan_update",
    "to_plan",
    "transition",
    "undefined_metrics",
    "undefined_targets",
]
