"""``cdc demo --allow-origin`` (a cross-origin app polls) and the demo's long compactions
(``running`` progress), plus the smaller serve fixes: one Cache-Control on /client.js and no
start-up WARNING."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import REPO, cdc_env, free_port


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdc", "demo", "--port", str(port), "--dir", str(tmp_path), "--log-level", "info", *extra],
        env=cdc_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO),
    )
    while True:
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise AssertionError(proc.stderr.read())
        if "dashboard:" in line:
            url = line.split("dashboard:", 1)[1].strip()
            base, token = url.split("/#token=")
            return proc, base, token


def _get(url: str, headers: dict[str, str], timeout: float = 40) -> tuple[int, dict[str, list[str]], bytes]:
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        hdrs: dict[str, list[str]] = {}
        for k, v in r.headers.items():
            hdrs.setdefault(k.lower(), []).append(v)
        return r.status, hdrs, r.read()


@pytest.mark.slow
def test_demo_allow_origin_long_compaction_and_headers(tmp_path: Path) -> None:
    proc, base, token = _start(tmp_path, "--allow-origin", "http://localhost:4200", "--bulk-every", "2", "--rate", "5")
    try:
        auth = {"Authorization": f"Bearer {token}"}
        status, hdrs, _ = _get(base + "/events?timeout=0", {**auth, "Origin": "http://localhost:4200"})
        assert status == 200 and hdrs["access-control-allow-origin"] == ["http://localhost:4200"]
        try:
            _get(base + "/events?timeout=0", {**auth, "Origin": "http://evil.example"})
            raise AssertionError("a foreign origin must be refused")
        except urllib.error.HTTPError as exc:
            assert exc.code == 403
        status, hdrs, _ = _get(base + "/client.js", {})
        assert hdrs["cache-control"] == ["no-cache"]  # one header, not two
        # the bulk load's compaction of the archive column family runs long enough for progress
        cursor = 0
        running: list[dict] = []
        deadline = time.monotonic() + 90
        while not running and time.monotonic() < deadline:
            _, _, body = _get(base + f"/events?since={cursor}&types=compaction_status&timeout=5", auth)
            page = json.loads(body)
            cursor = page["cursor"]
            running += [e for e in page["events"] if e["status"] == "running" and e["cf"] == "archive"]
        assert running, "no running progress from the demo's bulk compaction"
        assert 0 <= running[-1]["details"].get("progress", 0) <= 100  # percent
        # the bulk load goes through the WAL: captured, no gap (a write without the WAL would be one)
        _, _, body = _get(base + "/events?since=0&types=capture_gap&timeout=0", auth)
        assert json.loads(body)["events"] == []
        _, _, body = _get(base + "/events?since=0&types=key_change&cf=archive&timeout=0&limit=1", auth)
        assert json.loads(body)["events"], "bulk rows arrive as key_change events"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
    err = proc.stderr.read()
    assert "Traceback" not in err
    assert "WARNING" not in "\n".join(line for line in err.splitlines() if "startup" in line), err[-2000:]
    assert "startup unhealthy: not listening yet" in err  # still logged, at INFO
