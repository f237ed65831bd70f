"""The process's resident memory, for leak checks (Linux ``/proc``)."""

from __future__ import annotations

import os

__all__ = ["HAS_PROC", "rss_kb"]

HAS_PROC = os.path.exists("/proc/self/status")


def rss_kb() -> int:
    """VmRSS of this process in KiB (0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
