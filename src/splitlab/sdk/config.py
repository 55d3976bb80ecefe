"""The config document an SDK evaluates locally: running and rolled-out experiments, compiled once per version."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from splitlab.assignment import CompiledPlan, compile_plan
from splitlab.specs import ExperimentSpec, to_plan

__all__ = ["ConfigSnapshot", "parse_config"]


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """One version of the config: experiment key -> compiled plan (inactive unless status is running;
    a rolled-out experiment's serves its ``rolled_out_variant`` to every unit), and the current
    weights of bandit experiments (the service recomputes them every window).
    """  # noqa: D205

    version: str
    plans: Mapping[str, CompiledPlan]
    weights: Mapping[str, tuple[float, ...]] = field(default_factory=dict)


def parse_config(document: Any) -> tuple[ConfigSnapshot, list[str]]:
    """Validate a config document; experiments that fail validation are left out and described.

    Args:
        document: ``{"version": str, "experiments": [{"key", "status", "spec", "weights",
            "rolled_out_variant"}]}`` (``weights``: a bandit experiment's current weights, in variant
            order; ``rolled_out_variant``: with status ``rolled_out``, the variant served to every unit).

    Returns:
        The snapshot and one problem per experiment left out.

    Raises:
        ValueError: the document itself is malformed (not an object, or no ``experiments`` list).

    Example:
        >>> doc = {"version": "v1", "experiments": [
        ...     {"key": "x", "status": "running", "spec": {"key": "x", "variants": [{"key": "a"}, {"key": "b"}]}},
        ...     {"key": "y", "status": "running", "spec": {"key": "y", "variants": []}}]}
        >>> snapshot, problems = parse_config(doc)
        >>> sorted(snapshot.plans), problems[0][:40]
        (['x'], "experiment 'y' left out: 1 validation er")
    """
    if not isinstance(document, dict) or not isinstance(document.get("experiments"), list):
        raise ValueError("config must be an object with an 'experiments' list")  # noqa: TRY004 - bad wire data
    plans: dict[str, CompiledPlan] = {}
    weights: dict[str, tuple[float, ...]] = {}
    problems: list[str] = []
    for i, entry in enumerate(document["experiments"]):
        key = entry.get("key") if isinstance(entry, dict) else None
        label = f"experiment {key!r}" if isinstance(key, str) else f"experiments[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{label} left out: must be an object")
            continue
        try:
            spec = ExperimentSpec.model_validate(entry.get("spec"))
            status = entry.get("status")
            plan = compile_plan(to_plan(spec, active=status == "running", rolled_out=_rolled_out(entry)))
            current = entry.get("weights")
            if plan.allocation == "bandit" and current is not None:
                checked = tuple(float(w) for w in current)
                plan.ranges(checked)  # the engine's own check: bad weights leave the experiment out
                weights[spec.key] = checked
            plans[spec.key] = plan
        except (ValidationError, ValueError, TypeError) as err:
            problems.append(f"{label} left out: {err}")
    return ConfigSnapshot(str(document.get("version", "")), plans, weights), problems


def _rolled_out(entry: dict[str, Any]) -> str | None:
    """The variant a rolled-out experiment's entry serves every unit; None for any other status."""
    if entry.get("status") != "rolled_out":
        return None
    variant = entry.get("rolled_out_variant")
    if not isinstance(variant, str):
        raise ValueError(f"rolled_out_variant == {variant!r}, a rolled-out experiment names its variant")  # noqa: TRY004
    return variant
