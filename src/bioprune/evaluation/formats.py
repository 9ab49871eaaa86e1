"""The benchmarks' own task layouts, read as they are distributed (docs/evaluation.md).

- **BEACON** (RNABenchmark): ``train.csv`` (or ``train_new.csv``), ``val.csv`` and
  ``test.csv`` (or a test file named ``test``), two columns read by position
  (``seq,label``: integer classes or float values); Modification's
  ``sequence,label`` with 12 space-separated 0/1 flags (:data:`MODIFICATION_CLASSES`);
  secondary structure as one ``bpRNA.csv`` (``file_name, seq, data_name`` in
  TR0/VL0/TS0) with ``<TR0|VL0|TS0>/<file_name>.npy`` (L, L) pair matrices;
  contact and distance maps as ``(id, seq)`` CSVs with ``contact_map/<id>.npy`` or
  ``distance_map/<id>.npy`` beside them (-1 = unknown, kept as -1) and the extra
  test sets ``RFAM19.csv`` and ``DIRECT.csv``.
- **PEER / TAPE**: one LMDB per split (``<task>_<split>.lmdb``), key ``num_examples``
  and keys ``"0"``..``"n-1"`` holding pickled dicts: ``primary`` + ``localization``
  (classification), ``primary`` + ``ss3`` + ``valid_mask`` (per-residue; tests
  ``cb513``, ``casp12``, ``ts115``), ``primary_1`` + ``primary_2`` + ``interaction``
  (pair regression or classification). Records are unpickled by
  :class:`RecordUnpickler`, which builds only containers, strings, numbers and numpy
  arrays and refuses anything else (:class:`~bioprune.errors.UnsafeFileError`).
- **PrismNet** (RBP binding, as used by RNA-FM): one TSV per RBP, tab-separated
  ``Type, name, Seq, icSHAPE, score, label`` (header line optional), no split: a
  seeded split stratified by label is made and recorded (:data:`SPLIT_SEED`).

Every layout becomes the tables and kinds of :mod:`bioprune.evaluation.tasks`,
so validation and reading are shared with bioprune's own CSV tasks.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from bioprune.errors import InputError, UnsafeFileError
from bioprune.evaluation.tasks import TaskFileError, TaskSpec, _decode_text, _Table, csv_records

__all__ = [
    "FORMATS",
    "MODIFICATION_CLASSES",
    "SPLIT_SEED",
    "RecordUnpickler",
    "benchmark_spec",
    "detect_format",
    "read_lmdb_records",
    "read_tables",
]

log = logging.getLogger("bioprune")

#: Layouts ``--format`` accepts (``peer`` and ``tape`` are the same LMDB layout;
#: the name only records which benchmark the task is read as).
FORMATS = ("bioprune", "beacon", "peer", "tape", "prismnet")

#: BEACON Modification's 12 flags, in the order of the ``label`` field.
MODIFICATION_CLASSES = (
    "hAm", "hCm", "hGm", "hUm", "hm1A", "hm5C", "hm5U", "hm6A", "hm6Am", "hm7G", "hPsi", "Atol",
)  # fmt: skip

#: BEACON's extra test sets of the contact and distance map tasks (beside ``test.csv``).
BEACON_EXTRA_TESTS = ("RFAM19", "DIRECT")
#: bpRNA's ``data_name`` of each split.
BPRNA_SPLITS = {"train": "TR0", "valid": "VL0", "test": "TS0"}
#: Test splits in report order (the first present is the main one); others follow sorted.
TEST_ORDER = ("test", "cb513", "casp12", "ts115", *BEACON_EXTRA_TESTS)
#: PrismNet's split, made here: fractions of each label's examples, and the seed.
SPLIT_SEED = 0
TEST_FRACTION = 0.2
VALID_FRACTION = 0.1
PRISMNET_COLUMNS = ("Type", "name", "Seq", "icSHAPE", "score", "label")


# ---- detection ----------------------------------------------------------------------


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """The layout of the task at ``path``: ``fmt`` when given, else recognised by its files.

    A ``task.yaml`` or a ``valid.csv`` is bioprune's layout; ``val.csv`` or
    ``bpRNA.csv`` BEACON's; ``*.lmdb`` PEER's (``--format tape`` to record TAPE);
    a ``.tsv`` PrismNet's. Files of several layouts in one directory are ambiguous.
    """
    path = Path(path)
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"--format {fmt!r} is not one of {list(FORMATS)}")
        return fmt
    if path.is_file():
        return "prismnet" if path.suffix.lower() == ".tsv" else "bioprune"
    if not path.is_dir():
        return "bioprune"  # load_task_spec says it does not exist
    names = set(os.listdir(path))
    if "task.yaml" in names:
        return "bioprune"
    found = []
    if "valid.csv" in names:
        found.append("bioprune")
    if names & {"val.csv", "bpRNA.csv", "train_new.csv"}:
        found.append("beacon")
    if any(n.endswith(".lmdb") for n in names):
        found.append("peer")
    if any(n.lower().endswith(".tsv") for n in names):
        found.append("prismnet")
    if len(found) > 1:
        raise InputError(
            path,
            f"holds files of several task layouts ({', '.join(found)}); choose one with "
            f"--format {'|'.join(FORMATS)}",
        )
    return found[0] if found else "bioprune"


# ---- specs --------------------------------------------------------------------------


def benchmark_spec(path: str | Path, fmt: str) -> TaskSpec:
    """The :class:`TaskSpec` of a benchmark task in layout ``fmt`` at ``path``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"task {path} does not exist (give a task directory)")
    if fmt == "beacon":
        return _beacon_spec(_directory(path, fmt))
    if fmt in ("peer", "tape"):
        return _lmdb_spec(_directory(path, fmt), fmt)
    if fmt == "prismnet":
        return _prismnet_spec(path)
    raise ValueError(f"format {fmt!r} has no benchmark reader")


def _directory(path: Path, fmt: str) -> Path:
    if not path.is_dir():
        raise InputError(path, f"a {fmt} task is a directory (the benchmark task's folder)")
    return path


def _beacon_spec(path: Path) -> TaskSpec:
    root = path.resolve()
    if (path / "bpRNA.csv").is_file():
        csv_path = (path / "bpRNA.csv").resolve()
        return TaskSpec(
            name=path.name,
            files=dict.fromkeys(("train", "valid", "test"), csv_path),
            kind="secondary_structure",
            root=root,
            benchmark="beacon",
            format="beacon",
            source={"layout": "bprna"},
        )
    train = next((path / n for n in ("train_new.csv", "train.csv") if (path / n).is_file()), None)
    valid = next((path / n for n in ("val.csv", "valid.csv") if (path / n).is_file()), None)
    test = next((path / n for n in ("test.csv", "test") if (path / n).is_file()), None)
    wanted = (
        ("train.csv (or train_new.csv)", train),
        ("val.csv", valid),
        ("test.csv (or test)", test),
    )
    missing = [what for what, f in wanted if f is None]
    if missing:
        raise FileNotFoundError(
            f"task {path}: a BEACON task directory holds train.csv, val.csv and test.csv "
            f"(or bpRNA.csv); {', '.join(missing)} not found"
        )
    assert train is not None and valid is not None and test is not None
    if train.name == "train_new.csv" and (path / "train.csv").is_file():
        log.info("%s: reading train_new.csv (BEACON's training split), not train.csv", path)
    maps = [k for k in ("contact_map", "distance_map") if (path / k).is_dir()]
    if len(maps) > 1:
        raise InputError(
            path, "holds both contact_map/ and distance_map/; give each task its own directory"
        )
    files = {"train": train.resolve(), "valid": valid.resolve(), "test": test.resolve()}
    tests = ["test"]
    for extra in BEACON_EXTRA_TESTS:
        if (path / f"{extra}.csv").is_file():
            files[extra] = (path / f"{extra}.csv").resolve()
            tests.append(extra)
    return TaskSpec(
        name=path.name,
        files=files,
        kind=maps[0] if maps else None,
        root=root,
        benchmark="beacon",
        format="beacon",
        test_splits=tuple(tests),
        source={"layout": maps[0] if maps else "csv"},
    )


def _lmdb_spec(path: Path, fmt: str) -> TaskSpec:
    found: dict[str, Path] = {}
    for entry in sorted(path.iterdir()):
        if not entry.name.endswith(".lmdb"):
            continue
        stem = entry.name[: -len(".lmdb")]
        split = stem.rsplit("_", 1)[-1]
        split = {"val": "valid"}.get(split, split)
        if split in found:
            raise InputError(
                path,
                f"two LMDB files for split {split!r} ({found[split].name}, {entry.name}); "
                "keep one task's splits per directory",
            )
        found[split] = entry
    missing = [s for s in ("train", "valid") if s not in found]
    tests = sorted(
        (s for s in found if s not in ("train", "valid")),
        key=lambda s: (TEST_ORDER.index(s) if s in TEST_ORDER else len(TEST_ORDER), s),
    )
    if missing or not tests:
        raise FileNotFoundError(
            f"task {path}: a {fmt.upper()} task directory holds one LMDB per split "
            f"(<task>_train.lmdb, <task>_valid.lmdb, <task>_test.lmdb or cb513/casp12/ts115); "
            f"found {sorted(p.name for p in found.values()) or 'none'}"
        )
    splits = ["train", "valid", *tests]
    files = {s: _lmdb_data_file(found[s]).resolve() for s in splits}
    return TaskSpec(
        name=path.name,
        files=files,
        root=path.resolve(),
        benchmark=fmt,
        format=fmt,
        test_splits=tuple(tests),
        source={"layout": "lmdb", "lmdb": {s: found[s].resolve() for s in splits}},
    )


def _lmdb_data_file(entry: Path) -> Path:
    """The file whose checksum stands for an LMDB: ``data.mdb`` in a directory, or the file."""
    return entry / "data.mdb" if entry.is_dir() else entry


# ---- CSV (BEACON) -------------------------------------------------------------------


def _csv_records(path: Path) -> list[tuple[int, list[str]]]:
    """``(line, fields)`` of every non-blank record of a CSV (header first), parsed strictly."""
    records = [
        (start, [v.strip() for v in record])
        for start, _, record in csv_records(path)
        if any(v.strip() for v in record)
    ]
    if not records:
        raise TaskFileError(path, "empty file (expected a CSV header line)")
    return records


def _two_columns(path: Path, records: list, files: str, columns: str) -> TaskFileError:
    """The error for a header that is not the two columns read by position."""
    header = records[0][1]
    return TaskFileError(
        path,
        f"{files} hold two columns {columns}, read by position; this header has "
        f"{len(header)} ({', '.join(header)})",
        records[0][0],
    )


def _width_error(path: Path, line: int, reason: str) -> TaskFileError:
    """A row with the wrong number of fields, at ``line`` of ``path``."""
    return TaskFileError(path, reason, line)


def _check_width(path: Path, records: list[tuple[int, list[str]]], what: str) -> None:
    header = records[0][1]
    for line, record in records[1:]:
        if len(record) != len(header):
            raise _width_error(
                path, line, f"{len(record)} field(s) but the header has {len(header)} ("
                f"{', '.join(header)}); BEACON's {what} rows have exactly {len(header)}",
            )  # fmt: skip


def _beacon_csv(spec: TaskSpec, split: str) -> _Table:
    path = spec.files[split]
    records = _csv_records(path)
    header = records[0][1]
    layout = spec.source["layout"]
    if layout in ("contact_map", "distance_map"):
        if len(header) != 2:
            raise _two_columns(path, records, f"BEACON's {layout} CSVs", "(id, seq)")
        _check_width(path, records, layout)
        for line, r in records[1:]:
            if not r[0]:
                raise TaskFileError(path, "empty id (it names the .npy map)", line)
        rows = [{"sequence": r[1], layout: f"{layout}/{r[0]}.npy"} for _, r in records[1:]]
        return _Table(path, ["sequence", layout], rows, [ln for ln, _ in records[1:]], spec.root)
    if {"sequence", "label"} <= set(header):  # Modification reads these two by name
        s_col, l_col = header.index("sequence"), header.index("label")
    elif len(header) == 2:
        s_col, l_col = 0, 1  # (seq, label) by position, as BEACON's loaders read them
    else:
        raise _two_columns(path, records, "BEACON's CSVs", "(seq, label)")
    _check_width(path, records, "task")
    lines = [ln for ln, _ in records[1:]]
    seqs = [r[s_col] for _, r in records[1:]]
    labels = [r[l_col] for _, r in records[1:]]
    if any(len(v.split()) > 1 for v in labels):
        return _Table(
            path, ["sequence", "labels"], _modification_rows(path, lines, seqs, labels), lines,
            spec.root,
        )  # fmt: skip
    rows = [{"sequence": s, "label": v} for s, v in zip(seqs, labels, strict=True)]
    return _Table(path, ["sequence", "label"], rows, lines, spec.root)


def _modification_rows(
    path: Path, lines: list[int], seqs: list[str], labels: list[str]
) -> list[dict[str, str]]:
    """Rows of BEACON Modification: 12 space-separated 0/1 flags -> ``;``-joined names."""
    rows = []
    n = len(MODIFICATION_CLASSES)
    for line, seq, label in zip(lines, seqs, labels, strict=True):
        flags = label.split()
        if len(flags) != n or not set(flags) <= {"0", "1"}:
            raise TaskFileError(
                path,
                f"label {label[:60]!r} is not {n} space-separated 0/1 flags "
                f"({' '.join(MODIFICATION_CLASSES)}), as BEACON's Modification labels are",
                line,
            )
        names = [c for c, f in zip(MODIFICATION_CLASSES, flags, strict=True) if f == "1"]
        rows.append({"sequence": seq, "labels": ";".join(names)})
    return rows


def _bprna_tables(spec: TaskSpec) -> dict[str, _Table]:
    path = spec.files["train"]
    records = _csv_records(path)
    header = records[0][1]
    need = ("file_name", "seq", "data_name")
    missing = [c for c in need if c not in header]
    if missing:
        reason = f"missing column(s) {missing}; BEACON's bpRNA.csv has file_name, seq, data_name"
        raise TaskFileError(path, f"{reason} (columns: {', '.join(header)})", records[0][0])
    _check_width(path, records, "bpRNA.csv")
    f_col, s_col, d_col = (header.index(c) for c in need)
    tables = {}
    for split, name in BPRNA_SPLITS.items():
        rows, lines = [], []
        for line, r in records[1:]:
            if r[d_col] == name:
                if not r[f_col]:
                    raise TaskFileError(path, "empty file_name (names the .npy matrix)", line)
                rows.append({"sequence": r[s_col], "pair_matrix": f"{name}/{r[f_col]}.npy"})
                lines.append(line)
        if not rows:
            raise TaskFileError(
                path, f"no row has data_name {name} (the {split} split of BEACON's bpRNA)"
            )
        tables[split] = _Table(path, ["sequence", "pair_matrix"], rows, lines, spec.root)
    return tables


# ---- LMDB (PEER / TAPE) -------------------------------------------------------------

#: The only globals a record may name: numpy's array, dtype and scalar reconstructors
#: (numpy 1 and 2 module names), and the builtins pickle protocols 2-5 use for bytes/sets.
_ALLOWED_GLOBALS = frozenset(
    {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
     for n in ("_reconstruct", "scalar")}
    | {(m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")}
    | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
       ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray")}
)  # fmt: skip


class RecordUnpickler(pickle.Unpickler):
    """Unpickles plain data only: dicts, lists, tuples, sets, strings, bytes, numbers, None,
    and numpy arrays, dtypes and scalars. Any other global (a function, a class) raises
    :class:`~bioprune.errors.UnsafeFileError` before it is looked up, so nothing runs."""

    def __init__(self, data: bytes, path: Path, key: str):
        super().__init__(io.BytesIO(data), encoding="latin1")
        self.path, self.key = path, key

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafeFileError(
            self.path,
            f"record {self.key!r} names {module}.{name}: bioprune unpickles only containers, "
            "strings, numbers and numpy arrays (this pickle could run code; not loaded)",
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(
            self.path, f"record {self.key!r} holds a persistent reference; not loaded"
        )


def _unpickle(data: bytes, path: Path, key: str) -> Any:
    try:
        value = RecordUnpickler(data, path, key).load()
    except UnsafeFileError:
        raise
    except Exception as exc:  # a damaged pickle fails in many ways; none is the user's code
        reason = str(exc).splitlines()[0][:80] if str(exc) else ""
        raise TaskFileError(
            path, f"record {key!r} is not a readable pickle ({type(exc).__name__}: {reason})"
        ) from None
    _check_plain(value, path, key)
    return value


def _check_plain(value: Any, path: Path, key: str) -> None:
    """Refuse numpy object arrays (their items passed the unpickler, but are not numbers)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, np.ndarray) and v.dtype.hasobject:
            raise TaskFileError(path, f"record {key!r} holds an object array, not numbers")
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)


def read_lmdb_records(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a PEER/TAPE LMDB, in key order ``"0"``..``"n-1"``.

    The environment is opened read-only without a lock file (``path`` is a
    directory holding ``data.mdb``, or the data file itself).
    """
    import lmdb

    path = Path(path)
    try:
        env = lmdb.open(
            str(path), readonly=True, lock=False, readahead=False, meminit=False,
            subdir=path.is_dir(), max_readers=1,
        )  # fmt: skip
    except lmdb.Error as exc:
        raise TaskFileError(path, f"not a readable LMDB ({_lmdb_reason(exc)})") from None
    try:
        with env.begin(write=False) as txn:
            raw = txn.get(b"num_examples")
            if raw is None:
                raise TaskFileError(
                    path, "has no 'num_examples' key (PEER/TAPE LMDBs hold the record count)"
                )
            n = _unpickle(raw, path, "num_examples")
            if isinstance(n, np.integer):
                n = int(n)
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise TaskFileError(path, f"num_examples is {n!r}, not a count of records")
            stored = txn.stat()["entries"]
            if n > stored:
                raise TaskFileError(
                    path, f"num_examples says {n} records but the LMDB holds {stored} keys"
                )
            records = []
            for i in range(n):
                data = txn.get(str(i).encode())
                if data is None:
                    raise TaskFileError(path, f"record {i} of {n} (key {str(i)!r}) is missing")
                record = _unpickle(data, path, str(i))
                if not isinstance(record, dict):
                    raise TaskFileError(
                        path, f"record {i} is a {type(record).__name__}, not a dict of fields"
                    )
                records.append(record)
    except lmdb.Error as exc:
        raise TaskFileError(path, f"damaged LMDB ({_lmdb_reason(exc)})") from None
    finally:
        env.close()
    return records


def _lmdb_reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(": ", 1)[-1] if text.startswith("/") else text


def _scalar(value: Any) -> Any:
    """A size-1 array as its item (as torchdrug's loader does), numpy scalars as Python."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, np.generic):
        value = value.item()
    return value


def _field(record: dict[str, Any], name: str, path: Path, i: int) -> Any:
    if name not in record:
        raise TaskFileError(
            path, f"record {i} has no field {name!r} (fields: {', '.join(map(str, record))})"
        )
    return record[name]


def _text(value: Any, name: str, path: Path, i: int) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str):
        raise TaskFileError(path, f"record {i}: {name} is a {type(value).__name__}, not a string")
    return value


def _lmdb_kind(first: dict[str, Any], path: Path) -> str:
    fields = set(first)
    if {"primary_1", "primary_2", "interaction"} <= fields:
        return "pair"
    if {"primary", "ss3"} <= fields:
        return "residue_classification"
    if {"primary", "localization"} <= fields:
        return "classification"
    raise TaskFileError(
        path,
        f"records have fields {sorted(map(str, fields))}; bioprune reads PEER/TAPE's binary "
        "localization (primary, localization), secondary structure (primary, ss3, valid_mask) "
        "and PPI (primary_1, primary_2, interaction)",
    )


def _lmdb_tables(spec: TaskSpec) -> tuple[dict[str, _Table], str | None, list[str] | None]:
    lmdbs: dict[str, Path] = spec.source["lmdb"]
    records = {s: read_lmdb_records(p) for s, p in lmdbs.items()}
    train_path = lmdbs["train"]
    if not records["train"]:
        raise TaskFileError(train_path, "the train split is empty (num_examples is 0)")
    layout = _lmdb_kind(records["train"][0], train_path)
    tables = {}
    labels: list[Any] = []
    for split, recs in records.items():
        path = lmdbs[split]
        rows = []
        for i, rec in enumerate(recs):
            if layout == "pair":
                value = _scalar(_field(rec, "interaction", path, i))
                labels.append(value)
                rows.append({
                    "sequence_a": _text(_field(rec, "primary_1", path, i), "primary_1", path, i),
                    "sequence_b": _text(_field(rec, "primary_2", path, i), "primary_2", path, i),
                    "label": _label_text(value, "interaction", path, i),
                })  # fmt: skip
            elif layout == "classification":
                value = _scalar(_field(rec, "localization", path, i))
                rows.append({
                    "sequence": _text(_field(rec, "primary", path, i), "primary", path, i),
                    "label": _label_text(value, "localization", path, i, integer=True),
                })  # fmt: skip
            else:
                seq = _text(_field(rec, "primary", path, i), "primary", path, i)
                rows.append(_ss_row(rec, seq, path, i))
        columns = list(rows[0]) if rows else ["sequence", "label"]
        tables[split] = _Table(
            path, columns, rows, list(range(len(rows))), spec.root, unit="record"
        )
    if layout == "pair":
        integer = all(isinstance(v, int) and not isinstance(v, bool) for v in labels)
        return tables, "pair_classification" if integer else "pair_regression", None
    if layout == "residue_classification":
        return tables, layout, ["0", "1", "2"]
    return tables, "classification", None


def _label_text(value: Any, name: str, path: Path, i: int, integer: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TaskFileError(path, f"record {i}: {name} is {value!r}, not a number")
    if integer and not float(value).is_integer():
        raise TaskFileError(path, f"record {i}: {name} is {value!r}, not a class index")
    return str(int(value)) if integer else repr(value)


def _ss_row(rec: dict[str, Any], seq: str, path: Path, i: int) -> dict[str, str]:
    """``primary`` + ``ss3`` (0/1/2 per residue) + ``valid_mask`` -> tags and a 0/1 mask."""
    ss3 = np.asarray(_field(rec, "ss3", path, i))
    mask = np.asarray(rec.get("valid_mask", np.ones(len(seq), dtype=bool)))
    if ss3.ndim != 1 or ss3.dtype.kind not in "iub":
        raise TaskFileError(path, f"record {i}: ss3 is not a vector of class indices")
    if len(ss3) != len(seq) or mask.shape != (len(seq),):
        raise TaskFileError(
            path,
            f"record {i}: ss3 has {len(ss3)} and valid_mask {mask.size} entries but primary "
            f"has {len(seq)} residues",
        )
    if mask.dtype.kind not in "biuf" or not np.isin(mask, (0, 1)).all():
        raise TaskFileError(path, f"record {i}: valid_mask holds values other than 0/1")
    valid = mask.astype(bool)
    if valid.any() and not np.isin(ss3[valid], (0, 1, 2)).all():
        raise TaskFileError(path, f"record {i}: ss3 holds classes other than 0, 1, 2")
    tags = "".join(str(int(c)) if v else "." for c, v in zip(ss3, valid, strict=True))
    return {
        "sequence": seq,
        "tags": tags,
        "valid_mask": "".join("1" if v else "0" for v in valid),
    }


# ---- PrismNet -----------------------------------------------------------------------


def _prismnet_file(path: Path) -> Path:
    if path.is_file():
        return path
    tsvs = sorted(p for p in path.iterdir() if p.suffix.lower() == ".tsv" and p.is_file())
    if len(tsvs) != 1:
        shown = ", ".join(p.name for p in tsvs[:5]) + (", ..." if len(tsvs) > 5 else "")
        raise InputError(
            path,
            f"holds {len(tsvs)} TSV files ({shown or 'none'}); PrismNet has one per RBP: "
            "give one with --task DIR/RBP.tsv",
        )
    return tsvs[0]


def _prismnet_table(tsv: Path) -> _Table:
    text = _decode_text(tsv)
    rows, lines = [], []
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        fields = raw.split("\t")
        if line == 1 and fields[0].strip() == "Type":
            continue  # the header line (PrismNet's reader drops it too)
        if len(fields) != len(PRISMNET_COLUMNS):
            raise _width_error(
                tsv, line, f"{len(fields)} tab-separated field(s); PrismNet's TSV rows have "
                f"{len(PRISMNET_COLUMNS)} ({', '.join(PRISMNET_COLUMNS)})",
            )  # fmt: skip
        label = fields[5].strip()
        try:
            value = float(label)
        except ValueError:
            value = None
        if value not in (0.0, 1.0):
            raise TaskFileError(tsv, f"label {label!r} is not 0 or 1 (bound or not)", line)
        rows.append({"sequence": fields[2].strip(), "label": str(int(value))})
        lines.append(line)
    if not rows:
        raise TaskFileError(tsv, "no data rows")
    return _Table(tsv, ["sequence", "label"], rows, lines, tsv.parent.resolve())


def _stratified_split(labels: list[str], seed: int) -> dict[str, np.ndarray]:
    """Row indices of train/valid/test: per label, a seeded shuffle cut at the fractions."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    arr = np.asarray(labels)
    for value in sorted(set(labels)):
        idx = rng.permutation(np.flatnonzero(arr == value))
        n_test = round(len(idx) * TEST_FRACTION)
        n_valid = round(len(idx) * VALID_FRACTION)
        parts["test"] += idx[:n_test].tolist()
        parts["valid"] += idx[n_test : n_test + n_valid].tolist()
        parts["train"] += idx[n_test + n_valid :].tolist()
    return {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in parts.items()}


def _prismnet_spec(path: Path) -> TaskSpec:
    tsv = _prismnet_file(path).resolve()
    table = _prismnet_table(tsv)
    parts = _stratified_split([r["label"] for r in table.rows], SPLIT_SEED)
    empty = [s for s, idx in parts.items() if len(idx) == 0]
    if empty:
        raise TaskFileError(
            tsv,
            f"{len(table.rows)} rows are too few to split into train/valid/test "
            f"({TEST_FRACTION:g}/{VALID_FRACTION:g} of each label); the {empty[0]} split "
            "would be empty",
        )
    made = {
        "splits": ["train", "valid", "test"],
        "seed": SPLIT_SEED,
        "test_fraction": TEST_FRACTION,
        "valid_fraction": VALID_FRACTION,
        "stratified_by": "label",
        "examples": {s: len(idx) for s, idx in parts.items()},
    }
    return TaskSpec(
        name=tsv.stem,
        files=dict.fromkeys(("train", "valid", "test"), tsv),
        root=tsv.parent,
        benchmark="prismnet",
        format="prismnet",
        made_splits=made,
        source={"layout": "tsv", "table": table, "parts": parts},
    )


# ---- tables -------------------------------------------------------------------------


def read_tables(spec: TaskSpec) -> tuple[dict[str, _Table], str | None, list[str] | None]:
    """Every split's rows as bioprune task columns, and the kind and class names the
    format fixes (``None``: inferred from the rows, as for a bioprune CSV)."""
    layout = spec.source.get("layout")
    if layout == "bprna":
        return _bprna_tables(spec), "secondary_structure", None
    if layout == "lmdb":
        return _lmdb_tables(spec)
    if layout == "tsv":
        table: _Table = spec.source["table"]
        tables = {}
        for split, idx in spec.source["parts"].items():
            tables[split] = _Table(
                table.path, table.columns, [table.rows[i] for i in idx],
                [table.lines[i] for i in idx], table.root,
            )  # fmt: skip
        return tables, "classification", None
    tables = {s: _beacon_csv(spec, s) for s in spec.split_names}
    if "labels" in tables["train"].columns:
        for s, t in tables.items():
            if "labels" not in t.columns:
                raise TaskFileError(
                    t.path,
                    f"the {s} split's labels are single values but the training split's "
                    "are BEACON Modification flags",
                )
        return tables, "multilabel", list(MODIFICATION_CLASSES)
    return tables, spec.kind, None
