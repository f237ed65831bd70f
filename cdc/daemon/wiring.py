"""Wiring that the capture node (``app``) and the edge (``edge``) share: the journal from the
config, the server's start and close, a component that must not take the process down, and the
signal handling of ``cdc serve`` / ``cdc edge``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from cdc.delivery.auth import Authenticator
from cdc.delivery.health import Health
from cdc.delivery.hub import Hub
from cdc.delivery.metrics import Metrics
from cdc.errors import StartupError
from cdc.journal.lmdb_journal import Journal
from cdc.model.config import Config
from cdc.server import Server

log = logging.getLogger("cdc.app")


class NodeContext:
    """The parts every node's context holds; ``AppContext`` and the edge's context add theirs."""

    def __init__(self, config: Config, journal: Journal, health: Health, metrics: Metrics, stop: asyncio.Event, hub: Hub, auth: Authenticator) -> None:
        self.config = config
        self.journal = journal
        self.health = health
        self.metrics = metrics
        self.stop = stop
        self.hub = hub
        self.auth = auth
        self.server: Server | None = None
        self.port = 0


class Runnable(Protocol):
    """What :func:`run_until_signal` runs: ``App`` and ``EdgeApp``."""

    stop: asyncio.Event

    def run(self, started: asyncio.Event | None = None) -> Awaitable[None]: ...


def open_journal(cfg: Config, name: str, *, sync: bool) -> Journal:
    """The LMDB journal ``<state-dir>/<name>`` with the config's map size and retention."""
    return Journal(
        os.path.join(cfg.state_dir, name),
        map_size=cfg.journal_map_size,
        retention_count=cfg.retention_count,
        retention_bytes=cfg.retention_bytes,
        retention_age_s=cfg.retention_age_s,
        sync=sync,
    )


async def start_server(server: Server, cfg: Config) -> None:
    """Bind the server; the environment refusing (port in use, address not available) is a
    :class:`StartupError` (exit 3), not a configuration error."""
    try:
        await server.start()
    except OSError as exc:
        raise StartupError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None


async def close_server(server: Server | None) -> None:
    """Close every WebSocket connection left (bounded); safe after a partial start-up."""
    if server is not None and server.ws is not None:
        server.ws.close(close_connections=True)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await server.ws.wait_closed()


async def run_guarded(name: str, run: Awaitable[None], health: Health) -> None:
    """Await a component's ``run``: its bug must not take the process down; readiness
    ``component:<name>`` says it stopped."""
    try:
        await run
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("component %s failed", name)
        health.set("readiness", f"component:{name}", False, f"{name} stopped: {type(exc).__name__}")


async def run_until_signal(app: Runnable, started: asyncio.Event | None = None) -> None:
    """Run ``app`` until SIGTERM/SIGINT (or ``app.stop``): the first signal sets ``app.stop``
    (ordered shutdown), a second cancels."""
    loop = asyncio.get_running_loop()
    signals_seen = 0
    main_task = asyncio.current_task()

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            app.stop.set()
        elif main_task is not None:
            main_task.cancel()

    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - not main thread
            pass
    try:
        await app.run(started)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def exit_code_of(main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """``asyncio.run(main())`` as a process exit code: 0 clean stop, 1 cancelled by a second
    signal. A :class:`CdcError` propagates (the CLI prints it with its exit code)."""
    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # pragma: no cover
        return 0
    except asyncio.CancelledError:  # second signal
        return 1
    return 0
