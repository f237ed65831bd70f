"""Fixtures for the ops tests (helpers live in opshelpers.py, the writer is tests/harness/ops_writer.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cdc.model.config import Config


@pytest.fixture
def ops_config(tmp_path: Any) -> Callable[..., Config]:
    """``ops_config(db, **fields)``: a Config for the ops components (state under tmp_path)."""

    def make(db: str, **kw: Any) -> Config:
        return Config(db=db, state_dir=str(tmp_path / "state"), insecure_no_auth=True, port=0, **kw)

    return make
