#!/bin/bash
# run_llama2c.sh — fp32 decode of one llama2.c checkpoint by llama2.c's own
# `run` and by `duet bench`, alternating, medians (issue 5's 15M shape by
# default: dim 288, hidden 768, 6 layers, 6 heads, vocab 32000, untied).
#
#   LLAMA2C_DIR=/path/to/llama2.c bench/run_llama2c.sh [REPEATS] [THREADS]
#
# llama2.c is not part of duet: point LLAMA2C_DIR at a checkout of it; its
# run.c is built here as its Makefile's `runomp` target builds it (gcc
# -Ofast -fopenmp -march=native). The random checkpoint and tokenizer come
# from tools/gen_random_llama2c.py (SHAPE_ARGS passes other shapes).
# llama2.c prints tok/s over its generated tokens after the first; duet
# bench tg256 likewise times 256 tokens from BOS after a first, untimed
# one. Both start from an empty cache. A quiet machine, please.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-5}
T=${2:-2}
PY=${PY:-/usr/bin/python3}
DIR=${DUET_LLM_DIR:-/tmp/duet-llm}
: "${LLAMA2C_DIR:?set LLAMA2C_DIR to a llama2.c checkout (its run.c)}"
mkdir -p "$DIR"
ckpt=$DIR/l2c-15m.bin tok=$DIR/l2c-15m-tok.bin
[ -s "$ckpt" ] || "$PY" tools/gen_random_llama2c.py --out "$ckpt" --tokenizer "$tok" ${SHAPE_ARGS:-}
run=$DIR/llama2c-run
[ -x "$run" ] || gcc -Ofast -fopenmp -march=native "$LLAMA2C_DIR/run.c" -lm -o "$run"
l2c=() duet=()
for r in $(seq "$R"); do
    l2c+=("$(OMP_NUM_THREADS=$T "$run" "$ckpt" -z "$tok" -n 257 -t 0 2>&1 >/dev/null |
        awk '/achieved tok\/s/ { print $3 }')")
    duet+=("$(./build/duet bench --model "$ckpt" -p 0 -n 256 -r 1 --threads "$T" \
        --bandwidth-mib 0 2>/dev/null | awk -F'|' '/tg256/ { split($8, a, " "); print a[1] }')")
    echo "repeat $r/$R: llama2.c ${l2c[-1]} duet ${duet[-1]} tok/s" >&2
done
med() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ml=$(med "${l2c[@]}") md=$(med "${duet[@]}")
printf 'fp32 decode, %s threads, median of %s: llama2.c %s tok/s, duet %s tok/s, duet/llama2.c %.2f\n' \
    "$T" "$R" "$ml" "$md" "$(echo "$md / $ml" | bc -l)"
