"""The declared dependency ranges agree with the two environments that test them.

``requirements/lower.txt`` (``make test-lower``) must install exactly each
range's lower bound, and ``requirements/env.txt`` (``make test``) must fall
inside every range, so that both ends of what pyproject.toml promises run the
suite.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; pip check covers 3.10

ROOT = Path(__file__).resolve().parents[1]
#: dev tools not run in the lower-bounds environment (lint, packaging): their bound
#: is the pinned release's, the only one exercised. The original RNA-FM and ESM-2
#: packages (extra convert-test) and Snakemake (extra cluster, Python >= 3.11) are not
#: installed at the lower bounds either: the tests that need them skip there.
PINNED_ONLY = {
    "ruff",
    "build",
    "rna-fm",
    "fair-esm",
    "ptflops",
    "snakemake",
    "snakemake-executor-plugin-slurm",
}


def _pins(path: Path) -> dict[str, Version]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _declared() -> list[tuple[Requirement, str | None]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = [(Requirement(r), None) for r in project["dependencies"]]
    for extra, reqs in project.get("optional-dependencies", {}).items():
        out += [(Requirement(r), extra) for r in reqs]
    return out


def _lower_bound(req: Requirement) -> Version:
    lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    assert len(lows) == 1, f"{req}: give exactly one lower bound"
    return lows[0]


def test_every_requirement_has_a_lower_bound_and_lower_txt_installs_it():
    lower = _pins(ROOT / "requirements" / "lower.txt")
    for req, _extra in _declared():
        name = canonicalize_name(req.name)
        low = _lower_bound(req)
        if name in PINNED_ONLY:
            assert name not in lower
            continue
        assert name in lower, f"{req.name} is not in requirements/lower.txt"
        # "pyarrow>=14" is installed as 14.0.0
        assert lower[name] == low, f"{req}: lower.txt installs {lower[name]}"
    declared = {canonicalize_name(r.name) for r, _ in _declared()}
    assert set(lower) <= declared, set(lower) - declared


def test_pinned_environment_is_inside_every_range():
    pinned = _pins(ROOT / "requirements" / "env.txt")
    for req, _extra in _declared():
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not pinned in requirements/env.txt"
        assert req.specifier.contains(pinned[name], prereleases=True), (req, pinned[name])
        if name in PINNED_ONLY:
            assert _lower_bound(req) <= pinned[name]


def test_python_versions_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.10"
    minors = {
        c.rsplit(" ", 1)[1]
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert minors == {"3.10", "3.11", "3.12"}
