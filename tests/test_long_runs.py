"""Long runs a user can watch and steer (issue 16): progress lines in logs, time
budgets, graceful stop with a usable model, extending a resumed run, export, info."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bioprune import artifacts
from bioprune.cli.main import main
from bioprune.progress import ProgressEvent, ProgressLines, format_duration, progress_style
from bioprune.training.pretrain import PretrainConfig, pretrain
from bioprune.training.recipe import TrainingConfig, checkpoint_dir

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _tc(**kw) -> TrainingConfig:
    base = dict(
        lr=1e-3, warmup_steps=3, batch_size=8, epochs=3, eval_every=3, log_every=2,
        checkpoint_every=0, device="cpu", show_progress=False,
    )  # fmt: skip
    base.update(kw)
    return TrainingConfig(**base)


def _pretrain(corpus, out, should_stop=None, **kw) -> dict:
    cfg = PretrainConfig(corpus=corpus.path, out=out, preset="tiny", val_fraction=0.1)
    cfg.training = _tc(**kw)
    return pretrain(cfg, should_stop=should_stop)


def _run(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["bioprune", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


# ------------------------------------------------------------- the line format


def test_progress_lines_format_and_rate_limit():
    now = [0.0]
    out: list[str] = []
    lines = ProgressLines("pretrain", 200, "step", out.append, every_s=30, clock=lambda: now[0])
    now[0] = 10.0
    lines.update(20, tokens=20_000, loss=3.25)  # the first update always writes
    now[0] = 20.0
    lines.update(40, loss=3.0)  # within 30 s: silent
    now[0] = 45.0
    lines.update(90, tokens=90_000, loss=2.5, note="val loss 2.6000")
    assert len(out) == 2
    assert out[0] == (
        "pretrain: step 20/200 (10.0%) | loss 3.2500 | 2.00 step/s 2,000 tok/s "
        "| elapsed 0:00:10 | ETA 0:01:30"
    )
    assert out[1].endswith("| elapsed 0:00:45 | ETA 0:00:55 | val loss 2.6000")
    assert format_duration(3725) == "1:02:05" and format_duration(None) == "?"
    from bioprune.cli.pretrain import parse_duration

    assert parse_duration("45m") == 2700 and parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90 and parse_duration("1.5h") == 5400
    for bad in ["", "45x", "m", "0s", "-5m"]:
        with pytest.raises(ValueError, match="--max-time"):
            parse_duration(bad)
    assert progress_style(True, None, True) == "bar"
    assert progress_style(True, None, False) == "lines"
    assert progress_style(False, None, False) == "off"
    assert progress_style(False, 5.0, True) == "lines"
    import io

    from rich.console import Console

    from bioprune.cli.progress import rich_progress

    buf = io.StringIO()
    with rich_progress(Console(file=buf), every_s=0, title="evaluate") as progress:
        progress(ProgressEvent("seed 0", 0, 4))
        progress(ProgressEvent("seed 0", 1, 4))
        progress(ProgressEvent("seed 0", 4, 4, "epoch 1: valid 0.5"))
    tasks_out = buf.getvalue().splitlines()
    assert tasks_out[0].startswith("evaluate seed 0: step 1/4 (25.0%)")
    assert tasks_out[-1].endswith("epoch 1: valid 0.5")


# ----------------------------------------------------- progress of each command


def test_every_long_command_logs_progress_lines_when_not_a_terminal(
    tmp_path, tiny_corpus, tiny_model_dir, monkeypatch, capsys
):
    """stderr captured (not a terminal): plain progress lines, no flags needed."""
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">s{i}\nACGUACGUAC{'G' * (i % 7)}\n" for i in range(30)))
    corpus = tmp_path / "corpus"
    code, _, err = _run(monkeypatch, capsys, "prepare", fasta, "--alphabet", "rna", "--out", corpus)
    assert code == 0, err
    assert "prepare: " in err and "bytes (100.0%)" in err and "30 records" in err

    code, _, err = _run(
        monkeypatch, capsys, "adapt", "--model", tiny_model_dir, "--corpus", corpus,
        "--subset-size", "16", "--batch-size", "8", "--out", tmp_path / "adapted",
        "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert "adapt: step 1/2 (50.0%) | loss " in err and "ETA" in err
    assert "mean of the first -> last" in err  # adapt says which losses it compares

    code, _, err = _run(
        monkeypatch, capsys, "fisher", "--model", tiny_model_dir, "--corpus", corpus,
        "--subset-size", "8", "--out", tmp_path / "f.safetensors", "--device", "cpu",
        "--batch-tokens", "128",
    )  # fmt: skip
    assert code == 0, err
    assert "fisher: " in err and " examples (" in err and "ex/s" in err and "part 1 of" in err

    code, _, err = _run(
        monkeypatch, capsys, "score", "--model", tiny_model_dir, "--corpus", corpus,
        "--fisher", tmp_path / "f.safetensors", "--out", tmp_path / "s.parquet",
        "--device", "cpu", "--batch-tokens", "128", "--part-batches", "2", "--log-every-s", "0",
    )  # fmt: skip
    assert code == 0, err
    progress = [ln for ln in err.splitlines() if ln.startswith("score: ")]
    assert len(progress) >= 3, err  # --log-every-s 0: one per batch
    assert progress[-1].startswith("score: 30/30 examples (100.0%)") and "tok/s" in progress[-1]
    assert "part " in progress[0]

    code, _, err = _run(
        monkeypatch, capsys, "select", "--scores", tmp_path / "s.parquet", "--corpus", corpus,
        "--method", "topk", "--budget", "10", "--out", tmp_path / "sel",
    )  # fmt: skip
    assert code == 0, err
    assert "select: selecting a coreset (topk)" in err and "select: done in" in err

    task = tmp_path / "task"
    task.mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "valid", "test"):
        rows = ["sequence,label"]
        for _ in range(12):
            seq = "".join(rng.choice(list("ACGU"), int(rng.integers(8, 20))))
            rows.append(f"{seq},{int(seq.count('G') > 3)}")
        (task / f"{split}.csv").write_text("\n".join(rows) + "\n")
    code, _, err = _run(
        monkeypatch, capsys, "evaluate", "--model", tiny_model_dir, "--task", task,
        "--out", tmp_path / "r.json", "--seeds", "0", "--epochs", "1", "--protocol", "frozen-mlp",
    )  # fmt: skip
    assert code == 0, err
    assert "evaluate seed 0: step " in err, err


# ------------------------------------------------- time budget, stop, extension


def test_time_budget_and_stop_request_leave_a_usable_model_and_extend_exactly(
    tiny_corpus, tmp_path
):
    """Stopped by --max-time or a stop request, then resumed with a larger budget:
    the same weights as one uninterrupted run (the resume test's tolerance)."""
    from transformers import AutoModelForMaskedLM

    ref = _pretrain(tiny_corpus, tmp_path / "ref", max_steps=9)
    assert ref["stopped_by"] == "max_steps" and ref["checkpoint"] is None
    assert not checkpoint_dir(tmp_path / "ref").exists()

    # 1. a time budget spent after the first step
    out = tmp_path / "timed"
    a = _pretrain(tiny_corpus, out, max_steps=9, max_time_s=1e-6)
    assert (a["stopped_by"], a["steps"]) == ("time", 1)
    ckpt = checkpoint_dir(out) / "checkpoint.pt"
    assert a["checkpoint"] == str(ckpt) and ckpt.is_file()
    assert AutoModelForMaskedLM.from_pretrained(out) is not None  # usable as it stands
    assert json.loads((out / artifacts.MODEL_TRAINING).read_text())["stopped_by"] == "time"
    with pytest.raises(FileExistsError, match=r"stopped by time at step 1.*pass --resume"):
        _pretrain(tiny_corpus, out, max_steps=9)
    with pytest.raises(ValueError, match="already reached; pass a larger budget"):
        _pretrain(tiny_corpus, out, max_steps=9, max_time_s=1e-6, resume=True)
    b = _pretrain(tiny_corpus, out, max_steps=9, max_time_s=3600, resume=True)
    assert (b["stopped_by"], b["steps"], b["resumed_from_step"]) == ("max_steps", 9, 1)
    assert _max_abs_diff(_weights(tmp_path / "ref"), _weights(out)) <= 1e-6
    assert b["tokens_seen"] == ref["tokens_seen"]
    assert b["val_loss"] == pytest.approx(ref["val_loss"], abs=1e-6)
    assert not checkpoint_dir(out).exists()  # finished: the checkpoint goes

    # 2. a stop request (what SIGINT/SIGTERM set) after step 4, then a larger --max-steps
    out = tmp_path / "stopped"
    taken = []

    def stop_after_4():
        taken.append(1)
        return "signal" if len(taken) >= 4 else None

    c = _pretrain(tiny_corpus, out, should_stop=stop_after_4, max_steps=6)
    assert (c["stopped_by"], c["steps"]) == ("signal", 4)
    d = _pretrain(tiny_corpus, out, max_steps=6, resume=True, keep_checkpoint=True)
    assert (d["stopped_by"], d["steps"]) == ("max_steps", 6)
    assert d["checkpoint"] and checkpoint_dir(out).is_dir()  # kept: may be extended
    e = _pretrain(tiny_corpus, out, max_steps=9, resume=True)  # extends 6 -> 9
    assert (e["steps"], e["resumed_from_step"]) == (9, 6)
    assert _max_abs_diff(_weights(tmp_path / "ref"), _weights(out)) <= 1e-6
    rows = (out / artifacts.MODEL_CURVE_CSV).read_text().splitlines()
    assert rows[-1].startswith("9,")


def test_linear_schedule_extension_is_refused(tiny_corpus, tmp_path):
    out = tmp_path / "lin"
    _pretrain(tiny_corpus, out, schedule="linear", max_steps=4, keep_checkpoint=True)
    with pytest.raises(ValueError, match="linear schedule decays to zero"):
        _pretrain(tiny_corpus, out, schedule="linear", max_steps=6, resume=True)
    with pytest.raises(ValueError, match="--max-steps 4 has already reached"):
        _pretrain(tiny_corpus, out, schedule="linear", max_steps=4, resume=True)


def test_export_of_a_checkpoint_loads_in_plain_transformers_and_info_shows_state(
    tiny_corpus, tmp_path, monkeypatch, capsys
):
    import torch
    from transformers import AutoModelForMaskedLM

    out = tmp_path / "m"
    taken = []
    _pretrain(tiny_corpus, out, should_stop=lambda: taken.append(1) or len(taken) >= 2)
    exported = tmp_path / "exported"
    code, _, err = _run(monkeypatch, capsys, "export", checkpoint_dir(out), "--out", exported)
    assert code == 0, err
    assert "checkpoint at step 2" in err
    plain = AutoModelForMaskedLM.from_pretrained(exported).eval()
    stopped = AutoModelForMaskedLM.from_pretrained(out).eval()
    x = torch.from_numpy(tiny_corpus.framed(3))[None]
    with torch.no_grad():
        assert torch.equal(plain(input_ids=x).logits, stopped(input_ids=x).logits)
    info = json.loads((exported / artifacts.MODEL_TRAINING).read_text())
    assert info["steps"] == 2 and info["exported_from"].endswith("checkpoint.pt")
    code, _, err = _run(
        monkeypatch, capsys, "export", tmp_path / "nothing", "--out", tmp_path / "x"
    )
    assert code == 2 and "does not exist" in err

    code, stdout, err = _run(monkeypatch, capsys, "info", out, "--json")
    assert code == 0, err
    state = json.loads(stdout)["training_state"]
    assert (state["steps"], state["stopped_by"]) == (2, "request")
    assert state["val_loss"] is not None and state["tokens_seen"] > 0
    code, stdout, err = _run(monkeypatch, capsys, "info", out)
    assert code == 0 and "stopped_by" in stdout and "val_loss" in stdout


# -------------------------------------------------------------- signals (real)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_at_a_step_with_model_and_checkpoint(signum, tiny_corpus, tmp_path):
    """A real process, stderr through a pipe: progress lines appear without flags;
    the signal stops it at a step boundary, 128+signum, a loadable model directory
    and a resumable checkpoint."""
    from transformers import AutoModelForMaskedLM

    out = tmp_path / "m"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    args = [
        sys.executable, "-m", "bioprune.cli.main", "pretrain", "--corpus", str(tiny_corpus.path),
        "--out", str(out), "--preset", "tiny", "--lr", "1e-3", "--warmup-steps", "3",
        "--batch-size", "8", "--epochs", "100000", "--device", "cpu", "--checkpoint-every", "0",
    ]  # fmt: skip
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # the first progress line comes after step 1
        seen.append(line)
        if line.startswith("pretrain: step ") or time.monotonic() > deadline:
            break
    proc.send_signal(signum)
    err = "".join(seen) + proc.stderr.read()  # to EOF: the process has ended
    proc.wait(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "pretrain: step 1/" in err and "ETA" in err  # a plain line, not a bar
    assert "stopping at the next step boundary" in err
    assert "stopped by signal" in err and str(out) in err.replace("\n", "")
    info = json.loads((out / artifacts.MODEL_TRAINING).read_text())
    assert info["stopped_by"] == "signal" and info["steps"] >= 1
    AutoModelForMaskedLM.from_pretrained(out)
    ckpt_dir = checkpoint_dir(out)
    assert (ckpt_dir / "checkpoint.pt").is_file() and (ckpt_dir / "curve.csv").is_file()
    # Resumable (a larger budget than the steps taken): it finishes and replaces OUT.
    # (In-process, with the same settings as the CLI run: one process start less.)
    steps = info["steps"]
    tc = TrainingConfig(
        lr=1e-3, warmup_steps=3, batch_size=8, epochs=100000, max_steps=steps + 2,
        checkpoint_every=0, device="cpu", resume=True, show_progress=False,
    )  # fmt: skip
    done = pretrain(PretrainConfig(corpus=tiny_corpus.path, out=out, preset="tiny", training=tc))
    assert (done["steps"], done["resumed_from_step"]) == (steps + 2, steps)
    assert json.loads((out / artifacts.MODEL_TRAINING).read_text())["steps"] == steps + 2
    assert not ckpt_dir.exists()
