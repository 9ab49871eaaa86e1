#!/usr/bin/env bash
# The demo that `make demo` runs, on the corpus embedded in the package.
# Environment: BIOPRUNE (the bioprune executable), DEMO_OUT (output folder).
set -euo pipefail
BIOPRUNE=${BIOPRUNE:-bioprune}
OUT=${DEMO_OUT:-demo-out}
# The Python of the environment bioprune is installed in sits next to it.
PYTHON=${PYTHON:-$(dirname "$(command -v "$BIOPRUNE")")/python}
mkdir -p "$OUT"

# The embedded corpus: ~7,000 RNAs from real Rfam models (docs/data.md).
CORPUS_FASTA=$("$PYTHON" -c 'from bioprune.resources import DEMO_CORPUS, resource_path; print(resource_path(DEMO_CORPUS))')
echo "== demo corpus: $CORPUS_FASTA" >&2

"$BIOPRUNE" prepare "$CORPUS_FASTA" --alphabet rna --out "$OUT/corpus" --overwrite
"$BIOPRUNE" info "$OUT/corpus" --plot "$OUT/corpus.png"
"$BIOPRUNE" init --preset tiny --alphabet rna --out "$OUT/model-init" --overwrite
