"""The data shipped in ``bioprune.resources``: demo corpus, labels and tasks.

Only the shipped files are read (no infernal/hmmer needed); the structure
helpers of ``scripts/build_demo_tasks.py`` are checked on hand-made cases.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import dnaio
import pytest
import yaml

from bioprune.data.alphabet import get_alphabet
from bioprune.resources import (
    DEMO_CORPUS,
    DEMO_LABELS,
    DEMO_PROVENANCE,
    TASK_FILES,
    TASK_NAMES,
    TASK_PROVENANCE,
    TASK_SPEC,
    resource_path,
    task_dir,
)

RNA = get_alphabet("rna")
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
TASK_COLUMNS = {
    "classification": ["sequence", "label"],
    "secondary_structure": ["sequence", "structure"],
    "residue_classification": ["sequence", "tags"],
}


@pytest.fixture(scope="module")
def corpus() -> dict[str, str]:
    """id -> sequence as written in the shipped FASTA (not normalised)."""
    with dnaio.open(resource_path(DEMO_CORPUS)) as reader:
        records = [(r.name.split()[0], r.sequence) for r in reader]
    ids = [i for i, _ in records]
    assert len(set(ids)) == len(ids), "duplicate ids in the demo corpus"
    return dict(records)


@pytest.fixture(scope="module")
def labels() -> list[dict[str, str]]:
    with open(resource_path(DEMO_LABELS), newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="module")
def tasks() -> dict[str, dict]:
    """name -> {"spec": task.yaml, "prov": provenance.json, "train"/"valid"/"test": rows}."""
    out = {}
    for name in TASK_NAMES:
        d = task_dir(name)
        entry = {
            "spec": yaml.safe_load((d / TASK_SPEC).read_text()),
            "prov": json.loads((d / TASK_PROVENANCE).read_text()),
        }
        for f in TASK_FILES:
            with open(d / f, newline="") as fh:
                entry[f.removesuffix(".csv")] = list(csv.DictReader(fh))
        out[name] = entry
    return out


def _origin(detail: str) -> str:
    return dict(p.split("=", 1) for p in detail.split(";") if "=" in p)["of"]


# ---- demo corpus ------------------------------------------------------------
def test_corpus_files_exist_and_are_small():
    for name in (DEMO_CORPUS, DEMO_LABELS, DEMO_PROVENANCE):
        assert resource_path(name).is_file()
    assert resource_path(DEMO_CORPUS).stat().st_size < 1_000_000


def test_labels_cover_the_fasta_in_order(corpus, labels):
    assert [row["id"] for row in labels] == list(corpus)
    assert {row["kind"] for row in labels} == {"family", "duplicate", "near_duplicate", "junk"}
    prov = json.loads(resource_path(DEMO_PROVENANCE).read_text())
    assert prov["n_sequences"] == len(corpus)
    assert prov["counts_by_family"] == dict(Counter(row["family"] for row in labels))
    assert prov["counts_by_kind"] == dict(Counter(row["kind"] for row in labels))


def test_corpus_is_valid_rna_after_normalisation(corpus):
    for rid, seq in corpus.items():
        assert seq, rid
        assert RNA.invalid_positions(RNA.normalize(seq)).size == 0, rid
    # Formatting quirks that `prepare` has to normalise are present.
    assert any(s != s.upper() for s in corpus.values())
    assert any("T" in s for s in corpus.values())
    # Some records are longer than prepare's default --max-length (crop path).
    assert sum(len(s) > 1022 for s in corpus.values()) >= 5


def test_family_counts_are_skewed(labels):
    counts = Counter(row["family"] for row in labels if row["kind"] != "junk")
    ranked = counts.most_common()
    total = sum(counts.values())
    assert ranked[0][0] == "tRNA"
    assert ranked[0][1] > 0.4 * total  # one dominant family
    assert len(counts) >= 10
    assert sum(n < 0.02 * total for n in counts.values()) >= 3  # a long tail of rare ones


def test_duplicates_point_at_their_origin(corpus, labels):
    family_of = {row["id"]: row["family"] for row in labels}
    kinds = Counter()
    for row in labels:
        if row["kind"] not in ("duplicate", "near_duplicate"):
            continue
        kinds[row["kind"]] += 1
        src = _origin(row["detail"])
        assert family_of[src] == row["family"]
        a, b = RNA.normalize(corpus[row["id"]]), RNA.normalize(corpus[src])
        assert len(a) == len(b)
        diff = sum(x != y for x, y in zip(a, b, strict=True))
        if row["kind"] == "duplicate":
            assert diff == 0, row
        else:
            assert 1 <= diff <= 3, row
    assert kinds["duplicate"] > 0 and kinds["near_duplicate"] > 0


def test_junk_kinds(labels):
    details = Counter(row["detail"].split(";")[0] for row in labels if row["kind"] == "junk")
    assert details["random"] > 0 and details["N-rich"] > 0
    assert any(d.startswith("repeat") for d in details)
    assert any(d.startswith("adapter") for d in details)


# ---- tasks ------------------------------------------------------------------
@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_layout_and_spec(tasks, name):
    spec = tasks[name]["spec"]
    assert set(spec) == {"name", "kind", "metrics", "description", "source", "alphabet"}
    assert spec["name"] == name
    prov = tasks[name]["prov"]
    alphabet = get_alphabet(spec["alphabet"])
    columns = TASK_COLUMNS[spec["kind"]]
    for split in ("train", "valid", "test"):
        rows = tasks[name][split]
        assert rows, f"{name}/{split}.csv is empty"
        assert list(rows[0]) == columns
        assert prov["counts"][split] == len(rows)
        for k, row in enumerate(rows, start=2):
            seq = row["sequence"]
            assert seq and alphabet.invalid_positions(alphabet.normalize(seq)).size == 0, (
                f"{name}/{split}.csv line {k}"
            )
    n = [len(tasks[name][s]) for s in ("train", "valid", "test")]
    assert n[0] > n[1] and n[0] > n[2] and sum(n) <= 500  # ~60/20/20, small


@pytest.mark.parametrize("name", TASK_NAMES)
def test_splits_are_disjoint(tasks, name):
    seen: dict[str, str] = {}
    for split in ("train", "valid", "test"):
        for row in tasks[name][split]:
            assert row["sequence"] not in seen, f"{name}: sequence in {seen.get(row['sequence'])}"
            seen[row["sequence"]] = split


def test_no_task_sequence_in_the_corpus(corpus, tasks):
    normalised = {RNA.normalize(s) for s in corpus.values()}
    for name in TASK_NAMES:
        for split in ("train", "valid", "test"):
            for row in tasks[name][split]:
                assert RNA.normalize(row["sequence"]) not in normalised, (name, split)


@pytest.mark.parametrize("name", ["rna_family", "protein_domain"])
def test_classification_labels_are_balanced(tasks, name):
    spec = tasks[name]["spec"]
    assert spec["kind"] == "classification"
    train = Counter(r["label"] for r in tasks[name]["train"])
    for split in ("valid", "test"):
        labels = {r["label"] for r in tasks[name][split]}
        assert labels <= set(train), f"{name}/{split}: label never seen in training"
    assert set(train) == set(tasks[name]["prov"]["labels"])
    assert max(train.values()) <= 2 * min(train.values())


def _balanced_pairs(structure: str) -> list[tuple[int, int]]:
    """Pairs of a dot-bracket string, or AssertionError if it does not balance."""
    closer = {")": "(", "]": "[", "}": "{", ">": "<"}
    stacks: dict[str, list[int]] = {o: [] for o in closer.values()}
    pairs = []
    for k, c in enumerate(structure):
        if c in stacks:
            stacks[c].append(k)
        elif c in closer:
            assert stacks[closer[c]], f"unmatched {c!r} at {k + 1}"
            pairs.append((stacks[closer[c]].pop(), k))
        else:
            assert c == ".", f"unexpected {c!r}"
    assert not any(stacks.values()), "unclosed bracket"
    return pairs


def test_rna_ss_structures_balance_and_match_lengths(tasks):
    for split in ("train", "valid", "test"):
        for row in tasks["rna_ss"][split]:
            assert len(row["structure"]) == len(row["sequence"])
            pairs = _balanced_pairs(row["structure"])
            assert pairs
            assert all(j - i - 1 >= 3 for i, j in pairs)  # no hairpin loop under 3 nt


def test_protein_domain_tags_match_lengths(tasks):
    spec = tasks["protein_domain_tags"]["prov"]
    allowed = set(spec["tags"])
    seen = Counter()
    for split in ("train", "valid", "test"):
        for row in tasks["protein_domain_tags"][split]:
            assert len(row["tags"]) == len(row["sequence"]) <= spec["max_length"]
            assert set(row["tags"]) <= allowed
            seen.update(row["tags"])
    assert set(seen) == allowed


def test_resource_errors():
    with pytest.raises(FileNotFoundError, match="no_such_file"):
        resource_path("no_such_file.txt")
    with pytest.raises(ValueError, match="unknown shipped task"):
        task_dir("nope")


# ---- the build script's structure helpers ------------------------------------
@pytest.fixture(scope="module")
def build_tasks():
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location(
            "build_demo_tasks", SCRIPTS / "build_demo_tasks.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS))
    return module


def test_wuss_pairs(build_tasks):
    # nested <>, () and a pseudoknot A/a
    assert build_tasks.wuss_pairs("<<A..>>::a(.)") == {0: 6, 1: 5, 2: 9, 10: 12}
    with pytest.raises(ValueError, match="unbalanced"):
        build_tasks.wuss_pairs("<<..>")


def test_project_structure_drops_gapped_partners(build_tasks):
    pairs = build_tasks.wuss_pairs("<<<<....>>>>")
    # column 1 is a gap, so its partner (column 10, residue 9) is left unpaired;
    # lower-case insert residues are upper-cased
    seq, structure = build_tasks.project_structure("G-CAgaaaUGcC", pairs)
    assert seq == "GCAGAAAUGCC"
    assert structure == "(((....)).)"


def test_project_structure_drops_hairpins_under_three_nt(build_tasks):
    # the consensus loop is an insert column, empty in this sequence
    pairs = build_tasks.wuss_pairs("<<<.>>>")
    assert build_tasks.project_structure("GGC-GCC", pairs) == ("GGCGCC", "(....)")


def test_pairs_to_dot_bracket_pseudoknot(build_tasks):
    # (0,5) and (3,8) cross: the second gets square brackets
    assert build_tasks.pairs_to_dot_bracket(9, [(0, 5), (3, 8)]) == "(..[.)..]"
    assert build_tasks.dot_bracket_pairs("(..[.)..]") == [(0, 5), (3, 8)]
