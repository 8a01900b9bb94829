#!/usr/bin/python3
"""gemm_torch.py -- the PyTorch baseline for bench/bench_gemm.c: the same fp32
GEMM shapes (same transposes, as strided views, so BLAS sees the same trans
flags), torch.set_num_threads(N), median and best GFLOP/s of the same kind of
repeat loop. Prints lines "gemm <shape> tA tB M N K median best" like
bench_gemm, and peak RSS. Run with Debian's /usr/bin/python3 (torch 1.13).
The environment (OMP_WAIT_POLICY, OPENBLAS_CORETYPE, ...) is the caller's:
bench/run_gemm.sh runs it twice, tuned and default.

Usage: /usr/bin/python3 bench/gemm_torch.py [--threads N] [--reps N] [--shape NAME]...
"""
import argparse
import os
import resource
import time

import torch

# keep in step with SHAPES in bench/bench_gemm.c
SHAPES = [
    ("sq256", 0, 0, 256, 256, 256),
    ("sq1024", 0, 0, 1024, 1024, 1024),
    ("sq2048", 0, 0, 2048, 2048, 2048),
    ("lin_fwd", 0, 1, 4096, 768, 768),
    ("lin_dinp", 0, 0, 4096, 768, 768),
    ("lin_dW", 1, 0, 768, 768, 4096),
    ("infer64", 0, 1, 64, 768, 768),
    ("infer16", 0, 1, 16, 768, 768),
]


def run_shape(name, ta, tb, m, n, k, reps, g):
    """Times one shape; returns (median GFLOP/s, best GFLOP/s, samples)."""
    # stored like duet's operands: A is K x M when transposed, B is N x K
    a = torch.rand(k, m, generator=g) - 0.5 if ta else torch.rand(m, k, generator=g) - 0.5
    b = torch.rand(n, k, generator=g) - 0.5 if tb else torch.rand(k, n, generator=g) - 0.5
    aop = a.t() if ta else a
    bop = b.t() if tb else b
    c = torch.empty(m, n)
    torch.mm(aop, bop, out=c)
    torch.mm(aop, bop, out=c)
    flops = 2.0 * m * n * k
    ts = []
    t_start = time.perf_counter()
    while len(ts) < 1000 and (len(ts) < reps or time.perf_counter() - t_start < 0.4):
        t0 = time.perf_counter()
        torch.mm(aop, bop, out=c)
        ts.append(time.perf_counter() - t0)
    ts.sort()
    med = ts[len(ts) // 2] if len(ts) % 2 else 0.5 * (ts[len(ts) // 2 - 1] + ts[len(ts) // 2])
    return flops / med * 1e-9, flops / ts[0] * 1e-9, len(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--shape", action="append", help="only this shape (repeatable)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "OPENBLAS_CORETYPE",
                                                     "OMP_NUM_THREADS") if k in os.environ)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, env: {env or '(default)'}")
    g = torch.Generator().manual_seed(0)
    for name, ta, tb, m, n, k in SHAPES:
        if args.shape and name not in args.shape:
            continue
        med, best, ns = run_shape(name, ta, tb, m, n, k, args.reps, g)
        print(f"gemm {name:<9} {ta:2d} {tb:2d} {m:5d} {n:5d} {k:5d} {med:9.1f} {best:9.1f} "
              f"({ns} samples)", flush=True)
    print(f"peak_rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0:.1f}")


if __name__ == "__main__":
    main()
