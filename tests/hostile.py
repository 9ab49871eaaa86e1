"""Helpers for the hostile-input tests: run the CLI, snapshot trees, assert one-line errors.

Every hostile case asserts the same three things (issue 10): the exit status is 2,
the message is one line naming the file and the reason, and no input or earlier
output changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str | os.PathLike[str], monkeypatch=None, capsys=None) -> tuple[int, str]:
    """Run ``bioprune ARGS`` in this process; returns (exit status, stderr)."""
    from bioprune.cli.main import main

    assert monkeypatch is not None and capsys is not None
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["bioprune", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def run_cli_subprocess(
    *args: str | os.PathLike[str], timeout: float = 300, **kwargs
) -> subprocess.CompletedProcess:
    """Run ``bioprune ARGS`` as a real process (for signals, resource limits, crashes)."""
    return subprocess.run(
        [sys.executable, "-m", "bioprune.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def snapshot(*paths: str | os.PathLike[str]) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``paths`` (a file or a directory), plus the
    names of hidden leftovers; compare two snapshots to prove nothing changed."""
    out: dict[str, str] = {}
    for root in map(Path, paths):
        if root.is_file():
            out[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
        elif root.is_dir():
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[str(root)] = "<absent>"
    return out


def leftovers(directory: str | os.PathLike[str]) -> list[str]:
    """Hidden temporary files/directories an interrupted writer might leave (``.NAME.tmp*``,
    ``.NAME.old-*``)."""
    return sorted(
        p.name
        for p in Path(directory).iterdir()
        if p.name.startswith(".") and (".tmp" in p.name or ".old-" in p.name)
    )


def assert_one_line_error(code: int, err: str, *must_contain: str | os.PathLike[str]) -> None:
    """Exit status 2, an ``error:`` line, no traceback, and every fragment named."""
    # rich wraps a long line at the terminal width, even inside a path: compare without
    # any whitespace
    flat = "".join(err.split()).lower()
    assert code == 2, f"exit {code}, output:\n{err}"
    assert "Traceback" not in err, err
    assert "error:" in err, err
    for fragment in must_contain:
        frag = "".join(str(fragment).split()).lower()
        assert frag in flat, f"{fragment!s} not in: {err}"


__all__ = [
    "assert_one_line_error",
    "leftovers",
    "pytest",
    "run_cli",
    "run_cli_subprocess",
    "snapshot",
]
