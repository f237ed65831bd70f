"""``cdc demo``: the whole pipeline on a throw-away RocksDB that a built-in writer keeps changing.

What runs:
- a temporary directory holding ``db/`` (RocksDB via rocksdict, column families ``default``,
  ``users``, ``orders``), ``checkpoints/`` (snapshots), ``state/`` (the journal) and a
  generated JWT secret (mode 0600);
- :class:`DemoWriter`, a thread writing at a human pace: single puts and deletes, atomic
  WriteBatches across column families, range deletes, periodic flushes, compactions and
  checkpoints, and ``sync_event``s posted to ``/publish`` with the admin token; every
  ``bulk_every_s`` a bulk load (``bulk_keys`` puts into the ``archive`` column family through the
  WAL: a write without it could not be captured and would show as a capture_gap) and a
  ``compact_range`` of it that runs for
  a second or more (zstd level 14), on a second thread, so the dashboard shows ``running``
  progress. (The writer cannot mark its batches with a ``cdc-origin:`` LogData blob: rocksdict
  has no ``PutLogData``.)
- the daemon (``cdc.app.run_app``) with that secret; once it listens, the dashboard URL is
  printed with an admin token in the fragment (``http://127.0.0.1:8765/#token=...``).

Invariants: Ctrl-C (or SIGTERM) stops the daemon gracefully, then the writer, then removes the
temporary directory (unless ``--keep``); the token is printed once, to stdout, and never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

from cdc.model.config import Config

__all__ = ["DemoWriter", "run_demo"]

log = logging.getLogger("cdc.demo")

_NAMES = ["ada", "alan", "grace", "edsger", "barbara", "ken", "dennis", "margaret", "linus", "guido", "radia", "leslie"]
_CITIES = ["Oslo", "Lyon", "Kyoto", "Lima", "Perth", "Turin", "Quito", "Accra"]


class DemoWriter(threading.Thread):
    """Keeps a RocksDB changing at ``rate`` operations per second until :meth:`stop`.

    The DB stays open for the writer's whole life, so its WAL files stay on disk for cdc to tail
    (rocksdict deletes the WAL on close). All RocksDB calls happen on this thread.
    """

    def __init__(
        self,
        db_path: str,
        *,
        rate: float = 2.0,
        checkpoints_dir: str | None = None,
        publish_url: str | None = None,
        admin_token: str | None = None,
        flush_every_s: float = 20.0,
        compact_every_s: float = 45.0,
        checkpoint_every_s: float = 60.0,
        sync_every_s: float = 30.0,
        bulk_every_s: float = 90.0,
        bulk_keys: int = 200_000,
        seed: int | None = None,
    ) -> None:
        super().__init__(name="cdc-demo-writer", daemon=True)
        import rocksdict  # ImportError is handled by run_demo

        self._rd = rocksdict
        self.db_path = db_path
        self.rate = rate
        self.checkpoints_dir = checkpoints_dir
        self.publish_url = publish_url
        self.admin_token = admin_token
        self.flush_every_s = flush_every_s
        self.compact_every_s = compact_every_s
        self.checkpoint_every_s = checkpoint_every_s
        self.sync_every_s = sync_every_s
        self.bulk_every_s = bulk_every_s
        self.bulk_keys = bulk_keys
        self.bulks = 0
        self._bulk_thread: threading.Thread | None = None
        self.rng = random.Random(seed)
        self._stop_event = threading.Event()
        self.ops = 0
        self.error: BaseException | None = None
        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.create_missing_column_families(True)
        opts.set_write_buffer_size(256 << 10)  # small memtables: automatic flushes happen too
        # archive obsolete WALs (WAL_ttl_seconds / WAL_size_limit_MB > 0) instead of deleting them:
        # changes flushed while cdc is down are then still read after a restart, not a capture_gap
        opts.set_wal_ttl_seconds(3600)
        opts.set_wal_size_limit_mb(64)
        cfs = {name: rocksdict.Options(raw_mode=True) for name in ("users", "orders")}
        archive = rocksdict.Options(raw_mode=True)
        archive.set_compression_type(rocksdict.DBCompressionType.zstd())
        archive.set_compression_options(-14, 14, 0, 0)  # slow enough that compactions take seconds
        archive.set_target_file_size_base(4 << 20)  # several outputs: progress moves
        self.db = rocksdict.Rdict(db_path, opts, column_families={**cfs, "archive": archive})
        self.cf = {name: self.db.get_column_family_handle(name) for name in cfs}
        self.cf_db = {name: self.db.get_column_family(name) for name in cfs}
        self.archive = self.db.get_column_family("archive")
        self.archive_h = self.db.get_column_family_handle("archive")
        self.sessions: list[bytes] = []
        self.order_no = 0
        self.checkpoint_no = 0

    # ------------------------------------------------------------------ operations

    def _user(self) -> bytes:
        return f"user:{self.rng.choice(_NAMES)}".encode()

    def _json(self, obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    def step(self) -> str:
        """Do one operation; returns its name (for tests)."""
        r = self.rng.random()
        now = int(time.time() * 1000)
        if r < 0.35:
            key = self._user()
            self.cf_db["users"].put(
                key,
                self._json({"name": key[5:].decode(), "city": self.rng.choice(_CITIES), "seen": now}),
            )
            return "put"
        if r < 0.55:
            sid = f"session:{secrets.token_hex(4)}".encode()
            self.db.put(sid, self._json({"user": self._user().decode(), "started": now}))
            self.sessions.append(sid)
            return "put"
        if r < 0.70 and self.sessions:
            self.db.delete(self.sessions.pop(0))
            return "delete"
        if r < 0.90:
            # one atomic WriteBatch across column families: an order and the user's last order
            self.order_no += 1
            user = self._user()
            wb = self._rd.WriteBatch(raw_mode=True)
            order = f"order:{self.order_no:06d}".encode()
            wb.put(order, self._json({"user": user.decode(), "items": self.rng.randint(1, 5), "at": now}), self.cf["orders"])
            wb.put(user + b":last_order", order, self.cf["users"])
            wb.put(b"stats:orders", str(self.order_no).encode())
            self.db.write(wb)
            return "batch"
        if r < 0.97 and self.order_no > 20:
            # archive old orders with one range delete
            hi = self.order_no - 10
            lo = max(1, hi - 10)
            self.cf_db["orders"].delete_range(f"order:{lo:06d}".encode(), f"order:{hi:06d}".encode())
            return "delete_range"
        self.db.put(b"heartbeat:writer", str(now).encode())
        return "put"

    def flush(self) -> None:
        self.db.flush(True)
        for cf in self.cf_db.values():
            cf.flush(True)

    def compact(self) -> None:
        self.cf_db[self.rng.choice(list(self.cf_db))].compact_range(None, None)

    def bulk(self) -> None:
        """A bulk load into ``archive`` (through the WAL, in batches of 1,000: a write without the
        WAL never reaches a change feed and would be reported as a capture_gap), then a compaction
        of it that runs for seconds. The key space is reused: the store stays small."""
        rng = random.Random(self.bulks)
        pool = [os.urandom(60) + b"x" * 140 for _ in range(4096)]
        n = self.bulk_keys
        for start in range(0, n, 1000):
            if self._stop_event.is_set():
                return
            wb = self._rd.WriteBatch(raw_mode=True)
            base = rng.randrange(1 << 20)
            for i in range(min(1000, n - start)):
                wb.put(b"bulk:%06d" % ((base + i * 7919) % n), pool[(base + i) & 4095], self.archive_h)
            self.db.write(wb)
        if not self._stop_event.is_set():
            self.archive.compact_range(None, None)
        self.bulks += 1

    def _start_bulk(self) -> None:
        if self._bulk_thread is not None and self._bulk_thread.is_alive():
            return

        def run() -> None:
            try:
                self.bulk()
            except Exception as exc:  # noqa: BLE001 - a demo: log and carry on
                log.warning("demo bulk load failed: %s", exc)

        self._bulk_thread = threading.Thread(target=run, name="cdc-demo-bulk", daemon=True)
        self._bulk_thread.start()

    def checkpoint(self) -> None:
        if not self.checkpoints_dir:
            return
        self.checkpoint_no += 1
        path = os.path.join(self.checkpoints_dir, f"checkpoint-{self.checkpoint_no:04d}")
        self._rd.Checkpoint(self.db).create_checkpoint(path)
        # keep the two newest: older ones are deleted (snapshot_event "deleted")
        old = os.path.join(self.checkpoints_dir, f"checkpoint-{self.checkpoint_no - 2:04d}")
        if os.path.isdir(old):
            shutil.rmtree(old, ignore_errors=True)

    def publish_sync(self, status: str, details: dict[str, Any]) -> None:
        if not (self.publish_url and self.admin_token):
            return
        body = json.dumps({"type": "sync_event", "status": status, "details": details}).encode()
        req = urllib.request.Request(
            self.publish_url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.admin_token}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                resp.read()
        except OSError as exc:  # the daemon may be starting or stopping: not fatal for a demo
            log.debug("demo publish failed: %s", type(exc).__name__)

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        period = 1.0 / self.rate
        start = time.monotonic()
        next_flush = start + self.flush_every_s
        next_compact = start + self.compact_every_s
        next_checkpoint = start + min(10.0, self.checkpoint_every_s)
        next_sync = start + min(15.0, self.sync_every_s)
        next_bulk = start + min(20.0, self.bulk_every_s)
        try:
            while not self._stop_event.wait(period * (0.5 + self.rng.random())):
                self.step()
                self.ops += 1
                now = time.monotonic()
                if now >= next_flush:
                    self.flush()
                    next_flush = now + self.flush_every_s
                if now >= next_compact:
                    self.compact()
                    next_compact = now + self.compact_every_s
                if now >= next_checkpoint:
                    self.checkpoint()
                    next_checkpoint = now + self.checkpoint_every_s
                if self.bulk_keys and now >= next_bulk:
                    self._start_bulk()
                    next_bulk = now + self.bulk_every_s
                if now >= next_sync:
                    peer = self.rng.choice(["replica-eu", "replica-us", "backup-site"])
                    self.publish_sync("started", {"peer": peer})
                    status = "conflict" if self.rng.random() < 0.2 else "completed"
                    self.publish_sync(status, {"peer": peer, "keys": self.rng.randint(1, 200)})
                    next_sync = now + self.sync_every_s
        except BaseException as exc:  # reported by run_demo; the daemon keeps running
            self.error = exc
            log.error("demo writer stopped: %s", exc)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and close the DB (in this order; safe to call twice)."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)
        if self._bulk_thread is not None and self._bulk_thread.is_alive():
            self._bulk_thread.join(timeout)
        try:
            self.db.close()
        except Exception:  # already closed
            pass


def _banner(url: str, tmp: str, keep: bool) -> str:
    lines = [
        "",
        "cdc demo is running.",
        f"  dashboard:  {url}",
        f"  store:      {tmp}/db   (a built-in writer keeps changing it)",
        "  try:        cdc tail " + url.split("#", 1)[0].rstrip("/") + " --token-file " + f"{tmp}/admin-token --format pretty",
        "  stop:       Ctrl-C" + ("" if keep else " (the temporary directory is removed)"),
        "",
    ]
    return "\n".join(lines)


def run_demo(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    parent: str | None = None,
    rate: float = 2.0,
    keep: bool = False,
    log_level: str = "info",
    intervals: dict[str, float] | None = None,
    ready: threading.Event | None = None,
    info: dict[str, Any] | None = None,
    allow_origin: tuple[str, ...] = (),
) -> int:
    """Run the demo until interrupted; returns the exit code.

    ``intervals`` may set ``flush_every_s``, ``compact_every_s``, ``checkpoint_every_s`` and
    ``sync_every_s``, ``bulk_every_s`` and ``bulk_keys`` of the writer. ``allow_origin``: as
    ``serve --allow-origin`` (a cross-origin app, e.g. an Angular dev server, may connect and poll). ``ready``/``info`` are for tests: ``info`` receives ``url``, ``port``, ``token``, ``dir``.
    """
    from cdc.errors import UserError
    from cdc.daemon.logs import setup_logging
    from cdc.daemon.preflight import check_port

    try:
        import rocksdict  # noqa: F401
    except ImportError:
        raise UserError("cdc demo needs rocksdict: pip install 'cdc[demo]'", 2) from None
    try:
        from cdc.daemon.app import App, run_app
    except ImportError as exc:  # pragma: no cover - only while the daemon is being written
        raise UserError(f"the daemon is not available in this build ({exc})", 1) from None
    from cdc.cli.main import mint

    try:
        check_port(host, port)
    except Exception as exc:
        raise UserError(f"{exc} (choose another with: cdc demo --port N, or --port 0 for any)", 3) from None
    if parent:
        os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="cdc-demo-", dir=parent)
    writer: DemoWriter | None = None
    try:
        setup_logging("text", log_level)
        secret_path = os.path.join(tmp, "jwt-secret")
        secret = secrets.token_urlsafe(32)
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
        token = mint(secret, subject="cdc-demo", ttl=7 * 24 * 3600, admin=True, values=True)
        token_path = os.path.join(tmp, "admin-token")
        fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        checkpoints = os.path.join(tmp, "checkpoints")
        os.makedirs(checkpoints)
        writer = DemoWriter(
            os.path.join(tmp, "db"), rate=rate, checkpoints_dir=checkpoints, admin_token=token, **(intervals or {})
        )
        # a first write so the store has a live WAL before the daemon starts
        writer.db.put(b"demo:started", str(int(time.time() * 1000)).encode())
        config = Config(
            db=os.path.join(tmp, "db"),
            snapshots_dir=checkpoints,
            state_dir=os.path.join(tmp, "state"),
            host=host,
            port=port,
            jwt_secret_file=secret_path,
            log_level=log_level,
            allow_origin=tuple(allow_origin),
        )
        app = App(config)

        async def main() -> None:
            started = asyncio.Event()
            task = asyncio.create_task(run_app(config, started=started, app=app))
            waiter = asyncio.create_task(started.wait())
            done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                waiter.cancel()
                await task  # raises the start-up error
                return
            bound = (app.ctx.port if app.ctx is not None else 0) or port
            shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            base = f"http://{shown}:{bound}"
            url = f"{base}/#token={token}"
            assert writer is not None
            writer.publish_url = f"{base}/publish"
            writer.start()
            print(_banner(url, tmp, keep), flush=True)
            if info is not None:
                info.update(url=url, base=base, port=bound, token=token, dir=tmp)
            if ready is not None:
                ready.set()
            await task

        try:
            asyncio.run(main())
        except (KeyboardInterrupt, asyncio.CancelledError):  # a second Ctrl-C: stop right away
            return 130
        return 0
    finally:
        if writer is not None:
            writer.stop()
        if keep:
            print(f"cdc demo: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
