"""Downstream task files: the BEACON layout, task kinds and validated examples.

A task is a directory holding ``train.csv``, ``valid.csv`` and ``test.csv``
and an optional ``task.yaml``, or a YAML file whose ``train``/``valid``/``test``
keys name the CSV files (relative to the YAML). The kind comes from
``task.yaml``'s ``kind:`` or is inferred from the columns (see
:func:`infer_kind`). Reading parses text into arrays and checks everything a
user can get wrong, with errors that name the file and line (the header is
line 1).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bioprune.data.alphabet import Alphabet
from bioprune.evaluation.structure import parse_dot_bracket, read_structure_file

__all__ = [
    "KINDS",
    "KIND_METRICS",
    "SPLITS",
    "Split",
    "TaskData",
    "TaskSpec",
    "infer_kind",
    "load_task",
    "load_task_spec",
]

SPLITS = ("train", "valid", "test")

#: Every task kind, with the columns it reads.
KINDS: dict[str, tuple[str, ...]] = {
    "classification": ("sequence", "label"),
    "regression": ("sequence", "label"),
    "multilabel": ("sequence", "labels"),
    "secondary_structure": ("sequence", "structure"),  # or structure_file
    "residue_classification": ("sequence", "tags"),
    "pair_classification": ("sequence_a", "sequence_b", "label"),
    "pair_regression": ("sequence_a", "sequence_b", "label"),
    "contact_map": ("sequence", "contact_map"),
    "distance_map": ("sequence", "distance_map"),
}

_REGRESSION_METRICS = ("spearman", "mse", "rmse", "mae", "r2")
_CONTACT_METRICS = ("precision_L", "precision_L/2", "precision_L/5", "precision_L/10")
#: Metrics reported for each kind (method.md section 6 names, plus the usual companions).
KIND_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1"),
    "regression": _REGRESSION_METRICS,
    "multilabel": ("mean_auc",),
    "secondary_structure": ("precision", "recall", "f1", "mcc"),
    "residue_classification": ("accuracy", "macro_f1"),
    "pair_classification": ("accuracy", "macro_f1", "auc", "aupr"),
    "pair_regression": _REGRESSION_METRICS,
    "contact_map": (*_CONTACT_METRICS, "scored_sequences"),
    "distance_map": ("r2", "spearman", "mae", "mse"),
}

#: Kinds with one prediction per residue pair (pairwise head).
PAIRWISE_KINDS = frozenset({"secondary_structure", "contact_map", "distance_map"})
#: Kinds whose examples are two sequences.
TWO_SEQUENCE_KINDS = frozenset({"pair_classification", "pair_regression"})
#: Kinds whose targets are categorical at the sequence level.
CATEGORICAL_KINDS = frozenset({"classification", "pair_classification"})

#: Integer labels with more distinct values than this are not taken as classes.
MAX_INTEGER_CLASSES = 50

#: task.yaml keys bioprune reads (anything else is an error, to catch typos).
YAML_KEYS = frozenset(
    {
        "name", "kind", "train", "valid", "test", "protocol", "epochs", "lr", "batch_size",
        "weight_decay", "max_length", "one_partner_per_base", "description", "source",
        "pos_weight",
        "alphabet", "metrics",
    }
)  # fmt: skip


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's files are and what ``task.yaml`` says about it."""

    name: str
    files: dict[str, Path]
    kind: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    yaml_path: Path | None = None
    alphabet: str | None = None  # the alphabet the task's sequences are written in
    metrics: list[str] | None = None  # the task's headline metrics (all are computed)


def load_task_spec(path: str | Path) -> TaskSpec:
    """Resolve a task directory or task YAML into a :class:`TaskSpec`."""
    import yaml

    path = Path(path)
    if path.is_dir():
        yaml_path = path / "task.yaml"
        yaml_path = yaml_path if yaml_path.is_file() else None
        base = path
    elif path.is_file():
        yaml_path, base = path, path.parent
    else:
        raise FileNotFoundError(f"task {path} does not exist (give a task directory or task YAML)")
    options: dict[str, Any] = {}
    if yaml_path is not None:
        loaded = yaml.safe_load(yaml_path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{yaml_path}: expected a mapping of keys to values")
        unknown = sorted(set(loaded) - YAML_KEYS)
        if unknown:
            raise ValueError(
                f"{yaml_path}: unknown key(s) {unknown}; known keys are {sorted(YAML_KEYS)}"
            )
        options = dict(loaded)
    files = {}
    for split in SPLITS:
        name = options.pop(split, f"{split}.csv")
        f = (base / str(name)).resolve()
        if not f.is_file():
            where = f"named in {yaml_path}" if yaml_path and path.is_file() else f"in {base}"
            raise FileNotFoundError(f"task {path}: {split} split {f} not found ({where})")
        files[split] = f
    kind = options.pop("kind", None)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"{yaml_path}: unknown kind {kind!r}; choose one of {list(KINDS)}")
    name = str(options.pop("name", path.stem if path.is_file() else path.name))
    for informational in ("description", "source"):
        options.pop(informational, None)
    alphabet = options.pop("alphabet", None)
    headline = options.pop("metrics", None)
    if headline is not None:
        if isinstance(headline, str):
            headline = [headline]
        if not isinstance(headline, list) or not all(isinstance(m, str) for m in headline):
            raise ValueError(f"{yaml_path}: metrics must be a list of metric names")
        if kind is not None:
            unknown = [m for m in headline if m not in KIND_METRICS[kind]]
            if unknown:
                raise ValueError(
                    f"{yaml_path}: metric(s) {unknown} are not computed for a {kind} task; "
                    f"choose among {list(KIND_METRICS[kind])}"
                )
    return TaskSpec(
        name=name,
        files=files,
        kind=kind,
        options=options,
        yaml_path=yaml_path,
        alphabet=None if alphabet is None else str(alphabet),
        metrics=headline,
    )


# ---- CSV reading -------------------------------------------------------------


@dataclass
class _Table:
    path: Path
    columns: list[str]
    rows: list[dict[str, str]]
    lines: list[int]  # file line of each row (header is line 1)


def _read_csv(path: Path) -> _Table:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if "sequence" not in columns and "seq" in columns:
            columns[columns.index("seq")] = "sequence"  # BEACON's name for the column
        reader.fieldnames = columns
        rows, lines = [], []
        for row in reader:
            if not any((v or "").strip() for v in row.values()):
                continue  # blank line
            rows.append({k: (v or "").strip() for k, v in row.items() if k is not None})
            lines.append(reader.line_num)
    if not columns:
        raise ValueError(f"{path}: empty file (expected a CSV header line)")
    return _Table(path, columns, rows, lines)


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def infer_kind(
    columns: list[str], labels: list[str] | None = None, path: Path | None = None
) -> str:
    """The task kind a CSV's columns (and, for ``label``, its values) imply.

    - ``sequence_a, sequence_b, label`` -> pair_classification / pair_regression;
    - ``structure`` or ``structure_file`` -> secondary_structure;
    - ``contact_map`` -> contact_map; ``distance_map`` -> distance_map;
    - ``tags`` -> residue_classification; ``labels`` -> multilabel;
    - ``label`` -> classification if any value is not a number or all values are
      integers with at most 50 distinct values; regression if some value is a
      non-integer number; otherwise ambiguous (set ``kind:`` in task.yaml).
    """
    where = f"{path}: " if path else ""
    cols = set(columns)
    found = []
    if {"sequence_a", "sequence_b"} <= cols:
        found.append("pair")
    if cols & {"structure", "structure_file"}:
        found.append("secondary_structure")
    for c, kind in (
        ("contact_map", "contact_map"),
        ("distance_map", "distance_map"),
        ("tags", "residue_classification"),
        ("labels", "multilabel"),
    ):
        if c in cols:
            found.append(kind)
    if not found and "label" in cols:
        found.append("label")
    if len(found) != 1:
        raise ValueError(
            f"{where}cannot infer the task kind from columns {columns} "
            f"({'several kinds match' if found else 'no known layout'}); set kind: in task.yaml "
            f"to one of {list(KINDS)}"
        )
    kind = found[0]
    if kind not in ("pair", "label"):
        return kind
    if "label" not in cols:
        raise ValueError(f"{where}missing column 'label' (columns: {', '.join(columns)})")
    label_kind = _label_kind(labels or [], where)
    if kind == "pair":
        return f"pair_{label_kind}"
    return label_kind


def _label_kind(labels: list[str], where: str) -> str:
    values = [_float(v) for v in labels]
    if any(v is None for v in values):
        return "classification"
    if any(not float(v).is_integer() for v in values):  # type: ignore[arg-type]
        return "regression"
    if len(set(values)) <= MAX_INTEGER_CLASSES:
        return "classification"
    raise ValueError(
        f"{where}label holds {len(set(values))} distinct integers: classes or a quantity? "
        "set kind: classification or kind: regression in task.yaml"
    )


# ---- examples ------------------------------------------------------------------


@dataclass
class Split:
    """One split's validated examples.

    ``tokens`` holds each example's residue ids (uint8, no framing); pair
    tasks also fill ``tokens_b``. ``targets`` depends on the kind:
    class indices (int64, (n,)), values (float64, (n,)), multi-hot (float32,
    (n, C)), per-residue class arrays, base-pair lists, or (L, L) maps.
    """

    name: str
    path: Path
    tokens: list[np.ndarray]
    targets: Any
    tokens_b: list[np.ndarray] | None = None
    cropped: int = 0

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class TaskData:
    """A task ready for training: its kind, class names and three splits."""

    spec: TaskSpec
    kind: str
    splits: dict[str, Split]
    classes: list[str] | None = None  # categorical / multilabel / per-residue vocabularies


def load_task(spec: TaskSpec, alphabet: Alphabet, max_length: int) -> TaskData:
    """Read and validate the three splits of ``spec`` for a model's ``alphabet``.

    Sequences longer than ``max_length`` residues are cropped to their first
    ``max_length`` residues, with their per-residue, pair or map targets; the
    count is kept per split.
    """
    tables = {s: _read_csv(p) for s, p in spec.files.items()}
    for s, t in tables.items():
        if not t.rows:
            raise ValueError(f"{t.path}: the {s} split is empty (no data rows)")
    train = tables["train"]
    kind = spec.kind or infer_kind(
        train.columns,
        [r.get("label", "") for r in train.rows] if "label" in train.columns else None,
        train.path,
    )
    required = list(KINDS[kind])
    if kind == "secondary_structure":
        required = ["structure"] if "structure" in train.columns else ["structure_file"]
        if "structure" in train.columns or "sequence" in train.columns:
            required = ["sequence", *required]
    for t in tables.values():
        missing = [c for c in required if c not in t.columns]
        if missing:
            raise ValueError(
                f"{t.path}: missing column {', '.join(map(repr, missing))} needed by a {kind} "
                f"task (columns: {', '.join(t.columns)})"
            )
    reader = _READERS[kind]
    classes = _classes(kind, train)
    splits = {}
    for s in SPLITS:
        splits[s] = reader(tables[s], alphabet, max_length, classes, kind)
        splits[s].name = s
    return TaskData(spec=spec, kind=kind, splits=splits, classes=classes)


def _classes(kind: str, train: _Table) -> list[str] | None:
    if kind in CATEGORICAL_KINDS:
        values = {r["label"] for r in train.rows}
        if "" in values:
            line = train.lines[[r["label"] for r in train.rows].index("")]
            raise ValueError(f"{train.path} line {line}: empty label")
        nums = {v: _float(v) for v in values}
        if all(x is not None for x in nums.values()):
            return sorted(values, key=lambda v: (nums[v], v))
        return sorted(values)
    if kind == "multilabel":
        return sorted({x for r in train.rows for x in _label_set(r["labels"])})
    if kind == "residue_classification":
        return sorted({c for r in train.rows for c in r["tags"]})
    return None


def _label_set(text: str) -> list[str]:
    return [x.strip() for x in text.split(";") if x.strip()]


def _tokens(table: _Table, k: int, alphabet: Alphabet, column: str = "sequence") -> np.ndarray:
    raw = table.rows[k][column]
    if not raw:
        raise ValueError(f"{table.path} line {table.lines[k]}: empty {column}")
    seq = alphabet.normalize(raw)
    bad = alphabet.invalid_positions(seq)
    if bad.size:
        pos = int(bad[0])
        raise ValueError(
            f"{table.path} line {table.lines[k]}: {column} has character {raw[pos]!r} at "
            f"position {pos + 1}, not in the model's {alphabet.name} alphabet ({alphabet.residues})"
        )
    return alphabet.encode(seq)


def _unseen(table: _Table, k: int, what: str, value: str, known: list[str]) -> ValueError:
    shown = known if len(known) <= 20 else [*known[:20], "..."]
    return ValueError(
        f"{table.path} line {table.lines[k]}: {what} {value!r} never occurs in the training "
        f"split (training has {shown}); a model cannot predict it"
    )


def _read_sequence_level(table, alphabet, max_length, classes, kind) -> Split:
    tokens, targets, cropped = [], [], 0
    two = kind in TWO_SEQUENCE_KINDS
    tokens_b: list[np.ndarray] = []
    index = {c: i for i, c in enumerate(classes)} if classes is not None else {}
    for k, row in enumerate(table.rows):
        cols = ("sequence_a", "sequence_b") if two else ("sequence",)
        toks = [_tokens(table, k, alphabet, c) for c in cols]
        cropped += any(len(t) > max_length for t in toks)
        toks = [t[:max_length] for t in toks]
        tokens.append(toks[0])
        if two:
            tokens_b.append(toks[1])
        if kind == "multilabel":
            hot = np.zeros(len(classes), dtype=np.float32)
            for lab in _label_set(row["labels"]):
                if lab not in index:
                    raise _unseen(table, k, "label", lab, classes)
                hot[index[lab]] = 1.0
            targets.append(hot)
        elif kind in CATEGORICAL_KINDS:
            lab = row["label"]
            if lab not in index:
                raise _unseen(table, k, "label", lab, classes)
            targets.append(index[lab])
        else:
            value = _float(row["label"])
            if value is None or not math.isfinite(value):
                raise ValueError(
                    f"{table.path} line {table.lines[k]}: label {row['label']!r} is not a "
                    f"finite number, as a {kind} task needs"
                )
            targets.append(value)
    if kind == "multilabel":
        arr = np.stack(targets).astype(np.float32)
    elif kind in CATEGORICAL_KINDS:
        arr = np.asarray(targets, dtype=np.int64)
    else:
        arr = np.asarray(targets, dtype=np.float64)
    return Split(table.path.stem, table.path, tokens, arr, tokens_b if two else None, cropped)


def _read_tags(table, alphabet, max_length, classes, kind) -> Split:
    tokens, targets, cropped = [], [], 0
    index = {c: i for i, c in enumerate(classes)}
    for k, row in enumerate(table.rows):
        toks = _tokens(table, k, alphabet)
        tags = row["tags"]
        if len(tags) != len(toks):
            raise ValueError(
                f"{table.path} line {table.lines[k]}: tags has {len(tags)} characters but the "
                f"sequence has {len(toks)} residues (one tag per residue)"
            )
        for pos, c in enumerate(tags):
            if c not in index:
                raise _unseen(table, k, f"tag at position {pos + 1}", c, classes)
        cropped += len(toks) > max_length
        tokens.append(toks[:max_length])
        targets.append(np.array([index[c] for c in tags[:max_length]], dtype=np.int64))
    return Split(table.path.stem, table.path, tokens, targets, None, cropped)


def _read_structures(table, alphabet, max_length, classes, kind) -> Split:
    tokens, targets, cropped = [], [], 0
    for k, row in enumerate(table.rows):
        where = f"{table.path} line {table.lines[k]}"
        if "structure" in row and row.get("structure"):
            toks = _tokens(table, k, alphabet)
            structure = row["structure"]
            if len(structure) != len(toks):
                raise ValueError(
                    f"{where}: structure has {len(structure)} characters but the sequence has "
                    f"{len(toks)} residues"
                )
            try:
                pairs = parse_dot_bracket(structure)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        else:
            name = row.get("structure_file", "")
            if not name:
                raise ValueError(f"{where}: neither structure nor structure_file is given")
            seq_file, pairs = read_structure_file(table.path.parent / name)
            if row.get("sequence"):
                toks = _tokens(table, k, alphabet)
                if len(toks) != len(seq_file):
                    raise ValueError(
                        f"{where}: structure file {name} describes {len(seq_file)} bases but "
                        f"the sequence has {len(toks)} residues"
                    )
            else:
                table.rows[k]["sequence"] = seq_file
                try:
                    toks = _tokens(table, k, alphabet)
                except ValueError as exc:
                    raise ValueError(f"{exc} (sequence read from {name})") from None
        cropped += len(toks) > max_length
        tokens.append(toks[:max_length])
        targets.append([(i, j) for i, j in pairs if j < max_length])
    return Split(table.path.stem, table.path, tokens, targets, None, cropped)


def _read_maps(table, alphabet, max_length, classes, kind) -> Split:
    tokens, targets, cropped = [], [], 0
    for k, row in enumerate(table.rows):
        where = f"{table.path} line {table.lines[k]}"
        toks = _tokens(table, k, alphabet)
        name = row[kind]
        if not name:
            raise ValueError(f"{where}: empty {kind} (expected a .npy file name)")
        f = table.path.parent / name
        if not f.is_file():
            raise FileNotFoundError(f"{where}: {kind} file {f} does not exist")
        arr = np.load(f, allow_pickle=False)
        n = len(toks)
        if arr.shape != (n, n):
            raise ValueError(
                f"{where}: {kind} {name} has shape {arr.shape} but the sequence has {n} "
                f"residues (expected ({n}, {n}))"
            )
        cropped += n > max_length
        tokens.append(toks[:max_length])
        targets.append(np.asarray(arr[:max_length, :max_length], dtype=np.float32))
    return Split(table.path.stem, table.path, tokens, targets, None, cropped)


_READERS = {
    "classification": _read_sequence_level,
    "regression": _read_sequence_level,
    "multilabel": _read_sequence_level,
    "pair_classification": _read_sequence_level,
    "pair_regression": _read_sequence_level,
    "residue_classification": _read_tags,
    "secondary_structure": _read_structures,
    "contact_map": _read_maps,
    "distance_map": _read_maps,
}
