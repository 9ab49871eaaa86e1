"""User errors print one plain line (no markup, no emoji codes) and exit with status 2."""

import sys

import pytest

from bioprune.cli.main import main


def test_user_error_is_one_literal_line(monkeypatch, capsys, tmp_path):
    odd = tmp_path / "no[bold]such:a:corpus"
    monkeypatch.setattr(sys, "argv", ["bioprune", "info", str(odd)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert str(odd) in err.replace("\n", "")  # brackets and ":a:" survive as typed
    assert "Traceback" not in err


def test_usage_error_exits_nonzero(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bioprune", "init", "--preset", "tiny"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert "--alphabet" in capsys.readouterr().err


def test_version(monkeypatch, capsys):
    from bioprune import __version__

    monkeypatch.setattr(sys, "argv", ["bioprune", "--version"])
    main()  # returns normally on success
    assert capsys.readouterr().out.strip() == __version__
