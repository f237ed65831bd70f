"""The daemon's contexts satisfy the typed Protocols the components and the server are written
against (cdc/model/context.py, cdc/delivery/context.py): every member is there, with the right
kind (method or attribute), down through the member Protocols. A runtime stand-in for a type
checker: wiring by attribute probing is gone, so a missing member must fail here, not in a run."""

from __future__ import annotations

import asyncio
import inspect
import os
from typing import Any, Protocol, Union, get_args, get_origin, get_type_hints

from cdc.daemon.edge import EdgeHub, _EdgeContext
from cdc.delivery import context as dctx
from cdc.delivery.auth import Authenticator
from cdc.delivery.health import Health
from cdc.delivery.metrics import Metrics
from cdc.journal.lmdb_journal import Journal
from cdc.model import context as mctx
from cdc.model.config import Config


def _is_protocol(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, Protocol) and t is not Protocol  # type: ignore[arg-type]


def _members(proto: type) -> dict[str, Any]:
    """name -> annotation (attributes) or the function (methods, properties) of a Protocol."""
    out: dict[str, Any] = {}
    for base in reversed(proto.__mro__):
        if base in (object, Protocol) or not _is_protocol(base):
            continue
        hints = get_type_hints(base, vars(mctx) | vars(dctx))
        for name, value in vars(base).items():
            if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)):
                out[name] = ("method", value)
        for name in getattr(base, "__annotations__", {}):
            out[name] = ("attr", hints[name])
    return out


def check(obj: Any, proto: type, path: str = "ctx") -> None:
    for name, (what, spec) in _members(proto).items():
        assert hasattr(obj, name), f"{path} lacks {name!r} ({proto.__name__})"
        value = getattr(obj, name)
        if isinstance(spec, property):
            continue
        if what == "method":
            assert callable(value), f"{path}.{name} is not callable ({proto.__name__})"
            if inspect.iscoroutinefunction(spec):
                assert inspect.iscoroutinefunction(value), f"{path}.{name} must be async ({proto.__name__})"
            continue
        kinds = get_args(spec) if get_origin(spec) is Union or type(spec).__name__ == "UnionType" else (spec,)
        if value is None:
            assert type(None) in kinds, f"{path}.{name} is None ({proto.__name__})"
            continue
        for k in kinds:
            if _is_protocol(k):
                check(value, k, f"{path}.{name}")
                break


async def test_app_context_satisfies_every_protocol(daemon_factory: Any) -> None:
    d = await daemon_factory(components=None)
    ctx = d.ctx
    for proto in (mctx.Context, mctx.StatsSources, dctx.ServerContext, dctx.PublisherContext):
        check(ctx, proto)
    assert ctx.capture is not None and ctx.infolog is not None
    for comp in ctx.components:
        check(comp, mctx.Component, type(comp).__name__)
    check(ctx.capture, mctx.CaptureGauges, "capture")
    check(ctx.infolog, mctx.SstGauges, "infolog")


async def test_edge_context_satisfies_the_server_protocol(tmp_path: Any) -> None:
    cfg = Config(db="", state_dir=str(tmp_path), insecure_no_auth=True)
    journal = Journal(os.path.join(tmp_path, "mirror"), map_size=1 << 22, sync=False)
    try:
        ctx = _EdgeContext(cfg, journal, Health(None), Metrics(), asyncio.Event(), EdgeHub(journal), Authenticator(insecure_no_auth=True))
        from cdc.daemon.edge import EdgeSource, ForwardingBus

        ctx.bus = ForwardingBus(EdgeSource(cfg))
        check(ctx, dctx.ServerContext)
    finally:
        journal.close()


def test_the_check_fails_on_a_missing_member() -> None:
    class Half:
        config = Config(db="x")

    try:
        check(Half(), mctx.Context)
    except AssertionError as exc:
        assert "lacks" in str(exc)
    else:
        raise AssertionError("a context without its members passed")
