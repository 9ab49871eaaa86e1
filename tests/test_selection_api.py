"""Selection as a library: strategies by name with keyword parameters, one validation style
(ConfigError naming the parameter), misspelt parameters refused, budgets as count,
fraction or text, score arrays of any array-like."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import bioprune.selection as sel
from bioprune.errors import ConfigError
from bioprune.selection import STRATEGIES, make_strategy


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_a_misspelt_parameter_is_refused_by_every_strategy(name):
    cls = STRATEGIES[name]
    with pytest.raises(ConfigError) as exc:
        make_strategy(name, bta=0.5)
    assert exc.value.param == "bta"
    assert str(exc.value).startswith("bta: ")
    with pytest.raises(TypeError, match="bta"):  # the class itself takes keywords only
        cls(bta=0.5)
    if dataclasses.fields(cls):
        with pytest.raises(TypeError):
            cls(0.5)  # no positional parameters: beta=, strata=, ... always named


def test_cci_misspelling_no_longer_returns_the_default_beta():
    with pytest.raises(ConfigError, match="bta"):
        make_strategy("cci", bta=0.5)
    assert make_strategy("cci", beta=0.5).beta == 0.5


@pytest.mark.parametrize(
    ("name", "params", "param"),
    [
        ("cci", {"beta": 1.0}, "beta"),
        ("cci", {"strata": 0}, "strata"),
        ("cci", {"strata": 2.5}, "strata"),
        ("cci", {"sampling": "choice"}, "sampling"),
        ("cci-length", {"beta": -0.1}, "beta"),
        ("cci-length", {"length_bins": 0}, "length_bins"),
        ("cci-length", {"length_binning": "linear"}, "length_binning"),
        ("cci-length", {"length_bins": 5000, "strata": 5000}, "length_bins"),
        ("cci-cluster", {"max_per_cluster": 0}, "max_per_cluster"),
        ("cci-cluster", {"min_seq_id": 1.5}, "min_seq_id"),
        ("cci-cluster", {"tool": "blast"}, "tool"),
        ("cluster", {"coverage": -1.0}, "coverage"),
        ("cluster", {"mmseqs_command": "easy-search"}, "mmseqs_command"),
        ("cluster", {"threads": 0}, "threads"),
    ],
)
def test_invalid_values_name_their_parameter(name, params, param):
    with pytest.raises(ConfigError) as exc:
        make_strategy(name, **params)
    assert exc.value.param == param
    assert isinstance(exc.value, ValueError)  # still a ValueError for older callers


def test_strategies_are_importable_by_name():
    for cls in STRATEGIES.values():
        assert getattr(sel, cls.__name__) is cls
    assert set(sel.__all__) >= {c.__name__ for c in STRATEGIES.values()}


class ScoresLike:
    """What bioprune.influence's Scores offers: ``__array__``."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


@pytest.mark.parametrize("budget", [10, np.int64(10), 0.01, "0.01", "1%", "10"])
def test_budget_as_count_fraction_or_text(budget):
    scores = np.random.default_rng(0).random(1000)
    picks = sel.CoverageCentric(beta=0.05, strata=50, seed=0).select(scores, budget=budget)
    assert len(picks) == 10
    same = sel.CoverageCentric(beta=0.05, strata=50, seed=0).select(ScoresLike(scores), 10)
    assert np.array_equal(picks.indices, same.indices)
    assert len(sel.TopK().select(scores, budget)) == 10
    assert len(sel.BottomK().select(list(scores), budget)) == 10
    assert len(sel.RandomSelection(seed=1).select(1000, budget)) == 10


@pytest.mark.parametrize("budget", [1.5, -0.1, "ten", True])
def test_a_bad_budget_is_a_config_error(budget):
    with pytest.raises(ConfigError) as exc:
        sel.TopK().select(np.arange(10.0), budget)
    assert exc.value.param == "budget"


def test_parse_budget_lives_in_the_library_and_names_its_parameter():
    from bioprune.selection.budget import parse_budget

    assert parse_budget("25%", 40) == 10
    with pytest.raises(ConfigError) as exc:
        parse_budget("x", 10, "--subset-size")
    assert exc.value.param == "subset_size"
    with pytest.raises(ConfigError, match="between 0 and 1"):
        parse_budget("1.5", 10)


def test_importing_selection_is_cheap():
    import subprocess
    import sys

    code = "import bioprune.selection.budget, sys; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_library_code_does_not_import_the_cli():
    from pathlib import Path

    src = Path(sel.__file__).parents[1]
    offenders = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if "cli" not in p.relative_to(src).parts[:1]
        and ("from bioprune.cli" in p.read_text() or "import bioprune.cli" in p.read_text())
    ]
    assert offenders == []
