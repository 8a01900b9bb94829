"""gen_train.py — end-to-end training references for tests/test_train.c.

Two tiny models, trained by PyTorch from the initial weights stored here with
AdamW(foreach=False) + clip_grad_norm_(1.0) + warmup-cosine lr — exactly the
loop test_train.c runs with duet's tape ops:

train_mlp.bin   x[64,16] -> Linear(16,32) -> GELU(tanh) -> Linear(32,32)
                -> LayerNorm(32) -> Linear(32,10) -> cross-entropy vs fixed
                random targets (the batch is memorised).
train_conv.bin  a small denoiser: noisy image x[16,1,8,8] -> Conv3x3(1->4,p1)
                -> GroupNorm(2) -> SiLU -> Conv3x3(4->8,s2,p1) -> SiLU
                -> upsample2x -> Conv3x3(8->1,p1) -> avgpool2x -> MSE vs the
                2x2-pooled clean image.

Each file holds: initial parameters (torch default init), the data, the
parameter grads of step 0 (to pin down a wrong op quickly), the loss before
every update (loss[s], s = 0..STEPS-1) and after the last one (loss[STEPS]),
and "loss64": the same training run in float64 from the same initial
weights. |loss[STEPS] - loss64[STEPS]| / loss64[STEPS] measures how far f32
rounding alone moves the final loss; the C test's tolerance for its final
loss is set well above it (see test_train.c).

Weights with ndim >= 2 get weight decay; biases and norm parameters do not
(duet_adamw_set_decay). Hyperparameters are f32-representable.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

import fixture

f32 = lambda x: float(np.float32(x))

STEPS = 300
WARMUP = 10
MAX_LR, MIN_LR = f32(1e-2), f32(1e-3)
BETA1, BETA2, EPS, WD = f32(0.9), f32(0.999), f32(1e-8), f32(0.1)
CLIP = f32(1.0)


def lr_at(step):
    """duet_lr_at(DUET_LR_WARMUP_COSINE, ...) from its documented formula."""
    if step < WARMUP:
        return MAX_LR * (step + 1) / WARMUP
    progress = min(max((step - WARMUP) / (STEPS - WARMUP), 0.0), 1.0)
    return MIN_LR + 0.5 * (MAX_LR - MIN_LR) * (1.0 + math.cos(math.pi * progress))


def train(names, init, forward, dtype):
    """Runs the training loop; returns losses[STEPS+1], step-0 grads, final params."""
    params = [init[n].clone().to(dtype).requires_grad_(True) for n in names]
    decay = [p for n, p in zip(names, params) if p.ndim >= 2]
    nodecay = [p for n, p in zip(names, params) if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=MAX_LR, betas=(BETA1, BETA2), eps=EPS, foreach=False)
    losses, grads0 = [], None
    for s in range(STEPS):
        opt.zero_grad(set_to_none=False)
        loss = forward(dict(zip(names, params)), dtype)
        loss.backward()
        if s == 0:
            grads0 = {n: p.grad.detach().clone() for n, p in zip(names, params)}
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        lr = f32(lr_at(s))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(forward(dict(zip(names, params)), dtype).item())
    return losses, grads0


def write(name, names, init, data, forward):
    losses, grads0 = train(names, init, forward, torch.float32)
    losses64, _ = train(names, init, forward, torch.float64)
    out = {f"init_{n}": init[n] for n in names}
    out.update(data)
    out.update({f"grad0_{n}": grads0[n] for n in names})
    out["loss"] = np.array(losses, dtype=np.float64)
    out["loss64"] = np.array(losses64, dtype=np.float64)
    fixture.write(name, out)
    rel = abs(losses[-1] - losses64[-1]) / losses64[-1]
    print(f"{name}: loss {losses[0]:.6f} -> step10 {losses[10]:.6f} -> final {losses[-1]:.6f}"
          f" (f64 {losses64[-1]:.6f}, f32-vs-f64 rel {rel:.2e})")


# ---- MLP ----
torch.manual_seed(1234)
l1, l2, l3 = torch.nn.Linear(16, 32), torch.nn.Linear(32, 32), torch.nn.Linear(32, 10)
ln = torch.nn.LayerNorm(32)
with torch.no_grad():  # non-trivial LN affine so its grads are checked too
    ln.weight.uniform_(0.5, 1.5)
    ln.bias.uniform_(-0.2, 0.2)
mlp_init = {"w1": l1.weight, "b1": l1.bias, "w2": l2.weight, "b2": l2.bias,
            "ln_w": ln.weight, "ln_b": ln.bias, "w3": l3.weight, "b3": l3.bias}
mlp_init = {k: v.detach().clone() for k, v in mlp_init.items()}
mlp_x = torch.randn(64, 16)
mlp_y = torch.randint(0, 10, (64,))


def mlp_forward(p, dtype):
    h = F.linear(mlp_x.to(dtype), p["w1"], p["b1"])
    h = F.gelu(h, approximate="tanh")
    h = F.linear(h, p["w2"], p["b2"])
    h = F.layer_norm(h, (32,), p["ln_w"], p["ln_b"], eps=1e-5)
    logits = F.linear(h, p["w3"], p["b3"])
    return F.cross_entropy(logits, mlp_y)


write("train_mlp.bin", list(mlp_init), mlp_init, {"x": mlp_x, "y": mlp_y.int()}, mlp_forward)

# ---- conv denoiser ----
torch.manual_seed(4321)
c1, c2, c3 = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Conv2d(4, 8, 3, stride=2, padding=1), \
    torch.nn.Conv2d(8, 1, 3, padding=1)
gn = torch.nn.GroupNorm(2, 4)
with torch.no_grad():
    gn.weight.uniform_(0.5, 1.5)
    gn.bias.uniform_(-0.2, 0.2)
conv_init = {"c1_w": c1.weight, "c1_b": c1.bias, "gn_w": gn.weight, "gn_b": gn.bias,
             "c2_w": c2.weight, "c2_b": c2.bias, "c3_w": c3.weight, "c3_b": c3.bias}
conv_init = {k: v.detach().clone() for k, v in conv_init.items()}
# clean images: random smooth patterns (sums of two oriented sinusoids)
N = 16
yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
freq = torch.rand(N, 2, 2) * 0.8 + 0.2
phase = torch.rand(N, 2) * 6.28
clean = sum(torch.sin(freq[:, k, 0, None, None] * xx + freq[:, k, 1, None, None] * yy
                      + phase[:, k, None, None]) for k in range(2)).unsqueeze(1) * 0.5
noisy = clean + 0.3 * torch.randn_like(clean)
target = F.avg_pool2d(clean, 2)


def conv_forward(p, dtype):
    h = F.conv2d(noisy.to(dtype), p["c1_w"], p["c1_b"], padding=1)
    h = F.silu(F.group_norm(h, 2, p["gn_w"], p["gn_b"], eps=1e-5))
    h = F.silu(F.conv2d(h, p["c2_w"], p["c2_b"], stride=2, padding=1))
    h = F.interpolate(h, scale_factor=2, mode="nearest")
    h = F.conv2d(h, p["c3_w"], p["c3_b"], padding=1)
    return F.mse_loss(F.avg_pool2d(h, 2), target.to(dtype))


write("train_conv.bin", list(conv_init), conv_init, {"x": noisy, "target": target}, conv_forward)
