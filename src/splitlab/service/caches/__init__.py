"""The service's caches: entries trusted for ``cache_seconds`` in each worker (``timed``), Redis shared
by the workers (``shared``), and a bounded memory of recent entries (``recent``).
"""  # noqa: D205
