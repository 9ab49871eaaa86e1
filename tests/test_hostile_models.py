"""Hostile model directories, Fisher files and result paths (issue 10, items 1, 2, 6, 12a).

Every case asserts exit status 2, a one-line message naming the file and the
reason, and that no input changed and no output appeared. A model directory is
damaged on a copy of ``tiny_model_dir`` by one of the functions in ``DAMAGE``.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.hostile import assert_one_line_error, leftovers, run_cli, snapshot

FAST = ["--device", "cpu", "--no-progress"]


def _refused(code: int, err: str, *fragments) -> None:
    """``assert_one_line_error``, comparing with all whitespace removed: rich folds a path
    longer than the terminal (80 columns under pytest) in the middle, which the shared
    helper's whitespace normalisation does not undo."""
    assert_one_line_error(code, err)
    flat = "".join(err.split()).lower()
    for f in fragments:
        assert "".join(str(f).split()).lower() in flat, f"{f!s} not in: {err}"


# ---- damaging a copy of the tiny model ------------------------------------------------


def _rewrite_weights(change):
    def damage(d: Path) -> None:
        sd = load_file(d / "model.safetensors")
        change(sd)
        save_file(sd, d / "model.safetensors", metadata={"format": "pt"})

    return damage


def _drop_layer_and_head(sd: dict) -> None:
    for k in [k for k in sd if ".layer.1." in k or k.startswith("lm_head.dense")]:
        del sd[k]


def _edit_json(name: str, change):
    def damage(d: Path) -> None:
        obj = json.loads((d / name).read_text())
        change(obj)
        (d / name).write_text(json.dumps(obj))

    return damage


def _write(name: str, data: bytes | None):
    def damage(d: Path) -> None:
        if data is None:
            (d / name).unlink()
        else:
            (d / name).write_bytes(data)

    return damage


def _truncate(d: Path) -> None:
    p = d / "model.safetensors"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


class _Boom:
    """Unpickling this creates the file ``MARKER`` (stands for arbitrary code)."""

    def __reduce__(self):
        return (open, (str(_Boom.marker), "w"))


def _pickle_only(d: Path) -> None:
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(pickle.dumps(_Boom()))


#: kind -> (damage, fragments the one-line message must hold; "{d}" is the damaged dir)
DAMAGE = {
    "missing-tensors": (
        _rewrite_weights(_drop_layer_and_head),
        ["{d}/model.safetensors", "missing", "esm.encoder.layer.1.*", "lm_head.dense.weight"],
    ),
    "unexpected-tensor": (
        _rewrite_weights(lambda sd: sd.__setitem__("extra.weight", torch.zeros(3))),
        ["{d}/model.safetensors", "unexpected", "extra.weight"],
    ),
    "wrong-shape": (
        _rewrite_weights(lambda sd: sd.__setitem__("lm_head.bias", torch.zeros(7))),
        # transformers 5 also reports the shapes ("[7] vs model [25]"), 4.x only the name
        ["{d}/model.safetensors", "wrong shape", "lm_head.bias"],
    ),
    "config-contradicts-weights": (
        _edit_json("config.json", lambda c: c.update(hidden_size=256)),
        ["{d}/model.safetensors", "contradict", "config.json", "word_embeddings"],
    ),
    "extra-layer-in-weights": (
        _edit_json("config.json", lambda c: c.update(num_hidden_layers=2)),
        ["{d}/model.safetensors", "encoder layer(s) [2, 3]", "num_hidden_layers 2"],
    ),
    "no-weights": (_write("model.safetensors", None), ["{d}/model.safetensors", "no such file"]),
    "pickle-weights-only": (_pickle_only, ["{d}/pytorch_model.bin", "pickle", "safetensors"]),
    "truncated-weights": (_truncate, ["{d}/model.safetensors", "cannot read model weights"]),
    "garbage-weights": (
        _write("model.safetensors", b"\x00\x01 not a tensor file" * 9),
        ["{d}/model.safetensors", "cannot read model weights"],
    ),
    "no-config": (_write("config.json", None), ["{d}/config.json", "no such file"]),
    "config-not-json": (
        _write("config.json", b'{"model_type": "esm",'),
        ["{d}/config.json", "cannot read model config"],
    ),
    "config-not-object": (_write("config.json", b"[1, 2]"), ["{d}/config.json", "JSON object"]),
    "config-wrong-model-type": (
        _edit_json("config.json", lambda c: c.update(model_type="bert")),
        ["{d}/config.json", "model_type 'bert' is not supported"],
    ),
    "config-no-model-type": (
        _edit_json("config.json", lambda c: c.pop("model_type")),
        ["{d}/config.json", "model_type None"],
    ),
    "config-negative-size": (
        _edit_json("config.json", lambda c: c.update(hidden_size=-3)),
        ["{d}/config.json", "hidden_size must be a positive integer"],
    ),
    "config-string-size": (
        _edit_json("config.json", lambda c: c.update(num_hidden_layers="four")),
        ["{d}/config.json", "num_hidden_layers must be a positive integer"],
    ),
    "config-heads-do-not-divide": (
        _edit_json("config.json", lambda c: c.update(num_attention_heads=5)),
        ["{d}/config.json", "not a multiple of num_attention_heads 5"],
    ),
    "config-bad-positions": (
        _edit_json("config.json", lambda c: c.update(position_embedding_type="sinusoid")),
        ["{d}/config.json", "position_embedding_type"],
    ),
    "config-bad-dropout": (
        _edit_json("config.json", lambda c: c.update(hidden_dropout_prob=3)),
        ["{d}/config.json", "hidden_dropout_prob"],
    ),
    "config-vocab-differs-from-alphabet": (
        _edit_json("config.json", lambda c: c.update(vocab_size=33)),
        ["{d}/config.json", "vocab_size is 33", "25 tokens"],
    ),
    "no-alphabet": (
        _write("bioprune_alphabet.json", None),
        ["{d}/bioprune_alphabet.json", "no such file"],
    ),
    "alphabet-not-json": (
        _write("bioprune_alphabet.json", b"rna"),
        ["{d}/bioprune_alphabet.json", "cannot read model alphabet"],
    ),
    "alphabet-wrong-shape": (
        _write("bioprune_alphabet.json", b'["rna"]'),
        ["{d}/bioprune_alphabet.json", "expected"],
    ),
    "alphabet-unknown": (
        _edit_json("bioprune_alphabet.json", lambda a: a.update(alphabet="dna")),
        ["{d}/bioprune_alphabet.json", "unknown alphabet 'dna'"],
    ),
    "alphabet-token-order": (
        _edit_json("bioprune_alphabet.json", lambda a: a["tokens"].reverse()),
        ["{d}/bioprune_alphabet.json", "token order"],
    ),
}


def _damaged(tiny_model_dir: Path, root: Path, kind: str) -> tuple[Path, list[str]]:
    d = root / f"model-{kind}"
    shutil.copytree(tiny_model_dir, d)
    damage, fragments = DAMAGE[kind]
    damage(d)
    return d, [f.format(d=d) for f in fragments]


@pytest.fixture
def marker(tmp_path, monkeypatch):
    path = tmp_path / "EXECUTED"
    monkeypatch.setattr(_Boom, "marker", path, raising=False)
    return path


# ---- item 1 and 2: damaged model directories --------------------------------------------


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_model_is_refused_before_any_work(
    kind, tiny_model_dir, tiny_corpus, tmp_path, marker, monkeypatch, capsys
):
    model, fragments = _damaged(tiny_model_dir, tmp_path, kind)
    out = tmp_path / "F.safetensors"
    before = snapshot(model, tiny_corpus.path)
    code, err = run_cli(
        "fisher", "--model", model, "--corpus", tiny_corpus.path, "--subset-size", "4",
        "--out", out, *FAST, monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    _refused(code, err, *fragments)
    assert snapshot(model, tiny_corpus.path) == before
    assert not out.exists() and not out.with_name(out.name + ".parts").exists()
    assert leftovers(tmp_path) == []
    assert not marker.exists()  # nothing unpickled


@pytest.fixture(scope="module")
def fisher_file(tiny_model_dir, tiny_corpus, tmp_path_factory):
    """A real Fisher file of the tiny model (4 examples)."""
    from bioprune.influence.fisher import FisherConfig, compute_fisher

    out = tmp_path_factory.mktemp("fisher") / "F.safetensors"
    cfg = FisherConfig(
        model=tiny_model_dir, corpus=tiny_corpus.path, out=out, subset_size="4",
        device="cpu", progress=False, params="layers:3",
    )  # fmt: skip
    compute_fisher(cfg)
    return out


@pytest.fixture(scope="module")
def cls_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("task") / "gc"
    root.mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "valid", "test"):
        rows = ["sequence,label"]
        for _ in range(12):
            seq = "".join(rng.choice(list("ACGU"), int(rng.integers(8, 20))))
            rows.append(f"{seq},{int(sum(c in 'GC' for c in seq) > len(seq) / 2)}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def _command(cmd: str, model: Path, corpus: Path, fisher: Path, task: Path) -> list:
    if cmd == "fisher":
        return ["fisher", "--model", model, "--corpus", corpus, "--subset-size", "4", *FAST]
    if cmd == "score":
        return ["score", "--model", model, "--corpus", corpus, "--fisher", fisher, *FAST]
    if cmd == "adapt":
        return ["adapt", "--model", model, "--corpus", corpus, "--subset-size", "4", *FAST]
    if cmd == "pretrain":
        return ["pretrain", "--init", model, "--corpus", corpus, "--max-steps", "1"]
    assert cmd == "evaluate"
    return ["evaluate", "--model", model, "--task", task, "--seeds", "0", "--epochs", "1"]


@pytest.mark.parametrize("cmd", ["fisher", "score", "adapt", "pretrain", "evaluate"])
def test_incomplete_weights_are_refused_by_every_command(
    cmd, tiny_model_dir, tiny_corpus, fisher_file, cls_task, tmp_path, monkeypatch, capsys
):
    """Issue 10 item 1: a model.safetensors missing a layer and lm_head.dense used to load
    with random values for them, and every command exited 0."""
    model, fragments = _damaged(tiny_model_dir, tmp_path, "missing-tensors")
    out = tmp_path / "out"
    args = _command(cmd, model, tiny_corpus.path, fisher_file, cls_task)
    before = snapshot(model, tiny_corpus.path, fisher_file, cls_task)
    code, err = run_cli(*args, "--out", out, monkeypatch=monkeypatch, capsys=capsys)
    _refused(code, err, *fragments)
    assert snapshot(model, tiny_corpus.path, fisher_file, cls_task) == before
    assert not out.exists() and leftovers(tmp_path) == []


def test_pickle_weights_next_to_safetensors_are_never_unpickled(tiny_model_dir, tmp_path, marker):
    from bioprune.models.loading import load_masked_lm

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    (d / "pytorch_model.bin").write_bytes(pickle.dumps(_Boom()))
    model, _ = load_masked_lm(d)
    assert not marker.exists()
    assert torch.equal(
        model.esm.embeddings.word_embeddings.weight,
        load_file(d / "model.safetensors")["esm.embeddings.word_embeddings.weight"],
    )


def test_complete_model_loads_the_same_values_every_time(tiny_model_dir, tmp_path):
    """Issue 10 item 1's symptom, at its root: every tensor comes from the file. A file that
    also holds the tied decoder and the position_ids buffer (legitimately redundant) loads."""
    from bioprune.models.loading import load_masked_lm

    a, _ = load_masked_lm(tiny_model_dir)
    b, _ = load_masked_lm(tiny_model_dir)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    emb = "esm.embeddings.word_embeddings.weight"
    assert torch.equal(sa["lm_head.decoder.weight"], sa[emb])

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    sd = load_file(d / "model.safetensors")
    sd["lm_head.decoder.weight"] = sd[emb].clone()
    sd["esm.embeddings.position_ids"] = torch.arange(1026)[None]
    save_file(sd, d / "model.safetensors", metadata={"format": "pt"})
    c, _ = load_masked_lm(d)
    assert all(torch.equal(sa[k], v) for k, v in c.state_dict().items())


# ---- item 2: damaged Fisher files and resume parts --------------------------------------


def _fisher_damage(kind: str, fisher_file: Path, model: Path, tmp_path: Path) -> Path:
    p = tmp_path / f"{kind}.safetensors"
    if kind == "garbage":
        p.write_bytes(b"definitely not safetensors" * 40)
    elif kind == "truncated":
        data = fisher_file.read_bytes()
        p.write_bytes(data[: len(data) - 100])
    elif kind == "model-weights":  # a safetensors file, but not a Fisher
        shutil.copy(model / "model.safetensors", p)
    else:
        from safetensors import safe_open

        with safe_open(str(fisher_file), "pt") as fh:
            meta, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
        if kind == "no-damping":
            meta["damping"] = json.dumps({"rule": "x"})
        elif kind == "negative":
            name = sorted(tensors)[0]
            tensors[name] = -tensors[name] - 1
        elif kind == "bad-meta-json":
            meta["mask_seed"] = "{not json"
        save_file(tensors, p, metadata=meta)
    return p


FISHER_CASES = {
    "garbage": "cannot read Fisher file",
    "truncated": "cannot read Fisher file",
    "model-weights": "not a bioprune Fisher file",
    "no-damping": "damaged Fisher metadata",
    "negative": "negative or non-finite",
    "bad-meta-json": "cannot read Fisher metadata",
}


@pytest.mark.parametrize("kind", sorted(FISHER_CASES))
def test_damaged_fisher_is_refused_by_score(
    kind, fisher_file, tiny_model_dir, tiny_corpus, tmp_path, monkeypatch, capsys
):
    bad = _fisher_damage(kind, fisher_file, tiny_model_dir, tmp_path)
    out = tmp_path / "S.parquet"
    before = snapshot(bad, tiny_model_dir, tiny_corpus.path)
    code, err = run_cli(
        "score", "--model", tiny_model_dir, "--corpus", tiny_corpus.path, "--fisher", bad,
        "--out", out, *FAST, monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    _refused(code, err, bad, FISHER_CASES[kind])
    assert snapshot(bad, tiny_model_dir, tiny_corpus.path) == before
    assert not out.exists() and leftovers(tmp_path) == []


def test_fisher_of_another_model_is_refused_by_score(
    fisher_file, tiny_model_dir, tiny_corpus, tmp_path, monkeypatch, capsys
):
    from bioprune.models.presets import init_model

    other = tmp_path / "other"
    init_model("tiny", "rna", other, seed=1)  # same architecture, other weights
    out = tmp_path / "S.parquet"
    before = snapshot(fisher_file, other)
    code, err = run_cli(
        "score", "--model", other, "--corpus", tiny_corpus.path, "--fisher", fisher_file,
        "--out", out, *FAST, monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    _refused(code, err, fisher_file, "computed for another model")
    assert snapshot(fisher_file, other) == before and not out.exists()


@pytest.mark.parametrize("damage", ["truncated", "wrong-shape"])
def test_damaged_fisher_resume_part_is_refused(
    damage, tiny_model_dir, tiny_corpus, tmp_path, monkeypatch, capsys
):
    import bioprune.influence.runs as runs_mod

    out = tmp_path / "F.safetensors"
    args = ["fisher", "--model", tiny_model_dir, "--corpus", tiny_corpus.path]
    args += ["--subset-size", "8", "--params", "layers:3", "--out", out, *FAST]
    args += ["--batch-tokens", "128", "--part-batches", "1", "--checkpoint-seconds", "0"]

    def die(parts_done):
        if parts_done >= 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(runs_mod, "maybe_die", die)
    code, _ = run_cli(*args, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 130
    part = out.with_name(out.name + ".parts") / "fisher-rank0.safetensors"
    if damage == "truncated":
        part.write_bytes(part.read_bytes()[:-64])
    else:
        sd = load_file(part)
        name = next(k for k in sd if k != "__fired__")
        sd[name] = torch.zeros(3, dtype=torch.float64)
        from safetensors import safe_open

        with safe_open(str(part), "pt") as fh:
            meta = fh.metadata()
        save_file(sd, part, metadata=meta)
    monkeypatch.setattr(runs_mod, "maybe_die", lambda n: None)
    before = snapshot(part.parent, tiny_model_dir, tiny_corpus.path)
    code, err = run_cli(*args, "--resume", monkeypatch=monkeypatch, capsys=capsys)
    reason = "cannot read Fisher resume part" if damage == "truncated" else "has shape (3,)"
    _refused(code, err, part, reason, "to start over")
    assert snapshot(part.parent, tiny_model_dir, tiny_corpus.path) == before
    assert not out.exists()


# ---- item 12a: evaluate checks --out before training; item 4: same seed, same numbers ----


@pytest.mark.parametrize("where", ["parent-is-a-file", "out-is-a-directory"])
def test_evaluate_unwritable_out_is_refused_before_training(
    where, tiny_model_dir, cls_task, tmp_path, monkeypatch, capsys
):
    import bioprune.evaluation.downstream as downstream

    def no_training(*a, **k):
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(downstream, "evaluate", no_training)
    (tmp_path / "file").write_text("keep me")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x").write_text("keep me too")
    if where == "parent-is-a-file":
        out, extra, fragments = tmp_path / "file" / "sub" / "R.json", [], ["is not a directory"]
    else:
        out, extra, fragments = tmp_path / "dir", ["--overwrite"], ["is a directory"]
    before = snapshot(tmp_path)
    code, err = run_cli(
        "evaluate", "--model", tiny_model_dir, "--task", cls_task, "--out", out, *extra,
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    _refused(code, err, out, *fragments)
    assert snapshot(tmp_path) == before


@pytest.fixture(scope="module")
def micro_model(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide RNA model: evaluate runs in well under a second."""
    from transformers import EsmForMaskedLM

    from bioprune.data.alphabet import get_alphabet
    from bioprune.models.presets import ModelPreset, build_config, save_alphabet

    path = tmp_path_factory.mktemp("micro") / "rna"
    torch.manual_seed(0)
    a = get_alphabet("rna")
    preset = ModelPreset("micro", 2, 32, 2, 64, "rotary", False, "tests")
    EsmForMaskedLM(build_config(preset, a)).save_pretrained(path)
    save_alphabet(path, a)
    return path


def test_evaluate_twice_with_the_same_seed_gives_identical_results(
    micro_model, cls_task, tmp_path, monkeypatch, capsys
):
    """Issue 10 item 1's symptom: two evaluate runs with one seed differed (random fill-in)."""
    results = []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.json"
        code, err = run_cli(
            "evaluate", "--model", micro_model, "--task", cls_task, "--out", out,
            "--seeds", "3", "--epochs", "1", "--batch-size", "8", "--device", "cpu",
            monkeypatch=monkeypatch, capsys=capsys,
        )  # fmt: skip
        assert code == 0, err
        results.append(json.loads(out.read_text()))
    a, b = results
    assert a["runs"] == b["runs"] and a["metrics"] == b["metrics"]
    assert a["model"]["checksum"] == b["model"]["checksum"]


def test_init_refuses_impossible_dropout(tmp_path, monkeypatch, capsys):
    out = tmp_path / "m"
    code, err = run_cli(
        "init", "--preset", "tiny", "--alphabet", "rna", "--out", out, "--dropout", "1.5",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    _refused(code, err, "--dropout 1.5", "[0, 1)")
    assert not out.exists() and leftovers(tmp_path) == []
