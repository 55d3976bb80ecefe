"""monitoring and notifications in a spec, and the global targets file: every error names its field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from splitlab.notify import TARGETS_ENV_VAR, global_targets, targets_for
from splitlab.specs import (
    ExperimentSpec,
    NotificationKind,
    SpecError,
    check_target_references,
    dump_spec,
    load_notification_targets,
    load_spec,
    undefined_targets,
)

VARIANTS = [{"key": "control"}, {"key": "treatment"}]


def _spec(**fields: object) -> ExperimentSpec:
    return ExperimentSpec.model_validate({"key": "checkout", "variants": VARIANTS, **fields})


def _errors(**fields: object) -> dict[str, str]:
    with pytest.raises(ValidationError) as raised:
        _spec(**fields)
    return {".".join(map(str, e["loc"])): e["msg"] for e in raised.value.errors()}


def test_defaults_leave_the_spec_as_it_was() -> None:
    spec = _spec()
    assert spec.monitoring.interval_minutes == 60
    assert (spec.monitoring.auto_stop, spec.monitoring.auto_rollback, spec.monitoring.auto_promote) == (False,) * 3
    assert spec.monitoring.notify == ()
    assert spec.notifications == ()
    assert "monitoring" not in dump_spec(spec)
    assert "notifications" not in dump_spec(spec)


def test_a_full_section_round_trips_through_yaml() -> None:
    spec = _spec(
        monitoring={"interval_minutes": 15, "auto_stop": True, "notify": ["team", "ops"]},
        notifications=[
            {"name": "team", "url": "https://hooks.example.com/t", "secret_env": "TEAM_SECRET"},
            {"name": "chat", "url": "http://chat.internal/hook", "format": "slack", "kinds": ["srm_detected"]},
        ],
    )
    assert load_spec(dump_spec(spec)) == spec
    assert spec.notifications[1].kinds == (NotificationKind.SRM_DETECTED,)
    assert spec.notifications[1].takes("srm_detected")
    assert not spec.notifications[1].takes(NotificationKind.DECISION_REACHED)
    assert spec.notifications[0].takes("monitor_error")


@pytest.mark.parametrize(
    ("fields", "path", "words"),
    [
        ({"monitoring": {"interval_minutes": 0}}, "monitoring.interval_minutes", "greater than or equal to 1"),
        ({"monitoring": {"interval_minutes": 1.5}}, "monitoring.interval_minutes", "integer"),
        ({"monitoring": {"auto_stop": "yes"}}, "monitoring.auto_stop", "boolean"),
        ({"monitoring": {"notify": ["ops", "ops"]}}, "monitoring.notify", "'ops' more than once"),
        ({"monitoring": {"notify": ["Ops!"]}}, "monitoring.notify.0", "not a slug"),
        ({"monitoring": {"auto_stopp": True}}, "monitoring.auto_stopp", "Extra inputs"),
        ({"notifications": [{"name": "a", "url": "ftp://x"}]}, "notifications.0.url", "http:// or https://"),
        ({"notifications": [{"name": "a", "url": "https://"}]}, "notifications.0.url", "with a host"),
        (
            {"notifications": [{"name": "a", "url": "https://x", "secret_env": "sk_live abc"}]},
            "notifications.0.secret_env",
            "not the secret itself",
        ),
        ({"notifications": [{"name": "a", "url": "https://x", "format": "xml"}]}, "notifications.0.format", "json"),
        ({"notifications": [{"name": "a", "url": "https://x", "kinds": []}]}, "notifications.0.kinds", "at least one"),
        (
            {"notifications": [{"name": "a", "url": "https://x", "kinds": ["test", "test"]}]},
            "notifications.0.kinds",
            "'test' more than once",
        ),
        (
            {"notifications": [{"name": "a", "url": "https://x", "kinds": ["srm"]}]},
            "notifications.0.kinds.0",
            "srm_detected",
        ),
        (
            {"notifications": [{"name": "a", "url": "https://x"}, {"name": "a", "url": "https://y"}]},
            "notifications.1.name",
            "names must be unique",
        ),
    ],
)
def test_errors_name_the_field(fields: dict[str, object], path: str, words: str) -> None:
    errors = _errors(**fields)
    assert path in errors, errors
    assert words in errors[path]


def test_the_loader_names_file_line_and_field() -> None:
    text = """
key: checkout
variants: [{key: control}, {key: treatment}]
monitoring:
  notify: [team]
notifications:
  - name: team
    url: hooks.example.com/team
"""
    with pytest.raises(SpecError) as raised:
        load_spec(text)
    assert str(raised.value) == (
        "<yaml text>:8: experiment 'checkout': notifications.0.url: "
        "url == 'hooks.example.com/team', must be an http:// or https:// URL with a host"
    )


def test_notify_names_are_checked_against_the_spec_and_the_global_targets() -> None:
    spec = _spec(
        monitoring={"notify": ["team", "ops-slack", "pager"]},
        notifications=[{"name": "team", "url": "https://hooks.example.com/team"}],
    )
    assert undefined_targets(spec, {"ops-slack", "pager"}) == []
    assert undefined_targets(spec, {"ops-slak"}) == [
        ("monitoring.notify.1", "'ops-slack' is not a notification target, did you mean 'ops-slak'?"),
        ("monitoring.notify.2", "'pager' is not a notification target (defined: ops-slak, team)"),
    ]
    with pytest.raises(ValueError, match=r"^monitoring\.notify\.2: 'pager' is not a notification target"):
        check_target_references(spec, {"ops-slack"})
    with pytest.raises(ValueError, match=r"monitoring\.notify\.1: 'ops-slack'"):
        targets_for(spec, "srm_detected", [])


def test_the_global_targets_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(
        "notifications:\n"
        "  - name: ops\n"
        "    url: https://hooks.example.com/ops\n"
        "  - name: chat\n"
        "    url: https://chat.example.com/hook\n"
        "    format: slak\n"
        "  - name: ops\n"
        "    url: https://hooks.example.com/other\n"
    )
    with pytest.raises(SpecError) as raised:
        load_notification_targets(path)
    assert raised.value.problems == (
        f"{path}:6: notification targets: notifications.1.format: Input should be 'json' or 'slack' (got 'slak')",
    )
    path.write_text(path.read_text().replace("slak", "slack"))
    with pytest.raises(SpecError, match=r":7: notification targets: notifications\.2\.name: name == 'ops' is already"):
        load_notification_targets(path)
    path.write_text(path.read_text().replace("  - name: ops\n    url: https://hooks.example.com/other\n", ""))
    monkeypatch.delenv(TARGETS_ENV_VAR, raising=False)
    assert global_targets() == ()
    monkeypatch.setenv(TARGETS_ENV_VAR, str(path))
    assert [t.name for t in global_targets()] == ["ops", "chat"]
    assert [t.format for t in global_targets(path)] == ["json", "slack"]
    with pytest.raises(SpecError, match="expected a mapping with 'notifications:'"):
        load_notification_targets("- name: ops")


def test_targets_follow_notify_order_and_kinds() -> None:
    shared = load_notification_targets(
        "notifications:\n"
        "  - {name: ops, url: 'https://hooks.example.com/ops', kinds: [srm_detected, monitor_error]}\n"
        "  - {name: team, url: 'https://hooks.example.com/global-team'}\n"
    )
    spec = _spec(
        monitoring={"notify": ["ops", "team"]},
        notifications=[{"name": "team", "url": "https://hooks.example.com/own-team", "kinds": ["action_taken"]}],
    )
    # The spec's own target shadows the global one of the same name.
    assert [t.url for t in targets_for(spec, "action_taken", shared)] == ["https://hooks.example.com/own-team"]
    assert [t.name for t in targets_for(spec, "srm_detected", shared)] == ["ops"]
    assert [t.name for t in targets_for(spec, "test", shared)] == ["ops", "team"]  # a test ignores kinds
    assert [t.name for t in targets_for(None, "monitor_error", shared)] == ["ops", "team"]
    with pytest.raises(ValueError, match="'srm'"):
        targets_for(spec, "srm", shared)
