"""Scores and Fisher files record the CPU thread count; a resume may not change it.

PyTorch's CPU kernels round differently with ``torch.set_num_threads`` for some
shapes (torch 2.13: the flash-attention kernel of ``scaled_dot_product_attention``
and softmax's backward), so scores and Fisher sums differ by ~1e-7 relative
between thread counts (docs/influence.md, "Thread count"). A run resumed with
another count would mix parts of both and no longer equal an uninterrupted run:
it is refused with one line naming the work directory and both counts.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from bioprune.influence import runs as runs_mod
from bioprune.influence.score import read_scores_meta
from tests.hostile import assert_one_line_error, run_cli
from tests.test_influence_cli import save_small_model

COMMON = ["--batch-tokens", "256", "--part-batches", "1", "--device", "cpu", "--no-progress"]


class _Interrupted(BaseException):
    """Stands for a crash after the first part (the parts written so far stay)."""


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_small_model(tmp_path_factory.mktemp("threads") / "model")


def _interrupt_after_first_part(monkeypatch):
    def die(parts_done: int) -> None:
        raise _Interrupted

    monkeypatch.setattr(runs_mod, "maybe_die", die)


@pytest.mark.parametrize("stage", ["fisher", "score"])
def test_resume_with_another_thread_count_is_refused(
    tmp_path, model_dir, tiny_corpus, monkeypatch, capsys, threads, stage
):
    base = ["--model", model_dir, "--corpus", tiny_corpus.path, *COMMON]
    if stage == "score":
        threads(1)
        fisher = tmp_path / "F.safetensors"
        code, err = run_cli(
            "fisher", *base, "--subset-size", "0.25", "--out", fisher,
            monkeypatch=monkeypatch, capsys=capsys,
        )  # fmt: skip
        assert code == 0, err
        args = ["score", *base, "--fisher", fisher, "--out", tmp_path / "S.parquet"]
    else:
        args = ["fisher", *base, "--subset-size", "0.5", "--checkpoint-seconds", "0"]
        args += ["--out", tmp_path / "F2.safetensors"]
    out = args[args.index("--out") + 1]
    parts = out.with_name(out.name + ".parts")
    threads(1)
    with monkeypatch.context() as m:
        _interrupt_after_first_part(m)
        with pytest.raises(_Interrupted):
            run_cli(*args, monkeypatch=m, capsys=capsys)
    assert parts.is_dir() and not out.exists()
    assert json.loads((parts / "run.json").read_text())["cpu_threads"] == 1
    threads(2)
    code, err = run_cli(*args, "--resume", monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(code, err, str(parts), "cpu_threads", "was 1, now 2")
    assert parts.is_dir() and not out.exists()
    threads(1)  # the same count: the run continues and finishes
    code, err = run_cli(*args, "--resume", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    assert out.is_file() and not parts.exists()
    if stage == "score":
        assert read_scores_meta(out)["cpu_threads"] == 1
    else:
        with safe_open(str(out), "pt") as f:
            assert json.loads(f.metadata()["cpu_threads"]) == 1
