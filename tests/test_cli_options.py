"""Options generated from config dataclasses (bioprune.cli.options): each converted command's
flags, defaults, help text and --help output are exactly those of its hand-written version.

The snapshots in tests/data/cli_options/ were written from the commands before they were
converted; write one for a command about to be converted (from the unconverted code) with
``PYTHONPATH=src python -m tests.test_cli_options COMMAND``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest
import typer
from typer.testing import CliRunner

from bioprune.cli.options import describe_command, option, with_options
from bioprune.errors import ConfigError
from tests.hostile import assert_one_line_error

SNAPSHOTS = Path(__file__).parent / "data" / "cli_options"
ENV_PINS = Path(__file__).parent.parent / "requirements" / "env.txt"
#: The commands whose options come from a dataclass.
CONVERTED = (
    "select", "inspect", "info", "plan", "evaluate", "prepare", "report", "study",
    "pretrain", "adapt", "init", "export", "convert",
)  # fmt: skip


def command_facts(name: str) -> dict:
    """What must not change: the options as data, and --help as rendered (200 columns)."""
    from bioprune.cli.main import app

    command = typer.main.get_command(app).commands[name]
    help_text = CliRunner().invoke(app, [name, "--help"], terminal_width=200).output
    return {"options": describe_command(command), "help": help_text.splitlines()}


@pytest.mark.parametrize("name", CONVERTED)
def test_converted_command_keeps_its_options_and_help(name):
    expected = json.loads((SNAPSHOTS / f"{name}.json").read_text())
    got = json.loads(json.dumps(command_facts(name)))  # tuples -> lists, as in the file
    if _renderers_as_pinned():  # the rendering itself is typer's and rich's
        assert got["options"] == expected["options"]
        assert got["help"] == expected["help"]
    else:  # older typer keeps an argument's help where describe_command does not look
        assert _without_argument_help(got["options"]) == _without_argument_help(expected["options"])


def _without_argument_help(options: list[dict]) -> list[dict]:
    return [{**o, "help": None} if o["kind"] == "argument" else o for o in options]


def _renderers_as_pinned() -> bool:
    """Whether typer, click and rich are the versions the snapshots were written with (the
    pinned environment): --help is compared as rendered only there; the options as data
    (flags, defaults, help texts) everywhere, e.g. at the lower bounds too."""
    from importlib.metadata import version

    pins = dict(
        line.strip().split("==", 1) for line in ENV_PINS.read_text().splitlines() if "==" in line
    )
    return all(version(name) == pins.get(name) for name in ("typer", "click", "rich"))


# -- the mechanism on a small command ---------------------------------------------------


@dataclass(frozen=True)
class Toy:
    """A config as a library module writes it: plain field metadata, one validate()."""

    corpus: Path = field(metadata={"argument": True, "help": "A corpus."})
    max_tokens: int = field(default=8192, metadata={"help": "Tokens per batch."})
    mode: str = field(default="a", metadata={"help": "a or b.", "choices": ("a", "b")})
    as_json: bool = field(default=False, metadata={"flag": "--json", "help": "JSON."})
    fast: bool = field(default=True, metadata={"flag": "--fast/--slow", "help": "Speed."})
    tags: Optional[list[str]] = field(default=None, metadata={"help": "Repeatable."})
    internal: int = field(default=3, metadata={"cli": False})
    plot: Path | None = field(default=None, metadata={"help": "PEP 604 optional."})

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ConfigError("max_tokens", f"must be at least 1, got {self.max_tokens}")
        if self.as_json and self.max_tokens == 7:
            raise ConfigError("as_json", "not with 7 tokens")


def toy_app(seen: list) -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command("toy")
    @with_options
    def toy(opts: Toy, verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
        """A toy command."""
        seen.append((opts, verbose))

    @app.command("other")
    def other() -> None:
        pass

    return app


def test_fields_become_options_with_their_defaults_and_help():
    from typer.main import get_command

    command = get_command(toy_app([])).commands["toy"]
    rows = {r["name"]: r for r in describe_command(command)}
    assert list(rows) == [
        "corpus", "max_tokens", "mode", "as_json", "fast", "tags", "plot", "verbose"
    ]  # fmt: skip
    assert rows["corpus"]["kind"] == "argument" and rows["corpus"]["required"]
    assert rows["max_tokens"]["opts"] == ["--max-tokens"] and rows["max_tokens"]["default"] == 8192
    assert rows["max_tokens"]["help"] == "Tokens per batch."
    assert rows["as_json"]["opts"] == ["--json"] and rows["as_json"]["is_flag"]
    assert rows["fast"]["secondary_opts"] == ["--slow"] and rows["fast"]["default"] is True
    assert rows["tags"]["multiple"]
    assert rows["verbose"]["opts"] == ["--verbose", "-v"]  # an ordinary typer parameter


def test_the_command_gets_the_dataclass(tmp_path):
    seen: list = []
    result = CliRunner().invoke(
        toy_app(seen),
        ["toy", str(tmp_path), "--max-tokens", "5", "--json", "--slow", "--tags", "x",
         "--tags", "y", "--plot", "p.png", "-v"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [(opts, verbose)] = seen
    assert opts == Toy(tmp_path, 5, "a", True, False, ["x", "y"], 3, Path("p.png")) and verbose


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from bioprune.cli.common import run_app

    monkeypatch.setattr(sys, "argv", ["prog", *args])
    try:
        run_app(toy_app([]))
    except SystemExit as exc:
        return int(exc.code or 0), capsys.readouterr().err
    return 0, capsys.readouterr().err


def test_validation_names_the_flag(monkeypatch, capsys, tmp_path):
    code, err = _run(monkeypatch, capsys, "toy", str(tmp_path), "--max-tokens", "0")
    assert_one_line_error(code, err, "--max-tokens: must be at least 1, got 0")
    # a field whose flag is not its dashed name: the flag, not --as-json
    code, err = _run(monkeypatch, capsys, "toy", str(tmp_path), "--max-tokens", "7", "--json")
    assert_one_line_error(code, err, "--json: not with 7 tokens")


def test_choices_are_checked_before_the_config_is_built(monkeypatch, capsys, tmp_path):
    code, err = _run(monkeypatch, capsys, "toy", str(tmp_path), "--mode", "c")
    assert_one_line_error(code, err, "--mode must be one of a, b, got 'c'")


@dataclass
class Typo:
    n: int = field(default=1, metadata={"hlep": "typo"})


@dataclass
class Twice:
    verbose: bool = option(False, help="x")


def test_mistakes_in_the_declaration_are_errors():
    def command(opts: Typo) -> None:
        pass

    with pytest.raises(TypeError, match="hlep"):
        with_options(command)

    def twice(opts: Twice, verbose: bool = False) -> None:
        pass

    with pytest.raises(TypeError, match="verbose"):
        with_options(twice)
    with pytest.raises(TypeError, match="default_factory"):
        option([], help="x")


if __name__ == "__main__":  # write the snapshots of the commands named
    for command_name in sys.argv[1:]:
        path = SNAPSHOTS / f"{command_name}.json"
        path.write_text(json.dumps(command_facts(command_name), indent=1) + "\n")
        print(f"wrote {path}")
