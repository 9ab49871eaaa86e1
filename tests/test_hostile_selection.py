"""Hostile score files and selection directories for ``select`` and ``inspect`` (issue 10
item 12). Each case asserts exit status 2, one line naming the file and the reason, that no
input changed and that no output was written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.hostile import assert_one_line_error, run_cli, snapshot


def _scores(path, corpus, scores=None, *, ids=None, metadata=None, drop=(), **write):
    n = len(corpus)
    values = np.random.default_rng(0).lognormal(0, 1, n) if scores is None else scores
    table = pa.table(
        {
            "index": np.arange(n, dtype=np.int64),
            "id": pa.array(corpus.ids() if ids is None else ids, pa.string()),
            "length": corpus.lengths,
            "score": np.asarray(values, dtype=np.float64),
            "loss": np.ones(n),
        }
    ).drop_columns(list(drop))
    if metadata is not None:
        table = table.replace_schema_metadata({k: str(v) for k, v in metadata.items()})
    pq.write_table(table, path, **write)
    return path


def _select(scores, corpus, out, monkeypatch, capsys, method="topk", budget="5"):
    args = ["select", "--method", method, "--budget", budget, "--scores", scores, "--out", out]
    if corpus is not None:
        args += ["--corpus", corpus.path]
    return run_cli(*args, monkeypatch=monkeypatch, capsys=capsys)


def _refused(scores, corpus, tmp_path, monkeypatch, capsys, *fragments, method="topk"):
    inputs = [p for p in (scores, corpus.path if corpus is not None else None) if p]
    before = snapshot(*inputs)
    out = tmp_path / "sel"
    code, err = _select(scores, corpus, out, monkeypatch, capsys, method=method)
    assert_one_line_error(code, err, *fragments)
    assert snapshot(*inputs) == before
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".sel")]
    return err


# ---- select: score values ------------------------------------------------------------


def test_infinite_scores_are_counted_apart_from_nan(tiny_corpus, tmp_path, monkeypatch, capsys):
    values = np.random.default_rng(0).lognormal(0, 1, len(tiny_corpus))
    values[[3, 17]] = np.nan
    values[20] = np.inf
    path = _scores(tmp_path / "s.parquet", tiny_corpus, values)
    code, err = _select(path, tiny_corpus, tmp_path / "sel", monkeypatch, capsys)
    assert code == 0, err
    assert "2 NaN and 1 infinite score(s) excluded" in " ".join(err.split())
    meta = json.loads((tmp_path / "sel" / "selection.json").read_text())
    assert (meta["nan_scores_excluded"], meta["inf_scores_excluded"]) == (2, 1)
    assert meta["non_finite_scores_excluded"] == 3
    assert 20 not in pq.read_table(tmp_path / "sel" / "selection.parquet")["index"].to_pylist()
    # a budget beyond the finite scores: the error tells inf from NaN and names the file
    code, err = run_cli(
        "select", "--method", "topk", "--budget", "46", "--scores", path, "--out",
        tmp_path / "sel2", monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, "2 NaN and 1 infinite score(s) excluded from", path)


@pytest.mark.parametrize("bad", [-1e-3, -np.inf])
def test_negative_scores_are_refused(bad, tiny_corpus, tmp_path, monkeypatch, capsys):
    values = np.random.default_rng(0).lognormal(0, 1, len(tiny_corpus))
    values[[4, 9]] = bad
    path = _scores(tmp_path / "s.parquet", tiny_corpus, values)
    _refused(
        path, None, tmp_path, monkeypatch, capsys,
        path, "2 negative score(s)", "index 4", "squared norm",
    )  # fmt: skip


# ---- select: files that are not score files ----------------------------------------


@pytest.mark.parametrize("case", ["text", "empty", "directory", "truncated", "garbled"])
def test_not_a_parquet_score_file(case, tiny_corpus, tmp_path, monkeypatch, capsys):
    path = tmp_path / "s.parquet"
    fragments: tuple = (path,)
    if case == "text":
        path.write_text("index,id,length,score,loss\n0,a,3,1.0,1.0\n")
        fragments += ("not a Parquet score file",)
    elif case == "empty":
        path.write_bytes(b"")
        fragments += ("not a Parquet score file",)
    elif case == "directory":
        path.mkdir()
        fragments += ("is a directory",)
    elif case == "truncated":
        _scores(path, tiny_corpus)
        path.write_bytes(path.read_bytes()[:-40])
        fragments += ("not a Parquet score file",)
    else:  # footer intact, the compressed score pages garbled
        ones = np.ones(len(tiny_corpus))  # compressible, so zstd really compresses the page
        _scores(path, tiny_corpus, ones, compression="zstd", use_dictionary=False)
        meta = pq.read_metadata(path).row_group(0).column(3)
        data = bytearray(path.read_bytes())
        start, size = meta.data_page_offset, meta.total_compressed_size
        data[start + size // 2 : start + size] = b"\xa5" * (size - size // 2)
        path.write_bytes(bytes(data))
        fragments += ("cannot read score file",)
    _refused(path, tiny_corpus, tmp_path, monkeypatch, capsys, *fragments)


def test_score_file_without_the_score_column(tiny_corpus, tmp_path, monkeypatch, capsys):
    path = _scores(tmp_path / "s.parquet", tiny_corpus, drop=["score"])
    _refused(path, tiny_corpus, tmp_path, monkeypatch, capsys, path, "lacks column(s) score")


def test_score_file_with_duplicate_ids(tiny_corpus, tmp_path, monkeypatch, capsys):
    ids = tiny_corpus.ids().copy()
    ids[11] = ids[10]
    path = _scores(tmp_path / "s.parquet", tiny_corpus, ids=ids)
    _refused(
        path, tiny_corpus, tmp_path, monkeypatch, capsys,
        path, "index 11", f"id {ids[10]!r} appears 2 times in the score file",
    )  # fmt: skip


def test_score_file_of_another_corpus(tiny_corpus, tmp_path, monkeypatch, capsys):
    path = _scores(tmp_path / "s.parquet", tiny_corpus, metadata={"corpus_checksum": "b:other"})
    _refused(
        path, tiny_corpus, tmp_path, monkeypatch, capsys,
        path, "computed on another corpus", tiny_corpus.path,
    )  # fmt: skip


# ---- inspect: garbage selection directories ------------------------------------------


@pytest.fixture(scope="module")
def selection(tiny_corpus, tmp_path_factory):
    from bioprune.selection.pipeline import select_coreset

    tmp = tmp_path_factory.mktemp("hostile-selection")
    scores = _scores(tmp / "scores.parquet", tiny_corpus)
    select_coreset(
        method="cci", budget="10", out=tmp / "sel", scores_path=scores,
        corpus_path=tiny_corpus.path, params={"strata": 3, "seed": 0},
    )  # fmt: skip
    return tmp / "sel", scores


def _damage(sel, case):
    meta_path, table = sel / "selection.json", sel / "selection.parquet"
    meta = json.loads(meta_path.read_text())
    if case == "json-garbage":
        meta_path.write_bytes(b"\x00\xffnot json")
        return meta_path, "cannot read selection.json"
    if case == "json-list":
        meta_path.write_text("[1, 2]")
        return meta_path, "not a selection.json written by `bioprune select`"
    if case == "json-foreign":
        meta_path.write_text(json.dumps({"method": "cci", "inputs": {}}))
        return meta_path, "not a selection.json written by `bioprune select`"
    if case == "cci-details":
        meta["details"]["strata_table"] = "many"
        meta_path.write_text(json.dumps(meta))
        return meta_path, "CCI details"
    if case == "inputs-not-a-mapping":
        meta["inputs"] = ["x"]
        meta_path.write_text(json.dumps(meta))
        return meta_path, "'inputs' or 'details'"
    if case == "table-garbage":
        table.write_bytes(b"PAR1 garbage PAR1")
        return table, "cannot read selection table"
    if case == "table-missing":
        table.unlink()
        return table, "does not exist"
    if case == "table-no-index":
        pq.write_table(pq.read_table(table).drop_columns(["index"]), table)
        return table, "no integer 'index' column"
    if case == "table-null-index":
        t = pq.read_table(table)
        t = t.set_column(0, "index", pa.array([None, *t["index"].to_pylist()[1:]], pa.int64()))
        pq.write_table(t, table)
        return table, "1 row(s) have no index"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "json-garbage", "json-list", "json-foreign", "cci-details", "inputs-not-a-mapping",
        "table-garbage", "table-missing", "table-no-index", "table-null-index",
    ],
)  # fmt: skip
def test_inspect_garbage_selection(case, selection, tiny_corpus, tmp_path, monkeypatch, capsys):
    good, scores = selection
    sel = tmp_path / "sel"
    shutil.copytree(good, sel)
    named, reason = _damage(sel, case)
    before = snapshot(sel, tiny_corpus.path, scores)
    out = tmp_path / "report"
    code, err = run_cli(
        "inspect", "--corpus", tiny_corpus.path, "--selection", sel, "--scores", scores,
        "--out", out, monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, named, reason)
    assert snapshot(sel, tiny_corpus.path, scores) == before
    assert not out.exists()


def test_inspect_refuses_negative_scores(selection, tiny_corpus, tmp_path, monkeypatch, capsys):
    good, _ = selection
    values = np.random.default_rng(0).lognormal(0, 1, len(tiny_corpus))
    values[7] = -2.0
    scores = _scores(tmp_path / "neg.parquet", tiny_corpus, values)
    before = snapshot(good, scores)
    code, err = run_cli(
        "inspect", "--corpus", tiny_corpus.path, "--selection", good, "--scores", scores,
        "--out", tmp_path / "report", monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, scores, "1 negative score(s)", "index 7")
    assert snapshot(good, scores) == before
    assert not (tmp_path / "report").exists()
