"""The test harness: one copy of everything the tests and benches share.

- :mod:`tests.harness.daemon`: the daemon in-process (:class:`InProcessDaemon`) and as a
  subprocess (:class:`DaemonProcess`), the test secret / tokens, a small store.
- :mod:`tests.harness.net`: ``free_port``, HTTP requests, WebSocket receive helpers.
- :mod:`tests.harness.writers`: the store writers (rocksdict/plyvel subprocess, origin-marking
  C++ writer, the tests/cxx driver).
- :mod:`tests.harness.clients`: one resuming subscriber (WebSocket or long-poll).
- :mod:`tests.harness.waiting`: bounded waits on a condition (no fixed sleeps).
- :mod:`tests.harness.clock`: a manual clock for the objects that take ``clock=``.

``tests`` is importable from the repository root (pytest's ``pythonpath = ["."]``); nothing edits
``sys.path``.
"""
