#!/bin/bash
# run_text.sh — storyteller speed, duet against PyTorch in one script run:
# training tokens/s and sampling ms/token (batch 1, KV cache, greedy, f32
# weights) for the issue's config (vocab 512, ctx 256, 6 layers, 6 heads,
# dim 384, batch 16), GPT-2 and Llama families.
#
#   bench/run_text.sh [REPEATS] [THREADS]      # defaults 3 and 2
#   STEPS=5 TOKENS=255 bench/run_text.sh 5
#
# Each repeat runs, back to back: duet (build/bench/bench_train_text, the
# environment it picks: GOMP_SPINCOUNT=3000), PyTorch "tuned"
# (OMP_WAIT_POLICY=PASSIVE OPENBLAS_CORETYPE=SkylakeX) and PyTorch with the
# default environment. The table shows the median over repeats of each
# number and duet's ratio to each PyTorch. Needs `make bench` and Debian's
# torch at /usr/bin/python3 (PY= overrides). A quiet machine, please: with
# two cores, any other process halves a two-thread number.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-3}
T=${2:-2}
STEPS=${STEPS:-5}
TOKENS=${TOKENS:-255}
PY=${PY:-/usr/bin/python3}
B=./build/bench/bench_train_text
[ -x "$B" ] || { echo "run_text.sh: $B missing: run make bench" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# "<train tok/s> <sample ms/token>" from one run's output
grab() { awk '/^train:/ { t = $2 } /^sample:/ { s = $2 } END { print t, s }'; }

for r in $(seq "$R"); do
    for arch in gpt2 llama; do
        a="--arch $arch --steps $STEPS --tokens $TOKENS --threads $T"
        env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT $B $a | tee -a "$tmp/log" | grab >> "$tmp/duet_$arch"
        env OMP_WAIT_POLICY=PASSIVE OPENBLAS_CORETYPE=SkylakeX "$PY" bench/train_text_torch.py $a |
            tee -a "$tmp/log" | grab >> "$tmp/tuned_$arch"
        env -u OMP_WAIT_POLICY -u OPENBLAS_CORETYPE -u GOMP_SPINCOUNT "$PY" bench/train_text_torch.py $a |
            tee -a "$tmp/log" | grab >> "$tmp/default_$arch"
        echo "repeat $r/$R $arch done" >&2
    done
done
grep -m1 '^machine:' "$tmp/log" || true

med() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$2" '{ print $c }' "$1" | med; }

echo
echo "medians of $R repeats, $T threads, $STEPS training steps, $TOKENS sampled tokens"
printf "%-6s %-26s %10s %14s %16s %10s %12s\n" arch measure duet "PyTorch tuned" "PyTorch default" \
    "x tuned" "x default"
for arch in gpt2 llama; do
    dt=$(col "$tmp/duet_$arch" 1); tt=$(col "$tmp/tuned_$arch" 1); ft=$(col "$tmp/default_$arch" 1)
    ds=$(col "$tmp/duet_$arch" 2); ts=$(col "$tmp/tuned_$arch" 2); fs=$(col "$tmp/default_$arch" 2)
    awk -v a="$arch" -v d="$dt" -v t="$tt" -v f="$ft" 'BEGIN {
        printf "%-6s %-26s %10.0f %14.0f %16.0f %10.2f %12.2f\n", a, "train tokens/s", d, t, f, d / t, d / f }'
    awk -v a="$arch" -v d="$ds" -v t="$ts" -v f="$fs" 'BEGIN {
        printf "%-6s %-26s %10.3f %14.3f %16.3f %10.2f %12.2f\n", a, "sample ms/token (lower)", d, t, f, t / d, f / d }'
done
echo "(x = how many times faster duet is: tokens/s ratio for training, ms/token ratio for sampling)"
