"""MLM training recipes: schedule, data order, determinism, resume, DDP, budgets, adapt."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bioprune import artifacts
from bioprune.training.adapt import AdaptConfig, adapt, adaptation_defaults, random_subset
from bioprune.training.batches import epoch_batches, micro_batches, validation_split
from bioprune.training.pretrain import PretrainConfig, pretrain
from bioprune.training.recipe import KILL_AFTER_STEP_ENV, MaskedLMRecipe, TrainingConfig
from bioprune.training.schedule import lambda_lr, learning_rate, lr_factor

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _train_config(**kw) -> TrainingConfig:
    """Fast defaults for tests: high lr, short warmup, CPU, no progress bar."""
    base = dict(
        lr=1e-3,
        warmup_steps=3,
        batch_size=8,
        epochs=1,
        checkpoint_every=0,
        log_every=1,
        device="cpu",
        show_progress=False,
    )
    base.update(kw)
    return TrainingConfig(**base)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def seen_batches(monkeypatch):
    """Record the global batch of every optimizer step (corpus indices)."""
    seen: list[np.ndarray] = []
    original = MaskedLMRecipe.train_step

    def spy(self, global_batch, epoch):
        seen.append(np.array(global_batch))
        return original(self, global_batch, epoch)

    monkeypatch.setattr(MaskedLMRecipe, "train_step", spy)
    return seen


@pytest.fixture(scope="module")
def repetitive_corpus(tmp_path_factory):
    """64 copies of a few short periodic motifs: an MLM learns them within ~100 steps."""
    from bioprune.data.corpus import write_corpus

    motifs = ["ACGU", "AAGGCU", "GGGCCCAU", "UUAC"]
    rng = np.random.default_rng(3)
    records = []
    for i in range(64):
        m = motifs[i % len(motifs)]
        reps = int(rng.integers(4, 8))
        records.append((f"r{i}", "", (m * reps)[: 8 + 4 * reps]))
    return write_corpus(tmp_path_factory.mktemp("rep") / "corpus", records, "rna")


# ---------------------------------------------------------------- schedule


def test_inverse_sqrt_schedule_equals_formula():
    lr, w = 1e-4, 2000
    for t in [1, 2, 999, 1999, 2000]:
        assert learning_rate(t, lr, w) == pytest.approx(lr * t / w, rel=1e-12)
    for t in [2001, 4000, 8000, 125_000]:
        assert learning_rate(t, lr, w) == pytest.approx(lr * math.sqrt(w / t), rel=1e-12)
    assert learning_rate(8000, lr, w) == pytest.approx(lr / 2)
    # Adaptation (A.5): warmup 50 then constant; linear decays to zero at T.
    assert learning_rate(25, 1e-5, 50, "constant") == pytest.approx(0.5e-5)
    assert learning_rate(5000, 1e-5, 50, "constant") == pytest.approx(1e-5)
    assert lr_factor(75, 50, "linear", total_steps=100) == pytest.approx(0.5)
    assert lr_factor(100, 50, "linear", total_steps=100) == 0.0
    assert lr_factor(1, 0) == 1.0 and lr_factor(4, 0) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        lr_factor(0, 10)


def test_optimizer_uses_the_formula_at_every_step():
    import torch

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = lambda_lr(opt, 5, "inverse-sqrt")
    for t in range(1, 21):
        assert opt.param_groups[0]["lr"] == pytest.approx(learning_rate(t, 1e-3, 5), rel=1e-12)
        opt.step()
        sched.step()


# ------------------------------------------------------------- data order


def test_epoch_batches_are_a_pure_bucketed_permutation():
    rng = np.random.default_rng(0)
    idx = np.arange(1000, 1500)
    lengths = rng.integers(20, 400, size=len(idx))
    a = epoch_batches(idx, lengths, batch_size=16, seed=1, epoch=2, megabatch=4)
    b = epoch_batches(idx, lengths, batch_size=16, seed=1, epoch=2, megabatch=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    flat = np.concatenate(a)
    assert np.array_equal(np.sort(flat), idx)  # every example exactly once
    assert len(a) == math.ceil(len(idx) / 16)
    length_of = dict(zip(idx.tolist(), lengths.tolist(), strict=True))
    for batch in a:  # each batch sorted by decreasing length
        ls = [length_of[int(i)] for i in batch]
        assert ls == sorted(ls, reverse=True)
    c = epoch_batches(idx, lengths, batch_size=16, seed=1, epoch=3, megabatch=4)
    assert not np.array_equal(np.concatenate(c), flat)  # a fresh order every epoch


def test_micro_batches_partition_the_global_batch():
    batch = np.arange(13)
    pieces = [micro_batches(batch, 2, 3, r) for r in range(3)]
    flat = np.concatenate([m for rank in pieces for m in rank])
    assert np.array_equal(np.sort(flat), batch)
    assert micro_batches(np.arange(3), 2, 2, 1)[1].size == 0  # short last batch


def test_validation_split_is_seeded_disjoint_and_nonempty():
    idx = np.arange(10, 60)
    train, val = validation_split(idx, 0.02, seed=4)
    assert len(val) == 1 and len(train) == 49
    assert np.array_equal(np.sort(np.concatenate([train, val])), idx)
    again = validation_split(idx, 0.02, seed=4)
    assert np.array_equal(again[1], val)
    assert len(validation_split(idx, 0.0, seed=4)[1]) == 0
    assert len(validation_split(idx[:1], 0.5, seed=4)[1]) == 0  # never the last example


# ----------------------------------------------------------------- training


def test_loss_falls_on_a_repetitive_corpus(repetitive_corpus, tmp_path):
    out = tmp_path / "model"
    info = pretrain(
        PretrainConfig(
            corpus=repetitive_corpus.path,
            out=out,
            preset="tiny",
            val_fraction=0.1,
            training=_train_config(
                lr=2e-3, warmup_steps=10, batch_size=16, epochs=100, max_steps=40, log_every=10
            ),
        )
    )
    assert info["steps"] == 40 and info["stopped_by"] == "max_steps"
    assert info["train_loss_final"] < 0.6 * info["train_loss_first"]
    assert info["val_loss"] < 0.5 * info["val_loss_initial"]
    assert info["val_perplexity"] == pytest.approx(math.exp(info["val_loss"]))
    # Outputs: HF format with the alphabet, curve, validation indices.
    for name in [
        "config.json",
        "model.safetensors",
        artifacts.MODEL_ALPHABET,
        artifacts.MODEL_TRAINING,
        artifacts.MODEL_CURVE_CSV,
        artifacts.MODEL_CURVE_PNG,
        artifacts.MODEL_VALIDATION,
    ]:
        assert (out / name).is_file(), name
    assert len(np.load(out / artifacts.MODEL_VALIDATION)) == info["validation_examples"] == 6
    rows = (out / artifacts.MODEL_CURVE_CSV).read_text().splitlines()
    assert rows[0].startswith("step,epoch,tokens,lr,train_loss,val_loss")
    assert not checkpoint_left(out)


def checkpoint_left(out: Path) -> bool:
    return out.with_name(out.name + ".ckpt").exists()


def test_output_loads_in_plain_transformers(tiny_corpus, tmp_path):
    import torch
    from transformers import AutoModelForMaskedLM

    from bioprune.models.loading import load_masked_lm

    out = tmp_path / "m"
    pretrain(
        PretrainConfig(
            corpus=tiny_corpus.path, out=out, preset="tiny", training=_train_config(max_steps=2)
        )
    )
    plain = AutoModelForMaskedLM.from_pretrained(out).eval()
    ours, alphabet = load_masked_lm(out)
    x = torch.from_numpy(tiny_corpus.framed(3))[None]
    with torch.no_grad():
        assert torch.equal(plain(input_ids=x).logits, ours(input_ids=x).logits)
    assert plain.config.vocab_size == len(alphabet)


def test_same_seed_same_weights(tiny_corpus, tmp_path):
    def run(name, seed):
        pretrain(
            PretrainConfig(
                corpus=tiny_corpus.path,
                out=tmp_path / name,
                preset="tiny",
                training=_train_config(max_steps=4, seed=seed),
            )
        )
        return _weights(tmp_path / name)

    a, b, c = run("a", 0), run("b", 0), run("c", 1)
    assert _max_abs_diff(a, b) == 0.0
    assert _max_abs_diff(a, c) > 0.0


def test_budgets_stop_exactly(tiny_corpus, tmp_path):
    info = pretrain(
        PretrainConfig(
            corpus=tiny_corpus.path,
            out=tmp_path / "steps",
            preset="tiny",
            val_fraction=0.0,
            training=_train_config(epochs=50, max_steps=7),
        )
    )
    assert (info["steps"], info["stopped_by"]) == (7, "max_steps")
    # Token budget: training ends after the first step whose cumulative tokens reach it.
    lengths = tiny_corpus.lengths + 2
    batches = epoch_batches(np.arange(len(tiny_corpus)), lengths, batch_size=8, seed=0, epoch=0)
    cumulative = np.cumsum([lengths[b].sum() for b in batches])
    budget = int(cumulative[2]) - 1  # reached inside step 3
    info = pretrain(
        PretrainConfig(
            corpus=tiny_corpus.path,
            out=tmp_path / "tokens",
            preset="tiny",
            val_fraction=0.0,
            training=_train_config(epochs=50, max_tokens=budget),
        )
    )
    assert (info["steps"], info["stopped_by"]) == (3, "max_tokens")
    assert info["tokens_seen"] == int(cumulative[2])
    # Epochs: 48 examples / 8 = 6 steps per epoch.
    info = pretrain(
        PretrainConfig(
            corpus=tiny_corpus.path,
            out=tmp_path / "epochs",
            preset="tiny",
            val_fraction=0.0,
            training=_train_config(epochs=2),
        )
    )
    assert (info["steps"], info["stopped_by"], info["examples_seen"]) == (12, "epochs", 96)


def test_selection_restricts_training(tiny_corpus, tmp_path, seen_batches):
    import pyarrow as pa
    import pyarrow.parquet as pq

    chosen = np.array([1, 4, 9, 16, 25, 36, 40, 47])
    sel = tmp_path / "selection"
    sel.mkdir()
    ids = tiny_corpus.ids()[chosen]
    pq.write_table(
        pa.table({"index": pa.array(chosen), "id": pa.array(list(ids))}),
        sel / artifacts.SELECTION_TABLE,
    )
    info = pretrain(
        PretrainConfig(
            corpus=tiny_corpus.path,
            out=tmp_path / "m",
            selection=sel,
            preset="tiny",
            val_fraction=0.0,
            training=_train_config(batch_size=4, epochs=2),
        )
    )
    assert sorted(np.concatenate(seen_batches[:2]).tolist()) == chosen.tolist()
    assert sorted(np.concatenate(seen_batches[2:]).tolist()) == chosen.tolist()
    assert info["data"]["selection_checksum"].startswith("blake2b:")
    # ids.txt alone gives the same examples.
    (sel / artifacts.SELECTION_TABLE).unlink()
    (sel / artifacts.SELECTION_IDS).write_text("\n".join(ids[::-1]) + "\n")
    seen_batches.clear()
    pretrain(
        PretrainConfig(
            corpus=tiny_corpus.path,
            out=tmp_path / "m2",
            selection=sel,
            preset="tiny",
            val_fraction=0.0,
            training=_train_config(batch_size=4, epochs=1),
        )
    )
    assert sorted(np.concatenate(seen_batches).tolist()) == chosen.tolist()


def test_adapt_trains_one_epoch_on_exactly_the_recorded_subset(
    tiny_corpus, tiny_model_dir, tmp_path, seen_batches
):
    out = tmp_path / "adapted"
    tc = adaptation_defaults()
    tc.device, tc.show_progress = "cpu", False
    info = adapt(
        AdaptConfig(
            model=tiny_model_dir, corpus=tiny_corpus.path, out=out, subset_size=37, training=tc
        )
    )
    subset = np.load(out / artifacts.MODEL_SUBSET)
    assert np.array_equal(subset, random_subset(len(tiny_corpus), 37, seed=0))
    # the same D_sub as `bioprune fisher --subset-size 37 --seed 0` would draw
    from bioprune.influence.fisher import resolve_subset

    assert np.array_equal(subset, resolve_subset(tiny_corpus, "37", None, 0))
    assert len(seen_batches) == info["steps"] == math.ceil(37 / 16)
    seen = np.concatenate(seen_batches)
    assert len(seen) == 37 and np.array_equal(np.sort(seen), subset)
    assert info["examples_seen"] == 37 and info["epochs_completed"] == 1
    hp = info["hyperparameters"]
    assert (hp["lr"], hp["weight_decay"], hp["warmup_steps"], hp["batch_size"]) == (
        1e-5,
        0.01,
        50,
        16,
    )
    assert _max_abs_diff(_weights(out), _weights(tiny_model_dir)) > 0.0


def test_adapt_cli_subset_fraction_and_errors(tiny_corpus, tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from bioprune.cli.main import app

    runner = CliRunner()
    out = tmp_path / "a"
    args = ["adapt", "--model", str(tiny_model_dir), "--corpus", str(tiny_corpus.path)]
    res = runner.invoke(
        app, [*args, "--subset-size", "0.25", "--out", str(out), "--device", "cpu", "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    assert len(np.load(out / artifacts.MODEL_SUBSET)) == 12
    with pytest.raises(FileExistsError):  # no silent overwrite
        runner.invoke(app, [*args, "--subset-size", "4", "--out", str(out)], catch_exceptions=False)
    with pytest.raises(ValueError, match="exactly one of --preset"):
        runner.invoke(
            app,
            ["pretrain", "--corpus", str(tiny_corpus.path), "--out", str(tmp_path / "p")],
            catch_exceptions=False,
        )


def test_selection_from_another_corpus_is_refused(tiny_corpus, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bioprune.training.pretrain import selection_indices

    sel = tmp_path / "sel"
    sel.mkdir()
    pq.write_table(
        pa.table({"index": pa.array([0, 1]), "id": pa.array(["seq0", "elsewhere"])}),
        sel / artifacts.SELECTION_TABLE,
    )
    with pytest.raises(ValueError, match="row 1"):
        selection_indices(sel, tiny_corpus)
    (sel / artifacts.SELECTION_TABLE).unlink()
    with pytest.raises(FileNotFoundError, match="bioprune select"):
        selection_indices(sel, tiny_corpus)


def test_bf16_autocast_path_trains(tiny_corpus, tmp_path):
    info = pretrain(
        PretrainConfig(
            corpus=tiny_corpus.path,
            out=tmp_path / "bf16",
            preset="tiny",
            training=_train_config(max_steps=2, dtype="bfloat16"),
        )
    )
    assert info["autocast_dtype"] == "bfloat16" and math.isfinite(info["train_loss_final"])
    assert _weights(tmp_path / "bf16")["lm_head.dense.weight"].dtype.is_floating_point


def test_resume_refuses_a_checkpoint_of_another_run(tiny_corpus, tmp_path):
    from bioprune.runtime import start_process

    def recipe(lr):
        from transformers import EsmForMaskedLM

        from bioprune.models.presets import build_config

        cfg = _train_config(lr=lr, max_steps=2, checkpoint_every=1, resume=True)
        model = EsmForMaskedLM(build_config("tiny", "rna"))
        return MaskedLMRecipe(
            cfg, model, tiny_corpus, np.arange(20), np.zeros(0, np.int64), tmp_path / "m",
            recipe="pretrain", data_fingerprint={"corpus": tiny_corpus.checksum},
            env=start_process("cpu"),
        )  # fmt: skip

    first = recipe(1e-3)
    first.setup()
    first.train()  # checkpoint at step 1; never saved, so the checkpoint stays
    first.close()  # releases OUT.ckpt/lock
    assert (tmp_path / "m.ckpt" / "checkpoint.pt").is_file()
    same = recipe(1e-3)
    same.setup()
    assert same.state.step == 1
    same.close()
    with pytest.raises(ValueError, match="differs in hyperparameters"):
        recipe(2e-3).setup()


# ------------------------------------------------------ resume and processes


def _cli(*args, env_extra=None, torchrun=0, timeout=240):
    # One thread per process: the test machine is shared and oversubscribed.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.update(env_extra or {})
    prefix = [PYTHON]
    if torchrun:
        prefix += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={torchrun}"]
    cmd = [*prefix, "-m", "bioprune.cli.main", *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


#: The same run as CLI arguments and as a config (the reference runs in-process).
RUN_ARGS = [
    "--preset", "tiny", "--lr", "1e-3", "--warmup-steps", "3", "--epochs", "3",
    "--device", "cpu", "--no-progress", "--eval-every", "4",
]  # fmt: skip


def _reference(corpus, out, *, val_fraction, **kw):
    return pretrain(
        PretrainConfig(
            corpus=corpus.path,
            out=out,
            preset="tiny",
            val_fraction=val_fraction,
            training=_train_config(epochs=3, eval_every=4, log_every=10, **kw),
        )
    )


def test_resume_after_kill_reaches_the_same_weights(tiny_corpus, tmp_path):
    ref = tmp_path / "ref"
    a = _reference(tiny_corpus, ref, val_fraction=0.05, batch_size=8, max_steps=10)
    out = tmp_path / "resumed"
    args = ["pretrain", "--corpus", tiny_corpus.path, *RUN_ARGS, "--out", out]
    args += ["--batch-size", "8", "--val-fraction", "0.05", "--max-steps", "10"]
    args += ["--checkpoint-every", "4"]
    killed = _cli(*args, env_extra={KILL_AFTER_STEP_ENV: "6"})
    assert killed.returncode == -9, killed.stderr  # SIGKILL after step 6, checkpoint at 4
    assert not out.exists() and (tmp_path / "resumed.ckpt" / "checkpoint.pt").is_file()
    with pytest.raises(FileExistsError, match="--resume"):
        _reference(tiny_corpus, out, val_fraction=0.05, batch_size=8, max_steps=10)
    res = _cli(*args, "--resume")
    assert res.returncode == 0, res.stderr
    assert _max_abs_diff(_weights(ref), _weights(out)) <= 1e-6
    b = json.loads((out / artifacts.MODEL_TRAINING).read_text())
    assert b["resumed_from_step"] == 4 and b["steps"] == a["steps"] == 10
    assert b["tokens_seen"] == a["tokens_seen"]
    assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-6)
    assert not (tmp_path / "resumed.ckpt").exists()


def test_two_process_ddp_matches_one_process(tiny_corpus, tmp_path):
    # 35 training examples (13 held out), global batch 16 = 8 x 2 micro-steps on 2
    # ranks: the last batch of 3 leaves rank 1's second micro-batch empty.
    one = _reference(tiny_corpus, tmp_path / "one", val_fraction=0.27, batch_size=16, max_steps=6)
    args = ["pretrain", "--corpus", tiny_corpus.path, *RUN_ARGS, "--out", tmp_path / "two"]
    args += ["--batch-size", "8", "--grad-accum", "2", "--val-fraction", "0.27"]
    args += ["--max-steps", "6", "--checkpoint-every", "0"]
    two = _cli(*args, torchrun=2)
    assert two.returncode == 0, two.stderr + two.stdout
    assert _max_abs_diff(_weights(tmp_path / "one"), _weights(tmp_path / "two")) < 1e-5
    info = json.loads((tmp_path / "two" / artifacts.MODEL_TRAINING).read_text())
    assert info["world_size"] == 2 and info["global_batch"] == 16
    assert info["val_loss"] == pytest.approx(one["val_loss"], abs=1e-5)
