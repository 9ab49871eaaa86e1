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
import difflib
import io
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bioprune.data.alphabet import ALPHABETS, Alphabet
from bioprune.errors import InputError, reading
from bioprune.evaluation.kinds import KindView, get_kind
from bioprune.evaluation.structure import parse_dot_bracket, read_structure_file

if TYPE_CHECKING:
    from bioprune.evaluation.kinds import TaskKind

__all__ = [
    "BENCHMARKS",
    "KINDS",
    "KIND_METRICS",
    "SPLITS",
    "Split",
    "TaskData",
    "TaskFileError",
    "TaskSpec",
    "infer_kind",
    "load_task",
    "load_task_spec",
]

SPLITS = ("train", "valid", "test")
#: Benchmarks whose distributed layouts bioprune reads (``TaskSpec.benchmark``).
BENCHMARKS = ("beacon", "peer", "tape", "prismnet")

#: Every task kind, with the columns it reads (a view of the registry in
#: :mod:`bioprune.evaluation.kinds`).
KINDS: Mapping[str, tuple[str, ...]] = KindView(lambda kind: kind.columns)
#: Metrics reported for each kind (method.md section 6 names, the usual companions and
#: the benchmarks' own definitions, suffixed ``_beacon`` where they differ; the
#: definitions are in ``bioprune.evaluation.metrics.DEFINITIONS``).
KIND_METRICS: Mapping[str, tuple[str, ...]] = KindView(lambda kind: kind.metrics)

#: Per-residue target of a residue that does not count (``valid_mask`` 0 in PEER/TAPE
#: secondary structure): excluded from the loss (cross-entropy's ignore index) and metrics.
MASKED = -100

#: Integer labels with more distinct values than this are not taken as classes.
MAX_INTEGER_CLASSES = 50

#: task.yaml keys bioprune reads (anything else is an error, to catch typos).
YAML_KEYS = frozenset(
    {
        "name", "kind", "train", "valid", "test", "protocol", "epochs", "lr", "batch_size",
        "weight_decay", "max_length", "one_partner_per_base", "description", "source",
        "pos_weight",
        "alphabet", "metrics", "benchmark",
    }
)  # fmt: skip


class TaskFileError(InputError):
    """A task file (task.yaml, a split CSV, a structure or map file) is malformed.

    The message is ``"PATH line N: reason"`` (``"PATH: reason"`` without a line).
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, line: int | None = None):
        self.line = line
        super().__init__(path, reason)
        if line is not None:
            self.args = (f"{path} line {line}: {reason}",)

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self):
        return (type(self), (str(self.path), self.reason, self.line))


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
    root: Path | None = None  # the task directory (resolved); every task file lies inside it
    #: the benchmark whose layout the task was read from (one of :data:`BENCHMARKS`), or
    #: ``None`` for a bioprune task; benchmark tasks get that benchmark's metric definitions
    benchmark: str | None = None
    #: the layout the files are in: ``bioprune`` (CSV + task.yaml) or a benchmark's own
    #: (:data:`bioprune.evaluation.formats.FORMATS`)
    format: str = "bioprune"
    #: the test splits, each reported separately (keys of ``files``; the first is the main one)
    test_splits: tuple[str, ...] = ("test",)
    #: class names fixed by the format, in the benchmark's order (else taken from training)
    classes: tuple[str, ...] | None = None
    #: how a split the benchmark does not provide was made (seed, fractions, counts)
    made_splits: dict[str, Any] | None = None
    #: format-specific reading instructions (filled by bioprune.evaluation.formats)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def split_names(self) -> tuple[str, ...]:
        """``train``, ``valid`` and every test split, in order."""
        return ("train", "valid", *self.test_splits)


def _unique_key_loader():
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """``yaml.SafeLoader`` that refuses a key given twice (the last would win silently)."""

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, str) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def _read_yaml(yaml_path: Path) -> dict[str, Any]:
    """``task.yaml`` as a mapping, read by a ``yaml.SafeLoader`` (no tag builds an object)
    that also refuses a key given twice; ``key:`` with no value is dropped (unset)."""
    import yaml

    with reading(yaml_path, "task.yaml"):
        text = yaml_path.read_bytes().decode("utf-8")
    if "\x00" in text:
        raise TaskFileError(yaml_path, "holds a NUL byte: a binary file, not a YAML task file")
    try:
        loaded = yaml.load(text, Loader=_unique_key_loader())  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or type(exc).__name__
        if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
            problem += " (task.yaml holds plain values; tags such as !!python/object are refused)"
        raise TaskFileError(
            yaml_path, f"invalid YAML: {problem}", None if mark is None else mark.line + 1
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise TaskFileError(
            yaml_path, f"expected a mapping of keys to values, found a {type(loaded).__name__}"
        )
    bad = [k for k in loaded if not isinstance(k, str)]
    if bad:
        raise TaskFileError(yaml_path, f"keys must be names, found {bad[:5]}")
    unknown = sorted(set(loaded) - YAML_KEYS)
    typos = [k for k in unknown if difflib.get_close_matches(k, YAML_KEYS, 1, 0.75)]
    if unknown and len(unknown) == len(loaded) and not typos:
        # not quoted back: a file none of whose keys is (nearly) a task key may hold anything
        raise TaskFileError(
            yaml_path, f"none of its {len(loaded)} key(s) is a task.yaml key; not a task file"
        )
    if unknown:
        raise TaskFileError(
            yaml_path, f"unknown key(s) {unknown}; known keys are {sorted(YAML_KEYS)}"
        )
    return {k: v for k, v in loaded.items() if v is not None}  # `key:` alone means unset


def _number(yaml_path: Path, key: str, value: Any, *, integer: bool, low: float, strict: bool):
    """A task.yaml number (``1e-4`` is a string to YAML 1.1, so numeric strings are taken)."""
    what = "an integer" if integer else "a number"
    bound = f"{'>' if strict else '>='} {low:g}"
    if isinstance(value, bool) or isinstance(value, list | dict):
        raise TaskFileError(yaml_path, f"{key} must be {what} {bound}, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TaskFileError(yaml_path, f"{key} must be {what} {bound}, got {value!r}") from None
    if (
        not math.isfinite(number)
        or (integer and not (isinstance(value, int) or number.is_integer()))
        or (number <= low if strict else number < low)
    ):
        raise TaskFileError(yaml_path, f"{key} must be {what} {bound}, got {value!r}")
    return int(number) if integer else number


def _check_options(yaml_path: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Check the type and range of every task.yaml value (one line naming the file and key)."""
    from bioprune.evaluation.protocols import PROTOCOLS

    out = dict(options)
    for key in ("epochs", "batch_size", "max_length"):
        if key in out:
            out[key] = _number(yaml_path, key, out[key], integer=True, low=1, strict=False)
    if "lr" in out:
        out["lr"] = _number(yaml_path, "lr", out["lr"], integer=False, low=0, strict=True)
    if "weight_decay" in out:
        out["weight_decay"] = _number(
            yaml_path, "weight_decay", out["weight_decay"], integer=False, low=0, strict=False
        )
    if "pos_weight" in out and out["pos_weight"] != "balanced":
        out["pos_weight"] = _number(
            yaml_path, "pos_weight", out["pos_weight"], integer=False, low=0, strict=True
        )
    if "protocol" in out and out["protocol"] not in PROTOCOLS:
        raise TaskFileError(
            yaml_path, f"protocol {out['protocol']!r} is not one of {list(PROTOCOLS)}"
        )
    if "one_partner_per_base" in out and not isinstance(out["one_partner_per_base"], bool):
        raise TaskFileError(
            yaml_path,
            f"one_partner_per_base must be true or false, got {out['one_partner_per_base']!r}",
        )
    if "kind" in out and (not isinstance(out["kind"], str) or out["kind"] not in KINDS):
        raise TaskFileError(yaml_path, f"unknown kind {out['kind']!r}; choose one of {list(KINDS)}")
    if "benchmark" in out and out["benchmark"] not in BENCHMARKS:
        raise TaskFileError(
            yaml_path, f"benchmark {out['benchmark']!r} is not one of {list(BENCHMARKS)}"
        )
    if "alphabet" in out and out["alphabet"] not in ALPHABETS:
        raise TaskFileError(
            yaml_path, f"alphabet {out['alphabet']!r} is not one of {sorted(ALPHABETS)}"
        )
    tests = out.get("test")
    if isinstance(tests, dict):  # several named test splits: {name: file}
        if not tests or not all(
            isinstance(k, str) and k and k not in ("train", "valid") and isinstance(v, str)
            for k, v in tests.items()
        ):
            raise TaskFileError(
                yaml_path,
                "test must be a file name, or a mapping of test split names (not train or "
                f"valid) to file names, got {tests!r}",
            )
    for key in ("name", "description", "source", *SPLITS):
        value = out.get(key, "")
        if key == "test" and isinstance(value, dict):
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise TaskFileError(yaml_path, f"{key} must be a string, got {value!r}")
    return out


def _inside(
    root: Path,
    name: str,
    named_in: Path,
    what: str,
    line: int | None = None,
    base: Path | None = None,
) -> Path:
    """``base / name`` resolved (``base`` defaults to ``root``), refused when ``name`` is
    absolute or resolves outside ``root``.

    A task names its files relative to its directory; an absolute path, a ``..``
    escape or a symlink that resolves outside the directory would make bioprune
    read (and quote in its errors) any file the user can read.
    """
    if os.path.isabs(name) or Path(name).is_absolute():
        raise TaskFileError(
            named_in,
            f"{what} {name!r} is an absolute path; task files are named relative to the "
            f"task directory {root} and must lie inside it",
            line,
        )
    resolved = ((base or root) / name).resolve()
    if not resolved.is_relative_to(root):
        raise TaskFileError(
            named_in,
            f"{what} {name!r} resolves to {resolved}, outside the task directory {root} "
            "(a '..' or a symlink); copy the file into the task directory",
            line,
        )
    return resolved


def _split_files(
    path: Path, base: Path, yaml_path: Path | None, options: dict[str, Any]
) -> dict[str, Path]:
    """Each split's file (``train``, ``valid``, then every test split), taking the names
    task.yaml gives out of ``options``; each must exist inside the task directory."""
    tests = options.get("test")
    named = {s: options.pop(s, f"{s}.csv") for s in ("train", "valid")}
    if isinstance(tests, dict):
        options.pop("test")
        named.update(tests)
    else:
        named["test"] = options.pop("test", "test.csv")
    files = {}
    for split, file in named.items():
        f = _inside(base.resolve(), str(file), yaml_path or path, f"{split} split")
        if not f.is_file():
            where = f"named in {yaml_path}" if yaml_path and path.is_file() else f"in {base}"
            other = (
                ""
                if yaml_path
                else (
                    "; nor is it a benchmark layout bioprune recognises (BEACON val.csv or "
                    "bpRNA.csv, PEER/TAPE *.lmdb, a PrismNet .tsv)"
                )
            )
            raise FileNotFoundError(f"task {path}: {split} split {f} not found ({where}){other}")
        files[split] = f
    return files


def _headline_metrics(yaml_path: Path | None, headline: Any, kind: str | None) -> list[str] | None:
    """task.yaml's ``metrics:`` as a list, checked against the kind's metrics when known."""
    if headline is None:
        return None
    if isinstance(headline, str):
        headline = [headline]
    if not isinstance(headline, list) or not all(isinstance(m, str) for m in headline):
        raise TaskFileError(yaml_path, "metrics must be a list of metric names")
    if kind is not None:
        unknown = [m for m in headline if m not in KIND_METRICS[kind]]
        if unknown:
            raise TaskFileError(
                yaml_path,
                f"metric(s) {unknown} are not computed for a {kind} task; "
                f"choose among {list(KIND_METRICS[kind])}",
            )
    return headline


def load_task_spec(path: str | Path, fmt: str | None = None) -> TaskSpec:
    """Resolve a task directory or task YAML into a :class:`TaskSpec`.

    The task directory is the directory given, or the YAML's directory; every
    file the task names (splits, structure and map files) must lie inside it.
    A benchmark's own layout (BEACON, PEER/TAPE LMDB, PrismNet TSV) is
    recognised; ``fmt`` names the layout when detection is ambiguous (see
    :func:`bioprune.evaluation.formats.detect_format`).
    """
    from bioprune.evaluation.formats import benchmark_spec, detect_format

    path = Path(path)
    fmt = detect_format(path, fmt)
    if fmt != "bioprune":
        return benchmark_spec(path, fmt)
    if path.is_dir():
        yaml_path = path / "task.yaml"
        yaml_path = yaml_path if yaml_path.is_file() else None
        base = path
    elif path.is_file():
        yaml_path, base = path, path.parent
    else:
        raise FileNotFoundError(f"task {path} does not exist (give a task directory or task YAML)")
    root = base.resolve()
    options: dict[str, Any] = {}
    if yaml_path is not None:
        options = _check_options(yaml_path, _read_yaml(yaml_path))
    files = _split_files(path, base, yaml_path, options)
    kind = options.pop("kind", None)
    name = str(options.pop("name", path.stem if path.is_file() else path.name))
    for informational in ("description", "source"):
        options.pop(informational, None)
    alphabet = options.pop("alphabet", None)
    benchmark = options.pop("benchmark", None)
    headline = _headline_metrics(yaml_path, options.pop("metrics", None), kind)
    return TaskSpec(
        name=name,
        files=files,
        kind=kind,
        options=options,
        yaml_path=yaml_path,
        alphabet=None if alphabet is None else str(alphabet),
        metrics=headline,
        root=root,
        benchmark=benchmark,
        test_splits=tuple(s for s in files if s not in ("train", "valid")),
    )


# ---- CSV reading -------------------------------------------------------------

#: Every column a task CSV may use; a header with none of them is not a task CSV.
TASK_COLUMNS = frozenset(
    {"sequence", "seq", "sequence_a", "sequence_b", "label", "labels", "structure",
     "structure_file", "tags", "contact_map", "distance_map"}
)  # fmt: skip


@dataclass
class _Table:
    path: Path
    columns: list[str]
    rows: list[dict[str, str]]
    lines: list[int]  # file line of each row (header is line 1)
    root: Path | None = None  # the task directory: files named in rows must lie inside it
    unit: str = "line"  # what ``lines`` counts: file lines, or LMDB record keys ("record")

    def at(self, k: int) -> str:
        """Where row ``k`` is, for an error message: ``PATH line N``."""
        return f"{self.path} {self.unit} {self.lines[k]}"


def _decode_text(path: Path) -> str:
    """A task CSV's text: UTF-8 (a BOM is dropped); NUL or other bytes are refused by line."""
    with reading(path, "task CSV"):
        data = path.read_bytes()
    nul = data.find(b"\x00")
    if nul >= 0:
        raise TaskFileError(
            path,
            "holds a NUL byte: a binary file, not a CSV text file",
            data.count(b"\n", 0, nul) + 1,
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaskFileError(
            path,
            f"byte 0x{data[exc.start]:02x} is not UTF-8 text (a binary file, or another "
            "encoding: save the CSV as UTF-8)",
            data.count(b"\n", 0, exc.start) + 1,
        ) from None


def csv_records(path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """``(first line, last line, fields)`` of every record of a UTF-8 CSV, parsed strictly;
    a malformed record is a :class:`TaskFileError` naming its line."""
    reader = csv.reader(io.StringIO(_decode_text(path), newline=""), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = str(exc)
            if "unexpected end of data" in reason:
                reason = "a quote opened on this line is never closed"
            raise TaskFileError(path, f"malformed CSV: {reason}", start) from None
        yield start, reader.line_num, record


def _read_csv(path: Path, root: Path | None = None) -> _Table:
    """Parse a task CSV strictly: every row has the header's field count, quotes close on
    their line, the header names task columns; errors name the file and line."""
    records: list[tuple[int, list[str]]] = []
    for start, end, record in csv_records(path):
        if end != start and any("\n" in v or "\r" in v for v in record):
            raise TaskFileError(
                path,
                f"a quoted field runs over lines {start}-{end}: an unclosed quote? "
                "(task fields hold no line breaks)",
                start,
            )
        records.append((start, record))
    if not records or not any(c.strip() for c in records[0][1]):
        raise TaskFileError(path, "empty file or blank first line (expected a CSV header line)")
    columns = [c.strip() for c in records[0][1]]
    if "sequence" not in columns and "seq" in columns:
        columns[columns.index("seq")] = "sequence"  # BEACON's name for the column
    if not set(columns) & TASK_COLUMNS:
        # not quoted back: a file that is not a task CSV may hold anything
        raise TaskFileError(
            path,
            f"the header names none of the task columns ({', '.join(sorted(TASK_COLUMNS))}); "
            "not a task CSV",
            records[0][0],
        )
    named = [c for c in columns if c]
    repeated = sorted({c for c in named if named.count(c) > 1})
    if repeated:
        raise TaskFileError(path, f"column(s) {repeated} appear more than once in the header", 1)
    rows, lines = [], []
    for line, record in records[1:]:
        if not any(v.strip() for v in record):
            continue  # blank line
        if len(record) != len(columns):
            few = len(record) < len(columns)
            raise TaskFileError(
                path,
                f"{len(record)} field(s) but the header has {len(columns)} "
                f"({', '.join(columns)}); "
                + ("a value is missing" if few else "quote a value that holds a comma"),
                line,
            )
        rows.append({k: v.strip() for k, v in zip(columns, record, strict=True) if k})
        lines.append(line)
    return _Table(path, columns, rows, lines, root)


def parse_float(text: str) -> float | None:
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


def _multi_valued(label: str) -> bool:
    """A label that holds several values: ``0 1 0``, ``a;b``, ``0,1``, ``[0, 1]``."""
    text = label.strip()
    return bool(text) and (
        any(c in text for c in ";,|") or len(text.split()) > 1 or text[0] in "[("
    )


def _label_kind(labels: list[str], where: str) -> str:
    multi = next((v for v in labels if _multi_valued(v)), None)
    if multi is not None:
        flags = all(set(v.replace(",", " ").split()) <= {"0", "1"} for v in labels)
        hint = (
            "BEACON's modification layout (12 space-separated 0/1 flags)? give --format "
            "beacon; otherwise "
            if flags
            else ""
        )
        raise ValueError(
            f"{where}column 'label' holds several values in one field (e.g. {multi[:40]!r}), "
            f"not one class or number: {hint}name the labels of each example in a 'labels' "
            "column, separated by ';' (a multilabel task), or set kind: in task.yaml"
        )
    values = [parse_float(v) for v in labels]
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
    #: the benchmark the task comes from (``spec.benchmark``): beacon, peer, tape, prismnet
    #: or ``None`` for a bioprune task
    benchmark: str | None = None


def load_task(spec: TaskSpec, alphabet: Alphabet, max_length: int) -> TaskData:
    """Read and validate the three splits of ``spec`` for a model's ``alphabet``.

    Sequences longer than ``max_length`` residues are cropped to their first
    ``max_length`` residues, with their per-residue, pair or map targets; the
    count is kept per split.
    """
    fixed_kind, fixed_classes = spec.kind, spec.classes
    if spec.format == "bioprune":
        tables = {s: _read_csv(spec.files[s], spec.root) for s in spec.split_names}
    else:
        from bioprune.evaluation.formats import read_tables

        tables, format_kind, format_classes = read_tables(spec)
        fixed_kind = format_kind or fixed_kind
        fixed_classes = format_classes if format_classes is not None else fixed_classes
    for s, t in tables.items():
        if not t.rows:
            raise ValueError(f"{t.path}: the {s} split is empty (no data rows)")
    train = tables["train"]
    name = fixed_kind or infer_kind(
        train.columns,
        [r.get("label", "") for r in train.rows] if "label" in train.columns else None,
        train.path,
    )
    kind = get_kind(name)
    required = kind.required_columns(train.columns)
    for t in tables.values():
        missing = [c for c in required if c not in t.columns]
        if missing:
            raise ValueError(
                f"{t.path}: missing column {', '.join(map(repr, missing))} needed by a {name} "
                f"task (columns: {', '.join(t.columns)})"
            )
    classes = list(fixed_classes) if fixed_classes is not None else kind.classes(train)
    splits = {}
    for s in tables:
        splits[s] = kind.read(tables[s], alphabet, max_length, classes)
        splits[s].name = s
    return TaskData(spec=spec, kind=name, splits=splits, classes=classes, benchmark=spec.benchmark)


def categorical_classes(train: _Table) -> list[str]:
    """The classes of a categorical task: the training labels, numerically sorted if
    they are all numbers."""
    values = {r["label"] for r in train.rows}
    if "" in values:
        line = train.lines[[r["label"] for r in train.rows].index("")]
        raise ValueError(f"{train.path} line {line}: empty label")
    nums = {v: parse_float(v) for v in values}
    if all(x is not None for x in nums.values()):
        return sorted(values, key=lambda v: (nums[v], v))
    return sorted(values)


def valid_tags(row: dict[str, str]) -> str:
    """The tags of the residues that count (``valid_mask`` 1, or every residue)."""
    mask = row.get("valid_mask")
    if mask is None:
        return row["tags"]
    return "".join(t for t, m in zip(row["tags"], mask, strict=False) if m == "1")


def label_set(text: str) -> list[str]:
    return [x.strip() for x in text.split(";") if x.strip()]


def _tokens(table: _Table, k: int, alphabet: Alphabet, column: str = "sequence") -> np.ndarray:
    raw = table.rows[k][column]
    if not raw:
        raise ValueError(f"{table.at(k)}: empty {column}")
    seq = alphabet.normalize(raw)
    bad = alphabet.invalid_positions(seq)
    if bad.size:
        pos = int(bad[0])
        raise ValueError(
            f"{table.at(k)}: {column} has character {raw[pos]!r} at "
            f"position {pos + 1}, not in the model's {alphabet.name} alphabet ({alphabet.residues})"
        )
    return alphabet.encode(seq)


def unseen(table: _Table, k: int, what: str, value: str, known: list[str]) -> ValueError:
    shown = known if len(known) <= 20 else [*known[:20], "..."]
    return ValueError(
        f"{table.at(k)}: {what} {value!r} never occurs in the training "
        f"split (training has {shown}); a model cannot predict it"
    )


def read_sequence_level(
    table: _Table, alphabet: Alphabet, max_length: int, classes, kind: TaskKind
) -> Split:
    """One sequence (or two, ``kind.two_sequences``) and one target per row; the kind
    parses the target (``kind.target``) and stacks them (``kind.stack``)."""
    tokens, targets, cropped = [], [], 0
    two = kind.two_sequences
    tokens_b: list[np.ndarray] = []
    index = {c: i for i, c in enumerate(classes)} if classes is not None else {}
    cols = ("sequence_a", "sequence_b") if two else ("sequence",)
    for k, row in enumerate(table.rows):
        toks = [_tokens(table, k, alphabet, c) for c in cols]
        cropped += any(len(t) > max_length for t in toks)
        toks = [t[:max_length] for t in toks]
        tokens.append(toks[0])
        if two:
            tokens_b.append(toks[1])
        targets.append(kind.target(table, k, row, index))
    arr = kind.stack(targets)
    return Split(table.path.stem, table.path, tokens, arr, tokens_b if two else None, cropped)


def _check_length(
    table: _Table, k: int, column: str, value: str, n: int, unit: str = "characters", note=""
) -> None:
    """Row ``k``'s ``column`` holds one character per residue of its ``n``-residue sequence."""
    if len(value) != n:
        raise ValueError(
            f"{table.at(k)}: {column} has {len(value)} {unit} but the sequence has {n} "
            f"residues{note}"
        )


def read_tags(table: _Table, alphabet: Alphabet, max_length: int, classes) -> Split:
    """One tag per residue (``tags``; ``valid_mask`` 0 marks a residue that does not count)."""
    tokens, targets, cropped = [], [], 0
    index = {c: i for i, c in enumerate(classes)}
    for k, row in enumerate(table.rows):
        toks = _tokens(table, k, alphabet)
        tags = row["tags"]
        _check_length(table, k, "tags", tags, len(toks), note=" (one tag per residue)")
        mask = row.get("valid_mask", "1" * len(tags))
        _check_length(table, k, "valid_mask", mask, len(toks), unit="entries")
        for pos, (c, m) in enumerate(zip(tags, mask, strict=True)):
            if m == "1" and c not in index:
                raise unseen(table, k, f"tag at position {pos + 1}", c, classes)
        cropped += len(toks) > max_length
        tokens.append(toks[:max_length])
        targets.append(
            np.array(
                [index[c] if m == "1" else MASKED for c, m in zip(tags, mask, strict=True)],
                dtype=np.int64,
            )[:max_length]
        )
    return Split(table.path.stem, table.path, tokens, targets, None, cropped)


def read_structures(table: _Table, alphabet: Alphabet, max_length: int) -> Split:
    """Base pairs from a dot-bracket ``structure`` or a BPSEQ/CT ``structure_file``."""
    tokens, targets, cropped = [], [], 0
    for k, row in enumerate(table.rows):
        where = f"{table.at(k)}"
        if "structure" in row and row.get("structure"):
            toks = _tokens(table, k, alphabet)
            structure = row["structure"]
            _check_length(table, k, "structure", structure, len(toks))
            try:
                pairs = parse_dot_bracket(structure)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        else:
            name = row.get("structure_file", "")
            if not name:
                raise ValueError(f"{where}: neither structure nor structure_file is given")
            f = _task_file(table, k, name, "structure_file")
            with reading(f, "structure file"):
                seq_file, pairs = read_structure_file(f)
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


def read_maps(table: _Table, alphabet: Alphabet, max_length: int, kind: str) -> Split:
    """An (L, L) ``.npy`` map per row, named in the ``kind`` column."""
    tokens, targets, cropped = [], [], 0
    for k, row in enumerate(table.rows):
        where = f"{table.at(k)}"
        toks = _tokens(table, k, alphabet)
        name = row[kind]
        if not name:
            raise ValueError(f"{where}: empty {kind} (expected a .npy file name)")
        f = _task_file(table, k, name, kind)
        if not f.is_file():
            raise FileNotFoundError(f"{where}: {kind} file {f} does not exist")
        arr = _read_map(f, kind)
        n = len(toks)
        if arr.shape != (n, n):
            raise TaskFileError(
                table.path,
                f"{kind} {name} has shape {arr.shape} but the sequence has {n} residues "
                f"(expected ({n}, {n}))",
                table.lines[k],
            )
        cropped += n > max_length
        tokens.append(toks[:max_length])
        targets.append(np.array(arr[:max_length, :max_length], dtype=np.float32))  # a copy
        del arr  # closes the memory map
    return Split(table.path.stem, table.path, tokens, targets, None, cropped)


def _task_file(table: _Table, k: int, name: str, what: str) -> Path:
    """The file a row names: relative to the CSV's directory, inside the task directory."""
    root = table.root if table.root is not None else table.path.parent.resolve()
    return _inside(root, name, table.path, what, table.lines[k], base=table.path.parent)


def read_pair_matrices(table: _Table, alphabet: Alphabet, max_length: int) -> Split:
    """BEACON bpRNA rows: a sequence and an (L, L) 0/1 pair matrix (``pair_matrix``)."""
    tokens, targets, cropped = [], [], 0
    for k, row in enumerate(table.rows):
        toks = _tokens(table, k, alphabet)
        f = _task_file(table, k, row["pair_matrix"], "pair matrix")
        if not f.is_file():
            raise FileNotFoundError(f"{table.at(k)}: pair matrix {f} does not exist")
        arr = _read_map(f, "pair matrix")
        n = len(toks)
        if arr.shape != (n, n):
            raise TaskFileError(
                f, f"pair matrix has shape {arr.shape} but sequence {table.at(k)} has {n} bases"
            )
        values = np.asarray(arr)
        if not np.isin(values, (0, 1)).all():
            raise TaskFileError(f, "pair matrix holds values other than 0 and 1")
        both = np.triu(values + values.T, 1) > 0  # a pair written on either side counts
        del arr, values
        pairs = [(int(i), int(j)) for i, j in zip(*np.nonzero(both), strict=True)]
        cropped += n > max_length
        tokens.append(toks[:max_length])
        targets.append([(i, j) for i, j in pairs if j < max_length])
    return Split(table.path.stem, table.path, tokens, targets, None, cropped)


def _read_map(path: Path, kind: str) -> np.ndarray:
    """A (L, L) map from a ``.npy`` file: plain numbers only, never a pickle."""
    with reading(path, f"{kind} .npy file"), open(path, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"PK"):
        raise TaskFileError(path, f"is an .npz archive, not a .npy array ({kind} needs one)")
    if magic != b"\x93NUMPY":
        raise TaskFileError(
            path, f"is not a .npy file (no NumPy header); save the {kind} with numpy.save"
        )
    try:
        # memory-mapped: a header announcing a huge shape is checked against the file's
        # size instead of allocating it, and nothing is read before the shape check
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Python objects" in str(exc):
            raise TaskFileError(
                path,
                f"holds Python objects (a pickle), which bioprune never loads; save the {kind} "
                "as an array of numbers",
            ) from None
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "mmap length is greater than file size" in reason:
            reason = "the file is shorter than its header announces (truncated?)"
        raise TaskFileError(path, f"cannot read {kind} .npy file: {reason}") from None
    if arr.dtype.kind not in "biuf":
        raise TaskFileError(
            path, f"{kind} has dtype {arr.dtype}, expected numbers (bool, integer or float)"
        )
    return arr
