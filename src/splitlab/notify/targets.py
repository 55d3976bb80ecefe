"""Where notifications go: the global targets file and the targets a spec names.

A spec's ``monitoring.notify`` names its targets; each name is looked up among the spec's own
``notifications`` first, then among the global targets (a YAML file with ``notifications:``,
named by ``--notifications PATH`` or ``SPLITLAB_NOTIFICATIONS_FILE``). A target's ``kinds``
filters what it takes; a ``test`` goes to every target, whatever its kinds.

Example:
    >>> from splitlab.specs import ExperimentSpec, load_notification_targets
    >>> shared = load_notification_targets('''
    ... notifications:
    ...   - {name: ops, url: "https://hooks.example.com/ops", format: slack, kinds: [srm_detected]}
    ... ''')
    >>> spec = ExperimentSpec(
    ...     key="checkout", variants=[{"key": "a"}, {"key": "b"}],
    ...     monitoring={"notify": ["team", "ops"]},
    ...     notifications=[{"name": "team", "url": "https://hooks.example.com/team"}],
    ... )
    >>> [t.name for t in targets_for(spec, "srm_detected", shared)]
    ['team', 'ops']
    >>> [t.name for t in targets_for(spec, "decision_reached", shared)]
    ['team']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from splitlab.specs import (
    ExperimentSpec,
    NotificationKind,
    NotificationTarget,
    check_target_references,
    load_notification_targets,
)

__all__ = ["TARGETS_ENV_VAR", "global_targets", "targets_for"]

TARGETS_ENV_VAR = "SPLITLAB_NOTIFICATIONS_FILE"
"""The environment variable naming the global targets file when no path is given."""


def global_targets(path: str | os.PathLike[str] | None = None) -> tuple[NotificationTarget, ...]:
    """The global targets: from ``path``, else from the file ``SPLITLAB_NOTIFICATIONS_FILE`` names, else none.

    Raises:
        SpecError: The file is not valid YAML or holds invalid targets (file, line and field named).
        FileNotFoundError: The file does not exist.
    """
    source = path if path is not None else os.environ.get(TARGETS_ENV_VAR) or None
    if source is None:
        return ()
    return load_notification_targets(Path(source))


def targets_for(
    spec: ExperimentSpec | None, kind: NotificationKind | str, global_targets: Sequence[NotificationTarget] = ()
) -> list[NotificationTarget]:
    """The targets that take a notification of ``kind`` about ``spec``'s experiment, in ``monitoring.notify`` order.

    Args:
        spec: The experiment; None: every global target (a notification about no experiment).
        kind: The notification's kind; ``test`` goes to every target named, whatever its kinds.
        global_targets: The global targets (:func:`global_targets`).

    Raises:
        ValueError: ``kind`` is unknown, or ``monitoring.notify`` names a target neither the spec
            nor the global targets define (``monitoring.notify.1: 'ops' is not a notification target ...``).
    """
    kind = NotificationKind(kind)
    if spec is None:
        chosen = list(global_targets)
    else:
        check_target_references(spec, [target.name for target in global_targets])
        known = {target.name: target for target in global_targets} | {t.name: t for t in spec.notifications}
        chosen = [known[name] for name in spec.monitoring.notify]
    return [target for target in chosen if kind is NotificationKind.TEST or target.takes(kind)]
