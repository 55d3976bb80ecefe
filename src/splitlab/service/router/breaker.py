"""A circuit breaker per routed variant: stop calling a model that keeps failing, try it again after a pause.

Closed, it lets every call through and counts consecutive failures; ``failures`` of them in a row
open it. Open, it refuses calls (the router falls back at once, without waiting for a timeout)
until ``pause_seconds`` have passed; then it is half-open: one trial call goes through while the
others are still refused. The trial's success closes it, its failure opens it for another pause.
The state is per worker (each worker learns on its own in a few requests), and shown in
``/metrics`` as ``splitlab_router_breaker_state`` (0 closed, 1 open, 2 half-open).

>>> clock = [0.0]
>>> breaker = CircuitBreaker(failures=2, pause_seconds=10, clock=lambda: clock[0])
>>> breaker.record(ok=False); breaker.record(ok=False); breaker.state
'open'
>>> breaker.allow()
False
>>> clock[0] = 10.0
>>> breaker.allow(), breaker.state, breaker.allow()
(True, 'half_open', False)
>>> breaker.record(ok=True); breaker.state
'closed'
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["STATE_VALUES", "CircuitBreaker"]

STATE_VALUES = {"closed": 0, "open": 1, "half_open": 2}
"""The breaker state as the number ``/metrics`` shows."""


class CircuitBreaker:
    """One variant's breaker (see the module docstring); used from the event loop only, so it takes no lock."""

    def __init__(self, *, failures: int, pause_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.pause_seconds = pause_seconds
        self._clock = clock
        self.state = "closed"
        self._consecutive = 0
        self._opened_at = 0.0
        self._trial_out = False
        self.transitions = 0
        """How many times the state changed (a test and the log can tell a flapping model)."""

    def allow(self) -> bool:
        """Whether a call may go through now; in half-open state, only one trial at a time."""
        if self.state == "closed":
            return True
        if self.state == "open":
            if self._clock() - self._opened_at < self.pause_seconds:
                return False
            self._move("half_open")
        if self._trial_out:
            return False
        self._trial_out = True
        return True

    def record(self, *, ok: bool) -> None:
        """The outcome of a call that :meth:`allow` let through."""
        if ok:
            self._consecutive = 0
            self._trial_out = False
            if self.state != "closed":
                self._move("closed")
            return
        self._consecutive += 1
        if self.state == "half_open" or self._consecutive >= self.failures:
            self._trial_out = False
            self._opened_at = self._clock()
            if self.state != "open":
                self._move("open")

    def _move(self, state: str) -> None:
        self.state = state
        self.transitions += 1
