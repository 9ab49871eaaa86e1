"""``bioprune doctor``: is this installation complete, and what will it run on?"""

from __future__ import annotations

import json

import typer


def doctor(
    as_json: bool = typer.Option(
        False, "--json", help="Print the report as JSON on stdout instead of tables."
    ),
) -> None:
    """Check the installation: bioprune, Python and every dependency against the range
    bioprune declares, PyTorch's build (CUDA, cuDNN, NCCL), each GPU with its memory
    and bf16 support, whether scoring uses the gathered last layer with this
    transformers, the optional extras and the external tools (mmseqs, cd-hit,
    torchrun) found on PATH. Exits 1 when a required dependency is missing or out
    of range."""
    from rich.console import Console
    from rich.table import Table

    from bioprune.environment import environment_report

    report = environment_report()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        if report["problems"]:
            raise typer.Exit(1)
        return

    out = Console()  # the report is this command's result: stdout
    b, py = report["bioprune"], report["python"]
    top = Table(title="bioprune doctor", title_justify="left", show_header=False)
    top.add_column("key")
    top.add_column("value", overflow="fold")
    installed = b["installed"] or "not installed (source tree)"
    top.add_row("bioprune", f"{b['version']} ({installed}) at {b['location']}")
    top.add_row("python", f"{py['version']} ({py['executable']})")
    top.add_row("platform", py["platform"])
    t = report["torch"]
    if t is not None:
        build = f"CUDA {t['cuda_build']}" if t["cuda_build"] else "CPU build"
        top.add_row("torch", f"{t['version']} ({build}, cuDNN {t['cudnn']}, NCCL {t['nccl']})")
        if t["cuda_available"]:
            for d in t["devices"]:
                top.add_row(
                    f"cuda:{d['index']}",
                    f"{d['name']}, compute {d['capability']}, {d['memory_gib']} GiB, "
                    f"bf16 {'yes' if d['bf16'] else 'no'}",
                )
        else:
            top.add_row("device", f"CPU only ({t['threads']} threads; bf16 autocast available)")
    g = report["gathered_last_layer"]
    if g is not None:
        why = "; ".join(f"{k}: {v}" for k, v in g["why_not"].items() if v)
        top.add_row("gathered last layer", "on" if g["on"] else f"off, plain path ({why})")
    for name, path in report["tools"].items():
        top.add_row(name, path or "not found")
    out.print(top)

    deps = Table(title="requirements", title_justify="left")
    for col in ("package", "extra", "range", "installed", ""):
        deps.add_column(col)
    rows = [*report["requirements"], *(s for v in report["extras"].values() for s in v)]
    for s in rows:
        mark = {True: "[green]ok[/]", False: "[red]missing[/]", None: "n/a"}[s["ok"]]
        if s["ok"] is False and s["installed"]:
            mark = "[red]out of range[/]"
        if s["ok"] is False and s["extra"]:
            mark = f"[yellow]not installed[/]: pip install 'bioprune[{s['extra']}]'"
        deps.add_row(s["name"], s["extra"] or "", s["spec"] or "any", s["installed"] or "-", mark)
    out.print(deps)
    for problem in report["problems"]:
        out.print(f"[bold red]problem:[/] {problem}", highlight=False)
    if report["problems"]:
        raise typer.Exit(1)
    out.print("[green]no problems found[/]")


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
