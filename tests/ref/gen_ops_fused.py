"""gen_ops_fused.py — PyTorch references for the painter's fused ops
(src/nn/unet_fused.c): silu(group_norm(x)) and conv2d(x) + cb[:, :, None, None].

Each case draws float32 inputs and an upstream gradient r, evaluates the
composition in float64 from those float32 values (so the reference carries no
float32 rounding of its own), takes loss = sum(out * r) and writes the inputs,
r, the output and every input gradient.
Run with Debian's torch: cd tests/ref && /usr/bin/python3 gen_ops_fused.py
"""
import numpy as np
import torch
import torch.nn.functional as F

import fixture

rng = np.random.default_rng(11)


def randn(*shape, scale=1.0, shift=0.0):
    a = (rng.standard_normal(shape) * scale + shift).astype(np.float32)
    return torch.from_numpy(a.astype(np.float64)).requires_grad_(True)


def f32(t):
    return t.detach().to(torch.float32)


def backward_with_r(out):
    r = torch.from_numpy(rng.standard_normal(tuple(out.shape)).astype(np.float32).astype(np.float64))
    (out * r).sum().backward()
    return r


def gen_gn_silu(name, N, C, H, W, G, affine):
    # a shifted, scaled input so the normalization has work to do
    x = randn(N, C, H, W, scale=1.7, shift=0.4)
    w = randn(C, scale=0.8, shift=1.0) if affine else None
    b = randn(C, scale=0.5) if affine else None
    out = F.silu(F.group_norm(x, G, w, b, eps=1e-5))
    r = backward_with_r(out)
    arrs = {"dims": np.array([N, C, H, W, G, int(affine)], dtype=np.int32),
            "x": f32(x), "r": f32(r), "out": f32(out), "dx": f32(x.grad)}
    if affine:
        arrs.update({"w": f32(w), "b": f32(b), "dw": f32(w.grad), "db": f32(b.grad)})
    fixture.write("ops_fused_gnsilu_%s.bin" % name, arrs)


def gen_conv_cb(name, N, C, H, W, OC, K, stride, pad, bias):
    x, w = randn(N, C, H, W), randn(OC, C, K, K, scale=0.5)
    b = randn(OC) if bias else None
    cb = randn(N, OC)
    out = F.conv2d(x, w, b, stride=stride, padding=pad) + cb[:, :, None, None]
    r = backward_with_r(out)
    arrs = {"dims": np.array([N, C, H, W, OC, K, stride, pad, int(bias)], dtype=np.int32),
            "x": f32(x), "w": f32(w), "cb": f32(cb), "r": f32(r), "out": f32(out),
            "dx": f32(x.grad), "dw": f32(w.grad), "dcb": f32(cb.grad)}
    if bias:
        arrs.update({"b": f32(b), "db": f32(b.grad)})
    fixture.write("ops_fused_convcb_%s.bin" % name, arrs)


gen_gn_silu("affine", 2, 8, 5, 7, 4, True)
gen_gn_silu("plain", 3, 6, 4, 4, 3, False)
gen_gn_silu("wide", 2, 32, 6, 6, 8, True)
gen_conv_cb("k3s1p1", 2, 5, 7, 6, 9, 3, 1, 1, True)
gen_conv_cb("k3s2p1", 2, 4, 7, 7, 3, 3, 2, 1, True)
gen_conv_cb("k1nobias", 3, 6, 4, 5, 4, 1, 1, 0, False)
