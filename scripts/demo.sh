#!/usr/bin/env bash
# The demo that `make demo` runs: the whole study of the paper, scaled down so
# that it finishes in minutes on a laptop CPU, on the RNA corpus embedded in the
# package (~7,000 real Rfam sequences, docs/data.md).
#
#   prepare -> info -> pretrain a reference -> adapt -> fisher -> score
#   -> select (CCI, Top-k, random, random 10x, clustering) -> inspect
#   -> pretrain each coreset from scratch (equal steps) -> evaluate -> summary
#
# Environment: BIOPRUNE (the bioprune executable), DEMO_OUT (output folder),
# DEMO_STEPS (optimizer steps of each coreset model, default 200).
set -euo pipefail
BIOPRUNE=${BIOPRUNE:-bioprune}
OUT=${DEMO_OUT:-demo-out}
STEPS=${DEMO_STEPS:-200}
BUDGET=${DEMO_BUDGET:-0.05}        # 5% of the corpus per coreset (~350 sequences)
# The Python of the environment bioprune is installed in sits next to it.
PYTHON=${PYTHON:-$(dirname "$(command -v "$BIOPRUNE")")/python}
# Independent trainings and evaluations run JOBS at a time, one thread each:
# on a small CPU that is several times faster than one job with many threads.
JOBS=${DEMO_JOBS:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT/logs"
step() { echo; echo "== $*" >&2; }

# Run "$@" in the background, its output in $OUT/logs/NAME.log, at most JOBS at once.
PIDS=()
NAMES=()
spawn() {
    local name=$1; shift
    while (( $(jobs -rp | wc -l) >= JOBS )); do wait -n || true; done
    echo "   started $name (log: $OUT/logs/$name.log)" >&2
    "$@" > "$OUT/logs/$name.log" 2>&1 &
    PIDS+=($!)
    NAMES+=("$name")
}
# Wait for every spawned job; fail with the log's tail if one failed.
join() {
    local i failed=0
    for i in "${!PIDS[@]}"; do
        if wait "${PIDS[$i]}"; then
            # the command's closing summary (rich wraps it over two lines in a log file)
            echo "   done    ${NAMES[$i]}: $(tail -n 2 "$OUT/logs/${NAMES[$i]}.log" | tr -s '\n ' ' ')" >&2
        else
            echo "   FAILED  ${NAMES[$i]}; its log ends:" >&2
            tail -n 20 "$OUT/logs/${NAMES[$i]}.log" >&2
            failed=1
        fi
    done
    PIDS=()
    NAMES=()
    return $failed
}

resource() { "$PYTHON" -c "from bioprune.resources import resource_path; print(resource_path('$1'))"; }
CORPUS_FASTA=$(resource demo/rna_corpus.fasta.gz)
LABELS=$(resource demo/rna_labels.tsv)
TASK=$(resource tasks/rna_family)

step "1. prepare the embedded corpus: $CORPUS_FASTA"
"$BIOPRUNE" prepare "$CORPUS_FASTA" --alphabet rna --out "$OUT/corpus" --overwrite
"$BIOPRUNE" info "$OUT/corpus" --plot "$OUT/corpus.png"

step "2. reference model: tiny preset pretrained on the whole corpus"
"$BIOPRUNE" init --preset tiny --alphabet rna --out "$OUT/model-init" --overwrite
"$BIOPRUNE" pretrain --corpus "$OUT/corpus" --init "$OUT/model-init" --out "$OUT/reference" \
    --lr 5e-4 --warmup-steps 100 --max-steps 600 --seed 0 --overwrite

step "3. adapt on a random subset, Fisher over the same subset, score every sequence"
"$BIOPRUNE" adapt --model "$OUT/reference" --corpus "$OUT/corpus" --subset-size 800 \
    --out "$OUT/reference-ft" --seed 0 --overwrite
"$BIOPRUNE" fisher --model "$OUT/reference-ft" --corpus "$OUT/corpus" \
    --subset-from "$OUT/reference-ft" --out "$OUT/fisher.safetensors" --overwrite
"$BIOPRUNE" score --model "$OUT/reference-ft" --corpus "$OUT/corpus" \
    --fisher "$OUT/fisher.safetensors" --out "$OUT/scores.parquet" --overwrite

step "4. coresets of $BUDGET of the corpus"
sel() { "$BIOPRUNE" select --corpus "$OUT/corpus" --out "$OUT/sel-$1" --seed 0 --overwrite "${@:2}"; }
sel cci       --scores "$OUT/scores.parquet" --method cci    --budget "$BUDGET"
sel topk      --scores "$OUT/scores.parquet" --method topk   --budget "$BUDGET"
sel random    --method random --budget "$BUDGET"
sel random10x --method random --budget "$("$PYTHON" -c "print(min(1.0, 10 * $BUDGET))")"
if command -v mmseqs >/dev/null 2>&1; then
    sel cluster --method cluster --budget "$BUDGET" --min-seq-id 0.5
else
    echo "mmseqs not installed (apt-get install mmseqs2): skipping the clustering baseline" >&2
fi
for s in cci topk; do
    "$BIOPRUNE" inspect --corpus "$OUT/corpus" --selection "$OUT/sel-$s" \
        --scores "$OUT/scores.parquet" --labels "$LABELS" --out "$OUT/inspect-$s" --overwrite
done

step "5. pretrain a tiny model from scratch on each coreset ($STEPS steps each: equal compute)"
MODELS=(reference)
for sdir in "$OUT"/sel-*; do
    name=${sdir##*/sel-}
    spawn "pretrain-$name" "$BIOPRUNE" pretrain --corpus "$OUT/corpus" --selection "$sdir" \
        --preset tiny --out "$OUT/model-$name" --lr 5e-4 --warmup-steps 50 \
        --max-steps "$STEPS" --seed 0 --overwrite --no-progress
    MODELS+=("model-$name")
done
join

step "6. downstream: RNA family classification, frozen encoder + MLP, seeds 0,1,2"
mkdir -p "$OUT/results"
EVAL=(--task "$TASK" --protocol frozen-mlp --lr 1e-3 --epochs 20 --overwrite)
for m in "${MODELS[@]}"; do
    spawn "evaluate-$m" "$BIOPRUNE" evaluate --model "$OUT/$m" --out "$OUT/results/$m.json" "${EVAL[@]}"
done
spawn evaluate-raw "$BIOPRUNE" evaluate --model "$OUT/reference" --raw --out "$OUT/results/raw.json" \
    "${EVAL[@]}"
join

step "7. summary"
"$PYTHON" "$(dirname "$0")/demo_summary.py" "$OUT"
