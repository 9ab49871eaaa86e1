"""``bioprune fisher`` and ``bioprune score`` end to end.

Small ad-hoc models (2 layers, hidden 32) keep every run well under a second;
the kill/resume and torchrun tests start real subprocesses.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from bioprune.cli.main import app
from bioprune.data.alphabet import get_alphabet
from bioprune.data.corpus import write_corpus
from bioprune.data.masking import IGNORE_INDEX
from tests.conftest import random_sequences

COMMON = ["--batch-tokens", "256", "--part-batches", "1", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Same thread count in-process and in subprocesses: identical float results.
    # Module scope, so that it also holds while the module-scoped fixtures
    # (fisher_file, scores_file) run: they are set up before function-scoped ones.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    return env


def save_small_model(path: Path, kind: str = "rotary", nan_position_row: int | None = None) -> Path:
    """Write a 2-layer, hidden-32 RNA model directory (rotary or absolute positions)."""
    from transformers import EsmForMaskedLM

    from bioprune.models.presets import ModelPreset, build_config, save_alphabet

    preset = ModelPreset("test", 2, 32, 4, 64, kind, kind == "absolute", "tests")
    torch.manual_seed(0)
    model = EsmForMaskedLM(build_config(preset, get_alphabet("rna")))
    if nan_position_row is not None:
        with torch.no_grad():
            model.esm.embeddings.position_embeddings.weight[nan_position_row] = float("nan")
    model.save_pretrained(path)
    save_alphabet(path, get_alphabet("rna"))
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_small_model(tmp_path_factory.mktemp("cli") / "model")


def invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    return result


def ok(args: list[str]):
    result = invoke(args)
    if result.exit_code != 0:
        raise AssertionError(f"{args} failed: {result.output}\n{result.exception!r}")
    return result


@pytest.fixture(scope="module")
def fisher_file(tmp_path_factory, model_dir, tiny_corpus):
    out = tmp_path_factory.mktemp("fisher") / "F.safetensors"
    masks = out.with_name("fisher_masks.parquet")
    args = ["fisher", "--model", str(model_dir), "--corpus", str(tiny_corpus.path)]
    args += ["--subset-size", "0.5", "--seed", "7", "--out", str(out), "--save-masks", str(masks)]
    result = ok(args + COMMON)
    assert "tensors" in result.output and "parameters" in result.output
    return out


@pytest.fixture(scope="module")
def scores_file(tmp_path_factory, model_dir, tiny_corpus, fisher_file):
    out = tmp_path_factory.mktemp("scores") / "S.parquet"
    args = ["score", "--model", str(model_dir), "--corpus", str(tiny_corpus.path)]
    args += ["--fisher", str(fisher_file), "--out", str(out)]
    args += ["--save-masks", str(out.with_name("masks.parquet"))]
    ok(args + COMMON)
    return out


def test_fisher_file_format(fisher_file, model_dir, tiny_corpus):
    from safetensors import safe_open

    from bioprune import artifacts
    from bioprune.influence.fisher import load_fisher

    data = load_fisher(fisher_file)
    meta = data.meta
    for key in ("subset", "damping", "mask_seed", "mask_draws", "params", "model_checksum"):
        assert key in meta
    assert meta["bioprune_version"]
    assert meta["model_checksum"] == artifacts.model_checksum(model_dir)
    assert meta["mask_seed"] == 7 and meta["mask_draws"] == 1
    assert len(meta["subset"]) == 24 == meta["examples"]
    expected = np.sort(np.random.default_rng(7).choice(48, size=24, replace=False))
    assert meta["subset"] == expected.tolist()
    names = meta["params"]["names"]
    assert set(names) == set(data.tensors)
    assert "esm.embeddings.word_embeddings.weight" in names
    assert "lm_head.decoder.weight" not in names  # the tied tensor is counted once
    assert "esm.contact_head.regression.weight" in meta["params"]["excluded"]
    with safe_open(str(fisher_file), framework="pt") as fh:
        raw = fh.metadata()
    assert all(isinstance(v, str) for v in raw.values())
    for name, t in data.tensors.items():
        assert t.dtype == torch.float32 and bool((t >= 0).all()) and t.any()
        assert data.lambdas[name] == pytest.approx(1e-3 * float(t.double().mean()), rel=1e-6)


def test_scores_file_format(scores_file, fisher_file, tiny_corpus):
    from bioprune.influence.score import read_scores_meta

    t = pq.read_table(scores_file)
    assert t.column_names == ["index", "id", "length", "score", "loss"]
    assert str(t.schema.field("index").type) == "int64"
    assert str(t.schema.field("score").type) == "double"
    assert t.column("index").to_pylist() == list(range(48))
    assert t.column("id").to_pylist() == tiny_corpus.ids().tolist()
    assert t.column("length").to_pylist() == tiny_corpus.lengths.tolist()
    score = t.column("score").to_numpy()
    assert np.isfinite(score).all() and (score > 0).all()
    assert np.isfinite(t.column("loss").to_numpy()).all()
    meta = read_scores_meta(scores_file)
    for key in ("model_checksum", "fisher_checksum", "mask_seed", "mask_draws", "params"):
        assert key in meta
    assert meta["mask_seed"] == 7  # the Fisher's seed, so masks match in both passes
    assert meta["bioprune_version"]
    assert not scores_file.with_name(scores_file.name + ".parts").exists()


def test_saved_masks_let_plain_pytorch_recompute_the_loss(scores_file, model_dir, tiny_corpus):
    from transformers import AutoModelForMaskedLM

    masks = pq.read_table(scores_file.with_name("masks.parquet")).to_pylist()
    assert len(masks) == 48 and [m["index"] for m in masks] == list(range(48))
    scores = pq.read_table(scores_file)
    model = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    for row in masks[:6]:
        i = row["index"]
        framed = tiny_corpus.framed(i)
        x = torch.tensor(framed)
        y = torch.full_like(x, IGNORE_INDEX)
        pos = torch.tensor(row["positions"], dtype=torch.long)
        y[pos] = x[pos]
        x[pos] = torch.tensor(row["inputs"], dtype=torch.long)
        with torch.no_grad():
            logits = model(input_ids=x[None]).logits[0]
        loss = torch.nn.functional.cross_entropy(logits, y, ignore_index=IGNORE_INDEX)
        assert float(loss) == pytest.approx(scores.column("loss")[i].as_py(), rel=1e-5)


def test_fisher_masks_cover_the_subset(fisher_file):
    from bioprune.influence.fisher import load_fisher

    masks = pq.read_table(fisher_file.with_name("fisher_masks.parquet"))
    assert masks.column("index").to_pylist() == load_fisher(fisher_file).meta["subset"]


def _kill_then_resume(tmp_path, args: list[str], out: Path, after: int):
    cmd = [sys.executable, "-m", "bioprune.cli.main", *args]
    killed = subprocess.run(
        cmd,
        env=_env(BIOPRUNE_TEST_KILL_AFTER_PARTS=str(after)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    parts = out.with_name(out.name + ".parts")
    assert parts.is_dir() and not out.exists()
    again = invoke(args)  # without --resume: refused, nothing lost
    assert again.exit_code != 0 and "--resume" in str(again.exception)
    # a second --resume while another process holds the run: refused, naming the directory
    before = sorted(p.name for p in parts.iterdir())
    with open(parts / ".lock", "a+") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        other.write("4242")
        other.flush()
        loser = invoke([*args, "--resume"])
    assert loser.exit_code != 0
    assert str(parts) in str(loser.exception) and "another running" in str(loser.exception)
    assert sorted(p.name for p in parts.iterdir()) == before
    ok([*args, "--resume"])
    assert not parts.exists()


def test_score_resume_after_kill_equals_uninterrupted(
    tmp_path, model_dir, tiny_corpus, fisher_file, scores_file
):
    out = tmp_path / "S.parquet"
    args = ["score", "--model", str(model_dir), "--corpus", str(tiny_corpus.path)]
    args += ["--fisher", str(fisher_file), "--out", str(out), *COMMON]
    _kill_then_resume(tmp_path, args, out, after=3)
    assert pq.read_table(out).equals(pq.read_table(scores_file))


def test_fisher_resume_after_kill_equals_uninterrupted(
    tmp_path, model_dir, tiny_corpus, fisher_file
):
    from safetensors.torch import load_file

    out = tmp_path / "F.safetensors"
    args = ["fisher", "--model", str(model_dir), "--corpus", str(tiny_corpus.path)]
    args += ["--subset-size", "0.5", "--seed", "7", "--out", str(out)]
    args += ["--checkpoint-seconds", "0", *COMMON]
    _kill_then_resume(tmp_path, args, out, after=2)
    got, want = load_file(out), load_file(fisher_file)
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)


# Both commands in one torchrun launch (process start-up dominates the test's time);
# the script owns the process group, as a pipeline running several stages would.
TWO_STAGES = """
import sys
import torch.distributed as dist
from bioprune.cli.main import app
from bioprune.runtime import process_group_timeout
dist.init_process_group("gloo", timeout=process_group_timeout())
args = sys.argv[1:]
cut = args.index("--then")
app(args[:cut], standalone_mode=False)
app(args[cut + 1 :], standalone_mode=False)
dist.destroy_process_group()
"""


RENDEZVOUS_RACES = ("EADDRINUSE", "address already in use", "Address already in use")


def test_two_processes_equal_one(tmp_path, model_dir, tiny_corpus, fisher_file, scores_file):
    from safetensors.torch import load_file

    script = tmp_path / "two_stages.py"
    script.write_text(TWO_STAGES)
    base = ["--model", str(model_dir), "--corpus", str(tiny_corpus.path), *COMMON]
    fisher2 = tmp_path / "F2.safetensors"
    scores2 = tmp_path / "S2.parquet"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += [str(script), "fisher", *base, "--subset-size", "0.5", "--seed", "7"]
    cmd += ["--out", str(fisher2), "--then", "score", *base, "--fisher", str(fisher_file)]
    cmd += ["--out", str(scores2)]
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    if run.returncode and any(s in run.stderr for s in RENDEZVOUS_RACES):
        # --standalone picks a free port that a parallel test may take first: retry once
        run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got, want = load_file(fisher2), load_file(fisher_file)
    assert got.keys() == want.keys()
    for k in want:  # float64 sums in another order, then float32: equal up to rounding
        torch.testing.assert_close(got[k], want[k], rtol=1e-6, atol=0)
    got_s, want_s = pq.read_table(scores2), pq.read_table(scores_file)
    for col in ("index", "id", "length"):
        assert got_s.column(col).equals(want_s.column(col))
    # Same examples, masks and batches; the per-example sums may round differently
    # with another thread count (about 1e-7 relative), so not bit for bit.
    for col in ("score", "loss"):
        np.testing.assert_allclose(
            got_s.column(col).to_numpy(), want_s.column(col).to_numpy(), rtol=1e-6, atol=0
        )


def test_nonfinite_losses_stop_or_are_recorded(tmp_path, tiny_corpus):
    from bioprune.influence.fisher import load_fisher
    from bioprune.influence.score import read_scores_meta

    longest = int(tiny_corpus.max_length)
    # Learned positions start at pad_id + 1 = 2: token t of an example uses row t + 2, so
    # the row of the longest examples' <eos> is used by them alone.
    victims = np.flatnonzero(tiny_corpus.lengths == longest)
    ids = tiny_corpus.ids()
    model = save_small_model(tmp_path / "nan", "absolute", nan_position_row=longest + 3)
    base = ["--model", str(model), "--corpus", str(tiny_corpus.path), *COMMON]
    fisher = tmp_path / "F.safetensors"
    stopped = invoke(["fisher", *base, "--subset-size", "48", "--out", str(fisher)])
    assert isinstance(stopped.exception, ValueError) and str(ids[victims[0]]) in str(
        stopped.exception
    )
    assert not fisher.exists()
    ok(["fisher", *base, "--subset-size", "48", "--out", str(fisher), "--on-nonfinite", "skip"])
    data = load_fisher(fisher)
    assert data.meta["nonfinite"]["skipped"] == victims.tolist()
    assert data.meta["examples"] == 48 - len(victims)
    assert all(bool(torch.isfinite(t).all()) for t in data.tensors.values())

    out = tmp_path / "S.parquet"
    stopped = invoke(["score", *base, "--fisher", str(fisher), "--out", str(out)])
    assert isinstance(stopped.exception, ValueError)
    assert "non-finite" in str(stopped.exception) and str(ids[victims[0]]) in str(stopped.exception)
    assert not out.exists()
    ok(["score", *base, "--fisher", str(fisher), "--out", str(out), "--on-nonfinite", "skip"])
    score = pq.read_table(out).column("score").to_numpy()
    assert np.flatnonzero(np.isnan(score)).tolist() == victims.tolist()
    assert np.isfinite(np.delete(score, victims)).all()
    assert read_scores_meta(out)["nonfinite"]["count"] == len(victims)


def test_mismatched_alphabet_is_refused_before_any_work(tmp_path, model_dir, fisher_file):
    protein = write_corpus(tmp_path / "prot", random_sequences(6, "protein"), "protein")
    out = tmp_path / "F.safetensors"
    args = ["fisher", "--model", str(model_dir), "--corpus", str(protein.path)]
    result = invoke([*args, "--subset-size", "3", "--out", str(out), *COMMON])
    assert isinstance(result.exception, ValueError) and "alphabet" in str(result.exception)
    assert not out.exists() and not out.with_name(out.name + ".parts").exists()
    scores = tmp_path / "S.parquet"
    args = ["score", "--model", str(model_dir), "--corpus", str(protein.path)]
    result = invoke([*args, "--fisher", str(fisher_file), "--out", str(scores), *COMMON])
    assert isinstance(result.exception, ValueError) and "alphabet" in str(result.exception)
    assert not scores.exists()


def test_fisher_of_another_model_is_refused(tmp_path, tiny_corpus, fisher_file):
    other = save_small_model(tmp_path / "other", "absolute")
    args = ["score", "--model", str(other), "--corpus", str(tiny_corpus.path)]
    result = invoke([*args, "--fisher", str(fisher_file), "--out", str(tmp_path / "S.parquet")])
    assert isinstance(result.exception, ValueError)
    assert "another model" in str(result.exception)


def test_lm_head_params_and_subset_from(tmp_path, model_dir, tiny_corpus):
    from bioprune import artifacts
    from bioprune.influence.fisher import load_fisher

    adapted = tmp_path / "adapted"
    adapted.mkdir()
    np.save(adapted / artifacts.MODEL_SUBSET, np.array([5, 1, 9, 30]))
    out = tmp_path / "F.safetensors"
    args = ["fisher", "--model", str(model_dir), "--corpus", str(tiny_corpus.path)]
    args += ["--subset-from", str(adapted), "--params", "lm_head"]
    result = ok([*args, "--out", str(out), *COMMON])
    assert "5 tensors" in result.output
    data = load_fisher(out)
    assert data.meta["subset"] == [1, 5, 9, 30]
    head = ["dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias", "bias"]
    assert sorted(data.tensors) == sorted(f"lm_head.{n}" for n in head)
    scores = tmp_path / "S.parquet"
    args = ["score", "--model", str(model_dir), "--corpus", str(tiny_corpus.path)]
    ok([*args, "--fisher", str(out), "--out", str(scores), "--mask-draws", "2", *COMMON])
    meta = json.loads(pq.read_schema(scores).metadata[b"params"])
    assert meta["spec"] == "lm_head" and len(meta["names"]) == 5
    assert pq.read_schema(scores).metadata[b"mask_draws"] == b"2"


def test_help_lists_the_options():
    for command in ("fisher", "score"):
        result = invoke([command, "--help"])
        assert result.exit_code == 0
        assert "--resume" in result.output and "--save-masks" in result.output


def test_bfloat16_autocast_stays_close_to_float32(
    tmp_path, model_dir, tiny_corpus, fisher_file, scores_file
):
    out = tmp_path / "S.parquet"
    args = ["score", "--model", str(model_dir), "--corpus", str(tiny_corpus.path)]
    ok([*args, "--fisher", str(fisher_file), "--out", str(out), "--dtype", "bfloat16", *COMMON])
    bf16 = pq.read_table(out).column("score").to_numpy()
    f32 = pq.read_table(scores_file).column("score").to_numpy()
    assert np.corrcoef(bf16, f32)[0, 1] > 0.999
    assert np.median(np.abs(bf16 / f32 - 1)) < 0.05


def test_large_subsets_go_to_a_sidecar(tmp_path):
    import torch
    from safetensors import safe_open

    from bioprune.influence.fisher import INLINE_SUBSET_MAX, Fisher

    subset = np.arange(INLINE_SUBSET_MAX + 1, dtype=np.int64) * 2
    out = tmp_path / "F.safetensors"
    fisher = Fisher({"w": torch.ones(2)}, {"w": 1e-3}, {"subset": subset.tolist()})
    fisher.save(out)
    with safe_open(str(out), "pt") as fh:
        info = json.loads(fh.metadata()["subset"])
    assert np.array_equal(np.load(tmp_path / info["file"]), subset)


STUCK_RENDEZVOUS = """
from bioprune.runtime import start_process
start_process("cpu")
"""


def test_stuck_rendezvous_fails_instead_of_hanging(tmp_path, monkeypatch):
    import socket

    from bioprune.runtime import process_group_timeout

    monkeypatch.setenv("BIOPRUNE_DIST_TIMEOUT_S", "0")
    with pytest.raises(ValueError, match="BIOPRUNE_DIST_TIMEOUT_S"):
        process_group_timeout()
    monkeypatch.delenv("BIOPRUNE_DIST_TIMEOUT_S")
    assert process_group_timeout().total_seconds() == 30 * 60
    # Rank 0 of a world of 2 whose rank 1 never comes: an error within the timeout.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_RENDEZVOUS)
    env = _env(BIOPRUNE_DIST_TIMEOUT_S="2", WORLD_SIZE="2", RANK="0", LOCAL_RANK="0")
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    run = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode != 0
    assert "Timed out" in run.stderr or "timeout" in run.stderr.lower(), run.stderr[-2000:]
