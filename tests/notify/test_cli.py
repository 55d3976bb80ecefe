"""splitlab notify test and splitlab notifications list, on SQLite and PostgreSQL, against a real receiver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from splitlab.cli import app
from splitlab.notify import TARGETS_ENV_VAR

from .conftest import SECRET_ENV, Receiver

runner = CliRunner()


@pytest.fixture
def targets(tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(TARGETS_ENV_VAR, raising=False)
    path = tmp_path / "targets.yaml"
    path.write_text(
        "notifications:\n"
        f"  - {{name: ops, url: '{receiver.url}/ops', secret_env: {SECRET_ENV}}}\n"
        f"  - {{name: chat, url: '{receiver.url}/chat', format: slack}}\n"
    )
    return path


def _spec_file(tmp_path: Path, receiver: Receiver) -> Path:
    path = tmp_path / "checkout.yaml"
    path.write_text(
        "key: checkout\n"
        "variants: [{key: control}, {key: treatment}]\n"
        "monitoring: {notify: [team, ops]}\n"
        "notifications:\n"
        f"  - {{name: team, url: '{receiver.url}/team'}}\n"
    )
    return path


def test_notify_test_reaches_the_global_targets_and_the_outbox_lists_them(
    database_url: str, receiver: Receiver, targets: Path
) -> None:
    db = ["--database", database_url]
    result = runner.invoke(app, ["notify", "test", "--notifications", str(targets), *db])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"ops ({receiver.url}/ops): delivered (HTTP 200), ")
    assert lines[1].startswith(f"chat ({receiver.url}/chat): delivered (HTTP 200), ")
    assert sorted(r.path for r in receiver.requests) == ["/chat", "/ops"]
    assert next(r for r in receiver.requests if r.path == "/ops").verified
    listed = json.loads(runner.invoke(app, ["notifications", "list", "--json", *db]).output)
    assert [(n["target"], n["kind"], n["status"], n["attempts"]) for n in listed] == [
        ("chat", "test", "delivered", 1),
        ("ops", "test", "delivered", 1),
    ]
    table = runner.invoke(app, ["notifications", "list", "--status", "delivered", *db]).output
    assert table.splitlines()[0].split()[:6] == ["id", "created", "experiment", "kind", "target", "status"]
    assert runner.invoke(app, ["notifications", "list", "--status", "pending", *db]).output == "no notifications\n"


def test_a_failed_target_exits_1_and_stays_in_the_outbox(
    database_url: str, receiver: Receiver, targets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.plan = [503]
    monkeypatch.setenv(TARGETS_ENV_VAR, str(targets))  # the file from the environment this time
    db = ["--database", database_url]
    result = runner.invoke(app, ["notify", "test", "--target", "ops", *db])
    assert result.exit_code == 1
    assert f"ops ({receiver.url}/ops): not delivered: HTTP 503, " in result.output
    [row] = json.loads(runner.invoke(app, ["notifications", "list", "--status", "pending", "--json", *db]).output)
    assert (row["target"], row["attempts"], row["last_error"]) == ("ops", 1, "HTTP 503")
    assert row["next_attempt_at"] is not None


def test_notify_test_for_an_experiment_uses_its_targets(
    database_url: str, receiver: Receiver, targets: Path, tmp_path: Path
) -> None:
    db = ["--database", database_url]
    spec = str(_spec_file(tmp_path, receiver))
    refused = runner.invoke(app, ["apply", spec, *db], env={"SPLITLAB_NOTIFICATIONS_FILE": ""})
    assert refused.exit_code == 2  # 'ops' is a global target: apply checks the name against the global file
    assert "monitoring.notify.1: 'ops' is not a notification target" in refused.output
    applied = runner.invoke(app, ["apply", spec, *db], env={"SPLITLAB_NOTIFICATIONS_FILE": str(targets)})
    assert applied.exit_code == 0, applied.output
    result = runner.invoke(app, ["notify", "test", "--experiment", "checkout", "--notifications", str(targets), *db])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()] == ["team", "ops"]
    listed = json.loads(runner.invoke(app, ["notifications", "list", "--experiment", "checkout", "--json", *db]).output)
    assert {n["experiment"] for n in listed} == {"checkout"}
    assert len(listed) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["notify", "test"], "error: no notification targets: give --notifications FILE"),
        (["notify", "test", "--experiment", "nope"], "error: experiment 'nope' does not exist"),
        (["notify", "test", "--notifications", "TARGETS", "--target", "pager"], "error: target: 'pager' is not a"),
        (
            ["notify", "test", "--notifications", "BAD"],
            "error: BAD:2: notification targets: notifications.0.url: url ==",
        ),
        (["notify", "test", "--notifications", "MISSING"], "error: [Errno 2] No such file or directory"),
        (["notifications", "list", "--status", "sent"], "error: status == 'sent', must be one of pending"),
    ],
)
def test_bad_input_is_one_error_line(
    args: list[str], message: str, tmp_path: Path, targets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("notifications:\n  - {name: ops, url: 'ftp://x'}\n")
    paths = {"TARGETS": str(targets), "BAD": str(bad), "MISSING": str(tmp_path / "missing.yaml")}
    argv = [paths.get(arg, arg) for arg in args]
    result = runner.invoke(app, [*argv, "--database", f"sqlite:///{tmp_path / 'store.db'}"])
    assert result.exit_code == 2
    assert result.output.startswith(message.replace("BAD", str(bad))), result.output
    assert "Traceback" not in result.output
