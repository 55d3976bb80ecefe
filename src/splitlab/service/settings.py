"""The service's settings, read once from the environment by the caller of :func:`create_app`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Settings"]

_PREFIX = "SPLITLAB_"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How one service process runs.

    Attributes:
        database_url: The store's URL; default None, meaning ``SPLITLAB_DATABASE_URL`` or the
            SQLite file ``splitlab.db`` (see :func:`splitlab.storage.open_store`).
        max_batch_size: Most items in one assign, exposures or events batch; default 10,000.
            Larger batches are answered with 413.
        max_body_bytes: Largest request body by its Content-Length; default 10 MiB (413 above).
        record_assignments: Record every new enrolment as a sticky assignment, so a later weight
            change keeps assigned units in their variant; default True.
    """

    database_url: str | None = None
    max_batch_size: int = 10_000
    max_body_bytes: int = 10 * 1024 * 1024
    record_assignments: bool = True

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            msg = f"max_batch_size == {self.max_batch_size}, must be >= 1"
            raise ValueError(msg)
        if self.max_body_bytes < 1024:
            msg = f"max_body_bytes == {self.max_body_bytes}, must be >= 1024"
            raise ValueError(msg)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``SPLITLAB_DATABASE_URL``, ``SPLITLAB_MAX_BATCH_SIZE``, ``SPLITLAB_MAX_BODY_BYTES``
        and ``SPLITLAB_RECORD_ASSIGNMENTS`` (``0``/``false`` turns it off); unset means the default.

        Raises:
            ValueError: A variable is set to something that is not a valid value; the message names it.

        >>> Settings.from_env({"SPLITLAB_MAX_BATCH_SIZE": "500"}).max_batch_size
        500
        """  # noqa: D205
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if url := env.get(f"{_PREFIX}DATABASE_URL"):
            values["database_url"] = url
        for name in ("max_batch_size", "max_body_bytes"):
            variable = f"{_PREFIX}{name.upper()}"
            if (text := env.get(variable)) is not None:
                try:
                    values[name] = int(text)
                except ValueError:
                    msg = f"{variable} == {text!r}, must be an integer"
                    raise ValueError(msg) from None
        variable = f"{_PREFIX}RECORD_ASSIGNMENTS"
        if (text := env.get(variable)) is not None:
            flag = text.strip().lower()
            if flag not in ("1", "true", "yes", "0", "false", "no"):
                msg = f"{variable} == {text!r}, must be true or false"
                raise ValueError(msg)
            values["record_assignments"] = flag in ("1", "true", "yes")
        return cls(**values)  # type: ignore[arg-type]
