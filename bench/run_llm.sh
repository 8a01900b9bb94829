#!/bin/sh
# bench/run_llm.sh — decode and prompt speed of `duet bench` on random-weight
# Llama-architecture GGUF files in three shapes and five weight types, beside
# llama.cpp's figures measured on this machine (2 threads), with the fraction
# of the memory-bandwidth bound each decode reaches.
#
#   sh bench/run_llm.sh                 # generate missing files, then measure
#   DUET_LLM_DIR=/tmp/x SHAPES="15m 110m" TYPES="q8_0 q4_0" sh bench/run_llm.sh
#   GEN_ONLY=1 sh bench/run_llm.sh      # only write the files
#   NO_MMAP=1 sh bench/run_llm.sh       # `duet bench --no-mmap`: weights read
#                                       # into (huge-page) memory, not mapped
#
# Files (not committed; 1.1B F32 is 4.4 GB, all of them ~13 GB) go to
# DUET_LLM_DIR (default /tmp/duet-llm): tools/gen_random_gguf.py writes the
# F32 file, `duet quantize` the others, Q4_K_M included (`--type q4_k_m`:
# llama.cpp's mix, Q6_K for output and some attn_v / ffn_down, else Q4_K;
# gen_random_gguf.py --q4-k-m splices the same mix from a q4_k and a q6_k
# file, and gives the same tensor types on the 1.1B shape). Rows whose
# length does not split into 256 (dim 288, 768) fall back to q8_0 in the
# K-quant files, as `duet quantize` documents.
#
# Measurement: each model runs under the shared benchmark lock
# (flock /tmp/duet-bench.lock) with `duet bench -p 128 -n 256` (pp128: 128
# tokens as one batch into an empty cache; tg256: 256 tokens one at a time,
# the first not timed); REPS repetitions after a warm-up (default 3; 1 for
# the 1.1B shape's F32/F16, whose decode takes ~a minute per repetition).
# The bound: the bytes a token must read (every weight once, and the KV
# cache up to its position: on average 129.5 positions over tg256) x
# tokens/s, against the read bandwidth `duet bench` measures itself (2
# threads, 1 GiB buffer) just before and after each timed run; "% of bound"
# is the median over the runs, each against the bandwidth of its own
# minute, and "bound GB/s" the median of those bandwidths.
# Generation runs under nice -n 19 and outside the lock.
set -e
cd "$(dirname "$0")/.."
DIR=${DUET_LLM_DIR:-/tmp/duet-llm}
DUET=${DUET:-./build/duet}
PY=${PY:-/usr/bin/python3}
SHAPES=${SHAPES:-"15m 110m 1b"}
TYPES=${TYPES:-"f32 f16 q8_0 q4_0 q4_k_m"}
THREADS=${THREADS:-2}
LOCK=${LOCK:-/tmp/duet-bench.lock}
MMAP_ARG=
[ -n "$NO_MMAP" ] && [ "$NO_MMAP" != 0 ] && MMAP_ARG=--no-mmap
mkdir -p "$DIR"

shape_args() {
    case $1 in
    15m) echo "--dim 288 --hidden 768 --layers 6 --heads 6 --vocab 32000 --ctx 2048 --untied" ;;
    110m) echo "--dim 768 --hidden 2048 --layers 12 --heads 12 --vocab 32000 --ctx 2048 --untied" ;;
    1b) echo "--dim 2048 --hidden 5632 --layers 22 --heads 32 --kv-heads 4 --vocab 32000 --ctx 2048 --untied" ;;
    *) echo "unknown shape $1" >&2; exit 2 ;;
    esac
}

# llama.cpp (2 threads, this machine) decode / prompt tokens/s; "-" = not measured
llamacpp_tg() {
    case "$1 $2" in
    "110m f32") echo 45 ;; "110m q8_0") echo 152-162 ;; "110m q4_0") echo 202-323 ;;
    "110m q4_k_m") echo 117-133 ;;
    "1b f32") echo 5.0 ;; "1b f16") echo 9.7 ;; "1b q8_0") echo 19.8 ;; "1b q4_0") echo 29.4 ;;
    "1b q4_k_m") echo 15.0 ;;
    "15m f32") echo "617 (llama2.c)" ;;
    *) echo - ;;
    esac
}
llamacpp_pp() {
    case "$1 $2" in
    "1b f32") echo 67 ;; "1b q8_0") echo 152 ;;
    *) echo - ;;
    esac
}

gen() { # shape type
    local f="$DIR/$1-$2.gguf"
    [ -s "$f" ] && return 0
    case $2 in
    f32) nice -n 19 $PY tools/gen_random_gguf.py --out "$f" $(shape_args "$1") ;;
    *)
        gen "$1" f32
        nice -n 19 $DUET quantize "$DIR/$1-f32.gguf" "$f" --type "$2" ;;
    esac
}

for s in $SHAPES; do for t in $TYPES; do gen "$s" "$t"; done; done
[ -n "$GEN_ONLY" ] && exit 0

echo "# duet bench, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD), $THREADS threads, weights $([ -n "$MMAP_ARG" ] && echo "read into memory (--no-mmap)" || echo mapped)"
echo
echo "| shape | type | weights MiB | KV MiB | pp128 t/s | llama.cpp pp | tg256 t/s | llama.cpp tg | GB/s | bound GB/s | % of bound |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for s in $SHAPES; do
    for t in $TYPES; do
        reps=${REPS:-3}
        if [ -z "$REPS" ] && [ "$s" = 1b ] && { [ "$t" = f32 ] || [ "$t" = f16 ]; }; then reps=1; fi
        out=$(flock "$LOCK" $DUET bench --model "$DIR/$s-$t.gguf" -p 128 -n 256 -r "$reps" \
            --threads "$THREADS" $MMAP_ARG 2>&1) || { echo "$out" >&2; exit 1; }
        pp=$(echo "$out" | awk -F'|' '$7 ~ /pp128/ {split($8, a, " "); print a[1]}')
        tg=$(echo "$out" | awk -F'|' '$7 ~ /tg256/ {split($8, a, " "); print a[1]}')
        mib=$(echo "$out" | sed -n 's/^weights streamed per token: \([0-9.]*\) \(MiB\|GiB\).*/\1 \2/p' |
            awk '{print $2 == "GiB" ? $1 * 1024 : $1}')
        kv=$(echo "$out" | sed -n 's/^KV cache read per token: \([0-9.]*\) \(KiB\|MiB\|GiB\).*/\1 \2/p' |
            awk '{printf "%.2f", $2 == "GiB" ? $1 * 1024 : $2 == "KiB" ? $1 / 1024 : $1}')
        gbs=$(echo "$out" | sed -n 's/^generation: \([0-9.]*\) GB\/s.*/\1/p')
        bw=$(echo "$out" | sed -n 's/.*measured read bandwidth \([0-9.]*\) GB\/s.*/\1/p')
        pct=$(echo "$out" | sed -n 's/.*: \([0-9]*\)%$/\1/p')
        echo "| $s | $t | $mib | $kv | $pp | $(llamacpp_pp $s $t) | $tg | $(llamacpp_tg $s $t) | $gbs | $bw | $pct% |"
    done
done
