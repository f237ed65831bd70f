"""Shared fixtures (the helpers themselves live in :mod:`tests.harness`).

Fixtures:
- ``daemon_factory``: ``d = await daemon_factory(components=[], **config_overrides)`` starts an
  in-process :class:`tests.harness.daemon.InProcessDaemon` (stopped at teardown).
  ``components=None`` runs the real ones (WalCapture + ops watchers) against ``d.db``.
- ``daemon``: one in-process daemon without components (publish-driven events).
- ``daemon_proc_factory``: ``p = daemon_proc_factory(**config_overrides)`` starts
  ``python -m cdc.cli.serve_json CONFIG.json`` (:class:`tests.harness.daemon.DaemonProcess`) and
  waits until ``/health/startup`` answers 200; ``p.kill9()``, ``p.terminate()``, ``p.start()``.
- ``cxx_writer_exe`` / ``cxx_writer``: the C++ store writer of tests/cxx.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from tests.harness.daemon import DaemonProcess, InProcessDaemon


@pytest.fixture
async def daemon_factory(tmp_path: Any) -> AsyncIterator[Callable[..., Any]]:
    started: list[InProcessDaemon] = []
    n = 0

    async def make(components: list[Any] | None = (), **overrides: Any) -> InProcessDaemon:  # type: ignore[assignment]
        nonlocal n
        n += 1
        d = await InProcessDaemon.start(os.path.join(str(tmp_path), f"d{n}"), components, **overrides)
        started.append(d)
        return d

    yield make
    for d in started:
        if not d.task.done():
            await d.stop()


@pytest.fixture
async def daemon(daemon_factory: Callable[..., Any]) -> InProcessDaemon:
    return await daemon_factory()


@pytest.fixture
def daemon_proc_factory(tmp_path: Any) -> Iterator[Callable[..., DaemonProcess]]:
    procs: list[DaemonProcess] = []
    n = 0

    def make(**overrides: Any) -> DaemonProcess:
        nonlocal n
        n += 1
        tmp = os.path.join(str(tmp_path), f"p{n}")
        os.makedirs(tmp, exist_ok=True)
        p = DaemonProcess.from_config(tmp, **overrides).start()
        procs.append(p)
        return p

    yield make
    for p in procs:
        p.shutdown()


# --------------------------------------------------------------------------- C++ writers


@pytest.fixture(scope="session")
def cxx_writer_exe(request: Any, tmp_path_factory: Any) -> str:
    """The C++ RocksDB writer (tests/cxx), compiled once per session; skips when it cannot be built."""
    from tests.cxx import build

    cache = getattr(request.config, "cache", None)
    where = str(cache.mkdir("cdc-cxx")) if cache is not None else str(tmp_path_factory.mktemp("cdc-cxx"))
    return build(where)


@pytest.fixture
def cxx_writer(cxx_writer_exe: str, tmp_path: Any) -> Iterator[Callable[..., Any]]:
    """``w = cxx_writer(db_dir=None, policy="prepared", cfs=(), wal_ttl=0)`` -> tests.cxx.CxxWriter
    (killed at teardown). See tests/cxx/__init__.py for its command language."""
    from tests.cxx import CxxWriter

    writers: list[CxxWriter] = []

    def make(db_dir: str | None = None, **kw: Any) -> CxxWriter:
        w = CxxWriter(cxx_writer_exe, db_dir or str(tmp_path / "db"), **kw)
        writers.append(w)
        return w

    yield make
    for w in writers:
        w.kill()
