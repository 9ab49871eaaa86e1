"""The library as a notebook uses it (issue 13): examples/notebook.py, run twice in
one process, prints nothing, leaves global state alone, and scores as the CLI does."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.hostile import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]


def _notebook():
    spec = importlib.util.spec_from_file_location(
        "bioprune_notebook", ROOT / "examples/notebook.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bioprune_file() -> str:
    import bioprune

    return str(bioprune.__file__)


def _global_state() -> dict:
    """What a library call must not change: plotting backend, HF logging and bars."""
    import matplotlib
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    return {
        # the raw value: reading rcParams["backend"] would resolve (and so change) it
        "backend": dict.__getitem__(matplotlib.rcParams, "backend"),
        "hf_verbosity": hf_logging.get_verbosity(),
        "hf_bars": hf_logging.is_progress_bar_enabled(),
        "hub_bars_disabled": are_progress_bars_disabled(),
    }


@pytest.fixture
def svg_backend():
    """A backend the library has no reason to pick, restored afterwards."""
    import matplotlib

    before = dict.__getitem__(matplotlib.rcParams, "backend")
    matplotlib.use("svg")
    yield
    dict.__setitem__(matplotlib.rcParams, "backend", before)


def test_whole_pipeline_in_memory_twice_silent_and_side_effect_free(capfd, svg_backend):
    notebook = _notebook()
    ids, sequences = notebook.demo_sequences(n=200)
    before = _global_state()
    capfd.readouterr()
    runs = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            out = notebook.run(ids, sequences, seed=0)
            config = out["reference"].config.to_dict()
            runs.append((out, config))
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == "", captured
    package = str(Path(_bioprune_file()).parent)
    ours = [str(w.message) for w in caught if str(w.filename).startswith(package)]
    assert ours == []  # no warning raised from bioprune's own code
    assert _global_state() == before

    (first, config1), (second, config2) = runs
    assert config1 == config2 == first["reference"].config.to_dict()  # no config mutated
    assert len(first["corpus"]) == len(ids) == len(first["scores"].score)
    assert list(first["scores"].ids) == ids
    assert np.isfinite(first["scores"].score).all()
    # the same seeds give the same answers: no state carried between runs
    np.testing.assert_allclose(first["scores"].score, second["scores"].score, rtol=1e-6)
    np.testing.assert_array_equal(first["selection"].indices, second["selection"].indices)
    assert len(first["selection"]) == 60
    assert first["evaluation"].metrics == second["evaluation"].metrics
    assert first["evaluation"].metrics  # a non-empty summary


def test_api_scores_equal_the_cli_scores(tmp_path, monkeypatch, capsys):
    """bp.self_influence on the objects == `bioprune score` on the files they save to."""
    import pyarrow.parquet as pq

    import bioprune as bp

    notebook = _notebook()
    ids, sequences = notebook.demo_sequences(n=120)
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">{i}\n{s}\n" for i, s in zip(ids, sequences, strict=True)))
    corpus = bp.Corpus.from_sequences(sequences, alphabet="rna", ids=ids)
    bp.pretrain_model(corpus, preset="tiny", steps=3, lr=1e-3, seed=0, out=tmp_path / "model")
    model = bp.load_model(tmp_path / "model")
    fisher = bp.diagonal_fisher(model, corpus, subset=32, seed=0)
    fisher.save(tmp_path / "fisher.safetensors")
    api = bp.self_influence(model, corpus, fisher, seed=0, mask_draws=1)

    code, err = run_cli(
        "prepare", fasta, "--alphabet", "rna", "--out", tmp_path / "corpus",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    code, err = run_cli(
        "score", "--model", tmp_path / "model", "--corpus", tmp_path / "corpus",
        "--fisher", tmp_path / "fisher.safetensors", "--out", tmp_path / "scores.parquet",
        "--seed", "0", "--mask-draws", "1", "--device", "cpu",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    cli = pq.read_table(tmp_path / "scores.parquet").to_pydict()
    assert cli["id"] == list(api.ids) == ids
    np.testing.assert_allclose(api.score, cli["score"], rtol=1e-6, atol=0)
    api.save(tmp_path / "api.parquet")  # the same file the CLI writes
    again = pq.read_table(tmp_path / "api.parquet").to_pydict()
    assert again["id"] == cli["id"]
    np.testing.assert_allclose(again["score"], cli["score"], rtol=1e-6, atol=0)
