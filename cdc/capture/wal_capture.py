"""Former home of capture (one 2k-line module); kept so that old import paths still work.

Everything lives in the modules of :mod:`cdc.capture` now (see its docstring); import from
``cdc.capture`` (or the owning module) in new code.
"""

from cdc.capture.checkpoint import (
    CHECKPOINT_NAME,
    IDENTITY_CHECKPOINT,
    PREPARED_CHECKPOINT_NAME,
    WalCheckpoint,
    decode_checkpoint,
    decode_prepared,
    encode_checkpoint,
    encode_prepared,
)
from cdc.capture.component import WalCapture

__all__ = [
    "WalCapture",
    "WalCheckpoint",
    "encode_checkpoint",
    "decode_checkpoint",
    "encode_prepared",
    "decode_prepared",
    "CHECKPOINT_NAME",
    "IDENTITY_CHECKPOINT",
    "PREPARED_CHECKPOINT_NAME",
]
