"""``cdc dump-wal PATH [--values]`` is dispatched without click (start-up time): it must behave
exactly like the click command -- same stdout, stderr and exit code -- and every other form
(help, other options, usage errors, options from the environment) must still go through click.

Each case runs ``python -m cdc ARGS`` (the entry point, with the plain dispatch) and the click
group directly (``cdc.cli.main.main``) as real processes and compares them.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.decoders.conftest import batch, varstr, write_log
from tests.decoders.test_dumpwal_fast import MODES

from .conftest import REPO

CLICK = "import sys; from cdc.cli.main import main; main(sys.argv[1:])"


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_") and k != "_CDC_COMPLETE"}
    env.update(extra or {})
    return env


def _run(cmd: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    p = subprocess.run(cmd, capture_output=True, env=env, timeout=60, cwd=str(REPO))
    return p.returncode, p.stdout, p.stderr


def run_both(args: list[str], extra_env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    env = _env(extra_env)
    entry = _run([sys.executable, "-m", "cdc", *args], env)
    click = _run([sys.executable, "-c", CLICK, *args], env)
    assert entry == click, (args, entry[0], click[0], entry[2][-300:], click[2][-300:])
    return entry


@pytest.fixture
def wals(tmp_path):
    def put(k: bytes, v: bytes) -> bytes:
        return b"\x01" + varstr(k) + varstr(v)

    good = tmp_path / "000012.log"
    good.write_bytes(write_log([batch(1 + i, 1, put(b"k%d" % i, b"v" * i)) for i in range(50)] + [batch(60, 3, put(b"a", b"1") * 3)]))
    bad = tmp_path / "000013.log"
    data = bytearray(good.read_bytes())
    data[500] ^= 1
    bad.write_bytes(bytes(data))
    empty = tmp_path / "empty"
    empty.mkdir()
    return {"good": str(good), "bad": str(bad), "empty": str(empty), "missing": str(tmp_path / "nothing")}


def test_plain_forms_behave_as_the_click_command(wals):
    code, out, err = run_both(["dump-wal", wals["good"]])
    assert code == 0 and out.count(b"\n") == 53 and err == b""
    assert run_both(["dump-wal", wals["good"], "--values"])[1].count(b'"value"') == 53
    assert run_both(["dump-wal", "--values", wals["good"], "--values"])[0] == 0
    code, out, err = run_both(["dump-wal", wals["bad"]])
    assert code == 1 and err.startswith(b"cdc: 000013.log @0x")
    assert run_both(["dump-wal", wals["missing"]])[0] == 2
    assert run_both(["dump-wal", wals["empty"]])[0] != 0


@pytest.mark.parametrize(
    "args",
    [
        ["dump-wal"],
        ["dump-wal", "--help"],
        ["dump-wal", "-h"],
        ["dump-wal", "GOOD", "GOOD"],
        ["dump-wal", "GOOD", "--bogus"],
        ["dump-wal", "--values"],
        ["dump-wal", "GOOD", "--db", "EMPTY"],
        ["dump-wal", "GOOD", "--db=EMPTY"],
        ["dump-wal", "-"],
        ["dump-wal", ""],
        ["dump-wal", "--", "GOOD"],
        ["dump-wal", "GOOD", "--values=1"],
        ["dump-wa", "GOOD"],
    ],
)
def test_other_forms_go_through_click(wals, args):
    args = [wals["good"] if a == "GOOD" else wals["empty"] if a == "EMPTY" else a for a in args]
    run_both(args)


@pytest.mark.parametrize("env", [{"CDC_VALUES": "1"}, {"CDC_VALUES": "0"}, {"CDC_DB": "/nonexistent"}])
def test_options_from_the_environment(wals, env):
    run_both(["dump-wal", wals["good"]], env)


def test_plain_dump_wal_imports_neither_click_nor_msgspec(wals):
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write(' '.join(m for m in ('click', 'msgspec', 'cdc.cli.main') if m in sys.modules)))\n"
        "from cdc.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    env = _env()
    code, out, err = _run([sys.executable, "-c", probe, "dump-wal", wals["good"]], env)
    assert code == 0 and out.count(b"\n") == 53
    if MODES[-1] == "c":
        assert err == b""  # none of them was imported (every record rendered by the C renderer)
    else:
        assert err == b"msgspec"  # the Python path formats the 3-record batch with msgspec
    code, out, err = _run([sys.executable, "-c", probe, "dump-wal", wals["good"], "--db", wals["empty"]], env)
    assert b"click" in err and b"cdc.cli.main" in err  # the other forms: the click group


def test_broken_install_is_one_line_both_ways(wals, tmp_path):
    """A dependency that cannot be imported: the plain dispatch hands over to click's path,
    which prints its one line (no traceback)."""
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "crc32c.py").write_text("raise ImportError('crc32c is not installed')\n")
    path = os.pathsep.join([str(stub), os.environ.get("PYTHONPATH", str(REPO))])
    code, out, err = run_both(["dump-wal", wals["good"]], {"PYTHONPATH": path})
    assert code == 1 and b"Traceback" not in err and err.count(b"\n") == 1 and b"crc32c is not installed" in err
