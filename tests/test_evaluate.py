"""``bioprune evaluate`` end to end: every task kind on a micro model, errors, determinism."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bioprune.data.alphabet import get_alphabet
from bioprune.evaluation.downstream import _raw_encoder, evaluate_model
from bioprune.evaluation.tasks import KIND_METRICS, infer_kind, load_task, load_task_spec

FAST = {"seeds": [0], "epochs": 1, "batch_size": 8, "show_progress": False}
COMPLEMENT = {"A": "U", "U": "A", "G": "C", "C": "G"}


def _micro_model(path: Path, alphabet: str, seed: int) -> Path:
    """A 2-layer, 32-wide ESM model (fast enough for many end-to-end runs)."""
    import torch
    from transformers import EsmForMaskedLM

    from bioprune.data.alphabet import get_alphabet
    from bioprune.models.presets import ModelPreset, build_config, save_alphabet

    preset = ModelPreset("micro", 2, 32, 2, 64, "rotary", False, "tests")
    a = get_alphabet(alphabet)
    torch.manual_seed(seed)
    model = EsmForMaskedLM(build_config(preset, a))
    model.save_pretrained(path)
    save_alphabet(path, a)
    return path


@pytest.fixture(scope="module")
def rna_model(tmp_path_factory):
    # seed 123, so that the Raw baseline (seeds 0, 1, 2) differs from the model
    return _micro_model(tmp_path_factory.mktemp("micro") / "rna", "rna", 123)


@pytest.fixture(scope="module")
def protein_model(tmp_path_factory):
    return _micro_model(tmp_path_factory.mktemp("micro") / "protein", "protein", 123)


def _rand(rng, n: int, letters: str = "ACGU") -> str:
    return "".join(rng.choice(list(letters), n))


def _write_task(root: Path, rows: dict[str, list[dict]], yaml: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, items in rows.items():
        cols = list(items[0]) if items else ["sequence", "label"]
        lines = [",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in items]
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    if yaml is not None:
        (root / "task.yaml").write_text(yaml)
    return root


def _splits(make, n: int = 24, seed: int = 0) -> dict[str, list[dict]]:
    rng = np.random.default_rng(seed)
    return {s: [make(rng) for _ in range(n)] for s in ("train", "valid", "test")}


def _gc(seq: str) -> float:
    return sum(c in "GC" for c in seq) / len(seq)


def _hairpin(rng) -> tuple[str, str]:
    stem, loop = int(rng.integers(3, 6)), int(rng.integers(3, 6))
    left = _rand(rng, stem)
    seq = left + _rand(rng, loop) + "".join(COMPLEMENT[c] for c in reversed(left))
    return seq, "(" * stem + "." * loop + ")" * stem


# ---- kinds inferred and run end to end ------------------------------------------


def _check(results: dict, kind: str, names: set[str]) -> None:
    assert results["task"]["kind"] == kind
    assert names <= set(results["metrics"]) == set(KIND_METRICS[kind])
    for name in names:
        m = results["metrics"][name]
        assert len(m["per_seed"]) == len(results["seeds"])
        assert m["mean"] is None or np.isfinite(m["mean"])
    for split in ("train", "valid", "test"):
        s = results["task"]["splits"][split]
        assert s["examples"] > 0 and s["checksum"].startswith("blake2b:")
    assert results["model"]["checksum"].startswith("blake2b:")
    assert results["bioprune_version"]


def test_classification_finetune_linear(tmp_path, rna_model):
    def make(rng):
        seq = _rand(rng, int(rng.integers(8, 20)))
        return {"sequence": seq, "label": "gc_rich" if _gc(seq) > 0.5 else "au_rich"}

    task = _write_task(tmp_path / "cls", _splits(make))
    res = evaluate_model(rna_model, task, **FAST)
    _check(res, "classification", {"accuracy", "macro_f1"})
    assert res["protocol"]["name"] == "finetune-linear"
    assert res["protocol"]["sources"]["epochs"] == "command line"
    assert res["protocol"]["lr"] == 1e-4  # the paper's default for the kind
    assert res["task"]["classes"] == ["au_rich", "gc_rich"]
    assert 0.0 <= res["metrics"]["accuracy"]["mean"] <= 1.0


def test_regression(tmp_path, rna_model):
    def make(rng):
        seq = _rand(rng, int(rng.integers(8, 20)))
        return {"seq": seq, "label": round(_gc(seq) + 0.01, 4)}  # BEACON's column name

    task = _write_task(tmp_path / "reg", _splits(make))
    res = evaluate_model(rna_model, task, protocol="frozen-linear", **FAST)
    _check(res, "regression", {"spearman", "mse", "rmse", "mae", "r2"})
    m = res["metrics"]
    assert m["rmse"]["mean"] == pytest.approx(np.sqrt(m["mse"]["mean"]))


def test_multilabel_defaults_to_lower_lr(tmp_path, rna_model):
    def make(rng):
        seq = _rand(rng, int(rng.integers(8, 20)))
        labels = [x for x, c in (("a_mod", "A"), ("g_mod", "G")) if seq.count(c) > len(seq) / 4]
        return {"sequence": seq, "labels": ";".join(labels)}

    task = _write_task(tmp_path / "ml", _splits(make))
    res = evaluate_model(rna_model, task, **FAST)
    _check(res, "multilabel", {"mean_auc"})
    assert res["protocol"]["lr"] == 5e-5
    assert res["task"]["classes"] == ["a_mod", "g_mod"]


def test_secondary_structure_dot_bracket(tmp_path, rna_model):
    def make(rng):
        seq, structure = _hairpin(rng)
        return {"sequence": seq, "structure": structure}

    task = _write_task(tmp_path / "ss", _splits(make, n=16))
    res = evaluate_model(rna_model, task, **{**FAST, "epochs": 2}, lr=1e-2)
    _check(res, "secondary_structure", {"precision", "recall", "f1", "mcc"})
    assert res["protocol"]["name"] == "frozen-mlp"
    assert len(res["runs"][0]["history"]) == 2
    # balanced loss weight: unpaired upper-triangle cells / pairs, over the training split
    rows = _splits(make, n=16)["train"]
    pairs = sum(r["structure"].count("(") for r in rows)
    cells = sum(len(r["sequence"]) * (len(r["sequence"]) - 1) // 2 for r in rows)
    assert res["protocol"]["pos_weight"] == pytest.approx((cells - pairs) / pairs)
    (task / "task.yaml").write_text("pos_weight: 1\n")
    res = evaluate_model(rna_model, task, **FAST)
    assert res["protocol"]["pos_weight"] == 1.0


@pytest.mark.parametrize("fmt", ["bpseq", "ct"])
def test_secondary_structure_from_files(tmp_path, rna_model, fmt):
    from bioprune.evaluation.structure import parse_dot_bracket

    root = tmp_path / fmt
    root.mkdir()
    counter = iter(range(10_000))

    def make(rng):
        seq, structure = _hairpin(rng)
        partner = [0] * len(seq)
        for i, j in parse_dot_bracket(structure):
            partner[i], partner[j] = j + 1, i + 1
        name = f"s{next(counter)}.{fmt}"
        if fmt == "bpseq":
            body = "".join(
                f"{k + 1} {c} {p}\n" for k, (c, p) in enumerate(zip(seq, partner, strict=True))
            )
        else:
            body = f"{len(seq)} hairpin\n" + "".join(
                f"{k + 1} {c} {k} {k + 2} {p} {k + 1}\n"
                for k, (c, p) in enumerate(zip(seq, partner, strict=True))
            )
        (root / name).write_text(body)
        return {"structure_file": name}

    task = _write_task(root, _splits(make, n=12))
    res = evaluate_model(rna_model, task, **FAST)
    _check(res, "secondary_structure", {"precision", "recall", "f1", "mcc"})
    data = load_task(load_task_spec(task), get_alphabet("rna"), 100)
    assert all(pairs for pairs in data.splits["train"].targets)
    assert data.splits["train"].targets[0] == parse_dot_bracket(
        _hairpin(np.random.default_rng(0))[1]
    )


def test_residue_classification_protein_defaults(tmp_path, protein_model):
    hydrophobic = set("LIVFMWA")

    def make(rng):
        seq = _rand(rng, int(rng.integers(8, 20)), "ACDEFGHIKLMNPQRSTVWY")
        return {"sequence": seq, "tags": "".join("H" if c in hydrophobic else "C" for c in seq)}

    task = _write_task(tmp_path / "tags", _splits(make))
    res = evaluate_model(protein_model, task, **FAST)
    _check(res, "residue_classification", {"accuracy", "macro_f1"})
    # proteins: frozen encoder + 2-layer MLP, lr 1e-5 (paper B.2)
    assert res["protocol"]["name"] == "frozen-mlp" and res["protocol"]["lr"] == 1e-5
    assert res["task"]["classes"] == ["C", "H"]


@pytest.mark.parametrize("numeric", [False, True])
def test_pair_tasks(tmp_path, rna_model, numeric):
    def make(rng):
        a, b = _rand(rng, int(rng.integers(6, 14))), _rand(rng, int(rng.integers(6, 14)))
        label = round(_gc(a) - _gc(b) + 0.001, 4) if numeric else int(_gc(a) > _gc(b))
        return {"sequence_a": a, "sequence_b": b, "label": label}

    task = _write_task(tmp_path / "pair", _splits(make))
    # the classification case fine-tunes, so both sequences go through the trained encoder
    protocol = None if numeric else "finetune-mlp"
    res = evaluate_model(rna_model, task, protocol=protocol, **FAST)
    if numeric:
        _check(res, "pair_regression", {"mae", "rmse"})
    else:
        _check(res, "pair_classification", {"accuracy", "auc", "aupr"})


def _map_task(root: Path, column: str, n: int = 10) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    rows: dict[str, list[dict]] = {}
    for split in ("train", "valid", "test"):
        rows[split] = []
        for k in range(n):
            length = int(rng.integers(26, 36))
            idx = np.arange(length)
            if column == "contact_map":
                arr = (np.abs(idx[:, None] - idx[None, :]) < 3).astype(np.int8)
                for i in range(0, length - 25, 3):  # long-range contacts on an anti-diagonal
                    arr[i, length - 1 - i] = arr[length - 1 - i, i] = 1
                arr[0, 5] = arr[5, 0] = -1  # unknown cell
            else:
                arr = np.sqrt(np.abs(idx[:, None] - idx[None, :])).astype(np.float32)
                arr[1, 2] = arr[2, 1] = np.nan  # unresolved residue pair
            name = f"{split}_{k}.npy"
            np.save(root / name, arr)
            rows[split].append({"sequence": _rand(rng, length), column: name})
    return _write_task(root, rows)


def test_contact_map_from_npy(tmp_path, rna_model):
    task = _map_task(tmp_path / "contact", "contact_map")
    res = evaluate_model(rna_model, task, **FAST)
    _check(res, "contact_map", {"precision_L", "precision_L/2", "precision_L/5", "precision_L/10"})
    assert res["protocol"]["name"] == "frozen-mlp"


def test_distance_map_from_npy(tmp_path, rna_model):
    task = _map_task(tmp_path / "distance", "distance_map")
    res = evaluate_model(rna_model, task, protocol="finetune-linear", **FAST)  # residue pairs
    _check(res, "distance_map", {"r2", "spearman", "mae", "mse"})


# ---- protocol behaviour ------------------------------------------------------------


@pytest.fixture(scope="module")
def cls_task(tmp_path_factory):
    def make(rng):
        seq = _rand(rng, int(rng.integers(8, 30)))
        return {"sequence": seq, "label": int(_gc(seq) > 0.5)}

    return _write_task(tmp_path_factory.mktemp("task") / "cls", _splits(make, n=20))


def test_same_seed_same_numbers(rna_model, cls_task):
    kw = {**FAST, "seeds": [0, 1]}
    a = evaluate_model(rna_model, cls_task, **kw)
    b = evaluate_model(rna_model, cls_task, **kw)
    assert a["runs"] == b["runs"]  # per-epoch losses included
    assert a["metrics"] == b["metrics"]
    c = evaluate_model(rna_model, cls_task, **{**kw, "seeds": [5]})
    assert c["runs"][0]["history"] != a["runs"][0]["history"]


def test_raw_baseline_reinitialises_per_seed(rna_model, cls_task):
    import torch

    from bioprune.models.loading import load_masked_lm

    model, _ = load_masked_lm(rna_model)
    raw0, raw0b, raw1 = (_raw_encoder(model.config, s) for s in (0, 0, 1))
    w = "embeddings.word_embeddings.weight"
    assert torch.equal(raw0.state_dict()[w], raw0b.state_dict()[w])
    assert not torch.equal(raw0.state_dict()[w], raw1.state_dict()[w])
    assert not torch.equal(raw0.state_dict()[w], model.esm.state_dict()[w])

    kw = {**FAST, "protocol": "frozen-mlp", "epochs": 2}
    raw = evaluate_model(rna_model, cls_task, raw=True, **kw)
    trained = evaluate_model(rna_model, cls_task, **kw)
    assert raw["model"]["raw"] is True and trained["model"]["raw"] is False
    assert raw["runs"][0]["history"] != trained["runs"][0]["history"]


def test_cropping_is_counted(tmp_path, rna_model):
    def make(rng):
        seq, structure = _hairpin(rng)
        return {"sequence": seq, "structure": structure}

    task = _write_task(tmp_path / "crop", _splits(make, n=6), yaml="max_length: 8\n")
    res = evaluate_model(rna_model, task, **FAST)
    assert res["protocol"]["max_length"] == 8
    assert res["task"]["splits"]["train"]["cropped"] == 6  # every hairpin is >= 9 nt


def test_task_yaml_naming_files_and_overrides(tmp_path, rna_model):
    def make(rng):
        seq = _rand(rng, int(rng.integers(8, 20)))
        return {"sequence": seq, "label": int(_gc(seq) > 0.5)}

    root = _write_task(tmp_path / "files", _splits(make, n=8))
    for s in ("train", "valid", "test"):
        (root / f"{s}.csv").rename(root / f"my_{s}.csv")
    yaml = root / "mytask.yaml"
    yaml.write_text(
        "name: gc\nkind: regression\ntrain: my_train.csv\nvalid: my_valid.csv\n"
        "test: my_test.csv\nprotocol: frozen-linear\nepochs: 2\nlr: 0.001\n"
    )
    res = evaluate_model(rna_model, yaml, seeds=[0], show_progress=False)
    assert res["task"]["name"] == "gc" and res["task"]["kind"] == "regression"
    assert res["protocol"]["name"] == "frozen-linear" and res["protocol"]["epochs"] == 2
    assert res["protocol"]["sources"]["lr"] == "task.yaml"
    res = evaluate_model(rna_model, yaml, seeds=[0], epochs=1, show_progress=False)
    assert res["protocol"]["sources"]["epochs"] == "command line"


def test_cli_writes_results(tmp_path, rna_model, cls_task, monkeypatch, capsys):
    from bioprune.cli.main import main

    out = tmp_path / "results.json"
    argv = ["bioprune", "evaluate", "--model", str(rna_model), "--task", str(cls_task),
            "--out", str(out), "--seeds", "0,1", "--epochs", "1",
            "--protocol", "frozen-mlp"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    main()
    res = json.loads(out.read_text())
    assert res["seeds"] == [0, 1] and len(res["metrics"]["accuracy"]["per_seed"]) == 2
    assert res["protocol"]["weight_decay"] == 0.01
    assert "test accuracy" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:  # refuses to overwrite
        main()
    assert exc.value.code == 2


# ---- malformed inputs: clear errors naming file and line ----------------------


def _good_rows(n: int = 4, column: str = "label") -> dict[str, list[dict]]:
    rng = np.random.default_rng(0)
    return {
        s: [{"sequence": _rand(rng, 10), column: ["x", "y"][k % 2]} for k in range(n)]
        for s in ("train", "valid", "test")
    }


def _expect_error(rna_model, task: Path, pattern: str, exc=ValueError) -> None:
    with pytest.raises(exc, match=pattern):
        evaluate_model(rna_model, task, **FAST)


def test_error_missing_column(tmp_path, rna_model):
    rows = _good_rows()
    rows["valid"] = [{"sequence": r["sequence"], "class": r["label"]} for r in rows["valid"]]
    task = _write_task(tmp_path / "t", rows, yaml="kind: classification\n")
    _expect_error(rna_model, task, r"valid.csv: missing column 'label'")


def test_error_unbalanced_brackets(tmp_path, rna_model):
    rows = {
        s: [{"sequence": "GGGAAACCC", "structure": "(((...)))"}] * 3
        for s in ("train", "valid", "test")
    }
    rows["test"] = [*rows["test"][:2], {"sequence": "GGGAAACCC", "structure": "(((...))."}]
    task = _write_task(tmp_path / "t", rows)
    _expect_error(rna_model, task, r"test.csv line 4: unbalanced brackets: '\(' at position 1")


def test_error_structure_length(tmp_path, rna_model):
    rows = {
        s: [{"sequence": "GGGAAACCC", "structure": "(((...)))"}] * 3
        for s in ("train", "valid", "test")
    }
    rows["train"] = [{"sequence": "GGGAAACCCA", "structure": "(((...)))"}, *rows["train"][1:]]
    task = _write_task(tmp_path / "t", rows)
    _expect_error(
        rna_model, task, r"train.csv line 2: structure has 9 characters but the sequence has 10"
    )


def test_error_unseen_test_label(tmp_path, rna_model):
    rows = _good_rows()
    rows["test"][3]["label"] = "z"
    task = _write_task(tmp_path / "t", rows)
    _expect_error(rna_model, task, r"test.csv line 5: label 'z' never occurs in the training split")


def test_error_unseen_multilabel(tmp_path, rna_model):
    rows = _good_rows(column="labels")
    rows["valid"][0]["labels"] = "x;w"
    task = _write_task(tmp_path / "t", rows)
    _expect_error(rna_model, task, r"valid.csv line 2: label 'w' never occurs")


def test_error_empty_split(tmp_path, rna_model):
    rows = _good_rows()
    rows["valid"] = []
    task = _write_task(tmp_path / "t", rows)
    _expect_error(rna_model, task, r"valid.csv: the valid split is empty")


def test_error_tags_length(tmp_path, rna_model):
    rows = {s: [{"sequence": "ACGU", "tags": "HHCC"}] * 3 for s in ("train", "valid", "test")}
    rows["valid"] = [*rows["valid"][:2], {"sequence": "ACGUA", "tags": "HHCC"}]
    task = _write_task(tmp_path / "t", rows)
    _expect_error(
        rna_model, task, r"valid.csv line 4: tags has 4 characters but the sequence has 5"
    )


def test_error_invalid_character(tmp_path, rna_model):
    rows = _good_rows()
    rows["train"][1]["sequence"] = "ACGUJACGU"
    task = _write_task(tmp_path / "t", rows)
    _expect_error(rna_model, task, r"train.csv line 3: sequence has character 'J' at position 5")


def test_error_map_shape(tmp_path, rna_model):
    task = _map_task(tmp_path / "m", "contact_map", n=2)
    np.save(task / "test_1.npy", np.zeros((3, 3)))
    _expect_error(rna_model, task, r"test.csv line 3: contact_map test_1.npy has shape \(3, 3\)")


def test_error_missing_split_and_bad_yaml(tmp_path, rna_model):
    task = _write_task(tmp_path / "t", _good_rows())
    (task / "test.csv").unlink()
    _expect_error(rna_model, task, r"test split .*test.csv not found", FileNotFoundError)
    task = _write_task(tmp_path / "u", _good_rows(), yaml="kind: classification\nepoch: 3\n")
    _expect_error(rna_model, task, r"task.yaml: unknown key\(s\) \['epoch'\]")


def test_task_yaml_alphabet_and_metrics(tmp_path, rna_model, protein_model):
    yaml = "kind: classification\nalphabet: rna\nmetrics: [macro_f1]\n"
    task = _write_task(tmp_path / "t", _good_rows(), yaml=yaml)
    res = evaluate_model(rna_model, task, **FAST)
    assert res["headline_metrics"] == ["macro_f1"]
    with pytest.raises(ValueError, match=r"holds rna sequences but model .* protein alphabet"):
        evaluate_model(protein_model, task, **FAST)
    (task / "task.yaml").write_text("kind: classification\nmetrics: [spearman]\n")
    _expect_error(
        rna_model, task, r"metric\(s\) \['spearman'\] are not computed for a classification"
    )


def test_infer_kind_rules():
    assert infer_kind(["sequence", "label"], ["a", "b"]) == "classification"
    assert infer_kind(["sequence", "label"], ["0", "1", "2"]) == "classification"
    assert infer_kind(["sequence", "label"], ["0.5", "1"]) == "regression"
    assert infer_kind(["sequence", "labels"]) == "multilabel"
    assert infer_kind(["sequence", "structure"]) == "secondary_structure"
    assert infer_kind(["structure_file"]) == "secondary_structure"
    assert infer_kind(["sequence", "tags"]) == "residue_classification"
    assert infer_kind(["sequence_a", "sequence_b", "label"], ["1", "0"]) == "pair_classification"
    assert infer_kind(["sequence_a", "sequence_b", "label"], ["1.5"]) == "pair_regression"
    assert infer_kind(["sequence", "contact_map"]) == "contact_map"
    assert infer_kind(["sequence", "distance_map"]) == "distance_map"
    with pytest.raises(ValueError, match="several kinds match"):
        infer_kind(["sequence", "structure", "tags"])
    with pytest.raises(ValueError, match="distinct integers"):
        infer_kind(["sequence", "label"], [str(i) for i in range(60)])
