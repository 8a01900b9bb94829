"""gen_optim.py — reference for the training primitives (tests/test_optim.c):

optim.bin
  * torch.optim.AdamW(foreach=False) for STEPS steps on three parameters with
    random gradients; "b" sits in a weight_decay=0 group (duet's per-parameter
    decay mask) and "frozen" never gets a grad (skipped). Before each step the
    grads go through torch.nn.utils.clip_grad_norm_, with per-step scales
    chosen so some steps clip and some do not. The lr of each step comes from
    the warmup + cosine schedule below. Saved: initial params, the grads of
    every step, the norm clip_grad_norm_ returned, the params after every
    step, and the final exp_avg / exp_avg_sq.
  * a 5-step AdamW run with eps = 1e-3 on grads ~1e-3 and betas (0.8, 0.95),
    where eps and the betas change the result visibly.
  * the warmup + cosine / constant schedule (written here from its
    definition in double) for several configurations.

Hyperparameters are f32-representable (np.float32(0.9) etc.) because duet
keeps them as floats: both sides then use bit-identical scalars.
"""
import math

import numpy as np
import torch

import fixture

f32 = lambda x: float(np.float32(x))

STEPS = 10
BETA1, BETA2, EPS, WD = f32(0.9), f32(0.999), f32(1e-8), f32(0.1)
MAX_NORM = f32(1.0)


def lr_at(kind, step, warmup, total, max_lr, min_lr):
    """The documented schedule of duet_lr_at (kind 0 constant, 1 cosine)."""
    step = max(step, 0)
    if warmup > 0 and step < warmup:
        return max_lr * (step + 1) / warmup
    if kind == 0:
        return max_lr
    progress = (step - warmup) / (total - warmup) if total > warmup else 1.0
    progress = min(max(progress, 0.0), 1.0)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


torch.manual_seed(7)
shapes = {"w": (7, 13), "b": (13,), "w2": (5, 3, 4)}
params = {k: torch.randn(s) for k, s in shapes.items()}
frozen = torch.randn(6)
init = {k: v.clone() for k, v in params.items()}
for v in params.values():
    v.requires_grad_(True)
frozen.requires_grad_(True)

opt = torch.optim.AdamW(
    [{"params": [params["w"], params["w2"]], "weight_decay": WD},
     {"params": [params["b"]], "weight_decay": 0.0},
     {"params": [frozen], "weight_decay": WD}],
    lr=1e-3, betas=(BETA1, BETA2), eps=EPS, foreach=False)

# grad scales: the unscaled total norm is ~sqrt(164) ~ 13, so the scales below
# put it on both sides of MAX_NORM
scales = [0.01, 0.2, 0.05, 1.0, 0.03, 3.0, 0.07, 0.02, 0.5, 0.06]
out = {}
lrs, norms = [], []
for s in range(STEPS):
    lr = f32(lr_at(1, s, 3, STEPS, 2e-2, 1e-3))
    lrs.append(lr)
    for k, v in params.items():
        g = torch.randn(shapes[k]) * scales[s]
        out[f"grad{s}_{k}"] = g.clone()
        v.grad = g
    norm = torch.nn.utils.clip_grad_norm_(list(params.values()) + [frozen], MAX_NORM)
    norms.append(norm.item())
    for k, v in params.items():
        out[f"clipped{s}_{k}"] = v.grad.clone()
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    for k, v in params.items():
        out[f"param{s}_{k}"] = v.detach().clone()

for k in shapes:
    out[f"init_{k}"] = init[k]
    st = opt.state[params[k]]
    out[f"exp_avg_{k}"] = st["exp_avg"]
    out[f"exp_avg_sq_{k}"] = st["exp_avg_sq"]
out["frozen"] = frozen.detach()
out["lr"] = np.array(lrs, dtype=np.float32)
out["norm"] = np.array(norms, dtype=np.float32)
out["hyper"] = np.array([BETA1, BETA2, EPS, WD, MAX_NORM], dtype=np.float32)

# a second run where eps matters (grads ~1e-3, eps 1e-3) and the betas are
# not the defaults: catches eps added in the wrong place or betas swapped
E_BETAS, E_EPS, E_WD, E_LR = (f32(0.8), f32(0.95)), f32(1e-3), f32(0.01), f32(0.05)
e = torch.randn(20)
out["e_init"] = e.clone()
e.requires_grad_(True)
eopt = torch.optim.AdamW([e], lr=E_LR, betas=E_BETAS, eps=E_EPS, weight_decay=E_WD,
                         foreach=False)
for s in range(5):
    g = torch.randn(20) * 1e-3
    out[f"e_grad{s}"] = g.clone()
    e.grad = g
    eopt.step()
out["e_final"] = e.detach().clone()
out["e_hyper"] = np.array([E_BETAS[0], E_BETAS[1], E_EPS, E_WD, E_LR], dtype=np.float32)

# schedule table: rows of (kind, warmup, total, max_lr, min_lr) x steps 0..59
configs = [(1, 5, 50, 1e-3, 1e-4), (1, 0, 40, 3e-4, 0.0), (0, 3, 100, 2e-3, 0.0),
           (1, 10, 10, 1e-3, 1e-5), (1, 1, 2, 5e-4, 5e-5)]
NS = 60
sched_cfg = np.array([[c[0], c[1], c[2]] for c in configs], dtype=np.int32)
sched_lr = np.array([[f32(c[3]), f32(c[4])] for c in configs], dtype=np.float32)
sched = np.array([[lr_at(c[0], s, c[1], c[2], float(sched_lr[i, 0]), float(sched_lr[i, 1]))
                   for s in range(NS)] for i, c in enumerate(configs)], dtype=np.float64)
out["sched_cfg"] = sched_cfg
out["sched_lr"] = sched_lr
out["sched"] = sched

fixture.write("optim.bin", out)
