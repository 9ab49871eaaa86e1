"""Training and models as a library (issue 13): in memory, silent, no global side effects.

``pretrain_model`` / ``adapt_model`` run the same recipe as ``bioprune pretrain``
/ ``adapt`` (same weights for the same seed), print nothing, leave matplotlib's
backend, Hugging Face's logging and progress-bar switches, torch's random state
and the caller's config objects as they were, and write files only when asked.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest

from tests.hostile import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = dict(steps=3, batch_size=8, warmup_steps=2, device="cpu")
FAST_FLAGS = ("--max-steps", "3", "--batch-size", "8", "--warmup-steps", "2", "--device", "cpu")


def _global_state() -> dict:
    import matplotlib
    import torch
    from transformers.utils import logging as hf_logging

    return {
        "backend": matplotlib.get_backend(),
        "hf_verbosity": hf_logging.get_verbosity(),
        "hf_bars": hf_logging.is_progress_bar_enabled(),
        "torch_rng": torch.get_rng_state().clone(),
        "bioprune_handlers": list(logging.getLogger("bioprune").handlers),
    }


def _assert_same_state(before: dict, after: dict) -> None:
    import torch

    assert {k: v for k, v in after.items() if k != "torch_rng"} == {
        k: v for k, v in before.items() if k != "torch_rng"
    }
    assert torch.equal(after["torch_rng"], before["torch_rng"])


def _max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def test_pretrain_model_equals_the_cli_and_is_silent(tiny_corpus, tmp_path, monkeypatch, capsys):
    from bioprune.models import load_model
    from bioprune.training.pretrain import pretrain_model
    from bioprune.training.recipe import TrainingConfig

    code, err = run_cli(
        "pretrain", "--corpus", tiny_corpus.path, "--preset", "tiny", "--out", tmp_path / "cli",
        *FAST_FLAGS, "--no-progress", monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    training = TrainingConfig(lr=2e-4, extra={"mine": 1})
    kept = copy.deepcopy(training)
    events = []
    before = _global_state()
    model = pretrain_model(tiny_corpus, training=training, progress=events.append, **FAST)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""  # nothing printed, whatever the progress
    _assert_same_state(before, _global_state())
    assert training == kept  # the caller's config (and its extra dict) untouched
    assert not model.training  # eval mode
    assert list(tmp_path.iterdir()) == [tmp_path / "cli"]  # nothing written
    # same recipe, same seed, same weights (lr 2e-4 given above vs the CLI's 1e-4 default)
    cli = load_model(tmp_path / "cli").state_dict()
    again = pretrain_model(tiny_corpus, **FAST)
    assert _max_abs_diff(again.state_dict(), cli) <= 1e-6
    assert _max_abs_diff(model.state_dict(), cli) > 1e-6  # lr mattered: the check can fail
    kinds = [getattr(e, "kind", None) for e in events]
    assert kinds[0] == "notice" and kinds[-1] == "end" and kinds.count("step") == 3
    steps = [e for e in events if e.kind == "step"]
    assert [e.done for e in steps] == [1, 2, 3] and all(e.total == 3 for e in steps)
    assert all(e.loss is not None and e.loss > 0 for e in steps)
    assert model.bioprune_training["steps"] == 3 and model.bioprune_training["checkpoint"] is None


def test_pretrain_model_writes_only_when_asked_and_twice_in_a_process(tiny_corpus, tmp_path, capfd):
    from bioprune import artifacts
    from bioprune.models import load_model
    from bioprune.training.pretrain import pretrain_model

    before = _global_state()
    for _ in range(2):  # a notebook cell run twice: overwrite is explicit
        model = pretrain_model(tiny_corpus, out=tmp_path / "m", overwrite=True, **FAST)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    _assert_same_state(before, _global_state())
    assert (tmp_path / "m" / artifacts.MODEL_CURVE_PNG).stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no OUT.ckpt left
    saved = load_model(tmp_path / "m").state_dict()
    assert _max_abs_diff(saved, model.state_dict()) == 0.0
    with pytest.raises(FileExistsError, match="overwrite"):
        pretrain_model(tiny_corpus, out=tmp_path / "m", **FAST)


def test_pretrain_model_trains_a_given_model_in_place_on_given_indices(tiny_corpus, seen):
    from bioprune.models import new_model
    from bioprune.training.pretrain import pretrain_model

    model = new_model("tiny", "rna", seed=1)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    chosen = np.arange(0, 40, 2)
    trained = pretrain_model(tiny_corpus, model=model, indices=chosen, val_fraction=0.0, **FAST)
    assert trained is model and _max_abs_diff(start, model.state_dict()) > 0
    assert set(np.concatenate(seen)) <= set(chosen.tolist())


def test_adapt_model_equals_the_cli(tiny_corpus, tiny_model_dir, tmp_path, monkeypatch, capsys):
    from bioprune import artifacts
    from bioprune.models import load_model
    from bioprune.training.adapt import adapt_model, adaptation_defaults

    flags = ("--batch-size", "8", "--device", "cpu", "--no-progress", "--seed", "3")
    code, err = run_cli(
        "adapt", "--model", tiny_model_dir, "--corpus", tiny_corpus.path, "--subset-size", "16",
        "--out", tmp_path / "cli", *flags, monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    before = _global_state()
    training = adaptation_defaults()
    training.batch_size, training.device = 8, "cpu"
    model = adapt_model(
        load_model(tiny_model_dir), tiny_corpus, subset_size=16, seed=3, training=training
    )
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    _assert_same_state(before, _global_state())
    cli = load_model(tmp_path / "cli").state_dict()
    assert _max_abs_diff(model.state_dict(), cli) <= 1e-6
    subset = np.load(tmp_path / "cli" / artifacts.MODEL_SUBSET)
    assert np.array_equal(model.bioprune_training["subset_indices"], subset)


def test_new_model_and_load_model(tiny_model_dir):
    import torch

    from bioprune.models import load_model, new_model

    rng = torch.get_rng_state().clone()
    a, b = new_model("tiny", "rna", seed=0), new_model("tiny", "rna", seed=0)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's stream is untouched
    assert _max_abs_diff(a.state_dict(), b.state_dict()) == 0.0
    assert _max_abs_diff(a.state_dict(), new_model("tiny", "rna", seed=1).state_dict()) > 0
    loaded = load_model(tiny_model_dir)  # init_model uses the same seed-0 build
    assert not loaded.training
    assert _max_abs_diff(loaded.state_dict(), a.state_dict()) == 0.0


def test_quiet_transformers_restores_either_state():
    from transformers.utils import logging as hf_logging

    from bioprune.models.hf import quiet_transformers

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    try:
        for enabled in (False, True):
            (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
            hf_logging.set_verbosity_info()
            with pytest.raises(RuntimeError), quiet_transformers():
                assert not hf_logging.is_progress_bar_enabled()
                assert hf_logging.get_verbosity() == hf_logging.ERROR
                raise RuntimeError("restored on error too")
            assert hf_logging.is_progress_bar_enabled() is enabled
            assert hf_logging.get_verbosity() == hf_logging.INFO
    finally:
        hf_logging.set_verbosity(verbosity)
        (hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)()


@pytest.fixture
def seen(monkeypatch):
    """The global batch of every optimizer step (corpus indices)."""
    from bioprune.training.recipe import MaskedLMRecipe

    batches: list[np.ndarray] = []
    original = MaskedLMRecipe.train_step

    def record(self, global_batch, epoch):
        batches.append(np.asarray(global_batch))
        return original(self, global_batch, epoch)

    monkeypatch.setattr(MaskedLMRecipe, "train_step", record)
    return batches


def test_training_printer_draws_what_the_recipe_reports():
    """The CLI side: notices printed when progress is on; step lines with loss, tok/s and
    the validation note; a final forced line; nothing at all with progress off."""
    import io

    from rich.console import Console

    from bioprune.cli.train_progress import TrainingPrinter
    from bioprune.training.progress import TrainingEvent

    def draw(enabled: bool, every_s: float | None) -> str:
        buf = io.StringIO()
        console = Console(file=buf, width=200, force_terminal=False)
        with TrainingPrinter(console, enabled=enabled, every_s=every_s) as printer:
            printer(TrainingEvent("pretrain", 0, 4, "pretrain: 4 planned steps", kind="notice"))
            printer(TrainingEvent("pretrain", 0, 4, kind="start"))
            for step in (1, 2, 3, 4):
                printer(
                    TrainingEvent(
                        "pretrain", step, 4, "val loss 2.5000" if step == 4 else "",
                        loss=3.0 - step / 10, tokens=100 * step, seconds=float(step),
                        force=step == 4,
                    )
                )  # fmt: skip
            printer(TrainingEvent("pretrain", 4, 4, kind="end"))
        return buf.getvalue()

    lines = draw(True, 3600.0).splitlines()  # rate-limited: the first step and the forced last
    assert lines[0] == "pretrain: 4 planned steps"
    assert lines[1].startswith("pretrain: step 1/4 (25.0%) | loss 2.9000 | ")
    assert lines[2].startswith("pretrain: step 4/4 (100.0%) | loss 2.6000 | ")
    assert "tok/s" in lines[2] and lines[2].endswith("| val loss 2.5000") and len(lines) == 3
    assert draw(False, None) == ""  # --no-progress
    quiet_but_lines = draw(False, 0.0).splitlines()  # --no-progress --log-every-s 0
    assert len(quiet_but_lines) == 4 and quiet_but_lines[0].startswith("pretrain: step 1/4")


def test_importing_training_and_models_stays_cheap():
    import subprocess
    import sys

    code = (
        "import sys, bioprune.training, bioprune.models; "
        "print(sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_invalid_arguments_name_the_parameter(tiny_corpus, tiny_model_dir):
    from bioprune.errors import ConfigError
    from bioprune.models import load_model
    from bioprune.training import adapt_model, pretrain_model

    with pytest.raises(ConfigError, match=r"^val_fraction: must lie in"):
        pretrain_model(tiny_corpus, val_fraction=1.5, **FAST)
    with pytest.raises(TypeError, match="stpes"):  # a misspelt keyword is an error
        pretrain_model(tiny_corpus, stpes=3)
    with pytest.raises(ConfigError, match=r"^subset_size: must lie in \[1, 48\]"):
        adapt_model(load_model(tiny_model_dir), tiny_corpus, subset_size=49)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--lr", "0"), "--lr: must be > 0 (got 0.0)"),
        (("--schedule", "cosine"), "--schedule: must be one of inverse-sqrt, constant, linear"),
        (("--log-every", "0"), "--log-every: must be >= 1 (got 0)"),
        (("--val-fraction", "1"), "--val-fraction: must lie in [0, 1)"),
    ],
)
def test_cli_names_the_flag_of_an_invalid_training_option(
    flags, expected, tiny_corpus, tmp_path, monkeypatch, capsys
):
    from tests.hostile import assert_one_line_error

    out = tmp_path / "m"
    code, err = run_cli(
        "pretrain", "--corpus", tiny_corpus.path, "--preset", "tiny", "--out", out, *flags,
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, expected)
    assert not out.exists()
