"""The benchmarks' task layouts as distributed (BEACON, PEER/TAPE LMDB, PrismNet TSV).

Each fixture is written here, file by file, in the layout the benchmark's own loader
reads (RNABenchmark's ``downstream/*.py`` and ``structure/data.py``, torchdrug's
``load_lmdbs``, TAPE's ``LMDBDataset``, PrismNet's ``read_csv``), then evaluated end
to end with a micro model; hostile variants must fail with one line naming the file.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from bioprune.data.alphabet import get_alphabet
from bioprune.errors import UnsafeFileError
from bioprune.evaluation.downstream import evaluate_model
from bioprune.evaluation.formats import (
    MODIFICATION_CLASSES,
    SPLIT_SEED,
    detect_format,
    read_lmdb_records,
)
from bioprune.evaluation.tasks import MASKED, load_task, load_task_spec
from tests.hostile import assert_one_line_error, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"seeds": [0], "epochs": 1, "batch_size": 8, "show_progress": False}
RNA = get_alphabet("rna")
PROTEIN = get_alphabet("protein")


def _micro_model(path: Path, alphabet: str) -> Path:
    """A 2-layer, 32-wide ESM model (fast enough for many end-to-end runs)."""
    import torch
    from transformers import EsmForMaskedLM

    from bioprune.models.presets import ModelPreset, build_config, save_alphabet

    preset = ModelPreset("micro", 2, 32, 2, 64, "rotary", False, "tests")
    a = get_alphabet(alphabet)
    torch.manual_seed(7)
    model = EsmForMaskedLM(build_config(preset, a))
    model.save_pretrained(path)
    save_alphabet(path, a)
    return path


@pytest.fixture(scope="module")
def rna_model(tmp_path_factory):
    return _micro_model(tmp_path_factory.mktemp("micro") / "rna", "rna")


@pytest.fixture(scope="module")
def protein_model(tmp_path_factory):
    return _micro_model(tmp_path_factory.mktemp("micro") / "protein", "protein")


def _seq(rng, n: int, letters: str = "ACGU") -> str:
    return "".join(rng.choice(list(letters), n))


# ---- writers: the layouts exactly as distributed ------------------------------------


def _beacon_csv(path: Path, header: str, rows: list[tuple]) -> None:
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


def beacon_ncrna(root: Path, n: int = 8) -> Path:
    """NoncodingRNAFamily: train_new.csv, val.csv and a test file named ``test``;
    ``seq,label`` with integer classes (train_ncrna.py reads ``int(d[1])``)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("train_new.csv", "val.csv", "test"):
        rows = [(_seq(rng, 12), k % 3) for k in range(n)]
        _beacon_csv(root / name, "seq,label", rows)
    return root


def beacon_crispr(root: Path, n: int = 8) -> Path:
    """CRISPROnTarget: train/val/test.csv, ``seq,label`` with float efficiencies."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("train.csv", "val.csv", "test.csv"):
        rows = [(_seq(rng, 23), f"{rng.random():.4f}") for _ in range(n)]
        _beacon_csv(root / name, "sgRNA,label", rows)
    return root


def beacon_modification(root: Path, n: int = 8) -> tuple[Path, dict[str, np.ndarray]]:
    """Modification: ``sequence,label`` with 12 space-separated 0/1 flags."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(2)
    flags = {}
    for name in ("train.csv", "val.csv", "test.csv"):
        f = rng.integers(0, 2, size=(n, 12))
        f[0] = 1  # every label occurs in training
        flags[name] = f
        rows = [(_seq(rng, 41), " ".join(map(str, r))) for r in f]
        _beacon_csv(root / name, "sequence,label", rows)
    return root, flags


def beacon_bprna(root: Path, n: int = 4) -> tuple[Path, dict[str, list]]:
    """bpRNA: bpRNA.csv (file_name, seq, data_name in TR0/VL0/TS0) + <split>/<file>.npy."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(3)
    lines, pairs = [], {}
    for split in ("TR0", "VL0", "TS0"):
        (root / split).mkdir()
        for k in range(n):
            name = f"bpRNA_RFAM_{split}_{k}"
            stem = 3 + k % 2
            seq = _seq(rng, 2 * stem + 4)
            m = np.zeros((len(seq), len(seq)), dtype=np.float64)
            for i in range(stem):
                j = len(seq) - 1 - i
                m[i, j] = m[j, i] = 1.0
            np.save(root / split / f"{name}.npy", m)
            pairs[name] = [(i, len(seq) - 1 - i) for i in range(stem)]
            lines.append(f"{name},{seq},{split}")
    (root / "bpRNA.csv").write_text("file_name,seq,data_name\n" + "\n".join(lines) + "\n")
    return root, pairs


def beacon_maps(root: Path, kind: str, n: int = 3) -> Path:
    """ContactMap / DistanceMap: ``id,seq`` CSVs (train, val, test, RFAM19, DIRECT) and
    ``<kind>/<id>.npy`` (L, L) maps beside them, -1 for unknown cells."""
    root.mkdir(parents=True)
    (root / kind).mkdir()
    rng = np.random.default_rng(4)
    for split in ("train", "val", "test", "RFAM19", "DIRECT"):
        rows = []
        for k in range(n):
            ident = f"{split}_{k}"
            seq = _seq(rng, 30)
            if kind == "contact_map":
                m = (rng.random((30, 30)) < 0.1).astype(np.float32)
            else:
                m = (rng.random((30, 30)) * 20).astype(np.float32)
            m = np.maximum(m, m.T)
            m[:, 5] = m[5, :] = -1  # an unresolved base
            np.save(root / kind / f"{ident}.npy", m)
            rows.append((ident, seq))
        _beacon_csv(root / f"{split}.csv", "id,seq", rows)
    return root


def write_lmdb(path: Path, records: list, *, raw: dict[bytes, bytes] | None = None) -> Path:
    """One split as PEER/TAPE store it: ``num_examples`` and keys "0".."n-1", pickled."""
    import lmdb

    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"num_examples", pickle.dumps(len(records)))
        for i, rec in enumerate(records):
            txn.put(str(i).encode(), pickle.dumps(rec))
        for k, v in (raw or {}).items():
            txn.put(k, v)
    env.close()
    return path


def peer_localization(root: Path, n: int = 8) -> Path:
    """PEER BinaryLocalization: subcellular_localization_2_<split>.lmdb (primary, localization)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for split in ("train", "valid", "test"):
        recs = [
            {"primary": _seq(rng, 20, "ACDEFGHIKLMNPQRSTVWY"), "localization": k % 2,
             "protein_length": np.int64(20)}
            for k in range(n)
        ]  # fmt: skip
        write_lmdb(root / f"subcellular_localization_2_{split}.lmdb", recs)
    return root


def tape_ss(root: Path, n: int = 6) -> Path:
    """TAPE secondary structure: secondary_structure_<split>.lmdb for train, valid and the
    test sets cb513, casp12, ts115 (primary, ss3, ss8, valid_mask as numpy arrays)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(6)
    for split in ("train", "valid", "casp12", "ts115", "cb513"):
        recs = []
        for k in range(n):
            length = 15 + k
            mask = np.ones(length, dtype=bool)
            mask[:2] = False  # unresolved residues
            recs.append({
                "id": f"{split}{k}", "primary": _seq(rng, length, "ACDEFGHIKLMNPQRSTVWY"),
                "protein_length": length,
                "ss3": rng.integers(0, 3, length).astype(np.int64),
                "ss8": rng.integers(0, 8, length).astype(np.int64),
                "valid_mask": mask,
            })  # fmt: skip
        write_lmdb(root / f"secondary_structure_{split}.lmdb", recs)
    return root


def peer_ppi_affinity(root: Path, n: int = 8) -> Path:
    """PEER PPIAffinity: ppi_affinity_<split>.lmdb (primary_1, primary_2, interaction pKd)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(7)
    letters = "ACDEFGHIKLMNPQRSTVWY"
    for split in ("train", "valid", "test"):
        recs = [
            {"primary_1": _seq(rng, 12, letters), "primary_2": _seq(rng, 10, letters),
             "interaction": np.array([rng.normal(7, 1)], dtype=np.float64)}
            for _ in range(n)
        ]  # fmt: skip
        write_lmdb(root / f"ppi_affinity_{split}.lmdb", recs)
    return root


def prismnet_tsv(root: Path, n: int = 40, header: bool = True) -> Path:
    """PrismNet: one TSV per RBP, tab-separated Type, name, Seq, icSHAPE, score, label."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(8)
    lines = ["Type\tname\tSeq\ticSHAPE\tscore\tlabel"] if header else []
    for k in range(n):
        shape = ",".join("-1" if i < 3 else f"{rng.random():.3f}" for i in range(101))
        score = rng.normal(0.5, 1.0) if k % 2 else -1.0
        lines.append(f"A\tchr1_{k}\t{_seq(rng, 101)}\t{shape}\t{score:.3f}\t{k % 2}")
    path = root / "TIA1_Hela.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- detection ------------------------------------------------------------------------


def test_detection_recognises_each_layout(tmp_path):
    assert detect_format(beacon_ncrna(tmp_path / "nc")) == "beacon"
    assert detect_format(beacon_bprna(tmp_path / "ss")[0]) == "beacon"
    assert detect_format(peer_localization(tmp_path / "loc")) == "peer"
    assert detect_format(peer_localization(tmp_path / "loc2"), "tape") == "tape"
    tsv = prismnet_tsv(tmp_path / "rbp")
    assert detect_format(tsv) == detect_format(tsv.parent) == "prismnet"


def test_ambiguous_directory_asks_for_format(tmp_path, rna_model, monkeypatch, capsys):
    task = beacon_crispr(tmp_path / "t")
    (task / "valid.csv").write_text((task / "val.csv").read_text())
    code, err = run_cli(
        "evaluate", "--model", rna_model, "--task", task, "--out", tmp_path / "R.json",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, task, "several task layouts", "--format")
    spec = load_task_spec(task, "beacon")
    assert spec.benchmark == "beacon" and spec.files["valid"].name == "val.csv"
    assert load_task_spec(task, "bioprune").benchmark is None


# ---- BEACON ---------------------------------------------------------------------------


def test_beacon_ncrna_classification_end_to_end(tmp_path, rna_model):
    task = beacon_ncrna(tmp_path / "NoncodingRNAFamily")
    res = evaluate_model(rna_model, task, **FAST)
    t = res["task"]
    assert (t["kind"], t["benchmark"], t["format"]) == ("classification", "beacon", "beacon")
    assert t["classes"] == ["0", "1", "2"]
    assert Path(t["splits"]["train"]["path"]).name == "train_new.csv"
    assert Path(t["splits"]["test"]["path"]).name == "test"
    assert t["test_splits"] == ["test"] and list(res["test_metrics"]) == ["test"]
    assert res["test_metrics"]["test"] == res["metrics"]
    assert 0.0 <= res["metrics"]["accuracy"]["mean"] <= 1.0


def test_beacon_crispr_regression_by_position(tmp_path, rna_model):
    task = beacon_crispr(tmp_path / "CRISPROnTarget")  # header names no bioprune column
    res = evaluate_model(rna_model, task, **FAST)
    assert res["task"]["kind"] == "regression"
    assert res["metrics"]["mse"]["mean"] is not None


def test_beacon_modification_is_twelve_named_labels(tmp_path, rna_model):
    task, flags = beacon_modification(tmp_path / "Modification")
    data = load_task(load_task_spec(task), RNA, 100)
    assert data.kind == "multilabel" and data.classes == list(MODIFICATION_CLASSES)
    np.testing.assert_array_equal(data.splits["test"].targets, flags["test.csv"])
    res = evaluate_model(rna_model, task, **FAST)
    assert res["task"]["kind"] == "multilabel" and "mean_auc" in res["metrics"]


def test_beacon_bprna_pair_matrices(tmp_path, rna_model):
    task, pairs = beacon_bprna(tmp_path / "bpRNA")
    data = load_task(load_task_spec(task), RNA, 100)
    assert data.kind == "secondary_structure"
    assert [len(data.splits[s]) for s in ("train", "valid", "test")] == [4, 4, 4]
    assert data.splits["valid"].targets[1] == pairs["bpRNA_RFAM_VL0_1"]
    res = evaluate_model(rna_model, task, **FAST)
    assert res["task"]["benchmark"] == "beacon" and "f1" in res["metrics"]


@pytest.mark.parametrize("kind", ["contact_map", "distance_map"])
def test_beacon_maps_keep_unknown_and_report_three_tests(tmp_path, rna_model, kind):
    task = beacon_maps(tmp_path / kind, kind)
    data = load_task(load_task_spec(task), RNA, 100)
    assert data.kind == kind and list(data.splits) == [
        "train", "valid", "test", "RFAM19", "DIRECT",
    ]  # fmt: skip
    target = data.splits["RFAM19"].targets[0]
    expected = np.load(task / kind / "RFAM19_0.npy")
    assert target.dtype == np.float32 and (target[:, 5] == -1).all()  # never clipped
    np.testing.assert_array_equal(target, expected)
    res = evaluate_model(rna_model, task, **FAST)
    assert res["task"]["test_splits"] == ["test", "RFAM19", "DIRECT"]
    assert list(res["test_metrics"]) == ["test", "RFAM19", "DIRECT"]
    assert res["metrics"] == res["test_metrics"]["test"]
    assert set(res["runs"][0]["tests"]) == {"test", "RFAM19", "DIRECT"}
    for split in ("RFAM19", "DIRECT"):
        assert res["task"]["splits"][split]["examples"] == 3


def test_cli_prints_every_test_split(tmp_path, rna_model, monkeypatch, capsys):
    task = beacon_maps(tmp_path / "DistanceMap", "distance_map")
    out = tmp_path / "R.json"
    code, err = run_cli(
        "evaluate", "--model", rna_model, "--task", task, "--out", out, "--seeds", "0",
        "--epochs", "1", "--device", "cpu", monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    shown = [line.split() for line in err.splitlines()]
    r2 = [words[0] for words in shown if words[1:2] == ["r2"]]
    assert r2 == ["test", "RFAM19", "DIRECT"]  # one line per test split
    assert json.loads(out.read_text())["task"]["benchmark"] == "beacon"


# ---- PEER / TAPE ----------------------------------------------------------------------


def test_peer_localization_end_to_end(tmp_path, protein_model):
    task = peer_localization(tmp_path / "subcellular_localization_2")
    res = evaluate_model(protein_model, task, **FAST)
    t = res["task"]
    assert (t["kind"], t["benchmark"], t["classes"]) == ("classification", "peer", ["0", "1"])
    assert Path(t["splits"]["train"]["path"]).name == "data.mdb"


def test_tape_secondary_structure_masks_and_three_tests(tmp_path, protein_model):
    task = tape_ss(tmp_path / "secondary_structure")
    spec = load_task_spec(task, "tape")
    assert spec.benchmark == "tape" and spec.test_splits == ("cb513", "casp12", "ts115")
    data = load_task(spec, PROTEIN, 100)
    assert data.kind == "residue_classification" and data.classes == ["0", "1", "2"]
    rec = read_lmdb_records(task / "secondary_structure_casp12.lmdb")[2]
    target = data.splits["casp12"].targets[2]
    assert (target[:2] == MASKED).all()
    np.testing.assert_array_equal(target[2:], rec["ss3"][2:])
    res = evaluate_model(protein_model, task, fmt="tape", **FAST)
    assert list(res["test_metrics"]) == ["cb513", "casp12", "ts115"]
    assert res["task"]["benchmark"] == "tape"


def test_peer_ppi_affinity_pair_regression(tmp_path, protein_model):
    task = peer_ppi_affinity(tmp_path / "ppi_affinity")
    data = load_task(load_task_spec(task), PROTEIN, 100)
    assert data.kind == "pair_regression" and data.splits["test"].tokens_b is not None
    rec = read_lmdb_records(task / "ppi_affinity_test.lmdb")[3]
    assert data.splits["test"].targets[3] == pytest.approx(float(rec["interaction"][0]))
    res = evaluate_model(protein_model, task, **FAST)
    assert res["task"]["kind"] == "pair_regression" and "spearman" in res["metrics"]


# ---- PrismNet -------------------------------------------------------------------------


def test_prismnet_split_is_made_seeded_and_recorded(tmp_path, rna_model):
    tsv = prismnet_tsv(tmp_path / "clip_data")
    spec = load_task_spec(tsv)
    made = spec.made_splits
    assert made["seed"] == SPLIT_SEED and made["examples"] == {"train": 28, "valid": 4, "test": 8}
    data = load_task(spec, RNA, 200)
    again = load_task(load_task_spec(tsv.parent), RNA, 200)
    for s in ("train", "valid", "test"):  # the same split every time, stratified
        assert [t.tobytes() for t in data.splits[s].tokens] == [
            t.tobytes() for t in again.splits[s].tokens
        ]
        assert data.splits[s].targets.mean() == 0.5
    res = evaluate_model(rna_model, tsv, **FAST)
    assert res["task"]["made_splits"] == made and res["task"]["benchmark"] == "prismnet"
    assert res["task"]["name"] == "TIA1_Hela"


def test_prismnet_without_header(tmp_path):
    data = load_task(load_task_spec(prismnet_tsv(tmp_path / "x", header=False)), RNA, 200)
    assert sum(len(s) for s in data.splits.values()) == 40


# ---- kind inference never makes classes of multi-valued labels ---------------------


@pytest.mark.parametrize("label", ["0 1 0 1", "m6A;m1A", "[0, 1]"])
def test_multivalued_label_is_an_error_naming_the_column(tmp_path, label):
    root = tmp_path / "t"
    root.mkdir()
    for s in ("train", "valid", "test"):
        (root / f"{s}.csv").write_text(f'sequence,label\nACGU,"{label}"\nACGG,1\n')
    with pytest.raises(ValueError, match="column 'label' holds several values") as exc:
        load_task(load_task_spec(root), RNA, 100)
    assert "labels" in str(exc.value)


# ---- hostile --------------------------------------------------------------------------


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, protein_model, monkeypatch,
                                                     capsys):  # fmt: skip
    marker = tmp_path / "PWNED"
    task = peer_localization(tmp_path / "loc")
    write_lmdb(
        task / "subcellular_localization_2_valid.lmdb",
        [{"primary": "ACDE", "localization": 0}, _Exploit(marker)],
    )
    with pytest.raises(UnsafeFileError, match=r"record '1' names (posix|os|nt)\.system"):
        read_lmdb_records(task / "subcellular_localization_2_valid.lmdb")
    code, err = run_cli(
        "evaluate", "--model", protein_model, "--task", task, "--out", tmp_path / "R.json",
        "--seeds", "0", "--epochs", "1", monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, "subcellular_localization_2_valid.lmdb", "not loaded")
    assert not marker.exists() and not (tmp_path / "R.json").exists()


def test_object_array_items_go_through_the_restricted_unpickler(tmp_path):
    marker = tmp_path / "PWNED"
    arr = np.empty(1, dtype=object)
    arr[0] = _Exploit(marker)
    path = write_lmdb(tmp_path / "x_train.lmdb", [{"primary": "ACDE", "localization": arr}])
    with pytest.raises(UnsafeFileError):
        read_lmdb_records(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "damage, fragment",
    [
        ("garbage", "not a readable LMDB"),
        ("no_count", "no 'num_examples' key"),
        ("missing_record", "record 1 of 2"),
        ("bad_pickle", "not a readable pickle"),
        ("fields", "no field 'localization'"),
    ],
)
def test_damaged_lmdb_is_one_line(tmp_path, protein_model, monkeypatch, capsys, damage, fragment):
    import lmdb

    task = peer_localization(tmp_path / "loc")
    split = task / "subcellular_localization_2_test.lmdb"
    if damage == "garbage":
        (split / "data.mdb").write_bytes(b"\x00not an lmdb" * 300)
    else:
        env = lmdb.open(str(split), map_size=1 << 24)
        with env.begin(write=True) as txn:
            if damage == "no_count":
                txn.delete(b"num_examples")
            elif damage == "missing_record":
                txn.put(b"num_examples", pickle.dumps(2))
                txn.delete(b"1")
            elif damage == "bad_pickle":
                txn.put(b"0", b"\x80\x04not a pickle")
            else:
                txn.put(b"0", pickle.dumps({"primary": "ACDE", "location": 1}))
        env.close()
    code, err = run_cli(
        "evaluate", "--model", protein_model, "--task", task, "--out", tmp_path / "R.json",
        "--seeds", "0", "--epochs", "1", monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, "subcellular_localization_2_test.lmdb", fragment)


def test_missing_npy_map_is_one_line(tmp_path, rna_model, monkeypatch, capsys):
    task = beacon_maps(tmp_path / "ContactMap", "contact_map")
    (task / "contact_map" / "DIRECT_1.npy").unlink()
    code, err = run_cli(
        "evaluate", "--model", rna_model, "--task", task, "--out", tmp_path / "R.json",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, "DIRECT.csv line 3", "DIRECT_1.npy")


def test_missing_bprna_matrix_is_one_line(tmp_path, rna_model, monkeypatch, capsys):
    task, _ = beacon_bprna(tmp_path / "bpRNA")
    (task / "TS0" / "bpRNA_RFAM_TS0_2.npy").unlink()
    code, err = run_cli(
        "evaluate", "--model", rna_model, "--task", task, "--out", tmp_path / "R.json",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, "bpRNA.csv line", "bpRNA_RFAM_TS0_2.npy")


@pytest.mark.parametrize(
    "layout, fragment",
    [
        ("header3", "two columns (seq, label)"),
        ("row3", "line 4: 3 field(s) but the header has 2"),
        ("flags", "line 3: label '0 1 1' is not 12 space-separated 0/1 flags"),
        ("tsv", "line 2: 5 tab-separated field(s)"),
    ],
)
def test_wrong_column_count_is_one_line(tmp_path, rna_model, monkeypatch, capsys, layout,
                                        fragment):  # fmt: skip
    if layout == "tsv":
        task = prismnet_tsv(tmp_path / "rbp")
        lines = task.read_text().splitlines()
        lines[1] = lines[1].rsplit("\t", 1)[0]
        task.write_text("\n".join(lines) + "\n")
        bad = task
    else:
        task = (
            beacon_crispr(tmp_path / "t")
            if layout != "flags"
            else (beacon_modification(tmp_path / "t")[0])
        )
        bad = task / "val.csv"
        lines = bad.read_text().splitlines()
        if layout == "header3":
            lines = [line + ",x" for line in lines]
        elif layout == "row3":
            lines[3] += ",0.5"
        else:
            lines[2] = lines[2].split(",")[0] + ",0 1 1"
        bad.write_text("\n".join(lines) + "\n")
    code, err = run_cli(
        "evaluate", "--model", rna_model, "--task", task, "--out", tmp_path / "R.json",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, bad, fragment)


def test_task_yaml_names_several_test_splits(tmp_path, rna_model, monkeypatch, capsys):
    root = beacon_crispr(tmp_path / "t")
    for old, new in (("train.csv", "train.csv"), ("val.csv", "valid.csv"),
                     ("test.csv", "held_out.csv"), ("test.csv", "other.csv")):  # fmt: skip
        (root / new).write_text((root / old).read_text().replace("sgRNA", "sequence"))
    (root / "val.csv").unlink()
    (root / "test.csv").unlink()
    (root / "task.yaml").write_text(
        "kind: regression\ntest:\n  held_out: held_out.csv\n  other: other.csv\n"
    )
    spec = load_task_spec(root)
    assert spec.format == "bioprune" and spec.test_splits == ("held_out", "other")
    res = evaluate_model(rna_model, root, **FAST)
    assert list(res["test_metrics"]) == ["held_out", "other"]
    (root / "task.yaml").write_text("test:\n  train: other.csv\n")
    code, err = run_cli(
        "evaluate", "--model", rna_model, "--task", root, "--out", tmp_path / "R.json",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, root / "task.yaml", "mapping of test split names")
