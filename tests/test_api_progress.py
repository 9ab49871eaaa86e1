"""The CLI's progress adapter: ProgressEvents -> a rich bar, plain lines or nothing;
and the ``bioprune`` logger rendered as the CLI's lines."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from bioprune.cli.progress import log_to_console, rich_progress
from bioprune.progress import ProgressEvent, ProgressLines


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=200, color_system=None), buf


def _run(events, *, terminal=False, enabled=True, every_s=0.0, title=""):
    console, buf = _console(terminal)
    with rich_progress(console, enabled=enabled, every_s=every_s, title=title) as progress:
        for event in events:
            progress(event)
    return buf.getvalue()


def test_event_is_frozen_and_has_the_contract_fields():
    event = ProgressEvent("fisher", 3, 10, "part 1 of 2")
    assert (event.stage, event.done, event.total, event.message) == ("fisher", 3, 10, "part 1 of 2")
    with pytest.raises(AttributeError):
        event.done = 4  # type: ignore[misc]


def test_lines_are_the_progress_lines_format_and_the_opening_event_draws_nothing():
    events = [
        ProgressEvent("score", 0, 30, unit="examples"),
        ProgressEvent("score", 10, 30, "part 1 of 3", unit="examples", tokens=100),
        ProgressEvent("score", 30, 30, "part 3 of 3", unit="examples", tokens=300),
    ]
    lines = _run(events).splitlines()
    assert len(lines) == 2, lines  # the opening event writes no line
    assert lines[0].startswith("score: 10/30 examples (33.3%) | ") and "part 1 of 3" in lines[0]
    assert lines[-1].startswith("score: 30/30 examples (100.0%) | ")
    assert "tok/s" in lines[-1] and lines[-1].endswith("ETA 0:00:00 | part 3 of 3")
    # the same text as ProgressLines writes directly (the format is unchanged)
    direct: list[str] = []
    ref = ProgressLines("score", 30, "examples", direct.append, every_s=0)
    head = lines[0].split(" | ")[0]
    ref.update(10, tokens=100, note="part 1 of 3")
    assert direct[0].split(" | ")[0] == head


def test_lines_of_a_resumed_training_run_count_only_this_session():
    events = [
        ProgressEvent("pretrain", 100, 200),  # resumed at step 100
        ProgressEvent("pretrain", 101, 200, loss=3.25, tokens=1000),
    ]
    (line,) = _run(events).splitlines()
    assert line.startswith("pretrain: step 101/200 (50.5%) | loss 3.2500 | ")


def test_rate_limit_and_final_line_on_success_only():
    events = [ProgressEvent("s", 0, 5)] + [ProgressEvent("s", i, 5) for i in range(1, 6)]
    lines = _run(events, every_s=3600).splitlines()
    # the first update writes, the rest fall within the hour; the exit writes the last
    assert [ln.split(" | ")[0] for ln in lines] == ["s: step 1/5 (20.0%)", "s: step 5/5 (100.0%)"]
    console, buf = _console(False)
    with pytest.raises(RuntimeError):
        with rich_progress(console, every_s=3600) as progress:
            for event in events:
                progress(event)
            raise RuntimeError("boom")
    assert len(buf.getvalue().splitlines()) == 1  # no "done" line after a failure


def test_title_prefixes_each_stage_and_stages_are_separate():
    events = [
        ProgressEvent("seed 0", 0, 4),
        ProgressEvent("seed 0", 1, 4),
        ProgressEvent("seed 0", 4, 4, "epoch 1: valid 0.5"),
        ProgressEvent("seed 1", 0, 4),
        ProgressEvent("seed 1", 2, 4),
    ]
    lines = _run(events, title="evaluate").splitlines()
    assert lines[0].startswith("evaluate seed 0: step 1/4 (25.0%)")
    assert lines[1].endswith("epoch 1: valid 0.5")
    assert lines[2].startswith("evaluate seed 1: step 2/4 (50.0%)")
    same = [ProgressEvent("pretrain", 0, 2), ProgressEvent("pretrain", 1, 2)]
    assert _run(same, title="pretrain").startswith("pretrain: step 1/2")


def test_off_draws_nothing_and_bar_draws_a_bar_not_lines():
    events = [ProgressEvent("fisher", 0, 8, unit="examples")]
    events += [ProgressEvent("fisher", i, 8, unit="examples", tokens=10 * i) for i in (4, 8)]
    assert _run(events, enabled=False, every_s=None) == ""
    bar = _run(events, terminal=True, every_s=None)
    assert "fisher" in bar and "8/8" in bar and "fisher: " not in bar  # a bar, not a line
    # not a terminal and no --log-every-s: lines every 30 s (the first one at once)
    lines = _run(events, terminal=False, every_s=None).splitlines()
    assert [ln.split(" | ")[0] for ln in lines] == [
        "fisher: 4/8 examples (50.0%)",
        "fisher: 8/8 examples (100.0%)",
    ]


def test_log_records_become_plain_lines_and_logging_is_restored():
    logger = logging.getLogger("bioprune")
    before = (logger.level, list(logger.handlers))
    console, buf = _console(False)
    with log_to_console(console):
        logging.getLogger("bioprune.influence.score").info("score: [part] 1 of 2")
        logging.getLogger("bioprune.x").debug("hidden at INFO")
        logging.getLogger("bioprune").warning("careful")
    assert buf.getvalue().splitlines() == ["score: [part] 1 of 2", "careful"]
    assert (logger.level, list(logger.handlers)) == before
    console, buf = _console(False)
    with log_to_console(console, logging.DEBUG):
        logging.getLogger("bioprune.x").debug("shown with -v")
    assert buf.getvalue() == "shown with -v\n"


def test_cli_renders_library_log_records(monkeypatch, capsys):
    """A library message logged during a command appears on the CLI's stderr; -v adds debug."""
    import typer

    from bioprune.cli import main as cli_main
    from tests.hostile import run_cli

    def speak() -> None:
        logging.getLogger("bioprune.demo").info("library says hello")
        logging.getLogger("bioprune.demo").debug("library debug detail")

    app = typer.Typer()
    app.callback()(cli_main._root)
    app.command("speak")(speak)
    monkeypatch.setattr(cli_main, "app", app)
    code, out = run_cli("speak", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0 and out == "library says hello\n"
    code, out = run_cli("-v", "speak", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0 and out == "library says hello\nlibrary debug detail\n"
    assert logging.getLogger("bioprune").level == logging.NOTSET
