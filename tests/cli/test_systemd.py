"""The unit file: `systemd-analyze verify` clean and `security` exposure below 2.0."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "cdc.service"
EDGE_UNIT = UNIT.with_name("cdc-edge.service")
ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)")


def _exec_start_target() -> str:
    """An executable that exists here, standing in for /usr/local/bin/cdc when that is absent."""
    if os.access("/usr/local/bin/cdc", os.X_OK):
        return "/usr/local/bin/cdc"
    entry = Path(sys.executable).with_name("cdc")
    return str(entry) if os.access(entry, os.X_OK) else sys.executable


def test_verify_clean(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/cdc serve" in text
    # verify checks that ExecStart's binary exists; point it at the installed entry point
    unit = tmp_path / "cdc.service"
    unit.write_text(text.replace("ExecStart=/usr/local/bin/cdc", f"ExecStart={_exec_start_target()}"))
    p = subprocess.run([ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    problems = [ln for ln in p.stderr.splitlines() if "cdc.service" in ln]
    assert problems == [], p.stderr


def test_security_exposure_below_2() -> None:
    p = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    m = re.search(r"Overall exposure level for cdc\.service:\s*([0-9.]+)", p.stdout + p.stderr)
    assert m, p.stdout + p.stderr
    assert float(m.group(1)) < 2.0, p.stdout


def test_unit_has_the_operational_settings() -> None:
    text = UNIT.read_text()
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "StateDirectory=cdc",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "EnvironmentFile=-/etc/cdc/cdc.env",
        "LimitNOFILE=65536",  # many subscribers / half-open connections must not starve capture of fds
    ]:
        assert line in text, line


def test_edge_unit_verify_and_exposure(tmp_path: Path) -> None:
    """systemd/cdc-edge.service: as hardened as cdc.service (same checks)."""
    text = EDGE_UNIT.read_text()
    assert "ExecStart=/usr/local/bin/cdc edge" in text
    for line in ["Type=notify", "WatchdogSec=", "RestartPreventExitStatus=2", "StateDirectory=cdc-edge", "ProtectSystem=strict", "NoNewPrivileges=yes", "EnvironmentFile=-/etc/cdc/cdc-edge.env"]:
        assert line in text, line
    unit = tmp_path / "cdc-edge.service"
    unit.write_text(text.replace("ExecStart=/usr/local/bin/cdc", f"ExecStart={_exec_start_target()}"))
    p = subprocess.run([ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert [ln for ln in p.stderr.splitlines() if "cdc-edge.service" in ln] == [], p.stderr
    p = subprocess.run([ANALYZE, "security", "--offline=yes", "--no-pager", str(EDGE_UNIT)], capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for cdc-edge\.service:\s*([0-9.]+)", p.stdout + p.stderr)
    assert m, p.stdout + p.stderr
    assert float(m.group(1)) < 2.0, p.stdout
