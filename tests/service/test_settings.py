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
        }
    )
    assert settings == Settings(
        database_url="sqlite://", max_batch_size=7, max_body_bytes=2048, record_assignments=False
    )


@pytest.mark.parametrize(
    ("environ", "match"),
    [
        ({"SPLITLAB_MAX_BATCH_SIZE": "many"}, "SPLITLAB_MAX_BATCH_SIZE == 'many', must be an integer"),
        ({"SPLITLAB_MAX_BATCH_SIZE": "0"}, "max_batch_size == 0, must be >= 1"),
        ({"SPLITLAB_MAX_BODY_BYTES": "10"}, "max_body_bytes == 10, must be >= 1024"),
        ({"SPLITLAB_RECORD_ASSIGNMENTS": "maybe"}, "SPLITLAB_RECORD_ASSIGNMENTS == 'maybe', must be true or false"),
    ],
)
def test_invalid_settings_name_the_variable(environ: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Settings.from_env(environ)
