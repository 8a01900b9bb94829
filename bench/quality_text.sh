#!/bin/bash
# quality_text.sh — trained for the same wall time on the same data, does duet
# reach a lower or equal validation bits/byte than PyTorch? (storyteller,
# `duet train text --preset small`).
#
#   bench/quality_text.sh [MINUTES] [DATA]     # default 15, data/kjv.txt
#   THREADS=1 WORKDIR=/tmp/q bench/quality_text.sh 0.1 some.txt   # smoke run
#
# 1. duet trains for MINUTES with the preset's settings (BPE of 512 ids
#    trained on the first 90% of DATA, last 10% held out); --eval-every is
#    set past the end and --save-every 0, so the only validation and the only
#    checkpoint come after the budget.
# 2. The tokenizer embedded in duet's model is exported, and the two splits
#    are encoded by `duet tokenizer encode` (the same split, the same ids as
#    in duet's run; the token counts are checked against duet's log).
#    PyTorch validates duet's final weights and must get the loss duet reported.
# 3. One duet step at lr 1e-30 writes duet's initial weights; PyTorch's init
#    is checked against them.
# 4. bench/quality_text_torch.py trains the same model from the same weights
#    on the same batches with the same optimizer and schedule (all read from
#    duet's model metadata) for the same MINUTES, then validates the same way.
# 5. One table from the two CSVs (same code for both) and the verdict.
#
# Both run with OMP_WAIT_POLICY=PASSIVE OPENBLAS_CORETYPE=SkylakeX and
# THREADS threads (default 2). Needs `make` (build/duet) and Debian's torch
# at /usr/bin/python3 (override with PY=). Run it on a quiet machine: the two
# sides run one after the other, so background load skews the comparison.
# Not a speed benchmark of single ops (bench_train_text.c is).
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${1:-15}
DATA=${2:-data/kjv.txt}
THREADS=${THREADS:-2}
PY=${PY:-/usr/bin/python3}
W=${WORKDIR:-/tmp/duet-quality}
DUET=./build/duet

die() { echo "quality_text.sh: $*" >&2; exit 2; }
[ -x "$DUET" ] || die "$DUET is missing: run make first"
[ -f "$DATA" ] || die "$DATA is not a file (a folder is not supported here: concatenate it first)"
"$PY" -c "import torch, numpy" 2>/dev/null || die "$PY cannot import torch and numpy"
mkdir -p "$W"
rm -f "$W"/model.safetensors* "$W"/init.safetensors* "$W"/torch.csv
export OMP_WAIT_POLICY=PASSIVE OPENBLAS_CORETYPE=SkylakeX

echo "== duet: $MINUTES minutes on $DATA, $THREADS threads (log: $W/duet.log)"
if ! "$DUET" train text --data "$DATA" --preset small --minutes "$MINUTES" \
        --threads "$THREADS" --eval-every 1000000000 --save-every 0 \
        --out "$W/model.safetensors" > "$W/duet.out" 2> "$W/duet.log"; then
    tail -5 "$W/duet.log" >&2
    die "duet train text failed"
fi
grep -E '^duet train text:|^  data ' "$W/duet.log" || true
cat "$W/duet.out"

echo "== same tokens for PyTorch"
NBYTES=$(wc -c < "$DATA")
NTRAIN=$((NBYTES - NBYTES / 10))   # cmd_train_text.c: the last 10% (by bytes) is held out
head -c "$NTRAIN" "$DATA" > "$W/train.txt"
tail -c +"$((NTRAIN + 1))" "$DATA" > "$W/val.txt"
"$PY" bench/quality_text_torch.py --duet-model "$W/model.safetensors" \
    --export-tokenizer "$W/tokenizer.json"
"$DUET" tokenizer encode --tokenizer "$W/tokenizer.json" --file "$W/train.txt" > "$W/train.ids"
"$DUET" tokenizer encode --tokenizer "$W/tokenizer.json" --file "$W/val.txt" > "$W/val.ids"
NT=$(wc -w < "$W/train.ids")
NV=$(wc -w < "$W/val.ids")
DUET_COUNTS=$(sed -n 's/^  data .*: \([0-9]*\) train \/ \([0-9]*\) validation tokens.*/\1 \2/p' "$W/duet.log")
[ "$DUET_COUNTS" = "$NT $NV" ] ||
    die "token counts differ: duet trained on '$DUET_COUNTS' (train val), the export has '$NT $NV'"
echo "$NT train / $NV validation tokens, $((NBYTES - NTRAIN)) validation bytes: the same as duet's"

echo "== same validation"
"$PY" bench/quality_text_torch.py --duet-model "$W/model.safetensors" --eval-duet \
    --val-ids "$W/val.ids" --val-bytes "$((NBYTES - NTRAIN))" --threads "$THREADS"

echo "== same initial weights"
"$DUET" train text --data "$DATA" --tokenizer "$W/tokenizer.json" --preset small --steps 1 \
    --lr 1e-30 --eval-batches 1 --save-every 0 --threads "$THREADS" \
    --out "$W/init.safetensors" > /dev/null 2> "$W/init.log" ||
    { tail -5 "$W/init.log" >&2; die "the one-step duet run for the init check failed"; }
"$PY" bench/quality_text_torch.py --duet-model "$W/model.safetensors" \
    --check-init "$W/init.safetensors"

echo "== PyTorch: $MINUTES minutes, $THREADS threads"
"$PY" bench/quality_text_torch.py --duet-model "$W/model.safetensors" \
    --train-ids "$W/train.ids" --val-ids "$W/val.ids" --val-bytes "$((NBYTES - NTRAIN))" \
    --minutes "$MINUTES" --threads "$THREADS" --csv "$W/torch.csv"

# One summary per CSV (step,lr,train_loss,val_loss,val_bpb,tokens_per_s,elapsed_s):
# steps, tokens/s (total tokens / summed step times), step-1 loss, final train
# loss (mean over the last 10% of steps), validation nats/token and bits/byte.
summary() {
    awk -F, 'NR > 1 { n++; l[n] = $3; inv += 1 / $6; v = $4; b = $5; e = $7 }
        END { k = int(n / 10); if (k < 1) k = 1; s = 0
              for (i = n - k + 1; i <= n; i++) s += l[i]
              printf "%d %.0f %.4f %.4f %s %s %.1f\n", n, n / inv, l[1], s / k, v, b, e }' "$1"
}
read -r DS DTPS D1 DTR DVL DBPB DEL <<< "$(summary "$W/model.safetensors.csv")"
[ -n "$DBPB" ] || die "duet's last CSV row has no validation loss (see $W/model.safetensors.csv)"
read -r TS TTPS T1 TTR TVL TBPB TEL <<< "$(summary "$W/torch.csv")"
echo
echo "== $MINUTES minutes, $THREADS threads, $DATA"
printf "%-8s %7s %9s %10s %12s %12s %10s %10s\n" "" steps tokens/s step1_loss \
    "train_loss*" val_nats/tok val_bpb wall_s
printf "%-8s %7s %9s %10s %12s %12s %10s %10s\n" duet "$DS" "$DTPS" "$D1" "$DTR" "$DVL" "$DBPB" "$DEL"
printf "%-8s %7s %9s %10s %12s %12s %10s %10s\n" pytorch "$TS" "$TTPS" "$T1" "$TTR" "$TVL" "$TBPB" "$TEL"
echo "(* mean over the last 10% of steps; step1_loss should agree: same weights, same first batch)"
awk -v d="$D1" -v t="$T1" 'BEGIN { if (d - t > 1e-3 || t - d > 1e-3)
    print "WARNING: the step-1 losses differ: the two sides did not start from the same state" }'
awk -v d="$DBPB" -v t="$TBPB" 'BEGIN {
    printf "verdict: duet %.4f vs PyTorch %.4f bits/byte (%+.2f%%): %s\n", d, t, 100 * (d - t) / t,
        d <= t ? "YES, duet is lower or equal" : "NO, duet is higher" }'
