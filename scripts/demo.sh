#!/usr/bin/env bash
# The demo that `make demo` runs, on the corpus embedded in the package.
set -euo pipefail
BIOPRUNE=${BIOPRUNE:-bioprune}
OUT=${DEMO_OUT:-demo-out}
mkdir -p "$OUT"
"$BIOPRUNE" init --preset tiny --alphabet rna --out "$OUT/model-init" --overwrite
