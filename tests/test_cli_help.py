"""Every command's --help works, and prepare runs end to end through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from bioprune import artifacts
from bioprune.cli.main import app

runner = CliRunner()
COMMANDS = sorted(typer.main.get_command(app).commands)


def test_root_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("prepare", "info"):
        assert name in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_exits_0(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout


def test_console_script_help_in_a_fresh_process():
    proc = subprocess.run(
        [sys.executable, "-m", "bioprune.cli.main", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "prepare" in proc.stdout


def test_prepare_help_explains_every_policy():
    text = runner.invoke(app, ["prepare", "--help"], terminal_width=200).stdout
    for word in ("--on-long", "crop", "--on-invalid", "replace", "--dedupe-ids", "--max-length",
                 "--column", "--id-column", "--format", "--overwrite", "empty"):  # fmt: skip
        assert word in text


def test_prepare_cli_writes_corpus_and_prints_counts(tmp_path):
    f = tmp_path / "a.fa"
    f.write_text(">a\nacgt\n>b\n\n>c\nACGUACGU\n>d\nACZ\n")
    out = tmp_path / "corpus"
    args = ["prepare", str(f), "--alphabet", "rna", "--out", str(out), "--max-length", "5"]
    result = runner.invoke(app, [*args, "--on-invalid", "replace"])
    assert result.exit_code == 0, result.output
    assert "invalid_replaced_chars" in result.output and "long_cropped" in result.output
    manifest = json.loads((out / artifacts.CORPUS_MANIFEST).read_text())
    assert manifest["counts"]["written"] == 3 and manifest["counts"]["empty_skipped"] == 1
    # An existing output is refused; --overwrite replaces it.
    again = runner.invoke(app, args)
    assert isinstance(again.exception, FileExistsError)
    assert runner.invoke(app, [*args, "--on-invalid", "skip", "--overwrite"]).exit_code == 0
    assert json.loads((out / artifacts.CORPUS_MANIFEST).read_text())["counts"]["written"] == 2


def test_user_errors_print_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    from bioprune.cli.main import main

    f = tmp_path / "bad.fa"
    f.write_text(">x\nACGUJ\n")
    monkeypatch.setattr(
        sys,
        "argv",
        ["bioprune", "prepare", str(f), "--alphabet", "rna", "--out", str(tmp_path / "c")],
    )
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "record 1 (id 'x'): character 'J' at position 5" in err
    assert not (tmp_path / "c").exists()
