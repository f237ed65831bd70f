"""The README stays true: the two commands on top, every option documented, the unit as described."""

from __future__ import annotations

from cdc.cli.main import cli
from cdc.model.config import OPTIONS, cli_name, env_name

from .conftest import REPO

README = (REPO / "README.md").read_text()


def test_two_commands_at_the_top() -> None:
    block = README.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[0].startswith("pip install -e '.[demo]' && cdc demo")
    assert block[1].startswith("pip install -e '.[test]' && python -m pytest -q")


def test_every_serve_option_is_in_the_reference() -> None:
    for name in OPTIONS:
        row = f"| `{cli_name(name)}` | `{env_name(name)}` | `{name.replace('_', '-')}` |"
        assert row in README, row


def test_every_command_is_documented() -> None:
    for name in cli.commands:
        assert f"`cdc {name}" in README, name


def test_ci_script_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "pip install -e '.[test]' && python -m pytest -q" in ci
