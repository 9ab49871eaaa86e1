"""The in-memory influence API: ``diagonal_fisher`` and ``self_influence`` on a model object.

They share their computation with ``bioprune fisher`` / ``bioprune score``, so with the
same inputs they give the CLI's numbers; they print nothing and write nothing.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from bioprune.data.masking import mask_draw
from bioprune.errors import ConfigError
from bioprune.influence import Fisher, Scores, diagonal_fisher, load_fisher, self_influence
from bioprune.models.loading import load_masked_lm
from tests.hostile import run_cli
from tests.test_influence_cli import save_small_model

FAST = ["--batch-tokens", "256", "--part-batches", "1", "--device", "cpu", "--no-progress"]
SUBSET = 12


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_small_model(tmp_path_factory.mktemp("api") / "model")


@pytest.fixture(scope="module")
def model(model_dir):
    return load_masked_lm(model_dir)[0]


@pytest.fixture(scope="module")
def cli_files(model_dir, tiny_corpus, tmp_path_factory):
    """FISHER.safetensors and SCORES.parquet written by the CLI (seed 0, 2 draws)."""
    mp = pytest.MonkeyPatch()
    out = tmp_path_factory.mktemp("cli")
    fisher, scores = out / "F.safetensors", out / "S.parquet"
    base = ["--model", model_dir, "--corpus", tiny_corpus.path, *FAST]

    class Quiet:  # run_cli wants capsys; the module fixture has none
        def readouterr(self):
            return SimpleNamespace(out="", err="")

    code, err = run_cli(
        "fisher", *base, "--subset-size", str(SUBSET), "--mask-draws", "2", "--out", fisher,
        monkeypatch=mp, capsys=Quiet(),
    )  # fmt: skip
    assert code == 0, err
    code, err = run_cli(
        "score", *base, "--fisher", fisher, "--out", scores, monkeypatch=mp, capsys=Quiet()
    )
    assert code == 0, err
    mp.undo()
    return fisher, scores


def test_api_equals_cli(model, tiny_corpus, cli_files, capfd):
    """Same seed, draws, subset and damping: the CLI's Fisher and scores to 1e-6."""
    fisher_path, scores_path = cli_files
    capfd.readouterr()
    # the CLI's batch plan (--batch-tokens 256): the same sums in the same order
    fisher = diagonal_fisher(
        model, tiny_corpus, subset=SUBSET, seed=0, mask_draws=2, batch_tokens=256
    )
    scores = self_influence(model, tiny_corpus, fisher, batch_tokens=256)
    assert capfd.readouterr() == ("", "")  # nothing on stdout or stderr
    cli_fisher = load_fisher(fisher_path)
    assert sorted(fisher.tensors) == sorted(cli_fisher.tensors)
    for name, f in cli_fisher.tensors.items():
        torch.testing.assert_close(fisher.tensors[name], f, rtol=1e-6, atol=0)
        assert fisher.lambdas[name] == pytest.approx(cli_fisher.lambdas[name], rel=1e-6)
    assert fisher.meta["subset"] == cli_fisher.meta["subset"]
    table = pq.read_table(scores_path)
    np.testing.assert_allclose(scores.score, table.column("score").to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(scores.loss, table.column("loss").to_numpy(), rtol=1e-6)
    assert scores.ids.tolist() == table.column("id").to_pylist()
    assert scores.length.tolist() == table.column("length").to_pylist()
    assert np.asarray(scores) is scores.score and len(scores) == len(tiny_corpus)
    # scoring with the CLI's Fisher file gives the CLI's scores as well
    again = self_influence(model, tiny_corpus, cli_fisher)  # another batch plan: same scores
    np.testing.assert_allclose(again.score, table.column("score").to_numpy(), rtol=1e-6)


def test_save_writes_the_cli_formats(model, tiny_corpus, cli_files, tmp_path):
    fisher_path, scores_path = cli_files
    fisher = diagonal_fisher(model, tiny_corpus, subset=SUBSET, seed=0, mask_draws=2)
    assert fisher.checksum is None
    fisher.save(tmp_path / "F.safetensors")
    back = load_fisher(tmp_path / "F.safetensors")
    assert back.checksum == fisher.checksum is not None
    assert back.meta["format"] == load_fisher(fisher_path).meta["format"]
    for name, f in fisher.tensors.items():
        assert torch.equal(back.tensors[name], f)
    assert back.lambdas == fisher.lambdas
    scores = self_influence(model, tiny_corpus, back)
    scores.save(tmp_path / "S.parquet")
    mine, cli = pq.read_table(tmp_path / "S.parquet"), pq.read_table(scores_path)
    assert mine.schema.names == cli.schema.names
    assert mine.column("index").to_pylist() == cli.column("index").to_pylist()
    np.testing.assert_allclose(
        mine.column("score").to_numpy(), cli.column("score").to_numpy(), rtol=1e-6
    )
    assert set(cli.schema.metadata) - set(mine.schema.metadata) == set()


def test_loss_reductions_rescale_the_scores(model, tiny_corpus):
    """sum: scores x n^2, per-masked: scores x n (n masked positions; one draw)."""
    fisher = diagonal_fisher(model, tiny_corpus, subset=8, seed=3, params="lm_head")
    mean = self_influence(model, tiny_corpus, fisher).score
    n = np.array(
        [
            len(mask_draw(tiny_corpus.residues(i), tiny_corpus.alphabet, seed=3, index=i).positions)
            for i in range(len(tiny_corpus))
        ]
    )
    total = self_influence(model, tiny_corpus, fisher, reduction="sum")
    per = self_influence(model, tiny_corpus, fisher, reduction="per-masked")
    np.testing.assert_allclose(total.score, mean * n**2, rtol=1e-5)
    np.testing.assert_allclose(per.score, mean * n, rtol=1e-5)
    np.testing.assert_allclose(total.loss, per.loss)  # losses stay means


def test_arguments_are_checked(model, tiny_corpus):
    with pytest.raises(ConfigError) as err:
        diagonal_fisher(model, tiny_corpus, subset=4, mask_draws=0)
    assert err.value.param == "mask_draws"
    with pytest.raises(ConfigError) as err:
        diagonal_fisher(model, tiny_corpus, subset=4, damping=0.0)
    assert err.value.param == "damping"
    with pytest.raises(ConfigError) as err:
        diagonal_fisher(model, tiny_corpus, subset=np.array([], dtype=np.int64))
    assert err.value.param == "subset"
    with pytest.raises(ConfigError) as err:
        diagonal_fisher(model, tiny_corpus, subset=4, mask_draw=2)  # misspelt: refused
    assert err.value.param == "mask_draw"
    with pytest.raises(ConfigError) as err:
        self_influence(model, tiny_corpus, Fisher({}, {}, {}), batch_token=64)
    assert err.value.param == "batch_token"
    fisher = Fisher({}, {}, {"mask_seed": 0, "mask_draws": 1})
    with pytest.raises(ConfigError) as err:
        self_influence(model, tiny_corpus, fisher, reduction="max")
    assert err.value.param == "reduction"


def test_index_subset_and_model_mode(model, tiny_corpus):
    """An index array is a subset as it is; the model's train/eval mode is left as found."""
    picks = np.array([5, 1, 9])
    model.train()
    try:
        fisher = diagonal_fisher(model, tiny_corpus, subset=picks, params="lm_head")
        assert model.training
    finally:
        model.eval()
    assert fisher.meta["subset"] == [1, 5, 9] and fisher.meta["subset_seed"] is None
    assert isinstance(self_influence(model, tiny_corpus, fisher), Scores)


def test_the_two_reductions_see_the_same_squared_gradients(model, tiny_corpus):
    """Sum over examples of unit-weight scores == sum over parameters of the Fisher sums."""
    from bioprune.influence.engine import GradientPass
    from bioprune.influence.hooks import FisherReduction, SelfInfluenceReduction
    from bioprune.influence.params import select_parameters

    names = select_parameters(model, "all").names
    grad = GradientPass(
        model, tiny_corpus.alphabet, tiny_corpus, names, seed=0, draws=2, device=torch.device("cpu")
    )
    batch = np.arange(7)
    scores = SelfInfluenceReduction({n: torch.ones(model.get_parameter(n).shape) for n in names})
    with grad.tracker(scores) as tracker:
        per_example = grad.runner(tracker).run_batch(batch).score  # mean over the 2 draws
    sums = FisherReduction()
    with grad.tracker(sums) as tracker:
        grad.runner(tracker).run_batch(batch)
        assert sums.is_finite()
        sums.commit()
    total = sum(float(t.sum()) for t in sums.totals.values())
    assert per_example.sum() * 2 == pytest.approx(total, rel=1e-5)


def test_a_fisher_saved_from_python_scores_with_the_cli(
    model, model_dir, tiny_corpus, tmp_path, monkeypatch, capsys
):
    """diagonal_fisher records the weights' checksum; bioprune score accepts it for the
    same weights (and still refuses another model's Fisher)."""
    path = diagonal_fisher(model, tiny_corpus, subset=6, params="lm_head").save(tmp_path / "F")
    assert load_fisher(path).meta["model_checksum"].startswith("weights:")
    args = ["score", "--model", model_dir, "--corpus", tiny_corpus.path, "--fisher", path]
    code, err = run_cli(
        *args, "--out", tmp_path / "S", *FAST, monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 0, err
    other = save_small_model(tmp_path / "other", kind="absolute")
    args[2] = other
    code, err = run_cli(
        *args, "--out", tmp_path / "S2", *FAST, monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2 and "computed for another model" in err
