#!/bin/sh
# Rebuilds duet's built-in models from scratch (fixed seeds, fixed step
# counts), the recipe behind models/*.safetensors. Each model trains on one
# thread, both at once: on a 2-core machine that is ~40 minutes in all.
#   sh tools/train_models.sh            # both
#   sh tools/train_models.sh painter    # one of them
# Needs: make all, make data (data/kjv.txt), Fashion-MNIST (tools/deps.sh).
set -e
cd "$(dirname "$0")/.."
OUT=build/models-train
mkdir -p "$OUT" models
which="${1:-both}"
storyteller() {
    DUET_THREADS=1 ./build/duet train text --data data/kjv.txt --arch llama --layers 4 --dim 256 \
        --heads 8 --kv-heads 4 --ctx 256 --batch 16 --vocab 1024 --steps 1800 --lr 2e-3 \
        --warmup 100 --seed 1 --eval-every 200 --save-every 200 \
        --out "$OUT/storyteller.safetensors" $RESUME
    cp "$OUT/storyteller.safetensors" models/storyteller.safetensors
}
painter() {
    DUET_THREADS=1 ./build/duet train image --data fashion-mnist --channels 32 --mults 1,2,2 \
        --res-blocks 1 --attn 2 --batch 32 --lr 1e-3 --warmup 100 --steps 2000 --ema 0.999 \
        --cond-drop 0.1 --seed 1 --save-every 200 --sample-every 500 \
        --out "$OUT/painter.safetensors" $RESUME
    cp "$OUT/painter.safetensors" models/painter.safetensors
}
case "$which" in
    storyteller) storyteller ;;
    painter) painter ;;
    both) storyteller > "$OUT/storyteller.log" 2>&1 & s=$!
          painter > "$OUT/painter.log" 2>&1 & p=$!
          wait $s; wait $p ;;
    *) echo "usage: $0 [storyteller|painter|both]"; exit 2 ;;
esac
