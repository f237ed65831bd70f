"""Capture's health: conditions on transitions, timed conditions, catch-up, lag, metrics.

``HealthMixin`` (part of :class:`cdc.capture.component.WalCapture`) owns ``_conds`` /
``_cond_reasons`` (last reported state per condition), the hold timers ``_gap_until``,
``_reset_until``, ``_corrupt_until``, ``caught_up`` / ``idle_at`` / ``_startup_target``
(startup probe ``capture``) and the lag figures.

Invariant: ``ctx.health`` hears about a condition only when it changes (or its reason does);
a timed condition (``capture_gap``, ``capture_reset``, ``capture_decode``) clears by itself
after its hold; health and metrics are best effort: their failures never stop capture.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("cdc.capture")

__all__ = ["HealthMixin", "short_error"]


def short_error(exc: BaseException) -> str:
    """An exception as one line of at most 200 characters."""
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."


class HealthMixin:
    """Conditions, timers, metrics (see module docstring)."""

    def _timer_deadline(self, now: float) -> float:
        """Seconds until a timed health condition must be re-evaluated."""
        t = 3600.0
        for until in (self._gap_until, self._corrupt_until, self._reset_until):
            if until > now:
                t = min(t, until - now + 0.01)
        if self._corrupt_key is not None:
            t = min(t, self.corrupt_retry_s / 4)
        return t

    def _timers(self, now: float) -> None:
        if self._reset_until and now >= self._reset_until:
            self._reset_until = 0.0
            self._set_cond("readiness", "capture_reset", True, "")
        if self._gap_until and now >= self._gap_until:
            self._gap_until = 0.0
            self._set_cond("readiness", "capture_gap", True, "")
        if self._corrupt_until and now >= self._corrupt_until and self._corrupt_key is None:
            self._corrupt_until = 0.0
            self._set_cond("readiness", "capture_decode", True, "")

    def _check_startup_target(self) -> None:
        """Initial catch-up = the WAL bytes present at start; done once read past them."""
        if self.caught_up or self._startup_target is None or self.cur is None or self.reader is None:
            return
        number, size = self._startup_target
        if self.cur.number > number or (self.cur.number == number and self.reader.offset >= size):
            self._mark_caught_up()

    def _mark_caught_up(self) -> None:
        self.idle_at = time.monotonic()  # capture_lag_ms in stats frames counts from here
        if not self.caught_up:
            self.caught_up = True
            log.info("capture caught up (last seq %d)", self.last_seq)
            self._set_cond("startup", "capture", True, "")

    def _beat(self) -> None:
        if self._ctx is not None:
            self._ctx.health.beat("capture")

    def _set_cond(self, probe: str, name: str, ok: bool, reason: str) -> None:
        """Report a health condition to ``ctx.health`` on transitions (and reason changes) only."""
        key = (probe, name)
        prev = self._conds.get(key)
        if ok and (prev is None or prev) and probe != "startup":
            self._conds[key] = True
            return
        if prev == ok and self._cond_reasons.get(key) == reason:
            return
        self._conds[key] = ok
        self._cond_reasons[key] = reason
        if self._ctx is not None:
            self._ctx.health.set(probe, name, ok=ok, reason=reason)

    def _gap(self, a: int, b: int, reason: str) -> None:
        self.gaps += 1
        self.gap_seqs += b - a + 1
        log.warning("%s", reason)
        self._set_cond("readiness", "capture_gap", False, reason)
        self._gap_until = time.monotonic() + self.gap_hold_s
        self._count("capture_gaps", 1)

    def _count(self, name: str, n: int) -> None:
        """Add ``n`` to counter ``name`` of ``ctx.metrics`` (when the daemon has metrics)."""
        if self._metrics is not None:
            self._metrics.inc(name, n)

    def _export_counters(self, n_events: int) -> None:
        self._count("events_captured", n_events)

    def _export(self) -> None:
        lag = 0
        try:
            if self.cur is not None:
                lag = max(0, self.cur.size() - (self.reader.offset if self.reader else self.pos))
                for t in self.tails.values():
                    if t.number > self.cur.number:
                        lag += t.size()
        except OSError:
            pass
        self.lag_bytes = lag
        limit = self._ctx.config.readiness_max_lag_bytes
        if lag > limit:
            self._set_cond("readiness", "capture_lag", False, f"capture is {lag} bytes behind the WAL (limit {limit})")
        elif self._conds.get(("readiness", "capture_lag")) is False:
            self._set_cond("readiness", "capture_lag", True, "")
        m = self._metrics
        if m is not None:
            m.set("capture_lag_bytes", lag)
            m.set("capture_lag_seq", self.lag_seq)
            m.set("capture_last_seq", self.last_seq)
