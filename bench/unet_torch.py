"""unet_torch.py — the PyTorch baseline for bench/bench_unet.c (which runs it).

The same UNet as duet's painter (the reference model of tests/ref/gen_unet.py,
checked against src/models/unet.c in tests/test_unet.c): 3x32x32, base 64,
mults 1,2,2, two ResBlocks per level, attention at level 2 (8x8), 4 heads,
8 groups, 10 classes, dropout 0.1. One phase per process, so ru_maxrss is
that phase's peak:
  --phase train   forward, MSE, backward, grad clip 1.0, AdamW, EMA on a
                  batch of noised random images; images/s over --steps timed
                  steps after two warm-up steps;
  --phase sample  --n images, DDIM (eta 0) with --sample-steps steps and
                  classifier-free guidance 3 (conditional and unconditional
                  halves as one batch), chunks of at most 64, under
                  torch.inference_mode().
Prints "RESULT <images/s> <peak RSS MiB>".

Run with Debian's torch from the repository root:
  /usr/bin/python3 bench/unet_torch.py --phase train --batch 128 --steps 5 --threads 2
"""
import argparse
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
from gen_unet import UNet  # noqa: E402


def cosine_abar(T):
    s = 0.008
    f = lambda t: math.cos(((t / T) + s) / (1 + s) * math.pi / 2) ** 2
    abar, prod = [], 1.0
    for t in range(T):
        b = min(1 - f(t + 1) / f(t), 0.999)
        prod *= 1 - b
        abar.append(prod)
    return torch.tensor(abar, dtype=torch.float64)


def model():
    m = UNet(in_ch=3, ch=64, mults=(1, 2, 2), nres=2, attn_levels=(2,), heads=4, groups=8,
             classes=10, dropout=0.1)
    return m


def train(a):
    torch.manual_seed(0)
    m = model().train()
    ema = model()
    ema.load_state_dict(m.state_dict())
    opt = torch.optim.AdamW(m.parameters(), lr=2e-4, weight_decay=0.0)
    abar = cosine_abar(1000).float()
    B, timed = a.batch, 0.0
    for k in range(a.steps + 2):  # two warm-up steps, as bench_unet.c
        t0 = time.perf_counter()
        x0 = torch.rand(B, 3, 32, 32) * 2 - 1
        eps = torch.randn_like(x0)
        t = torch.randint(0, 1000, (B,))
        ab = abar[t][:, None, None, None]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        lab = torch.arange(B) % 11
        loss = F.mse_loss(m(xt, t.float(), lab), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), m.parameters()):
                pe.mul_(0.999).add_(p, alpha=0.001)
        if k >= 2:
            timed += time.perf_counter() - t0
    return a.steps * B / timed


def sample(a):
    torch.manual_seed(0)
    m = model().eval()
    abar = cosine_abar(1000)
    ts = [int(math.floor(v + 0.5)) for v in torch.linspace(999, 0, a.sample_steps).tolist()]
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i0 in range(0, a.n, 64):
            n = min(64, a.n - i0)
            lab = torch.cat([torch.arange(i0, i0 + n) % 10, torch.full((n,), 10)])
            x = torch.randn(n, 3, 32, 32)
            for i, t in enumerate(ts):
                tt = torch.full((2 * n,), float(t))
                e = m(torch.cat([x, x]), tt, lab)
                eps = e[n:] + 3.0 * (e[:n] - e[n:])
                a_t = float(abar[t])
                a_p = float(abar[ts[i + 1]]) if i + 1 < len(ts) else 1.0
                x0 = ((x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)).clamp(-1, 1)
                x = math.sqrt(a_p) * x0 + math.sqrt(1 - a_p) * eps
    return a.n / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--phase", choices=("train", "sample"), required=True)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--sample-steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    ips = train(a) if a.phase == "train" else sample(a)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"torch {torch.__version__} threads {torch.get_num_threads()} "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')} "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')}")
    print(f"RESULT {ips:.4f} {rss:.1f}")


if __name__ == "__main__":
    main()
