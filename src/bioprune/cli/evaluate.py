"""``bioprune evaluate``: downstream evaluation of a model on a task (method.md section 6)."""

from __future__ import annotations

from pathlib import Path

import typer

from bioprune.cli.common import console


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(
            f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2"
        ) from None
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r}: a seed is repeated")
    return seeds


def evaluate(
    model: Path = typer.Option(..., "--model", help="Model directory (bioprune init/pretrain)."),
    task: Path = typer.Option(
        ...,
        "--task",
        help="Task directory with train.csv, valid.csv, test.csv [+ task.yaml], a task YAML, "
        "or a benchmark task as distributed (BEACON, PEER/TAPE LMDB, PrismNet TSV; "
        "see docs/evaluation.md).",
    ),
    task_format: str = typer.Option(
        None,
        "--format",
        help="The task's layout when it is ambiguous: beacon, peer, tape, prismnet or "
        "bioprune (default: recognised from its files).",
    ),
    out: Path = typer.Option(..., "--out", help="RESULTS.json to write."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated training seeds."),
    raw: bool = typer.Option(
        False, "--raw", help="Evaluate an untrained model of the same architecture (Raw baseline)."
    ),
    protocol: str = typer.Option(
        None,
        "--protocol",
        help="finetune-linear, finetune-mlp, frozen-linear or frozen-mlp "
        "(default: per task kind, see docs/evaluation.md).",
    ),
    epochs: int = typer.Option(None, "--epochs", help="Training epochs (overrides task.yaml)."),
    lr: float = typer.Option(None, "--lr", help="AdamW learning rate (overrides task.yaml)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Examples per batch."),
    weight_decay: float = typer.Option(None, "--weight-decay", help="AdamW weight decay (0.01)."),
    max_length: int = typer.Option(
        None, "--max-length", help="Crop sequences to this many residues (default: the model's)."
    ),
    device: str = typer.Option(None, "--device", help="torch device (default: cuda if present)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
) -> None:
    """Downstream evaluation (method.md section 6): train a task head per seed, report test.

    The head (and, with a finetune protocol, the encoder) is trained once per
    seed; the test metrics of the best valid epoch go to OUT per seed, as mean
    and std, with the protocol and the checksums of the model and the data.
    """
    from bioprune import artifacts
    from bioprune.evaluation.downstream import check_results_path, evaluate_model

    seed_list = _parse_seeds(seeds)
    artifacts.check_output_dir(out, overwrite, inputs=(model, task))
    check_results_path(out)  # before training, not after
    results = evaluate_model(
        model,
        task,
        seeds=seed_list,
        raw=raw,
        protocol=protocol,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        weight_decay=weight_decay,
        max_length=max_length,
        device=device,
        fmt=task_format,
    )
    artifacts.write_json(out, results)
    t = results["task"]
    cropped = sum(s["cropped"] for s in t["splits"].values())
    console.print(
        f"[bold]{t['name']}[/] ({t['kind']}, {results['protocol']['name']}, "
        f"{'raw ' if raw else ''}model {model}), seeds {seed_list}"
        + (
            f", {cropped} sequences cropped to {results['protocol']['max_length']}"
            if cropped
            else ""
        )
    )
    headline = results["headline_metrics"]
    others = [n for n in results["metrics"] if n not in headline]
    tests = results["test_metrics"]
    if len(tests) > 1:
        console.print("  " + " " * 21 + "".join(f"{split:>17}" for split in tests))
    for name in headline + others:
        cells = [_cell(tests[split][name]) for split in tests]
        if len(tests) > 1:
            console.print(f"  test {name:<16}" + "".join(f"{c:>17}" for c in cells))
        else:
            console.print(f"  test {name:<16} {cells[0]}")
    console.print(f"wrote [bold]{out}[/]")


def _cell(m: dict) -> str:
    """``mean ± std`` of one metric over the seeds."""
    mean = "nan" if m["mean"] is None else f"{m['mean']:.4f}"
    std = "nan" if m["std"] is None else f"{m['std']:.4f}"
    return f"{mean} ± {std}"


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
