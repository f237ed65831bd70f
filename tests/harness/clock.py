"""A manual clock for the objects that take one (``Health.clock``, ``Server.clock``): time moves
only when the test says so, so expiry and liveness tests neither sleep nor race the machine's load."""

from __future__ import annotations

import time


class ManualClock:
    """``clock()`` returns ``start`` plus everything :meth:`advance` added."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
