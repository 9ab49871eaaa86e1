"""Training checkpoints and inputs a user can get wrong (issue 10): exit 2, one line
naming the file and the reason, nothing executed, no input or earlier output changed."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bioprune import artifacts
from bioprune.cli.main import main

#: A tiny pretrain run, as CLI arguments (in-process: fast).
ARGS = [
    "--preset", "tiny", "--lr", "1e-3", "--warmup-steps", "3", "--batch-size", "8",
    "--device", "cpu", "--no-progress", "--val-fraction", "0", "--checkpoint-every", "1",
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(monkeypatch, capsys, *args) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["bioprune", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    return code, err


def _snapshot(*paths: Path) -> dict[str, bytes]:
    """Every file under ``paths`` (name -> bytes), to show nothing changed."""
    files = {}
    for root in paths:
        for p in sorted([root] if root.is_file() else root.rglob("*")):
            if p.is_file() and p.name != "lock":
                files[str(p)] = p.read_bytes()
    return files


def _assert_one_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    flat = err.replace("\n", "")
    assert "error:" in flat, err
    for needle in needles:
        assert needle in flat, (needle, err)


class _Evil:
    """Unpickling this would run a shell command (what weights_only=False allowed)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_runs_no_code(tiny_corpus, tmp_path, monkeypatch, capsys):
    import torch

    out = tmp_path / "m"
    ckpt = tmp_path / "m.ckpt" / "checkpoint.pt"
    ckpt.parent.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"format": "bioprune-training-checkpoint", "state": _Evil(marker)}, ckpt)
    before = _snapshot(tmp_path / "m.ckpt")
    code, err = _run(
        monkeypatch, capsys, "pretrain", "--corpus", tiny_corpus.path, "--out", out,
        *ARGS, "--max-steps", "2", "--resume",
    )  # fmt: skip
    assert not marker.exists(), "unpickling the checkpoint ran code"
    assert code == 2
    _assert_one_error(err, str(ckpt), "not a readable bioprune checkpoint")
    assert _snapshot(tmp_path / "m.ckpt") == before and not out.exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_checkpoint_is_one_line_error(damage, tiny_corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "m"
    common = ["pretrain", "--corpus", tiny_corpus.path, "--out", out, *ARGS]
    code, err = _run(monkeypatch, capsys, *common, "--max-steps", "2", "--keep-checkpoint")
    assert code == 0, err
    ckpt = tmp_path / "m.ckpt" / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00garbage" * 64)
    before = _snapshot(out, tmp_path / "m.ckpt")
    code, err = _run(monkeypatch, capsys, *common, "--max-steps", "4", "--resume")
    assert code == 2
    _assert_one_error(err, str(ckpt), "not a readable bioprune checkpoint")
    assert _snapshot(out, tmp_path / "m.ckpt") == before


def test_second_run_into_the_same_output_is_refused(tiny_corpus, tmp_path, monkeypatch, capsys):
    """The losing one of two concurrent --resume runs fails at once, naming the lock.

    (Before, both trained side by side, overwrote each other's checkpoint, and
    the later one failed only at the end with "OUT already exists".)
    """
    import fcntl

    out = tmp_path / "m"
    common = ["pretrain", "--corpus", tiny_corpus.path, "--out", out, *ARGS, "--resume"]
    ckpt_dir = tmp_path / "m.ckpt"
    ckpt_dir.mkdir()
    lock = ckpt_dir / "lock"
    with open(lock, "a+") as holder:  # the winning run holds the lock
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.write("4242\n")
        holder.flush()
        code, err = _run(monkeypatch, capsys, *common, "--max-steps", "2")
    assert code == 2
    _assert_one_error(err, str(lock), "another run (pid 4242)")
    assert not out.exists() and not (ckpt_dir / "checkpoint.pt").exists()
    # Once the holder is gone (the kernel drops the lock with its process) a run goes ahead.
    code, err = _run(monkeypatch, capsys, *common, "--max-steps", "2")
    assert code == 0, err
    assert out.is_dir() and not ckpt_dir.exists()


def test_selection_from_another_corpus_with_the_same_ids(tmp_path, monkeypatch, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bioprune.data.corpus import write_corpus
    from tests.conftest import random_sequences

    a = write_corpus(tmp_path / "a", random_sequences(24, "rna", seed=1), "rna")
    b = write_corpus(tmp_path / "b", random_sequences(24, "rna", seed=2), "rna")
    assert list(a.ids()) == list(b.ids()) and a.checksum != b.checksum
    sel = tmp_path / "sel"
    sel.mkdir()
    chosen = np.arange(0, 24, 2)
    pq.write_table(
        pa.table({"index": pa.array(chosen), "id": pa.array(list(a.ids()[chosen]))}),
        sel / artifacts.SELECTION_TABLE,
    )
    (sel / artifacts.SELECTION_IDS).write_text("\n".join(a.ids()[chosen]) + "\n")
    artifacts.write_json(
        sel / artifacts.SELECTION_META,
        {"format": "bioprune-selection", "inputs": {"corpus_checksum": a.checksum}},
    )
    before = _snapshot(sel, tmp_path / "b")
    out = tmp_path / "m"
    code, err = _run(
        monkeypatch, capsys, "pretrain", "--corpus", b.path, "--selection", sel,
        "--out", out, *ARGS, "--max-steps", "1",
    )  # fmt: skip
    assert code == 2
    _assert_one_error(err, str(sel / artifacts.SELECTION_META), "another corpus")
    assert _snapshot(sel, tmp_path / "b") == before and not out.exists()
    assert not (tmp_path / "m.ckpt").exists()
    # The corpus it was made from is accepted.
    code, err = _run(
        monkeypatch, capsys, "pretrain", "--corpus", a.path, "--selection", sel,
        "--out", out, *ARGS, "--max-steps", "1",
    )  # fmt: skip
    assert code == 0, err


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tiny_corpus, tmp_path, monkeypatch):
    """ENOSPC while writing checkpoint 2 leaves checkpoint 1 intact and no temp files."""
    import torch

    from bioprune.training.pretrain import PretrainConfig, pretrain
    from bioprune.training.recipe import TrainingConfig, load_checkpoint_payload

    real_save = torch.save
    calls = []

    def full_disk(obj, f, *a, **k):
        calls.append(f)
        if len(calls) == 2:
            Path(f).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full_disk)
    out = tmp_path / "m"
    tc = TrainingConfig(
        lr=1e-3, warmup_steps=3, batch_size=8, epochs=1, max_steps=4, checkpoint_every=1,
        device="cpu", show_progress=False,
    )  # fmt: skip
    with pytest.raises(OSError, match=r"(?i)no space left on device"):
        pretrain(PretrainConfig(corpus=tiny_corpus.path, out=out, preset="tiny", training=tc))
    ckpt_dir = tmp_path / "m.ckpt"
    payload = load_checkpoint_payload(ckpt_dir / "checkpoint.pt")
    assert payload["state"]["step"] == 1
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["checkpoint.pt", "curve.csv", "lock"]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # ... and the run resumes from it.
    monkeypatch.setattr(torch, "save", real_save)
    tc.resume = True
    info = pretrain(PretrainConfig(corpus=tiny_corpus.path, out=out, preset="tiny", training=tc))
    assert info["resumed_from_step"] == 1 and info["steps"] == 4
    assert json.loads((out / artifacts.MODEL_TRAINING).read_text())["steps"] == 4
