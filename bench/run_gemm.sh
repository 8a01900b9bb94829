#!/bin/sh
# run_gemm.sh — duet's SGEMM against PyTorch on the same shapes and threads,
# in one table: duet (bench/bench_gemm.c), PyTorch with the tuned OpenBLAS
# environment (OMP_WAIT_POLICY=PASSIVE OPENBLAS_CORETYPE=SapphireRapids) and
# PyTorch with the default environment, and duet/PyTorch ratios (> 1: duet
# is faster). Medians of repeats; run on a quiet machine (the "disturbed"
# count in the raw duet output says how often another process had a core).
#
# Usage: bench/run_gemm.sh [threads]   (from the repository root; default 2)
set -e
T=${1:-2}
cd "$(dirname "$0")/.."
make -s build/bench/bench_gemm
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== duet"
./build/bench/bench_gemm --threads "$T" | tee "$tmp/duet"
echo "== PyTorch, tuned env"
OMP_WAIT_POLICY=PASSIVE OPENBLAS_CORETYPE=SapphireRapids /usr/bin/python3 bench/gemm_torch.py --threads "$T" | tee "$tmp/tuned"
echo "== PyTorch, default env"
/usr/bin/python3 bench/gemm_torch.py --threads "$T" | tee "$tmp/default"
echo
echo "== GFLOP/s (median), $T threads"
awk '
FNR == 1 { f++ }
$1 == "gemm" { key = $2; if (f == 1) { order[++n] = key; shp[key] = $3 $4 " " $5 "x" $6 "x" $7 }
               v[f, key] = $8 }
$1 == "peak_rss_mb" { rss[f] = $2 }
END {
  printf "%-9s %-18s %8s %8s %8s %8s %8s\n", "shape", "tAtB MxNxK", "duet", "pt-tuned", "pt-dflt", "/tuned", "/dflt"
  for (i = 1; i <= n; i++) { k = order[i]
    printf "%-9s %-18s %8.1f %8.1f %8.1f %8.2f %8.2f\n", k, shp[k], v[1,k], v[2,k], v[3,k],
           v[1,k] / v[2,k], v[1,k] / v[3,k] }
  printf "%-9s %-18s %8.0f %8.0f %8.0f   (MB)\n", "peak_rss", "", rss[1], rss[2], rss[3]
}' "$tmp/duet" "$tmp/tuned" "$tmp/default"
