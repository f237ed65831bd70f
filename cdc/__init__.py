"""cdc: change data capture for RocksDB-family stores, served live to WebSocket subscribers.

Importing this package has no side effects.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
