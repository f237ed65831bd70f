"""Health probes: named conditions per probe, transitions as ``health_change`` events.

Invariants:
- A probe (``liveness``, ``readiness``, ``startup``) is healthy when all its conditions are ok
  (no conditions = healthy). Its reason is the reason of the first failing condition.
- Every transition of a probe's status (healthy <-> unhealthy) is emitted exactly once as a
  ``health_change`` event through the ``emit`` callback (the bus), in order.
- Liveness is a watchdog: the event loop must keep running (a beat from the watchdog task
  itself measures its lag) and every component that called :meth:`Health.beat` must beat again
  within ``beat_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from cdc.model.events import HealthChange

__all__ = ["Health", "PROBES"]

PROBES = ("liveness", "readiness", "startup")

log = logging.getLogger("cdc.health")


class Health:
    """Probe state.

    Args:
        emit: called with a ``[HealthChange]`` list on each transition (bus.emit_nowait); may be
            attached later (conditions set before that are the initial state, not transitions).
        beat_timeout_s: a component beat older than this makes liveness unhealthy.
        loop_lag_s: an event-loop stall longer than this makes liveness unhealthy.
        clock: the monotonic clock the beats are stamped and aged with (tests inject one).
    """

    def __init__(
        self,
        emit: Callable[[list[HealthChange]], None] | None = None,
        *,
        beat_timeout_s: float = 30.0,
        loop_lag_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.emit = emit
        self.beat_timeout_s = beat_timeout_s
        self.loop_lag_s = loop_lag_s
        self._conds: dict[str, dict[str, tuple[bool, str]]] = {p: {} for p in PROBES}
        self._status: dict[str, bool] = dict.fromkeys(PROBES, True)
        self._beats: dict[str, float] = {}
        self._warnings: dict[str, dict[str, str]] = {p: {} for p in PROBES}
        self.transitions = 0

    def set(self, probe: str, name: str, ok: bool, reason: str = "") -> None:
        """Set one condition of a probe; emits ``health_change`` when the probe flips."""
        if probe not in self._conds:
            raise ValueError(f"unknown probe {probe!r}")
        self._conds[probe][name] = (bool(ok), "" if ok else (reason or name))
        healthy, why = self.status(probe)
        if healthy != self._status[probe]:
            self._status[probe] = healthy
            self.transitions += 1
            # The startup probe starts unhealthy ("not listening yet"): its state, not a fault.
            log.log(logging.INFO if healthy or probe == "startup" else logging.WARNING, "%s %s%s", probe,
                    "healthy" if healthy else "unhealthy", f": {why}" if why else "")
            if self.emit is not None:
                self.emit(
                    [
                        HealthChange(
                            timestamp=int(time.time() * 1000),
                            probe=probe,
                            status="healthy" if healthy else "unhealthy",
                            reason=why,
                        )
                    ]
                )

    def clear(self, probe: str, name: str) -> None:
        """Forget a condition (counts as ok)."""
        self._conds[probe].pop(name, None)
        self.set(probe, "_", True)
        self._conds[probe].pop("_", None)

    def status(self, probe: str) -> tuple[bool, str]:
        """(healthy, reason) of a probe from its current conditions."""
        for ok, reason in self._conds[probe].values():
            if not ok:
                return False, reason
        return True, ""

    def conditions(self, probe: str) -> dict[str, tuple[bool, str]]:
        return dict(self._conds[probe])

    def healthy(self, probe: str) -> bool:
        return self.status(probe)[0]

    def body(self, probe: str) -> dict[str, object]:
        """JSON body of ``/health/<probe>``."""
        healthy, reason = self.status(probe)
        failing = {n: r for n, (ok, r) in self._conds[probe].items() if not ok}
        out: dict[str, object] = {"status": "healthy" if healthy else "unhealthy", "reason": reason}
        if failing:
            out["failing"] = failing
        if self._warnings[probe]:
            out["warnings"] = dict(self._warnings[probe])
        return out

    def warn(self, probe: str, name: str, text: str | None) -> None:
        """A warning detail shown in the probe's body (``warnings``); it never fails the probe.
        ``text=None`` removes it."""
        if text:
            self._warnings[probe][name] = text
        else:
            self._warnings[probe].pop(name, None)

    # ------------------------------------------------------------------ liveness watchdog

    def beat(self, name: str) -> None:
        """A component made progress (components call this at least every few seconds)."""
        self._beats[name] = self.clock()

    def check_beats(self, now: float | None = None) -> None:
        """Update liveness from the beats (called by the watchdog)."""
        now = self.clock() if now is None else now
        for name, t in list(self._beats.items()):
            age = now - t
            ok = age <= self.beat_timeout_s
            self.set("liveness", f"beat:{name}", ok, f"{name} made no progress for {age:.0f} s")

    def forget_beat(self, name: str) -> None:
        self._beats.pop(name, None)
        self.clear("liveness", f"beat:{name}")

    async def watchdog(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        """Measure event-loop lag and component beats until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            t0 = loop.time()
            try:
                async with asyncio.timeout(interval_s):
                    await stop.wait()
                return
            except TimeoutError:
                pass
            lag = loop.time() - t0 - interval_s
            self.set("liveness", "event_loop", lag <= self.loop_lag_s, f"event loop stalled for {lag:.1f} s")
            self.check_beats()
