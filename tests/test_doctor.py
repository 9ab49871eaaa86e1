"""``bioprune doctor`` and the environment report behind it."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
import torch
from typer.testing import CliRunner

from bioprune import environment
from bioprune.cli.main import app
from bioprune.environment import environment_report, requirement_status

runner = CliRunner()


def test_requirement_status_in_and_out_of_range():
    numpy_version = metadata.version("numpy")
    ok = requirement_status("numpy>=1.0")
    assert ok == {
        "name": "numpy",
        "spec": ">=1.0",
        "extra": None,
        "installed": numpy_version,
        "ok": True,
    }
    assert requirement_status("numpy>=999")["ok"] is False
    missing = requirement_status('no-such-package-bioprune>=1; extra == "dev"')
    assert missing["extra"] == "dev" and missing["installed"] is None and missing["ok"] is False
    # a marker that excludes this interpreter: not applicable, not a problem
    assert requirement_status('numpy>=1; python_version < "3"')["ok"] is None


def test_local_versions_are_in_range():
    """A CUDA or CPU build of torch carries a local version (2.13.0+cpu)."""
    assert requirement_status(f"torch>={torch.__version__.split('+')[0]}")["ok"] is True


def test_report_on_this_machine():
    report = environment_report()
    assert report["python"]["version"].startswith("3.")
    assert report["torch"]["version"] == torch.__version__
    assert report["torch"]["cuda_available"] == torch.cuda.is_available()
    assert set(report["gathered_last_layer"]["why_not"]) == {"rotary", "absolute"}
    assert set(report["tools"]) == set(environment.TOOLS)
    names = {s["name"] for s in report["requirements"]}
    if names:  # installed (editable or wheel): the core requirements are listed
        assert {"torch", "transformers", "numpy", "pyarrow"} <= names
    json.dumps(report)  # JSON-able


def test_missing_dependency_is_a_problem(monkeypatch):
    real = metadata.requires

    def requires(name):
        if name == "bioprune":
            return ["torch>=2.2", "no-such-package-bioprune>=1", 'pytest>=1; extra == "dev"']
        return real(name)

    monkeypatch.setattr(environment.metadata, "requires", requires)
    monkeypatch.setattr(environment.metadata, "version", _version_or_fake(metadata.version))
    report = environment_report()
    assert report["problems"] == [
        "no-such-package-bioprune>=1 is required but none is installed: "
        "pip install 'no-such-package-bioprune>=1'"
    ]
    assert report["extras"]["dev"][0]["name"] == "pytest"
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert "no-such-package-bioprune" in result.output


def _version_or_fake(real):
    def version(name):
        if name == "bioprune":
            return "0.1.0"
        return real(name)

    return version


def test_doctor_cli_json(monkeypatch):
    monkeypatch.setattr(environment.metadata, "requires", lambda name: ["torch>=1"])
    monkeypatch.setattr(environment.metadata, "version", _version_or_fake(metadata.version))
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["problems"] == []
    assert report["requirements"][0]["name"] == "torch"


@pytest.mark.parametrize("as_json", [False, True])
def test_doctor_cli_runs(as_json):
    """On the real metadata: exit 0 where the install is complete, 1 with its problems."""
    result = runner.invoke(app, ["doctor", "--json"] if as_json else ["doctor"])
    assert result.exit_code in (0, 1), result.output
    if not as_json:
        assert "gathered last layer" in result.stdout
        assert ("no problems found" in result.stdout) == (result.exit_code == 0)


def test_transformers_that_switched_torch_off_is_a_problem(monkeypatch):
    """transformers >= 5.20 silently disables torch < 2.6; doctor names the fix."""
    import transformers.utils

    monkeypatch.setattr(transformers.utils, "is_torch_available", lambda: False)
    report = environment_report()
    assert any("transformers<5" in p for p in report["problems"])
    assert report["gathered_last_layer"] is None
