"""A journal commit that fails for an unexpected reason degrades readiness (and loses nothing
else): the one injected fault is an exception from the first ``Journal.append``."""

from __future__ import annotations

from typing import Any

import pytest

from cdc.model.events import SyncEvent
from tests.harness.net import http_request
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.integration


async def test_unexpected_commit_failure_is_a_readiness_condition(daemon):
    journal = daemon.ctx.journal
    real_append = journal.append
    calls = {"n": 0}

    def flaky_append(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected")
        return real_append(*args, **kw)

    journal.append = flaky_append  # type: ignore[method-assign]
    try:
        before = journal.latest_id
        await daemon.emit([SyncEvent(timestamp=1, status="started"), SyncEvent(timestamp=2, status="completed")])
        await wait_for(lambda: journal.latest_id >= before + 2, what="salvaged events")
        r = await http_request(daemon.port, "GET", "/health/ready")
        reason = r.json()["reason"]
        assert r.status == 503, reason
        assert "journal commit" in reason and "dropped" in reason, reason
    finally:
        journal.append = real_append  # type: ignore[method-assign]
