"""ConfigError: one exception for invalid arguments, named by the Python parameter; the CLI
prints the flag instead."""

import pickle

import pytest
import typer

from bioprune.cli.common import flag_name, flag_names, run_app
from bioprune.errors import BioPruneError, ConfigError


def test_config_error_is_a_user_error_and_a_value_error():
    exc = ConfigError("max_tokens", "must be positive, got 0")
    assert isinstance(exc, BioPruneError) and isinstance(exc, ValueError)
    assert str(exc) == "max_tokens: must be positive, got 0"
    assert (exc.param, exc.reason, exc.flag) == ("max_tokens", "must be positive, got 0", None)


def test_config_error_survives_pickling():
    back = pickle.loads(pickle.dumps(ConfigError("beta", "too big", flag="--b")))
    assert (back.param, back.reason, back.flag, str(back)) == (
        "beta",
        "too big",
        "--b",
        "beta: too big",
    )


def test_flag_name():
    assert flag_name("max_tokens") == "--max-tokens"
    assert flag_name("beta") == "--beta"


def _app(overrides=None) -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command()
    def go(n: int = 1) -> None:
        with flag_names(overrides or {}):
            raise ConfigError("max_tokens", f"must be positive, got {n}")

    @app.command()
    def other() -> None:  # a second command, so that "go" is a subcommand
        pass

    return app


@pytest.mark.parametrize(
    ("overrides", "flag"), [(None, "--max-tokens"), ({"max_tokens": "--tokens"}, "--tokens")]
)
def test_run_app_prints_the_flag_and_exits_2(monkeypatch, capsys, overrides, flag):
    monkeypatch.setattr("sys.argv", ["prog", "go", "--n", "0"])
    with pytest.raises(SystemExit) as exc:
        run_app(_app(overrides))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {flag}: must be positive, got 0"
