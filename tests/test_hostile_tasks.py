"""Hostile task files for ``bioprune evaluate`` (issue 10 items 6, 8, 11).

Each case asserts exit status 2, one line naming the file (and line) and the reason, that
no input changed and that no output was written; cases that could run code or read files
outside the task also assert that nothing ran and nothing outside was quoted.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.hostile import assert_one_line_error, run_cli, snapshot

SECRET = "SECRET_FIRST_LINE_do_not_echo"


def _task(root: Path, yaml: str | None = None, rows: int = 3) -> Path:
    """A small classification task (sequence,label) with ``rows`` rows per split."""
    root.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        body = "".join(f"ACGUACGU{'AC'[k % 2]},{'xy'[k % 2]}\n" for k in range(rows))
        (root / f"{split}.csv").write_text("sequence,label\n" + body)
    if yaml is not None:
        (root / "task.yaml").write_text(yaml)
    return root


def _evaluate(task, model, out, monkeypatch, capsys) -> tuple[int, str]:
    return run_cli(
        "evaluate", "--model", model, "--task", task, "--out", out, "--seeds", "0",
        "--epochs", "1", "--device", "cpu", monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip


def _refused(task, model, out, monkeypatch, capsys, *fragments, guard=()) -> str:
    """Run evaluate on a hostile task; assert the one-line error and that nothing changed."""
    before = snapshot(task, model, *guard)
    code, err = _evaluate(task, model, out, monkeypatch, capsys)
    assert_one_line_error(code, err, *fragments)
    assert snapshot(task, model, *guard) == before
    assert not Path(out).exists()
    return err


# ---- item 8: CSV rows that do not fit the header ----------------------------------------


@pytest.mark.parametrize(
    ("row", "fragments"),
    [
        ("ACGU,a,b,c", ("train.csv line 3", "4 field(s) but the header has 2", "comma")),
        ("ACGU", ("train.csv line 3", "1 field(s) but the header has 2", "missing")),
        ('ACGU,"x\nACGU",y', ("train.csv line 3", "runs over lines 3-4", "quote")),
        ('ACGU,"x', ("train.csv line 3", "never closed")),
        ('ACGU,x"y"z,', ("train.csv line 3",)),
    ],
    ids=["extra-fields", "too-few-fields", "quote-over-lines", "unterminated-quote", "stray"],
)
def test_csv_row_not_fitting_the_header(
    row, fragments, tmp_path, tiny_model_dir, monkeypatch, capsys
):
    task = _task(tmp_path / "t")
    text = (task / "train.csv").read_text().splitlines(keepends=True)
    text.insert(2, row + "\n")  # becomes line 3
    (task / "train.csv").write_text("".join(text))
    _refused(task, tiny_model_dir, tmp_path / "r.json", monkeypatch, capsys, *fragments)


@pytest.mark.parametrize(
    ("payload", "fragments"),
    [
        (b"sequence,label\nACGU,x\nAC\x00\x01GU,y\n", ("valid.csv line 3", "NUL byte", "binary")),
        (b"sequence,label\nACGU,x\n\xff\xfeAC,y\n", ("valid.csv line 3", "0xff", "UTF-8")),
        (bytes(range(256)) * 4, ("valid.csv line 1", "NUL byte")),
    ],
    ids=["nul", "latin1", "binary"],
)
def test_binary_task_csv(payload, fragments, tmp_path, tiny_model_dir, monkeypatch, capsys):
    task = _task(tmp_path / "t")
    (task / "valid.csv").write_bytes(payload)
    _refused(task, tiny_model_dir, tmp_path / "r.json", monkeypatch, capsys, *fragments)


def test_not_a_task_csv_is_not_quoted(tmp_path, tiny_model_dir, monkeypatch, capsys):
    task = _task(tmp_path / "t")
    (task / "test.csv").write_text(f"{SECRET},x:0:0\nroot,y\n")
    err = _refused(
        task, tiny_model_dir, tmp_path / "r.json", monkeypatch, capsys,
        "test.csv line 1", "none of the task columns", "not a task CSV",
    )  # fmt: skip
    assert SECRET not in err


# ---- item 11: task files outside the task directory ---------------------------------------


def _outside(tmp_path: Path) -> Path:
    """A readable file outside the task directory, shaped like a task CSV."""
    f = tmp_path / "elsewhere" / "private.csv"
    f.parent.mkdir()
    f.write_text(f"sequence,label\n{SECRET},x\n")
    return f


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink-yaml", "symlink-default"])
def test_task_file_outside_the_task_directory(how, tmp_path, tiny_model_dir, monkeypatch, capsys):
    secret = _outside(tmp_path)
    if how == "absolute":
        task = _task(tmp_path / "t", yaml=f"train: {secret}\n")
        fragments = ("task.yaml", "absolute path", "inside")
    elif how == "dotdot":
        task = _task(tmp_path / "t", yaml="train: ../elsewhere/private.csv\n")
        fragments = ("task.yaml", "outside the task directory")
    elif how == "symlink-yaml":
        task = _task(tmp_path / "t", yaml="train: link.csv\n")
        (task / "link.csv").symlink_to(secret)
        fragments = ("task.yaml", "link.csv", "outside the task directory")
    else:  # the default train.csv is itself a symlink to a file outside
        task = _task(tmp_path / "t")
        (task / "train.csv").unlink()
        (task / "train.csv").symlink_to(secret)
        fragments = ("train.csv", "outside the task directory")
    err = _refused(
        task, tiny_model_dir, tmp_path / "r.json", monkeypatch, capsys, *fragments,
        guard=(secret,),
    )  # fmt: skip
    assert SECRET not in err


def test_task_yaml_given_on_the_command_line_may_live_anywhere(tmp_path):
    """The task YAML named on the command line sets the task directory (its own directory);
    files inside it, also through symlinks that stay inside, are accepted."""
    from bioprune.evaluation.tasks import load_task_spec

    task = _task(tmp_path / "t")
    (task / "data").mkdir()
    (task / "train.csv").rename(task / "data" / "train.csv")
    (task / "train.csv").symlink_to(task / "data" / "train.csv")
    (task / "spec.yaml").write_text("train: data/../train.csv\n")
    spec = load_task_spec(task / "spec.yaml")
    assert spec.files["train"] == (task / "data" / "train.csv").resolve()
    assert spec.root == task.resolve()


def test_structure_file_outside_the_task_directory(tmp_path, tiny_model_dir, monkeypatch, capsys):
    secret = tmp_path / "elsewhere.bpseq"
    secret.write_text(f"1 {SECRET} 0\n")
    task = tmp_path / "t"
    task.mkdir()
    (task / "s.bpseq").write_text("1 G 3\n2 A 0\n3 C 1\n")
    for split in ("train", "valid", "test"):
        (task / f"{split}.csv").write_text("structure_file\ns.bpseq\n../elsewhere.bpseq\n")
    err = _refused(
        task, tiny_model_dir, tmp_path / "r.json", monkeypatch, capsys,
        "train.csv line 3", "structure_file", "outside the task directory", guard=(secret,),
    )  # fmt: skip
    assert SECRET not in err


# ---- item 6 (part): broken task.yaml ---------------------------------------------------


@pytest.mark.parametrize(
    ("yaml", "fragments"),
    [
        ("kind: classification\nepochs: [1\n", ("task.yaml line 3", "invalid YAML")),
        ("kind: classification\n\tepochs: 3\n", ("task.yaml line 2", "invalid YAML")),
        ("- a\n- b\n", ("task.yaml", "expected a mapping", "list")),
        ("epochs: many\n", ("task.yaml", "epochs must be an integer", "'many'")),
        ("epochs: 0\n", ("task.yaml", "epochs must be an integer >= 1")),
        ("epochs: true\n", ("task.yaml", "epochs must be an integer")),
        ("lr: -1e-4\n", ("task.yaml", "lr must be a number > 0")),
        ("batch_size: 2.5\n", ("task.yaml", "batch_size must be an integer")),
        ("max_length: {a: 1}\n", ("task.yaml", "max_length must be an integer")),
        ("weight_decay: .nan\n", ("task.yaml", "weight_decay must be a number")),
        ("protocol: fast\n", ("task.yaml", "protocol 'fast' is not one of")),
        ("one_partner_per_base: maybe\n", ("task.yaml", "one_partner_per_base must be true")),
        ("kind: [classification]\n", ("task.yaml", "unknown kind")),
        ("alphabet: dna\n", ("task.yaml", "alphabet 'dna' is not one of")),
        ("train: [a.csv]\n", ("task.yaml", "train must be a string")),
        ("pos_weight: heavy\n", ("task.yaml", "pos_weight must be a number")),
        ("epoch: 3\n", ("task.yaml", "unknown key(s) ['epoch']")),
        ("1: 3\nepochs: 2\n", ("task.yaml", "keys must be names")),
        ("epochs: 3\nlr: 0.1\nepochs: 30\n", ("task.yaml line 3", "'epochs' is given twice")),
        ("root: x\ndaemon: y\n", ("task.yaml", "none of its 2 key(s)", "not a task file")),
        ("root:x:0:0:root:/root\n", ("task.yaml", "expected a mapping", "found a str")),
    ],
)
def test_broken_task_yaml(yaml, fragments, tmp_path, tiny_model_dir, monkeypatch, capsys):
    task = _task(tmp_path / "t", yaml=yaml)
    _refused(task, tiny_model_dir, tmp_path / "r.json", monkeypatch, capsys, *fragments)


def test_binary_task_yaml(tmp_path, tiny_model_dir, monkeypatch, capsys):
    task = _task(tmp_path / "t")
    (task / "task.yaml").write_bytes(b"kind: \xff\xfe\x00\x00")
    _refused(
        task, tiny_model_dir, tmp_path / "r.json", monkeypatch, capsys, "task.yaml", "cannot read"
    )


def test_task_yaml_tags_build_no_objects(tmp_path, tiny_model_dir, monkeypatch, capsys):
    marker = tmp_path / "pwned"
    yaml = f'name: !!python/object/apply:os.system ["touch {marker}"]\n'
    task = _task(tmp_path / "t", yaml=yaml)
    _refused(
        task, tiny_model_dir, tmp_path / "r.json", monkeypatch, capsys,
        "task.yaml line 1", "invalid YAML", "python/object",
    )  # fmt: skip
    assert not marker.exists()


# ---- item 6 (part): .npy maps that are pickles, the wrong shape or dtype --------------


class _Runs:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _map_task(root: Path) -> Path:
    root.mkdir()
    for split in ("train", "valid", "test"):
        lines = ["sequence,contact_map"]
        for k in range(2):
            np.save(root / f"{split}_{k}.npy", np.eye(4, dtype=np.float32))
            lines.append(f"ACGU,{split}_{k}.npy")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("pickle", ("valid_1.npy", "holds Python objects (a pickle)", "never loads")),
        ("text", ("valid_1.npy", "not a .npy file", "numpy.save")),
        ("truncated", ("valid_1.npy", "cannot read contact_map .npy file")),
        ("huge-header", ("valid_1.npy", "cannot read contact_map .npy file")),
        ("npz", ("valid_1.npy", ".npz archive")),
        ("strings", ("valid_1.npy", "dtype <U1", "expected numbers")),
        ("shape", ("valid.csv line 3", "valid_1.npy has shape (4, 3)", "(4, 4)")),
        ("outside", ("valid.csv line 3", "outside the task directory")),
    ],
)
def test_bad_map_file(case, fragments, tmp_path, tiny_model_dir, monkeypatch, capsys):
    task = _map_task(tmp_path / "t")
    f = task / "valid_1.npy"
    marker = tmp_path / "pwned"
    if case == "pickle":
        np.save(f, np.array([_Runs(marker)] * 16, dtype=object).reshape(4, 4), allow_pickle=True)
    elif case == "text":
        f.write_text("0 1 0 0\n1 0 1 0\n")
    elif case == "truncated":
        f.write_bytes(f.read_bytes()[:-20])
    elif case == "huge-header":  # announces 8 TB: checked against the file, not allocated
        header = np.lib.format.header_data_from_array_1_0(np.eye(4))
        with open(f, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, {**header, "shape": (10**6, 10**6)})
            fh.write(np.eye(4).tobytes())
    elif case == "npz":
        with open(f, "wb") as fh:
            np.savez(fh, a=np.eye(4))
    elif case == "strings":
        np.save(f, np.full((4, 4), "1"))
    elif case == "shape":
        np.save(f, np.zeros((4, 3)))
    else:
        (tmp_path / "x.npy").write_bytes((task / "train_0.npy").read_bytes())
        text = (task / "valid.csv").read_text().replace("valid_1.npy", "../x.npy")
        (task / "valid.csv").write_text(text)
    _refused(task, tiny_model_dir, tmp_path / "r.json", monkeypatch, capsys, *fragments)
    assert not marker.exists()


def test_row_files_are_relative_to_their_csv_and_may_climb_inside_the_task(tmp_path):
    """structure_file / map names are relative to the CSV that names them; '..' is fine
    while the file stays inside the task directory."""
    from bioprune.data.alphabet import get_alphabet
    from bioprune.evaluation.tasks import load_task, load_task_spec

    task = tmp_path / "t"
    (task / "splits").mkdir(parents=True)
    (task / "splits" / "near.bpseq").write_text("1 G 3\n2 A 0\n3 C 1\n")
    (task / "far.bpseq").write_text("1 G 0\n2 A 0\n3 C 0\n")
    for split in ("train", "valid", "test"):
        (task / "splits" / f"{split}.csv").write_text("structure_file\nnear.bpseq\n../far.bpseq\n")
    (task / "task.yaml").write_text(
        "train: splits/train.csv\nvalid: splits/valid.csv\ntest: splits/test.csv\n"
    )
    data = load_task(load_task_spec(task), get_alphabet("rna"), 100)
    assert data.kind == "secondary_structure"
    assert data.splits["train"].targets == [[(0, 2)], []]
