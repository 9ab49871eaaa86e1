"""Print the demo study's comparison table from the files its stages wrote.

Usage: ``python scripts/demo_summary.py DEMO_OUT``. Reads
``results/*.json`` (``bioprune evaluate``), ``sel-*/selection.json`` and
``model-*/training.json``; writes ``DEMO_OUT/summary.md`` and prints it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _metric(results: dict, name: str) -> str:
    m = results["metrics"].get(name)
    if m is None:
        return "-"
    return f"{m['mean']:.3f} ± {m['std']:.3f}"


def main(out: Path) -> str:
    rows = []
    for path in sorted((out / "results").glob("*.json")):
        name = path.stem
        res = json.loads(path.read_text())
        size = "all"
        sel = out / f"sel-{name.removeprefix('model-')}" / "selection.json"
        if sel.is_file():
            size = str(json.loads(sel.read_text())["budget"]["selected"])
        elif name == "raw":
            size = "none"
        rows.append((name, size, _metric(res, "accuracy"), _metric(res, "macro_f1")))
    lines = [
        "| model | pretraining sequences | accuracy | macro-F1 |",
        "|---|---|---|---|",
        *[f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in rows],
    ]
    table = "\n".join(lines)
    (out / "summary.md").write_text(
        "# bioprune demo: RNA family classification (test set, mean ± std over seeds 0, 1, 2)\n\n"
        + table
        + "\n"
    )
    return table


if __name__ == "__main__":
    print(main(Path(sys.argv[1])))
