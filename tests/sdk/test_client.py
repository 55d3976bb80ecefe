"""Client: local assignment equals splitlab.assign, ETag refreshes, fallbacks, exposures, options."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from splitlab.assignment import assign
from splitlab.sdk import FALLBACK, AsyncClient, Client, parse_config
from splitlab.specs import ExperimentSpec, to_plan

if TYPE_CHECKING:
    from conftest import FakeService  # the fixture's class; conftest is not importable under importlib mode

WAIT = 5.0  # upper bound on every wait for the client's threads

SPECS: list[dict[str, Any]] = [
    {"key": "checkout", "variants": [{"key": "control"}, {"key": "one-page"}]},
    {
        "key": "pricing",
        "variants": [{"key": "control", "weight": 0.2}, {"key": "a", "weight": 0.3}, {"key": "b", "weight": 0.5}],
        "coverage": 0.7,
        "targeting": {"include": [{"attribute": "country", "operator": "in", "value": ["DE", "FR"]}]},
        "holdout": {"seed": "global-holdout", "share": 0.1},
    },
    {
        "key": "gb",
        "variants": [{"key": "off", "payload": {"color": "grey"}}, {"key": "on", "payload": {"color": "blue"}}],
        "hash_version": "growthbook-v2",
        "bucket_version": 3,
    },
]


def _entry(spec: dict[str, Any], status: str = "running") -> dict[str, Any]:
    return {"key": spec["key"], "status": status, "spec": spec}


class Errors(list[tuple[str, int, str]]):
    def __call__(self, kind: str, items: Any, reason: str) -> None:
        self.append((kind, len(items), reason))


def _client(service: FakeService, errors: Errors | None = None, **options: Any) -> Client:
    options.setdefault("refresh_interval", 60.0)
    return Client(service.url, service.api_key, on_error=errors if errors is not None else Errors(), **options)


def test_local_assignment_equals_splitlab_assign(service: FakeService) -> None:
    service.set_experiments([_entry(s) for s in SPECS], "v1")
    with _client(service) as client:
        for raw in SPECS:
            plan = to_plan(ExperimentSpec.model_validate(raw))
            for i in range(500):
                attributes = {"country": ("DE", "US", "FR")[i % 3]}
                assert client.assign(raw["key"], f"user-{i}", attributes) == assign(plan, f"user-{i}", attributes)
        reasons = {client.assign("pricing", f"user-{i}", {"country": "DE"}).reason for i in range(500)}
    assert {"enrolled", "coverage", "holdout"} <= reasons


def test_no_request_per_assignment(service: FakeService) -> None:
    service.set_experiments([_entry(SPECS[0])], "v1")
    with _client(service) as client:
        for i in range(200):
            client.assign("checkout", f"u{i}")
        assert service.config_requests == 1


def test_paused_experiment_is_inactive(service: FakeService) -> None:
    service.set_experiments([_entry(SPECS[0], status="paused")], "v1")
    with _client(service) as client:
        result = client.assign("checkout", "user-1")
    assert (result.variant, result.reason) == (None, "inactive")
    assert service.received("exposures") == []


def test_a_rolled_out_experiment_serves_its_variant_to_everyone_and_logs_no_exposure(service: FakeService) -> None:
    rolled_out = [
        {**_entry(raw, status="rolled_out"), "rolled_out_variant": raw["variants"][-1]["key"]} for raw in SPECS
    ]
    service.set_experiments(rolled_out, "v1")
    with _client(service, flush_interval=60.0) as client:
        for raw in SPECS:
            winner = raw["variants"][-1]
            for i in range(200):
                served = client.assign(raw["key"], f"user-{i}", {"country": ("DE", "US")[i % 2]})
                assert (served.variant, served.payload) == (winner["key"], winner.get("payload")), raw["key"]
                assert (served.enrolled, served.reason) == (False, "rolled_out")
        assert client.flush(WAIT)
    assert service.received("exposures") == []


def test_a_rolled_out_entry_without_its_variant_is_left_out_and_reported(service: FakeService) -> None:
    service.set_experiments([_entry(SPECS[0], status="rolled_out")], "v1")
    errors = Errors()
    with _client(service, errors) as client:
        assert client.assign("checkout", "user-1").reason == FALLBACK
    assert errors == [
        (
            "config",
            0,
            "experiment 'checkout' left out: rolled_out_variant == None, a rolled-out experiment names its variant",
        )
    ]


def test_etag_refresh_costs_a_304_and_new_versions_are_picked_up(service: FakeService) -> None:
    service.set_experiments([_entry(SPECS[0])], "v1")
    with _client(service) as client:
        assert client.refresh()
        assert client.refresh()
        assert (service.config_requests, service.not_modified) == (3, 2)
        assert client.config_version == "v1"
        assert client.assign("checkout", "user-1").enrolled
        service.set_experiments([_entry(SPECS[0], status="paused")], "v2")
        assert client.refresh()
        assert client.config_version == "v2"
        assert client.assign("checkout", "user-1").reason == "inactive"
        assert client.stats.config_fetches == 4


def test_background_refresh(service: FakeService) -> None:
    service.set_experiments([_entry(SPECS[0])], "v1")
    with _client(service, refresh_interval=0.02) as client:
        assert service.wait_for(lambda: service.config_requests >= 3)
        service.set_experiments([_entry(SPECS[0], status="paused")], "v2")
        assert service.wait_for(lambda: service.config_requests >= 6)
        assert client.config_version == "v2"
    assert service.not_modified >= 1


def test_service_down_keeps_the_last_good_config(service: FakeService) -> None:
    service.set_experiments([_entry(s) for s in SPECS], "v1")
    errors = Errors()
    with _client(service, errors, timeout=1.0, close_timeout=0.5, max_retries=0) as client:
        before = [client.assign("gb", f"user-{i}") for i in range(100)]
        service.stop()
        assert not client.refresh()
        assert [client.assign("gb", f"user-{i}") for i in range(100)] == before
        assert client.config_version == "v1"
        assert client.stats.config_errors == 1
        assert errors[0][0] == "config"
        assert "keeping the last good config" in errors[0][2]


def test_no_config_ever_loaded_falls_back(service: FakeService) -> None:
    service.stop()
    errors = Errors()
    with _client(service, errors, timeout=1.0) as client:
        result = client.assign("checkout", "user-1")
        assert client.config_version is None
    assert (result.variant, result.enrolled, result.reason, result.payload) == (None, False, FALLBACK, None)
    assert [kind for kind, _, _ in errors] == ["config"]


def test_unknown_experiment_falls_back(service: FakeService) -> None:
    service.set_experiments([_entry(SPECS[0])], "v1")
    with _client(service) as client:
        assert client.assign("nope", "user-1").reason == FALLBACK


def test_invalid_spec_is_left_out_and_reported(service: FakeService) -> None:
    bad = {"key": "bad", "variants": [{"key": "only"}]}
    service.set_experiments([_entry(SPECS[0]), _entry(bad)], "v1")
    errors = Errors()
    with _client(service, errors) as client:
        assert client.assign("checkout", "user-1").enrolled
        assert client.assign("bad", "user-1").reason == FALLBACK
    assert errors[0][0] == "config"
    assert "'bad' left out" in errors[0][2]


def test_malformed_config_keeps_the_last_good_one(service: FakeService) -> None:
    service.set_experiments([_entry(SPECS[0])], "v1")
    with _client(service) as client:
        service.set_experiments("not a list", "v2")  # type: ignore[arg-type]
        assert not client.refresh()
        assert client.config_version == "v1"


def test_exposure_logged_on_first_assignment_only(service: FakeService) -> None:
    service.set_experiments([_entry(s) for s in SPECS], "v1")
    with _client(service, flush_interval=60.0) as client:
        for _ in range(3):
            for i in range(20):
                client.assign("checkout", f"user-{i}", {"plan": "pro"})
        for i in range(20):
            client.assign("pricing", f"user-{i}", {"country": "US"})  # not targeted: no exposure
        assert client.flush(WAIT)
    exposures = service.received("exposures")
    assert sorted(e["unit_id"] for e in exposures) == sorted(f"user-{i}" for i in range(20))
    plan = to_plan(ExperimentSpec.model_validate(SPECS[0]))
    for e in exposures:
        assert e["experiment"] == "checkout"
        assert e["variant"] == assign(plan, e["unit_id"]).variant
        assert e["attributes"] == {"plan": "pro"}
        assert e["timestamp"].endswith("+00:00")


def test_exposure_dedupe_memory_is_bounded(service: FakeService) -> None:
    service.set_experiments([_entry(SPECS[0])], "v1")
    with _client(service, flush_interval=60.0, dedupe_size=2) as client:
        for unit in ("a", "b", "c", "a"):  # "a" was forgotten when "c" came
            client.assign("checkout", unit)
        assert client.flush(WAIT)
    assert [e["unit_id"] for e in service.received("exposures")] == ["a", "b", "c", "a"]


def test_random_allocation_is_kept_for_the_process(service: FakeService) -> None:
    spec = {"key": "rnd", "variants": [{"key": "a"}, {"key": "b"}], "allocation": {"method": "random"}}
    service.set_experiments([_entry(spec)], "v1")
    with _client(service, flush_interval=60.0) as client:
        first = [client.assign("rnd", f"u{i}").variant for i in range(50)]
        assert [client.assign("rnd", f"u{i}").variant for i in range(50)] == first
        assert set(first) == {"a", "b"}
        assert client.flush(WAIT)
    assert len(service.received("exposures")) == 50


def test_wrong_key_is_reported(service: FakeService) -> None:
    errors = Errors()
    with Client(service.url, "wrong", on_error=errors, refresh_interval=60.0) as client:
        assert client.assign("checkout", "u").reason == FALLBACK
    assert errors[0][0] == "config"
    assert "401" in errors[0][2]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("refresh_interval", 0.0),
        ("flush_interval", -1.0),
        ("batch_size", 0),
        ("max_queue", 0),
        ("timeout", 0.0),
        ("max_retries", -1),
        ("dedupe_size", 0),
    ],
)
def test_invalid_options_raise(service: FakeService, option: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{option} == "):
        Client(service.url, service.api_key, **{option: value})
    assert service.config_requests == 0


def test_parse_config_rejects_a_malformed_document() -> None:
    with pytest.raises(ValueError, match="experiments"):
        parse_config({"version": "v1"})


def test_async_client(service: FakeService) -> None:
    service.set_experiments([_entry(SPECS[0])], "v1")
    plan = to_plan(ExperimentSpec.model_validate(SPECS[0]))

    async def main() -> None:
        async with await AsyncClient.start(service.url, service.api_key, flush_interval=60.0) as client:
            assert client.assign("checkout", "user-1") == assign(plan, "user-1")
            client.track("user-1", "purchase", 12.5)
            assert await client.flush(WAIT)
            assert client.stats.delivered == 2
            client.track("user-2", "purchase")

    asyncio.run(main())
    assert len(service.received("exposures")) == 1
    assert [e["unit_id"] for e in service.received("events")] == ["user-1", "user-2"]
