"""Settings from the environment, validated with messages that name the variable."""

from __future__ import annotations

import pytest

from splitlab.service import Settings


def test_defaults_and_environment() -> None:
    assert Settings.from_env({}) == Settings()
    settings = Settings.from_env(
        {
            "SPLITLAB_DATABASE_URL": "sqlite://",
            "SPLITLAB_MAX_BATCH_SIZE": "7",
            "SPLITLAB_MAX_BODY_BYTES": "2048",
            "SPLITLAB_RECORD_ASSIGNMENTS": "false",
            "SPLITLAB_REDIS_URL": "redis://127.0.0.1:6379/0",
            "SPLITLAB_CACHE_SECONDS": "0.5",
            "SPLITLAB_RECORD_INTERVAL": "0.2",
        }
    )
    assert settings == Settings(
        database_url="sqlite://",
        max_batch_size=7,
        max_body_bytes=2048,
        record_assignments=False,
        redis_url="redis://127.0.0.1:6379/0",
        cache_seconds=0.5,
        record_interval=0.2,
    )


@pytest.mark.parametrize(
    ("environ", "match"),
    [
        ({"SPLITLAB_MAX_BATCH_SIZE": "many"}, "SPLITLAB_MAX_BATCH_SIZE == 'many', must be an integer"),
        ({"SPLITLAB_MAX_BATCH_SIZE": "0"}, "max_batch_size == 0, must be >= 1"),
        ({"SPLITLAB_MAX_BODY_BYTES": "10"}, "max_body_bytes == 10, must be >= 1024"),
        ({"SPLITLAB_RECORD_ASSIGNMENTS": "maybe"}, "SPLITLAB_RECORD_ASSIGNMENTS == 'maybe', must be true or false"),
        ({"SPLITLAB_CACHE_SECONDS": "soon"}, "SPLITLAB_CACHE_SECONDS == 'soon', must be a number"),
        ({"SPLITLAB_CACHE_SECONDS": "-1"}, "cache_seconds == -1.0, must be a finite number >= 0"),
        ({"SPLITLAB_CACHE_SECONDS": "inf"}, "cache_seconds == inf"),
        ({"SPLITLAB_RECORD_INTERVAL": "0"}, r"record_interval == 0.0, must be in \(0, 60\]"),
        ({"SPLITLAB_REDIS_URL": "localhost:6379"}, "redis_url == 'localhost:6379', must start with redis://"),
    ],
)
def test_invalid_settings_name_the_variable(environ: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Settings.from_env(environ)
