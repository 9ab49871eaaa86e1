#!/usr/bin/env bash
# `make wheel-check`: build the wheel and the sdist as a user would get them, install
# each into a fresh venv and run a smoke test there, far from the source tree.
#
#   python -m build (the pinned env's setuptools and build, no download)
#   -> fresh venv A: pip install --no-index dist/*.whl   -> smoke test
#   -> fresh venv B: pip install --no-index dist/*.tar.gz -> bioprune --version, init
#
# The fresh venvs download nothing: pip resolves bioprune's requirements offline
# against the pinned environment's packages, which a .pth file makes visible
# (read-only, through links that leave out bioprune itself). So a requirement that
# the package declares but the pinned env lacks fails the install, and a module the
# wheel forgot fails the smoke test. The smoke test: --version, doctor, init,
# prepare, fisher and score on the shipped demo corpus (its first SMOKE_RECORDS
# records, default 400; "all" for every record).
#
# Environment: ENV_PYTHON (the pinned env's python, default .venv/bin/python),
# WHEEL_CHECK_OUT (work folder, default build/wheel-check), SMOKE_RECORDS.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_PYTHON=${ENV_PYTHON:-.venv/bin/python}
OUT=$(mkdir -p "${WHEEL_CHECK_OUT:-build/wheel-check}" && cd "${WHEEL_CHECK_OUT:-build/wheel-check}" && pwd)
RECORDS=${SMOKE_RECORDS:-400}
step() { echo "== $*" >&2; }

rm -rf "$OUT"/{dist,deps,venv-wheel,venv-sdist,smoke}
step "build the wheel and the sdist"
"$ENV_PYTHON" -m build --no-isolation --outdir "$OUT/dist" . >"$OUT/build.log" 2>&1 \
    || { tail -n 30 "$OUT/build.log" >&2; exit 1; }
WHEEL=$(ls "$OUT"/dist/bioprune-*.whl)
SDIST=$(ls "$OUT"/dist/bioprune-*.tar.gz)
ls -l "$WHEEL" "$SDIST" >&2
# The wheel holds the package data (the demo corpus) and no tests or stray files.
"$ENV_PYTHON" - "$WHEEL" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
assert "bioprune/resources/demo/rna_corpus.fasta.gz" in names, "demo corpus missing"
assert "bioprune/cli/main.py" in names
stray = [n for n in names if not n.startswith(("bioprune/", "bioprune-"))]
assert not stray, f"files outside the package: {stray[:5]}"
print(f"wheel: {len(names)} files", file=sys.stderr)
PY

# The pinned env's packages, less bioprune, as links in one folder.
site=$("$ENV_PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$OUT/deps"
for f in "$site"/*; do
    case ${f##*/} in
        bioprune* | __editable__* | _bioprune* | *.pth | __pycache__) ;;
        *) ln -s "$f" "$OUT/deps/" ;;
    esac
done

fresh_venv() {  # fresh_venv DIR: a new venv that sees the pinned packages read-only
    "$ENV_PYTHON" -m venv "$1"
    # the venv's own (older) setuptools would hide the pinned one (torch requires it)
    "$1/bin/python" -m pip uninstall --quiet --yes setuptools 2>/dev/null || true
    local purelib
    purelib=$("$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$OUT/deps" >"$purelib/pinned-deps.pth"
}

step "install the wheel in a fresh venv (offline)"
fresh_venv "$OUT/venv-wheel"
"$OUT/venv-wheel/bin/python" -m pip install --quiet --no-index --no-cache-dir "$WHEEL"
"$OUT/venv-wheel/bin/python" -m pip check
BP=$OUT/venv-wheel/bin/bioprune
mkdir -p "$OUT/smoke"
cd "$OUT/smoke"  # nowhere near src/
where=$("$OUT/venv-wheel/bin/python" -c 'import bioprune; print(bioprune.__file__)')
case $where in "$OUT"/venv-wheel/*) ;; *) echo "bioprune imported from $where" >&2; exit 1 ;; esac

step "smoke test: --version, doctor, init, prepare, fisher, score"
"$BP" --version
"$BP" doctor >doctor.txt || { cat doctor.txt; exit 1; }
grep -E "^(│ )?(bioprune|torch|gathered)" doctor.txt >&2 || true
FASTA=$("$OUT/venv-wheel/bin/python" -c \
    "from bioprune.resources import resource_path; print(resource_path('demo/rna_corpus.fasta.gz'))")
if [[ $RECORDS == all ]]; then
    input=$FASTA
else
    "$OUT/venv-wheel/bin/python" - "$FASTA" "$RECORDS" >demo.fasta <<'PY'
import gzip, sys
n, seen = int(sys.argv[2]), 0
for line in gzip.open(sys.argv[1], "rt"):
    seen += line.startswith(">")
    if seen > n:
        break
    sys.stdout.write(line)
PY
    input=demo.fasta
fi
"$BP" prepare "$input" --alphabet rna --out corpus
"$BP" init --preset tiny --alphabet rna --out model
"$BP" fisher --model model --corpus corpus --subset-size 100 --out fisher.safetensors --no-progress
"$BP" score --model model --corpus corpus --fisher fisher.safetensors --out scores.parquet \
    --no-progress
"$OUT/venv-wheel/bin/python" - "$RECORDS" <<'PY'
import sys
import numpy as np
import pyarrow.parquet as pq
t = pq.read_table("scores.parquet")
scores = t.column("score").to_numpy()
assert sys.argv[1] == "all" or t.num_rows == int(sys.argv[1]), t.num_rows
assert np.isfinite(scores).all() and (scores > 0).all()
print(f"scores.parquet: {t.num_rows} rows, score median {np.median(scores):.4g}", file=sys.stderr)
PY
cd - >/dev/null

step "install the sdist in a fresh venv (offline, builds with the pinned setuptools)"
fresh_venv "$OUT/venv-sdist"
"$OUT/venv-sdist/bin/python" -m pip install --quiet --no-index --no-cache-dir \
    --no-build-isolation "$SDIST"
"$OUT/venv-sdist/bin/python" -m pip check
(cd "$OUT/smoke" && "$OUT/venv-sdist/bin/bioprune" --version \
    && "$OUT/venv-sdist/bin/bioprune" init --preset tiny --alphabet rna --out model-sdist)
step "wheel-check passed: $(basename "$WHEEL"), $(basename "$SDIST")"
